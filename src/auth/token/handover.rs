//! The signing-key handover's wire form. A presence node sends every key
//! that may still verify a token to each auth node
//! (`POST /internal/keys`, signed as `infra::internal_auth` says); the auth
//! node answers with the `kid`s it now holds.
//!
//! ```json
//! {"keys": [{"kid": "…", "secret": "<base64url>", "created_at_ms": 0, "active_at_ms": 0}]}
//! ```
//! answered by `{"held": ["kid", …], "signing": "kid" | null}`.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::keyring::{SigningKey, SigningKeySource, SECRET_BYTES};

/// Most keys one handover may carry (a ring holds two or three).
pub const MAX_HANDED_KEYS: usize = 64;
/// Longest `kid` accepted.
pub const MAX_KID_BYTES: usize = 64;

/// The body of `POST /internal/keys`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyHandover {
    pub keys: Vec<HandedKey>,
}

/// One key on the wire.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandedKey {
    pub kid: String,
    /// The HS256 secret, unpadded base64url.
    pub secret: String,
    pub created_at_ms: u64,
    /// When it may start signing.
    pub active_at_ms: u64,
}

impl std::fmt::Debug for HandedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandedKey")
            .field("kid", &self.kid)
            .field("secret", &"[REDACTED]")
            .field("created_at_ms", &self.created_at_ms)
            .field("active_at_ms", &self.active_at_ms)
            .finish()
    }
}

/// The answer of `POST /internal/keys`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HandoverReceipt {
    /// Every `kid` the auth node holds after the call.
    pub held: Vec<String>,
    /// The key it signs with now.
    pub signing: Option<String>,
}

impl KeyHandover {
    /// Every key `source` may still verify with.
    pub fn of(source: &dyn SigningKeySource) -> Self {
        let mut keys: Vec<HandedKey> = source
            .handover_keys()
            .into_iter()
            .map(|(key, active_at_ms)| HandedKey {
                kid: key.kid.clone(),
                secret: URL_SAFE_NO_PAD.encode(key.secret()),
                created_at_ms: key.created_at_ms,
                active_at_ms,
            })
            .collect();
        keys.sort_by_key(|k| (k.active_at_ms, k.created_at_ms));
        Self { keys }
    }
}

impl HandedKey {
    /// The key, if its fields are well-formed: a `kid` of 1 to
    /// [`MAX_KID_BYTES`] URL-safe characters, a secret of at least 256
    /// bits, and an activation no earlier than its creation.
    pub fn parse(&self) -> Result<(Arc<SigningKey>, u64), String> {
        if self.kid.is_empty()
            || self.kid.len() > MAX_KID_BYTES
            || !self
                .kid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err("a kid must be 1 to 64 characters of [A-Za-z0-9_-]".into());
        }
        let secret = URL_SAFE_NO_PAD
            .decode(&self.secret)
            .map_err(|_| format!("key {}: the secret is not unpadded base64url", self.kid))?;
        if secret.len() < SECRET_BYTES || secret.len() > 1024 {
            return Err(format!(
                "key {}: the secret must be {SECRET_BYTES} to 1024 bytes",
                self.kid
            ));
        }
        if self.active_at_ms < self.created_at_ms {
            return Err(format!("key {}: active before it was created", self.kid));
        }
        Ok((
            Arc::new(SigningKey::new(
                self.kid.clone(),
                self.created_at_ms,
                &secret,
            )),
            self.active_at_ms,
        ))
    }
}
