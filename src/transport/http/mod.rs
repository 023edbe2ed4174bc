//! The HTTP surface: routes, JSON error handling for extractor failures, and
//! the WebSocket upgrade endpoints.

mod admin_api;
mod agent_auth;
mod assets;
mod auth_api;
mod auth_audit;
pub mod cors;
mod deps;
pub mod error_response;
pub(crate) mod guards;
mod presence_api;
pub mod request_log;
pub mod role_gate;
mod session_api;
mod sockets;
mod sso_start;

use std::sync::Arc;

use crate::auth::token::ReceivedKeys;
use crate::infra::clock::SharedClock;
use crate::infra::config::ConfigReloader;
use crate::store::cluster::ClusterLink;
use crate::transport::internal::handover::{self, HandoverStatus};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};

use crate::infra::error::DomainError;

pub use agent_auth::AgentAuth;
pub use assets::ConsoleSettings;
pub use deps::{AuthDeps, HttpLimits};

/// Registers every route on an app.
pub fn configure(cfg: &mut web::ServiceConfig, limits: &HttpLimits) {
    let body_limit = limits.body_limit;
    cfg.app_data(
        web::JsonConfig::default()
            .limit(body_limit)
            .error_handler(|err, _| json_error(err).into()),
    )
    .app_data(web::PayloadConfig::new(body_limit))
    .app_data(
        web::PathConfig::default()
            .error_handler(|err, _| DomainError::BadRequest(format!("bad path: {err}")).into()),
    )
    .app_data(
        web::QueryConfig::default()
            .error_handler(|err, _| DomainError::BadRequest(format!("bad query: {err}")).into()),
    )
    .configure(assets::configure)
    .service(resource("/healthz").route(web::get().to(healthz)))
    .service(resource("/auth/token").route(web::post().to(auth_api::issue_token)))
    .service(resource("/auth/login").route(web::post().to(session_api::login)))
    .service(resource("/auth/logout").route(web::post().to(session_api::logout)))
    .service(resource("/auth/revoke").route(web::post().to(auth_api::revoke)))
    .service(resource("/auth/sso/{groupid}").route(web::get().to(sso_start::start)))
    .service(resource("/visitor/ws").route(web::get().to(sockets::visitor_socket)))
    .service(resource("/agent/ws").route(web::get().to(sockets::agent_socket)))
    .service(resource("/admin/{groupid}/audit").route(web::get().to(admin_api::audit)))
    .service(resource("/admin/{groupid}/agents").route(web::get().to(admin_api::list_agents)))
    .service(
        resource("/admin/{groupid}/agents/{username}/revoke")
            .route(web::post().to(admin_api::revoke_agent)),
    )
    .service(
        resource("/presence/{groupid}/visitors").route(web::get().to(admin_api::list_visitors)),
    )
    .service(
        resource("/presence/{groupid}/visitors/{visitorid}")
            .route(web::get().to(presence_api::lookup)),
    )
    .service(
        resource("/presence/{groupid}/visitors/{visitorid}/invoke")
            .route(web::post().to(presence_api::invoke)),
    )
    .service(
        resource("/presence/{groupid}/sessions/{key}")
            .route(web::get().to(presence_api::find_session)),
    )
    .service(
        resource("/presence/{groupid}/visitors/{visitorid}/signal")
            .route(web::post().to(presence_api::signal)),
    )
    .service(
        resource("/presence/{groupid}/visitors/{visitorid}/confirm")
            .route(web::post().to(presence_api::start_confirmation))
            .route(web::delete().to(presence_api::end_confirmation)),
    )
    .service(
        resource("/presence/{groupid}/visitors/{visitorid}/confirm/{cid}")
            .route(web::get().to(presence_api::confirmation_status)),
    );
}

/// A resource whose unmatched methods get a JSON 405.
fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(|| async {
        DomainError::MethodNotAllowed.error_response()
    }))
}

/// The JSON 404 for unknown paths.
pub async fn not_found() -> HttpResponse {
    DomainError::NotFound.error_response()
}

/// What `/healthz` reports on.
pub struct Health {
    /// Cluster mode: the node's link to Redis.
    pub cluster: Option<ClusterLink>,
    /// Split roles: what this node serves, and its side of the handover.
    pub role: RoleHealth,
    /// The config in force and the last reload.
    pub reloader: Arc<dyn ConfigReloader>,
}

/// A split role's part of `/healthz`.
pub enum RoleHealth {
    All,
    /// The keys received, judged stale past `key_rotation_secs` + 5 min.
    Auth {
        keys: Arc<ReceivedKeys>,
        clock: SharedClock,
        rotation_secs: u64,
        started_ms: u64,
    },
    /// Each auth node's handover.
    Presence(Arc<HandoverStatus>),
}

/// `{"status":"ok"}` on one node (as always). In cluster mode 200
/// `{"status":"ok","mode":"redis","node":id,"nodes":N}` while Redis is
/// reachable, else 503 with `"status":"degraded"`. A split role adds
/// `"role"`; an auth node `"signing_key": {"kid", "last_received_ms",
/// "stale"}` (503 while it has no key, `"status":"degraded"` when stale); a
/// presence node `"handover": [{"last_ok_ms", "error", "current"}]`.
/// Every node adds `"config_hash"` (the config in force) and
/// `"last_reload"` (`null`, or `{"outcome", "at_ms", "error",
/// "config_hash"}`); cluster mode `"node_config_hashes": {node: hash}`.
/// A failed reload does not make a node unhealthy: its old config serves.
async fn healthz(health: web::Data<Health>) -> HttpResponse {
    let mut body = serde_json::json!({"status": "ok"});
    let mut healthy = true;
    body["config_hash"] = health.reloader.config_hash().into();
    body["last_reload"] = match health.reloader.last_reload() {
        Some(report) => serde_json::json!({
            "outcome": report.outcome,
            "at_ms": report.at_ms,
            "error": report.error,
            "config_hash": report.config_hash,
        }),
        None => serde_json::Value::Null,
    };
    if let Some(link) = &health.cluster {
        let reachable = link.is_reachable();
        healthy &= reachable;
        body["mode"] = "redis".into();
        body["node"] = link.node_id().into();
        body["nodes"] = link.live_nodes().len().into();
        body["node_config_hashes"] =
            serde_json::to_value(link.node_config_hashes()).unwrap_or_default();
        if !reachable {
            body["status"] = "degraded".into();
        }
    }
    match &health.role {
        RoleHealth::All => {}
        RoleHealth::Auth {
            keys,
            clock,
            rotation_secs,
            started_ms,
        } => {
            let status = keys.status();
            let stale = handover::is_stale(
                status.last_received_ms.or(Some(*started_ms)),
                clock.now_ms(),
                *rotation_secs,
            );
            body["role"] = "auth".into();
            body["signing_key"] = serde_json::json!({
                "kid": status.signing,
                "last_received_ms": status.last_received_ms,
                "stale": stale,
            });
            if status.signing.is_none() {
                healthy = false;
                body["status"] = "no_signing_key".into();
            } else if stale && healthy {
                body["status"] = "degraded".into();
            }
        }
        RoleHealth::Presence(handover) => {
            body["role"] = "presence".into();
            body["handover"] = serde_json::to_value(handover.snapshot()).unwrap_or_default();
        }
    }
    if healthy {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

fn json_error(err: actix_web::error::JsonPayloadError) -> DomainError {
    use actix_web::error::JsonPayloadError;
    match err {
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
            DomainError::PayloadTooLarge(format!("the body is too large: {err}"))
        }
        other => DomainError::BadRequest(format!("bad JSON body: {other}")),
    }
}

/// The client's IP address, for audit records and per-client limits.
pub(crate) fn client_ip(req: &HttpRequest) -> Option<String> {
    client_addr(req).map(|ip| ip.to_string())
}

/// The client's address: the TCP peer, or the forwarded client when the
/// peer is a trusted proxy (see [`crate::transport::client_addr`]).
pub(crate) fn client_addr(req: &HttpRequest) -> Option<std::net::IpAddr> {
    let peer = req.peer_addr().map(|a| a.ip());
    match req.app_data::<web::Data<HttpLimits>>() {
        Some(limits) => limits.trusted_proxies.client_ip(peer, req.headers()),
        None => peer,
    }
}
