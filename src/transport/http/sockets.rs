//! The WebSocket upgrade endpoints. The Origin was already checked against
//! every group's list by the CORS middleware; the session actors check it
//! again against their own group once hello or auth names it. Each upgrade
//! takes a slot from the connection gate first: at the limit it is a 503
//! `at_capacity` before the upgrade, and over its client's cap (or, for a
//! visitor socket whose URL names its `groupid`, over the group's
//! `max_visitors`) a 429 `too_many_connections`. Every socket's bytes pass
//! the inbound frame guard (size, fragment and rate limits at each frame
//! header) before actix's frame parser sees them.

use super::openapi::ServerErrors;
use crate::infra::error::ErrorBody;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;

use crate::infra::config::PresenceConfig;
use crate::infra::error::DomainError;
use crate::infra::ids::GroupId;
use crate::infra::metrics::Metrics;
use crate::infra::metrics::SocketKind;
use crate::presence::origin::RequestOrigin;
use crate::transport::agent_session::{AgentSession, AgentSocketDeps};
use crate::transport::visitor_session::{GroupAdmission, VisitorSession, VisitorSocketDeps};
use crate::transport::ws_guard::{FrameGuard, GuardLimits, InboundHandle};
use std::sync::Arc;

/// The optional query of `GET /visitor/ws`.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VisitorSocketQuery {
    /// The group the hello will name; lets a full group refuse the upgrade.
    #[serde(default)]
    #[param(value_type = Option<u64>, maximum = 9007199254740991.0)]
    groupid: Option<GroupId>,
}

/// The socket's payload behind its frame guard, and the guard's handle.
fn guarded(
    limits: &PresenceConfig,
    metrics: &Arc<Metrics>,
    stream: web::Payload,
) -> (FrameGuard<web::Payload>, InboundHandle) {
    FrameGuard::wrap(stream, GuardLimits::from_config(limits), metrics.clone())
}

/// `GET /visitor/ws`
#[utoipa::path(
    get,
    path = "/visitor/ws",
    tag = "sockets",
    summary = "The visitor script's WebSocket",
    description = "Upgrades to a WebSocket; the first frame must be `hello` within `presence.hello_timeout_ms`. The frames and close codes are in the README (Visitor socket protocol).",
    params(VisitorSocketQuery),
    responses(
        (status = 101, description = "Switched to the WebSocket protocol"),
        (status = 400, description = "`bad_request`: not a WebSocket upgrade, or a bad query", body = ErrorBody),
        (status = 403, description = "`origin_not_allowed`: the Origin is in no group's list", body = ErrorBody),
        (status = 404, description = "`not_served_here` (split roles: an auth node)", body = ErrorBody),
        ServerErrors,
    ),
)]
pub async fn visitor_socket(
    deps: web::Data<VisitorSocketDeps>,
    req: HttpRequest,
    query: web::Query<VisitorSocketQuery>,
    stream: web::Payload,
) -> Result<HttpResponse, DomainError> {
    let origin = RequestOrigin::from_headers(req.headers());
    let frame_size = deps.limits.max_message_bytes;
    let group = match query.groupid {
        Some(id) => {
            let cap = deps.groups.group(id).and_then(|g| g.max_visitors);
            Some(GroupAdmission {
                group: id,
                slot: deps.gate.admit_to_group(id, cap)?,
            })
        }
        None => None,
    };
    let permit = deps
        .gate
        .admit(SocketKind::Visitor, super::client_addr(&req))?;
    let (payload, inbound) = guarded(&deps.limits, &deps.metrics, stream);
    let session = VisitorSession::new(deps.into_inner(), origin, permit, group, inbound);
    ws::WsResponseBuilder::new(session, &req, payload)
        .frame_size(frame_size)
        .start()
        .map_err(|e| DomainError::BadRequest(format!("expected a WebSocket upgrade: {e}")))
}

/// `GET /agent/ws`
#[utoipa::path(
    get,
    path = "/agent/ws",
    tag = "sockets",
    summary = "The agent console's WebSocket",
    description = "Upgrades to a WebSocket; the first frame must be `auth` with an agent token within `presence.hello_timeout_ms`. The frames and close codes are in the README (Agent socket protocol).",
    responses(
        (status = 101, description = "Switched to the WebSocket protocol"),
        (status = 400, description = "`bad_request`: not a WebSocket upgrade", body = ErrorBody),
        (status = 403, description = "`origin_not_allowed`: the Origin is in no group's list", body = ErrorBody),
        (status = 404, description = "`not_served_here` (split roles: an auth node)", body = ErrorBody),
        ServerErrors,
    ),
)]
pub async fn agent_socket(
    deps: web::Data<AgentSocketDeps>,
    req: HttpRequest,
    stream: web::Payload,
) -> Result<HttpResponse, DomainError> {
    let origin = RequestOrigin::from_headers(req.headers());
    let frame_size = deps.limits.max_message_bytes;
    let permit = deps
        .gate
        .admit(SocketKind::Agent, super::client_addr(&req))?;
    let client = super::client_ip(&req);
    let (payload, inbound) = guarded(&deps.limits, &deps.metrics, stream);
    let session = AgentSession::new(deps.into_inner(), origin, client, permit, inbound);
    ws::WsResponseBuilder::new(session, &req, payload)
        .frame_size(frame_size)
        .start()
        .map_err(|e| DomainError::BadRequest(format!("expected a WebSocket upgrade: {e}")))
}
