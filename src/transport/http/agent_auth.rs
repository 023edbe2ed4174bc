//! The `Authorization: Bearer <token>` extractor of the agent REST API, and
//! the checks that tie a verified token to the group in the path.

use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};

use crate::auth::token::AgentClaims;
use crate::infra::config::GroupConfig;
use crate::infra::error::DomainError;
use crate::infra::ids::GroupId;
use crate::presence::agent_ops::{AgentOps, Caller};
use crate::presence::origin::RequestOrigin;
use crate::server::state::AppState;

/// A request carrying a valid agent token.
pub struct AgentAuth {
    pub claims: AgentClaims,
    pub origin: RequestOrigin,
}

impl FromRequest for AgentAuth {
    type Error = DomainError;
    type Future = Ready<Result<Self, DomainError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(extract(req))
    }
}

fn extract(req: &HttpRequest) -> Result<AgentAuth, DomainError> {
    let app = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| DomainError::Internal("app state missing".into()))?;
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| DomainError::unauthorized("missing Authorization header"))?;
    let value = value
        .to_str()
        .map_err(|_| DomainError::unauthorized("Authorization header is not text"))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or_else(|| DomainError::unauthorized("Authorization must be `Bearer <token>`"))?;
    let claims = app.tokens.verify(token.trim()).map_err(|e| {
        app.metrics.auth_failed(e.reason());
        DomainError::unauthorized(e.to_string())
    })?;
    Ok(AgentAuth {
        claims,
        origin: RequestOrigin::from_headers(req.headers()),
    })
}

impl AgentAuth {
    /// The caller as the agent operations see it.
    pub fn caller<'a>(&'a self, client: Option<&'a str>) -> Caller<'a> {
        Caller {
            claims: &self.claims,
            origin: &self.origin,
            client,
        }
    }

    /// Checks that the token may act on `group` (see [`AgentOps::admit`]).
    pub fn for_group<'a>(
        &self,
        app: &'a AppState,
        group: GroupId,
    ) -> Result<&'a GroupConfig, DomainError> {
        app.ops.admit(&self.caller(None), group)
    }

    /// As [`AgentAuth::for_group`], and the token must be an
    /// administrator's.
    pub fn require_admin<'a>(
        &self,
        app: &'a AppState,
        group: GroupId,
    ) -> Result<&'a GroupConfig, DomainError> {
        app.ops.admit_admin(&self.caller(None), group)
    }
}
