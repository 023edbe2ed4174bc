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
mod health;
mod openapi;
mod presence_api;
pub mod request_log;
pub mod role_gate;
mod session_api;
mod sockets;
mod sso_start;
mod webhooks_api;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};

use crate::infra::error::DomainError;

pub use agent_auth::AgentAuth;
pub use assets::ConsoleSettings;
pub use deps::{AuthDeps, HttpLimits};
pub use health::{Health, HealthBody, RoleHealth};
pub use openapi::document_json as openapi_json;

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
    .service(resource("/healthz", "GET").route(web::get().to(health::healthz)))
    .service(resource("/openapi.json", "GET").route(web::get().to(openapi::openapi_json)))
    .service(resource("/auth/token", "POST").route(web::post().to(auth_api::issue_token)))
    .service(resource("/auth/login", "POST").route(web::post().to(session_api::login)))
    .service(resource("/auth/logout", "POST").route(web::post().to(session_api::logout)))
    .service(resource("/auth/revoke", "POST").route(web::post().to(auth_api::revoke)))
    .service(resource("/auth/sso/{groupid}", "GET").route(web::get().to(sso_start::start)))
    .service(resource("/visitor/ws", "GET").route(web::get().to(sockets::visitor_socket)))
    .service(resource("/agent/ws", "GET").route(web::get().to(sockets::agent_socket)))
    .service(resource("/admin/{groupid}/audit", "GET").route(web::get().to(admin_api::audit)))
    .service(
        resource("/admin/{groupid}/agents", "GET").route(web::get().to(admin_api::list_agents)),
    )
    .service(
        resource("/admin/{groupid}/agents/{username}/revoke", "POST")
            .route(web::post().to(admin_api::revoke_agent)),
    )
    .service(
        resource("/admin/{groupid}/webhooks/failed", "GET")
            .route(web::get().to(webhooks_api::failed)),
    )
    .service(
        resource("/admin/{groupid}/webhooks/failed/replay", "POST")
            .route(web::post().to(webhooks_api::replay)),
    )
    .service(
        resource("/presence/{groupid}/visitors", "GET")
            .route(web::get().to(admin_api::list_visitors)),
    )
    .service(
        resource("/presence/{groupid}/visitors/{visitorid}", "GET")
            .route(web::get().to(presence_api::lookup)),
    )
    .service(
        resource("/presence/{groupid}/visitors/{visitorid}/invoke", "POST")
            .route(web::post().to(presence_api::invoke)),
    )
    .service(
        resource("/presence/{groupid}/sessions/{key}", "GET")
            .route(web::get().to(presence_api::find_session)),
    )
    .service(
        resource("/presence/{groupid}/visitors/{visitorid}/signal", "POST")
            .route(web::post().to(presence_api::signal)),
    )
    .service(
        resource(
            "/presence/{groupid}/visitors/{visitorid}/confirm",
            "POST, DELETE",
        )
        .route(web::post().to(presence_api::start_confirmation))
        .route(web::delete().to(presence_api::end_confirmation)),
    )
    .service(
        resource(
            "/presence/{groupid}/visitors/{visitorid}/confirm/{cid}",
            "GET",
        )
        .route(web::get().to(presence_api::confirmation_status)),
    );
}

/// A resource whose unmatched methods get a JSON 405 naming the methods it
/// serves in `Allow` (RFC 9110 §15.5.6).
fn resource(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move || async move {
        let mut response = DomainError::MethodNotAllowed.error_response();
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static(allow));
        response
    }))
}

/// The JSON 404 for unknown paths.
pub async fn not_found() -> HttpResponse {
    DomainError::NotFound.error_response()
}

/// An optional JSON object body. None (only whitespace, or `null`) is
/// `T::default()`; one that is sent must be an object that parses as `T`,
/// so that a typo is a 400, never silently the defaults.
pub(crate) fn optional_json_object<T: serde::de::DeserializeOwned + Default>(
    body: Result<web::Bytes, actix_web::Error>,
    what: &str,
) -> Result<T, DomainError> {
    let body = body.map_err(|e| match e.as_response_error().status_code().as_u16() {
        413 => DomainError::PayloadTooLarge(format!("the body is too large: {e}")),
        _ => DomainError::BadRequest(format!("cannot read the body: {e}")),
    })?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let bad = |e: serde_json::Error| DomainError::BadRequest(format!("bad {what}: {e}"));
    match serde_json::from_slice(&body).map_err(bad)? {
        serde_json::Value::Null => Ok(T::default()),
        object @ serde_json::Value::Object(_) => serde_json::from_value(object).map_err(bad),
        _ => Err(DomainError::BadRequest(format!(
            "the {what} must be a JSON object"
        ))),
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
