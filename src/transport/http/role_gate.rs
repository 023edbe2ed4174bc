//! The split roles' route gate: a path that belongs to the other role gets
//! 404 `not_served_here` before anything else looks at it (a socket upgrade
//! included). `/healthz` is served by every role; `all` serves everything.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, ResponseError};

use crate::infra::config::ServerRole;
use crate::infra::error::DomainError;

/// The role that serves `path`, if only one does.
pub fn owner_of(path: &str) -> Option<ServerRole> {
    let under = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}/"));
    // `/admin/{groupid}/webhooks/...`: the outbox is on the presence nodes.
    let webhooks = path.split('/').nth(3) == Some("webhooks");
    if under("/admin") && webhooks {
        Some(ServerRole::Presence)
    } else if under("/auth") || under("/admin") {
        Some(ServerRole::Auth)
    } else if under("/presence")
        || under("/sdk")
        || under("/console")
        || under("/demo")
        || path == "/visitor/ws"
        || path == "/agent/ws"
    {
        Some(ServerRole::Presence)
    } else {
        None
    }
}

/// The gate, as `actix_web::middleware::from_fn`.
pub async fn role_gate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let role = req
        .app_data::<web::Data<ServerRole>>()
        .map_or(ServerRole::All, |r| *r.get_ref());
    if role.is_split() {
        // The router's (requoted) path, as it matches routes: `/%61uth/token`
        // routes to `/auth/token`, so it is gated as that.
        if let Some(owner) = owner_of(req.match_info().as_str()) {
            if owner != role {
                let refusal = DomainError::NotServedHere(role.as_str(), owner.as_str());
                return Ok(req
                    .into_response(refusal.error_response())
                    .map_into_right_body());
            }
        }
    }
    Ok(next.call(req).await?.map_into_left_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_public_path_has_its_owner() {
        for path in [
            "/auth/token",
            "/auth/login",
            "/auth/sso/9",
            "/admin/72/audit",
            "/admin/72/agents/fred/revoke",
        ] {
            assert_eq!(owner_of(path), Some(ServerRole::Auth), "{path}");
        }
        for path in [
            "/visitor/ws",
            "/agent/ws",
            "/presence/72/visitors",
            "/admin/72/webhooks/failed",
            "/admin/72/webhooks/failed/replay",
            "/sdk/presence-agent.js",
            "/console",
            "/console/config.json",
            "/demo/demo.js",
        ] {
            assert_eq!(owner_of(path), Some(ServerRole::Presence), "{path}");
        }
        for path in ["/healthz", "/openapi.json", "/authx", "/internal/keys", "/"] {
            assert_eq!(owner_of(path), None, "{path}");
        }
    }
}
