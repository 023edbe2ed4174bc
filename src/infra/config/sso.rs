//! `[groups.sso]`, a group's agent single sign-on: the settings, and the
//! public keys, loaded once at start-up (so a bad key is a config error
//! naming the key) and pinned to the group's algorithms.

use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use super::default_true;

/// A signature algorithm a customer may sign SSO tokens with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SsoAlgorithm {
    RS256,
    ES256,
}

/// `[groups.sso]`: agent single sign-on. The customer signs a JWT per agent
/// with its private key; only the public keys are configured here.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsoConfig {
    /// The `iss` the customer's tokens carry (its license key or account id).
    pub issuer: String,
    /// The `aud` they must carry; defaults to `server.public_url`.
    #[serde(default)]
    pub audience: Option<String>,
    /// PEM public keys, inline or as file paths; several allow rotation.
    pub public_keys: Vec<String>,
    #[serde(default = "default_sso_algorithms")]
    pub algorithms: Vec<SsoAlgorithm>,
    /// Whether a token's `role: "administrator"` is honoured.
    #[serde(default)]
    pub allow_admin_role: bool,
    /// Whether an unknown `sub` becomes an agent of the group.
    #[serde(default = "default_true")]
    pub auto_provision: bool,
    /// Whether a token must carry a `jti` (each is accepted once); without
    /// one a token could be replayed for its whole lifetime.
    #[serde(default = "default_true")]
    pub require_jti: bool,
    /// The customer's sign-in page. The console sends agents there (via
    /// `GET /auth/sso/{groupid}`) with `groupid` and `return_to`; it signs a
    /// JWT and redirects back to `return_to` with `&jwt=<token>` appended.
    #[serde(default)]
    pub login_url: Option<String>,
}

fn default_sso_algorithms() -> Vec<SsoAlgorithm> {
    vec![SsoAlgorithm::RS256]
}

fn algorithm(alg: SsoAlgorithm) -> Algorithm {
    match alg {
        SsoAlgorithm::RS256 => Algorithm::RS256,
        SsoAlgorithm::ES256 => Algorithm::ES256,
    }
}

/// Loads one configured key (inline PEM or a file path) for the first of
/// `algorithms` whose key type it is.
pub fn load_public_key(
    source: &str,
    algorithms: &[SsoAlgorithm],
) -> Result<(Algorithm, DecodingKey), String> {
    let pem = if source.trim_start().starts_with("-----BEGIN") {
        source.to_owned()
    } else {
        std::fs::read_to_string(source).map_err(|e| format!("cannot read {source:?}: {e}"))?
    };
    if pem.contains("PRIVATE KEY") {
        return Err("is a private key; configure only the public key".into());
    }
    for alg in algorithms {
        let key = match alg {
            SsoAlgorithm::RS256 => DecodingKey::from_rsa_pem(pem.as_bytes()),
            SsoAlgorithm::ES256 => DecodingKey::from_ec_pem(pem.as_bytes()),
        };
        if let Ok(key) = key {
            return Ok((algorithm(*alg), key));
        }
    }
    Err(format!(
        "is not a PEM public key for any of the group's algorithms ({algorithms:?})"
    ))
}
