//! The visitor identity check of a hello, by the group's rules: a present
//! token must verify (never a silent downgrade to unverified), and a group
//! that requires one refuses hellos without.

use secrecy::ExposeSecret;
use serde_json::Value;

use crate::auth::visitor_identity::{self, IdentityError, IdentityRules};
use crate::infra::clock::SharedClock;
use crate::infra::config::GroupConfig;
use crate::infra::error::DomainError;

/// Verifies visitor identity tokens on the server's clock.
pub struct IdentityVerifier {
    clock: SharedClock,
}

impl IdentityVerifier {
    pub fn new(clock: SharedClock) -> Self {
        Self { clock }
    }

    /// The verified identity claims of `visitor` in `group`, `None` without
    /// a token where the group allows that.
    pub fn check(
        &self,
        group: &GroupConfig,
        visitor: &str,
        token: Option<&str>,
    ) -> Result<Option<Value>, DomainError> {
        let Some(token) = token else {
            if group.require_visitor_identity {
                return Err(DomainError::IdentityRequired);
            }
            return Ok(None);
        };
        let invalid = |e: IdentityError| DomainError::IdentityInvalid(e.to_string());
        let (Some(secret), Some(issuer)) = (
            &group.visitor_identity_secret,
            &group.visitor_identity_issuer,
        ) else {
            return Err(invalid(IdentityError::NotConfigured));
        };
        let rules = IdentityRules {
            secret: secret.expose_secret().as_bytes(),
            issuer,
            max_lifetime_secs: group.visitor_identity_max_secs,
        };
        visitor_identity::verify(token, &rules, visitor, self.clock.now_secs())
            .map(Some)
            .map_err(invalid)
    }
}
