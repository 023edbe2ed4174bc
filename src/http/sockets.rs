//! The WebSocket upgrade endpoints. The Origin was already checked against
//! every group's list by the CORS middleware; the session actors check it
//! again against their own group once hello or auth names it.

use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;

use crate::agent_session::AgentSession;
use crate::error::ApiError;
use crate::origin::RequestOrigin;
use crate::state::AppState;
use crate::visitor_session::VisitorSession;

/// `GET /visitor/ws`
pub async fn visitor_socket(
    app: web::Data<AppState>,
    req: HttpRequest,
    stream: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let origin = RequestOrigin::from_headers(req.headers());
    let frame_size = app.config.presence.max_message_bytes;
    ws::WsResponseBuilder::new(VisitorSession::new(app, origin), &req, stream)
        .frame_size(frame_size)
        .start()
        .map_err(|e| ApiError::BadRequest(format!("expected a WebSocket upgrade: {e}")))
}

/// `GET /agent/ws`
pub async fn agent_socket(
    app: web::Data<AppState>,
    req: HttpRequest,
    stream: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let origin = RequestOrigin::from_headers(req.headers());
    let frame_size = app.config.presence.max_message_bytes;
    ws::WsResponseBuilder::new(
        AgentSession::new(app, origin, super::client_ip(&req)),
        &req,
        stream,
    )
    .frame_size(frame_size)
    .start()
    .map_err(|e| ApiError::BadRequest(format!("expected a WebSocket upgrade: {e}")))
}
