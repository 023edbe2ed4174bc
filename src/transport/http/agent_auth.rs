//! The `Authorization: Bearer <token>` extractor of the agent REST API, and
//! the checks that tie a verified token to the group in the path.

use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};

use crate::auth::token::AgentClaims;
use crate::auth::token::TokenService;
use crate::infra::error::DomainError;
use crate::infra::ids::GroupId;
use crate::infra::metrics::Metrics;
use crate::presence::admission::GroupRef;
use crate::presence::agent_ops::{AgentOps, Caller};
use crate::presence::origin::RequestOrigin;

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
    let (Some(tokens), Some(metrics)) = (
        req.app_data::<web::Data<TokenService>>(),
        req.app_data::<web::Data<Metrics>>(),
    ) else {
        return Err(DomainError::Internal(
            "the token service is not configured".into(),
        ));
    };
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
    let claims = tokens.verify(token.trim()).map_err(|e| {
        metrics.auth_failed(e.reason());
        e.to_domain()
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

    /// Checks that the token may act on `group` as its administrator (see
    /// [`AgentOps::admit_admin`]).
    pub fn require_admin(&self, ops: &AgentOps, group: GroupId) -> Result<GroupRef, DomainError> {
        ops.admit_admin(&self.caller(None), group)
    }
}
