//! Agent single sign-on: JWTs a customer signs for each agent with its own
//! private key, checked against the public keys in `[groups.sso]`.
//!
//! The algorithm is pinned to the group's list (RS256, optionally ES256),
//! so an HS256 token keyed with the public PEM, `alg: none`, or a header
//! that points at a key (`jku`, `x5u`, `jwk`, `x5c`) is refused before any
//! signature check; such headers are never fetched, and a `crit` header is
//! refused outright. Times (`exp`, `iat`, `nbf`) are checked on the
//! injectable clock with at most [`crate::auth::token::LEEWAY_SECS`] of skew.
//! This module only verifies; replay and provisioning are the
//! authenticator's.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

use crate::auth::policy::Policy;
use crate::auth::token::LEEWAY_SECS;
use crate::infra::config::load_public_key;
use crate::infra::config::{valid_username, GroupConfig, Role, SsoConfig};
use crate::infra::jwt::{self, WithNotBefore};

/// Longest SSO token accepted; longer ones are refused unparsed.
pub const MAX_SSO_TOKEN_BYTES: usize = 16 * 1024;
/// Longest lifetime (`exp - iat`) of an SSO token.
pub const MAX_SSO_LIFETIME_SECS: u64 = 86_400;
/// Longest `displayName` kept.
const MAX_DISPLAY_NAME: usize = 128;
/// Longest `jti` accepted.
const MAX_JTI: usize = 256;

/// Why an SSO token was refused. Safe to show: it never quotes the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SsoError {
    #[error("the SSO token is malformed")]
    Malformed,
    #[error("the SSO token's header names a key ({0}); keys are never fetched")]
    KeyInHeader(&'static str),
    #[error("the SSO token's algorithm is not allowed for this group")]
    AlgorithmNotAllowed,
    #[error("the SSO token's signature does not match any of the group's keys")]
    BadSignature,
    #[error("the SSO token's claims are invalid: {0}")]
    BadClaims(String),
    #[error("the SSO token has expired")]
    Expired,
    #[error("the SSO token was issued in the future")]
    IssuedInFuture,
    #[error("the SSO token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the SSO token's lifetime exceeds {MAX_SSO_LIFETIME_SECS} s")]
    LifetimeTooLong,
    #[error("this group does not accept the administrator role from SSO tokens")]
    RoleNotAllowed,
    #[error("{0}")]
    BadPolicy(String),
}

impl SsoError {
    /// The audit reason.
    pub fn reason(&self) -> &'static str {
        match self {
            SsoError::Malformed => "sso_malformed",
            SsoError::KeyInHeader(_) => "sso_key_in_header",
            SsoError::AlgorithmNotAllowed => "sso_algorithm_not_allowed",
            SsoError::BadSignature => "sso_bad_signature",
            SsoError::BadClaims(_) => "sso_bad_claims",
            SsoError::Expired => "sso_expired",
            SsoError::IssuedInFuture => "sso_issued_in_future",
            SsoError::NotYetValid => "sso_not_yet_valid",
            SsoError::LifetimeTooLong => "sso_lifetime_too_long",
            SsoError::RoleNotAllowed => "role_not_allowed",
            SsoError::BadPolicy(_) => "bad_policy",
        }
    }
}

/// Who a verified SSO token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoIdentity {
    /// The agent's email (`sub`), its username here.
    pub email: String,
    pub display_name: Option<String>,
    pub role: Role,
    pub policy: Option<Policy>,
    pub jti: Option<String>,
    pub exp: u64,
}

/// The checks of one group's SSO tokens.
pub struct SsoVerifier {
    issuer: String,
    audience: String,
    keys: Vec<(Algorithm, DecodingKey)>,
    allow_admin_role: bool,
    /// Whether the authenticator refuses a token without `jti`.
    pub require_jti: bool,
    pub auto_provision: bool,
}

#[derive(Deserialize)]
struct SsoClaims {
    sub: String,
    iat: u64,
    exp: u64,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default, rename = "displayName")]
    display_name: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    policy: Option<Value>,
}

impl SsoVerifier {
    /// Builds the verifier of `group`; `public_url` is the default audience.
    pub fn new(sso: &SsoConfig, public_url: &str) -> Result<Self, String> {
        let keys = sso
            .public_keys
            .iter()
            .map(|k| load_public_key(k, &sso.algorithms))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            issuer: sso.issuer.clone(),
            audience: sso
                .audience
                .clone()
                .unwrap_or_else(|| public_url.to_owned()),
            keys,
            allow_admin_role: sso.allow_admin_role,
            require_jti: sso.require_jti,
            auto_provision: sso.auto_provision,
        })
    }

    /// Builds the verifiers of every group with `[groups.sso]`.
    pub fn for_groups(
        groups: &[GroupConfig],
        public_url: &str,
    ) -> Result<std::collections::HashMap<u64, SsoVerifier>, String> {
        groups
            .iter()
            .filter_map(|g| g.sso.as_ref().map(|sso| (g.id, sso)))
            .map(|(id, sso)| Ok((id, SsoVerifier::new(sso, public_url)?)))
            .collect()
    }

    /// Verifies `token` at `now` (Unix seconds).
    pub fn verify(&self, token: &str, now: u64) -> Result<SsoIdentity, SsoError> {
        if token.len() > MAX_SSO_TOKEN_BYTES {
            return Err(SsoError::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| SsoError::Malformed)?;
        for (present, name) in [
            (header.jku.is_some(), "jku"),
            (header.x5u.is_some(), "x5u"),
            (header.jwk.is_some(), "jwk"),
            (header.x5c.is_some(), "x5c"),
        ] {
            if present {
                return Err(SsoError::KeyInHeader(name));
            }
        }
        jwt::check_header(token).map_err(|e| match e {
            jwt::HeaderError::Malformed => SsoError::Malformed,
            jwt::HeaderError::Critical => SsoError::BadClaims("unsupported critical header".into()),
        })?;
        let candidates: Vec<&DecodingKey> = self
            .keys
            .iter()
            .filter(|(alg, _)| *alg == header.alg)
            .map(|(_, key)| key)
            .collect();
        if candidates.is_empty() {
            return Err(SsoError::AlgorithmNotAllowed);
        }
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iat", "aud", "iss", "sub"]);
        // Times are checked below on the server's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let mut claims = None;
        for key in candidates {
            match jsonwebtoken::decode::<WithNotBefore<SsoClaims>>(token, key, &validation) {
                Ok(data) => {
                    claims = Some(data.claims);
                    break;
                }
                Err(e) if *e.kind() == jsonwebtoken::errors::ErrorKind::InvalidSignature => {}
                Err(e) => return Err(claims_error(e)),
            }
        }
        let WithNotBefore { claims, nbf } = claims.ok_or(SsoError::BadSignature)?;
        jwt::check_not_before(nbf.as_ref(), now, LEEWAY_SECS).map_err(|e| match e {
            jwt::NotBeforeError::Malformed => {
                SsoError::BadClaims("nbf must be an integer NumericDate".into())
            }
            jwt::NotBeforeError::NotYetValid => SsoError::NotYetValid,
        })?;
        self.check(claims, now)
    }

    fn check(&self, claims: SsoClaims, now: u64) -> Result<SsoIdentity, SsoError> {
        if now > claims.exp.saturating_add(LEEWAY_SECS) {
            return Err(SsoError::Expired);
        }
        if claims.iat > now.saturating_add(LEEWAY_SECS) {
            return Err(SsoError::IssuedInFuture);
        }
        if claims.exp <= claims.iat || claims.exp - claims.iat > MAX_SSO_LIFETIME_SECS {
            return Err(SsoError::LifetimeTooLong);
        }
        if !(valid_username(&claims.sub) && claims.sub.contains('@')) {
            return Err(SsoError::BadClaims(
                "sub must be the agent's email address".into(),
            ));
        }
        if let Some(jti) = &claims.jti {
            if jti.is_empty() || jti.len() > MAX_JTI {
                return Err(SsoError::BadClaims(format!(
                    "jti must be 1 to {MAX_JTI} characters"
                )));
            }
        }
        let display_name = match claims.display_name {
            Some(name) => {
                let name = name.trim().to_owned();
                if name.is_empty()
                    || name.chars().count() > MAX_DISPLAY_NAME
                    || name.chars().any(char::is_control)
                {
                    return Err(SsoError::BadClaims(format!(
                        "displayName must be 1 to {MAX_DISPLAY_NAME} printable characters"
                    )));
                }
                Some(name)
            }
            None => None,
        };
        let role = match claims.role.as_deref() {
            None | Some("agent") => Role::Agent,
            Some("administrator") if self.allow_admin_role => Role::Administrator,
            Some("administrator") => return Err(SsoError::RoleNotAllowed),
            Some(_) => {
                return Err(SsoError::BadClaims(
                    "role must be \"agent\" or \"administrator\"".into(),
                ))
            }
        };
        let policy = claims
            .policy
            .as_ref()
            .map(Policy::parse)
            .transpose()
            .map_err(SsoError::BadPolicy)?;
        Ok(SsoIdentity {
            email: claims.sub,
            display_name,
            role,
            policy,
            jti: claims.jti,
            exp: claims.exp,
        })
    }
}

fn claims_error(e: jsonwebtoken::errors::Error) -> SsoError {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::InvalidAudience => SsoError::BadClaims("wrong aud".into()),
        ErrorKind::InvalidIssuer => SsoError::BadClaims("wrong iss".into()),
        ErrorKind::MissingRequiredClaim(claim) => {
            SsoError::BadClaims(format!("missing required claim {claim}"))
        }
        ErrorKind::InvalidAlgorithm => SsoError::AlgorithmNotAllowed,
        ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
            SsoError::BadClaims("claims are not the expected JSON".into())
        }
        _ => SsoError::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infra::config::SsoAlgorithm;

    #[test]
    fn private_keys_and_garbage_are_refused_as_configuration() {
        let private = "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n";
        assert!(load_public_key(private, &[SsoAlgorithm::RS256])
            .expect_err("private")
            .contains("private key"));
        let garbage = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        assert!(load_public_key(garbage, &[SsoAlgorithm::RS256]).is_err());
        assert!(load_public_key("/no/such/key.pem", &[SsoAlgorithm::RS256])
            .expect_err("missing")
            .contains("cannot read"));
    }
}
