//! The `Authorization: Bearer <token>` extractor of the agent REST API, and
//! the checks that tie a verified token to the group in the path.

use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};

use crate::config::{GroupConfig, Role};
use crate::error::ApiError;
use crate::ids::GroupId;
use crate::origin::RequestOrigin;
use crate::state::AppState;
use crate::token::AgentClaims;

/// A request carrying a valid agent token.
pub struct AgentAuth {
    pub claims: AgentClaims,
    pub origin: RequestOrigin,
}

impl FromRequest for AgentAuth {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(extract(req))
    }
}

fn extract(req: &HttpRequest) -> Result<AgentAuth, ApiError> {
    let app = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::Internal("app state missing".into()))?;
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing Authorization header"))?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("Authorization header is not text"))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or_else(|| ApiError::unauthorized("Authorization must be `Bearer <token>`"))?;
    let claims = app.tokens.verify(token.trim()).map_err(|e| {
        app.metrics.auth_failed(e.reason());
        ApiError::unauthorized(e.to_string())
    })?;
    Ok(AgentAuth {
        claims,
        origin: RequestOrigin::from_headers(req.headers()),
    })
}

impl AgentAuth {
    /// Checks that the token may act on `group`: same group, the group
    /// still has Presence, and the request's Origin is on its list.
    pub fn for_group<'a>(
        &self,
        app: &'a AppState,
        group: GroupId,
    ) -> Result<&'a GroupConfig, ApiError> {
        if self.claims.groupid != group {
            return Err(ApiError::WrongGroup {
                token: self.claims.groupid,
                path: group,
            });
        }
        let config = app
            .config
            .group(group)
            .ok_or(ApiError::UnknownGroup(group))?;
        if !config.presence {
            return Err(ApiError::PresenceNotSubscribed(group));
        }
        app.origins.check_group(group, &self.origin)?;
        Ok(config)
    }

    /// As [`AgentAuth::for_group`], and the token must be an
    /// administrator's.
    pub fn require_admin<'a>(
        &self,
        app: &'a AppState,
        group: GroupId,
    ) -> Result<&'a GroupConfig, ApiError> {
        let config = self.for_group(app, group)?;
        if self.claims.role != Role::Administrator {
            return Err(ApiError::Forbidden(
                "this needs an administrator token of the group".into(),
            ));
        }
        Ok(config)
    }
}
