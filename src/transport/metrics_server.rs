//! The private listener that serves `GET /metrics`, apart from the public
//! server so that a public bind never exposes it.

use crate::infra::metrics::RegistryFigures;
use std::net::{SocketAddr, TcpListener};

use actix_web::dev::ServerHandle;
use actix_web::http::header;
use actix_web::{web, App, HttpResponse, HttpServer};

use crate::infra::config::Config;
use crate::infra::error::DomainError;
use crate::infra::metrics::Metrics;
use crate::presence::registry::PresenceDirectory;
use std::sync::Arc;

/// A running metrics listener.
pub struct MetricsServer {
    pub addr: SocketAddr,
    pub handle: ServerHandle,
}

/// What `/metrics` reads: the metrics, and the registry's live counts.
pub struct MetricsSource {
    pub metrics: Arc<Metrics>,
    pub registry: Arc<dyn PresenceDirectory>,
}

/// Starts the listener on `server.metrics_bind`, unless that is empty.
pub fn start(config: &Config, source: MetricsSource) -> std::io::Result<Option<MetricsServer>> {
    let app = web::Data::new(source);
    if config.server.metrics_bind.is_empty() {
        return Ok(None);
    }
    let listener = TcpListener::bind(&config.server.metrics_bind)?;
    let addr = listener.local_addr()?;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(app.clone())
            .route("/metrics", web::get().to(metrics))
            .default_service(web::to(crate::transport::http::not_found))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    Ok(Some(MetricsServer { addr, handle }))
}

async fn metrics(app: web::Data<MetricsSource>) -> Result<HttpResponse, DomainError> {
    let stats = app.registry.stats().await?;
    let text = app.metrics.render(RegistryFigures {
        visitors: stats.visitors,
        connections: stats.connections,
        mailbox_depth: stats.mailbox_depth,
        mailbox_peak: stats.mailbox_peak,
    })?;
    Ok(HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ))
        .body(text))
}
