//! Agent tokens: HS256 JWTs that the authorization side issues and the
//! presence side verifies on every REST request and agent socket.
//!
//! This module knows nothing of HTTP or WebSockets: transports call
//! [`TokenService::verify`] and get typed [`AgentClaims`] or a
//! [`TokenError`], as Centrifugo keeps token checks apart from transports.

pub mod handover;
mod keyring;
mod received_keys;
mod redis_key_wire;
mod redis_keys;
mod redis_revocations;
mod revocation;
mod standing;
mod verified;

use std::sync::Arc;

use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::auth::policy::Policy;
use crate::infra::clock::SharedClock;
use crate::infra::config::Role;
use crate::infra::error::DomainError;
use crate::infra::ids::{random_id, GroupId};
pub use crate::infra::jwt::ISSUER;
use crate::infra::jwt::{self, WithNotBefore};
pub use keyring::{KeyMaintenance, KeyRing, SigningKeySource};
pub use received_keys::{HandoverError, ReceivedKeys};
pub use redis_keys::RedisKeys;
pub use redis_revocations::SharedRevocations;
pub use revocation::{RevocationForwarder, Revocations};
pub use standing::{ConfiguredStanding, Removal, Standing};
use verified::{Verified, VerifiedTokens, MAX_VERIFIED_TOKENS};

/// `aud` of every agent token.
pub const AUDIENCE: &str = "presence";
/// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
pub const LEEWAY_SECS: u64 = 5;
/// Longest token string accepted; anything longer is refused unparsed.
pub const MAX_TOKEN_BYTES: usize = 4096;

/// The claims of an agent token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentClaims {
    pub iss: String,
    pub aud: String,
    /// The agent's username.
    pub sub: String,
    pub groupid: GroupId,
    pub role: Role,
    pub iat: u64,
    pub exp: u64,
    pub jti: String,
    /// The name shown to visitors, when the credential gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The SSO scoping policy, enforced on every request of this token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
}

/// Why a token was refused. The text is safe to show a client: it never
/// contains the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token is not signed with HS256")]
    WrongAlgorithm,
    #[error("the token's signing key is unknown")]
    UnknownKey,
    #[error("the token's signature is invalid")]
    BadSignature,
    #[error("the token's claims are missing or invalid")]
    BadClaims,
    #[error("the token has expired")]
    Expired,
    #[error("the token was issued in the future")]
    IssuedInFuture,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the token's header has a critical extension (crit)")]
    CriticalHeader,
    #[error("the token's lifetime exceeds the maximum")]
    LifetimeTooLong,
    #[error("the token has been revoked")]
    Revoked,
    #[error("the token could not be recorded")]
    Unrecorded,
    /// Cluster mode: Redis, where tokens are recorded, did not answer.
    #[error("the token could not be recorded: the cluster's shared state is unavailable")]
    Unavailable,
    /// Cluster mode: the `kid` is unknown here, and this node has not been
    /// able to read the shared key ring lately, so it may be a new key.
    #[error("the token's signing key is unknown here and the cluster's key ring cannot be read")]
    KeysUnavailable,
    /// Auth role: no presence node has handed a signing key over yet.
    #[error("no signing key has been handed over yet")]
    NoSigningKey,
}

impl TokenError {
    /// A stable name for metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Malformed => "token_malformed",
            TokenError::WrongAlgorithm => "token_wrong_algorithm",
            TokenError::UnknownKey => "token_unknown_key",
            TokenError::BadSignature => "token_bad_signature",
            TokenError::BadClaims => "token_bad_claims",
            TokenError::Expired => "token_expired",
            TokenError::IssuedInFuture => "token_issued_in_future",
            TokenError::NotYetValid => "token_not_yet_valid",
            TokenError::CriticalHeader => "token_critical_header",
            TokenError::LifetimeTooLong => "token_lifetime_too_long",
            TokenError::Revoked => "token_revoked",
            TokenError::Unrecorded => "token_unrecorded",
            TokenError::Unavailable | TokenError::KeysUnavailable => "cluster_unavailable",
            TokenError::NoSigningKey => "no_signing_key",
        }
    }

    /// The error a request refused with this gets: 503
    /// `cluster_unavailable` when the cluster could not vouch either way,
    /// otherwise 401 `unauthorized`.
    pub fn to_domain(&self) -> DomainError {
        match self {
            TokenError::Unavailable | TokenError::KeysUnavailable => {
                DomainError::ClusterUnavailable(self.to_string())
            }
            TokenError::NoSigningKey => DomainError::NoSigningKey,
            _ => DomainError::unauthorized(self.to_string()),
        }
    }
}

/// A freshly issued token and its claims.
#[derive(Clone)]
pub struct IssuedToken {
    pub token: String,
    pub claims: AgentClaims,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token", &"[REDACTED]")
            .field("claims", &self.claims)
            .finish()
    }
}

/// Issues agent tokens and verifies them, signing and looking keys up
/// only through a [`SigningKeySource`].
pub struct TokenService {
    keys: Arc<dyn SigningKeySource>,
    revocations: Revocations,
    clock: SharedClock,
    max_lifetime_secs: u64,
    verified: VerifiedTokens,
    /// Whether a token's group and agent are still configured.
    standing: std::sync::OnceLock<Arc<dyn Standing>>,
}

impl TokenService {
    /// Signs with `keys`' current key and verifies against the key a
    /// token names; tokens may live at most `max_lifetime_secs`.
    pub fn new(
        keys: Arc<dyn SigningKeySource>,
        revocations: Revocations,
        clock: SharedClock,
        max_lifetime_secs: u64,
    ) -> Self {
        Self {
            keys,
            revocations,
            clock,
            max_lifetime_secs,
            verified: VerifiedTokens::new(MAX_VERIFIED_TOKENS),
            standing: std::sync::OnceLock::new(),
        }
    }

    /// Makes every verify also ask `standing` whether the token's group
    /// and agent still stand (set once, at start-up); a token that does
    /// not is refused as revoked.
    pub fn check_standing(&self, standing: Arc<dyn Standing>) {
        let _ = self.standing.set(standing);
    }

    /// Where the keys come from (housekeeping rotates them through it).
    pub fn keys(&self) -> &dyn SigningKeySource {
        self.keys.as_ref()
    }

    /// Where the keys come from, shared (the handover reads it).
    pub fn keys_arc(&self) -> Arc<dyn SigningKeySource> {
        self.keys.clone()
    }

    /// The denylist and the index of issued tokens.
    pub fn revocations(&self) -> &Revocations {
        &self.revocations
    }

    /// Issues a token for `username` in `group`, valid for `lifetime_secs`
    /// (already checked by the caller against the configured range).
    pub fn issue(
        &self,
        username: &str,
        group: GroupId,
        role: Role,
        lifetime_secs: u64,
    ) -> Result<IssuedToken, TokenError> {
        self.issue_scoped(username, group, role, lifetime_secs, None, None)
    }

    /// Issues a token carrying a display name and a scoping policy.
    pub fn issue_scoped(
        &self,
        username: &str,
        group: GroupId,
        role: Role,
        lifetime_secs: u64,
        name: Option<String>,
        policy: Option<Policy>,
    ) -> Result<IssuedToken, TokenError> {
        let iat = self.clock.now_secs();
        let claims = AgentClaims {
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            sub: username.to_owned(),
            groupid: group,
            role,
            iat,
            exp: iat + lifetime_secs,
            jti: random_id(16),
            name,
            policy,
        };
        let token = self.sign(&claims)?;
        // Index the owner first, so the token can always be revoked.
        self.revocations
            .record_issued(
                &claims.jti,
                &crate::store::IssuedToken {
                    sub: claims.sub.clone(),
                    groupid: claims.groupid,
                    exp: claims.exp,
                },
            )
            .map_err(|e| match e {
                crate::store::StoreError::Unavailable(_) => TokenError::Unavailable,
                _ => TokenError::Unrecorded,
            })?;
        Ok(IssuedToken { token, claims })
    }

    /// Signs any claims with the current key and its `kid`. Issuance uses it
    /// with [`AgentClaims`]; tests use it to craft tokens the verifier must
    /// refuse (too long a lifetime, missing claims).
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, TokenError> {
        let key = self.keys.signing_key().ok_or(TokenError::NoSigningKey)?;
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &key.encoding).map_err(|_| TokenError::Malformed)
    }

    /// Verifies a token: algorithm pinned to HS256, no `crit` header, known
    /// `kid`, signature, required `exp iat iss aud sub`, issuer and
    /// audience, `exp`, `iat` and a present `nbf` within [`LEEWAY_SECS`] of
    /// now, and `exp - iat` within the maximum.
    pub fn verify(&self, token: &str) -> Result<AgentClaims, TokenError> {
        if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed);
        }
        let now = self.clock.now_secs();
        if let Some(hit) = self.verified.get(token, |kid| self.keys.verifying_key(kid)) {
            let checked = self.check_live(&hit, now);
            if matches!(checked, Err(TokenError::Expired | TokenError::Revoked)) {
                self.verified.remove(token);
            }
            return checked.map(|()| hit.claims);
        }
        let verified = self.verify_signed(token)?;
        self.check_live(&verified, now)?;
        self.verified.insert(token, verified.clone(), now);
        Ok(verified.claims)
    }

    /// The checks that hold for good once made: the header, the key, the
    /// signature, and the claims that do not depend on the time.
    fn verify_signed(&self, token: &str) -> Result<Verified, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        jwt::check_header(token).map_err(|e| match e {
            jwt::HeaderError::Malformed => TokenError::Malformed,
            jwt::HeaderError::Critical => TokenError::CriticalHeader,
        })?;
        if header.alg != Algorithm::HS256 {
            return Err(TokenError::WrongAlgorithm);
        }
        let kid = header.kid.ok_or(TokenError::UnknownKey)?;
        let key = self.keys.verifying_key(&kid).ok_or_else(|| {
            if self.keys.keys_current() {
                TokenError::UnknownKey
            } else {
                TokenError::KeysUnavailable
            }
        })?;

        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        // Time is checked in `check_live` against the injectable clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let data =
            jsonwebtoken::decode::<WithNotBefore<AgentClaims>>(token, &key.decoding, &validation)
                .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => TokenError::BadSignature,
                jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => TokenError::WrongAlgorithm,
                jsonwebtoken::errors::ErrorKind::Base64(_)
                | jsonwebtoken::errors::ErrorKind::InvalidToken
                | jsonwebtoken::errors::ErrorKind::Utf8(_) => TokenError::Malformed,
                _ => TokenError::BadClaims,
            })?;
        let WithNotBefore { claims, nbf } = data.claims;
        if nbf.as_ref().is_some_and(|nbf| nbf.as_u64().is_none()) {
            return Err(TokenError::BadClaims);
        }
        if claims.exp < claims.iat || claims.exp - claims.iat > self.max_lifetime_secs {
            return Err(TokenError::LifetimeTooLong);
        }
        Ok(Verified {
            kid: key.kid.as_str().into(),
            key: Arc::downgrade(&key),
            claims,
            nbf,
        })
    }

    /// The checks that can change after signing, made on every use: the
    /// time claims against `now`, and revocation.
    fn check_live(&self, verified: &Verified, now: u64) -> Result<(), TokenError> {
        let claims = &verified.claims;
        jwt::check_not_before(verified.nbf.as_ref(), now, LEEWAY_SECS).map_err(|e| match e {
            jwt::NotBeforeError::Malformed => TokenError::BadClaims,
            jwt::NotBeforeError::NotYetValid => TokenError::NotYetValid,
        })?;
        if claims.exp.saturating_add(LEEWAY_SECS) <= now {
            return Err(TokenError::Expired);
        }
        if claims.iat > now.saturating_add(LEEWAY_SECS) {
            return Err(TokenError::IssuedInFuture);
        }
        if self.revocations.is_revoked(&claims.jti) {
            return Err(TokenError::Revoked);
        }
        if self.standing.get().is_some_and(|s| !s.stands(claims)) {
            return Err(TokenError::Revoked);
        }
        Ok(())
    }

    /// Seconds until `claims` expire (zero if already past).
    pub fn seconds_left(&self, claims: &AgentClaims) -> u64 {
        claims.exp.saturating_sub(self.clock.now_secs())
    }
}

#[cfg(test)]
mod tests;
