//! The HS256 key ring, on the presence side: it generates signing keys,
//! rotates them every `key_rotation_secs`, keeps every key that may still
//! verify a live token, and purges the rest.
//!
//! A key retired at time R can have signed tokens until R, which live at
//! most `token_max_secs`, so it is kept until R + `token_max_secs` +
//! leeway. Every change is written through to [`Store`] (flushed) before it
//! takes effect, so a restart mid-rotation keeps every live token valid.
//!
//! Verification looks keys up in a [`DashMap`], so the per-request hot path
//! never waits on a lock held by issuance or rotation.
//!
//! [`SigningKeySource`] is the seam the token service signs and verifies
//! through; the [`KeyRing`] is its single-node implementation.

use std::sync::{Arc, OnceLock, RwLock};

use dashmap::DashMap;
use jsonwebtoken::{DecodingKey, EncodingKey};
use secrecy::{ExposeSecret, SecretSlice};

use super::LEEWAY_SECS;
use crate::infra::clock::SharedClock;
use crate::infra::ids::{fill_random, random_id};
use crate::store::{Store, StoreError, StoredSigningKey};

/// Bytes of an HS256 secret (256 bits).
pub const SECRET_BYTES: usize = 32;

/// One key, ready to sign and verify.
pub struct SigningKey {
    pub kid: String,
    pub created_at_ms: u64,
    pub(super) encoding: EncodingKey,
    pub(super) decoding: DecodingKey,
    /// Kept for the handover to auth nodes; never logged.
    secret: SecretSlice<u8>,
}

impl SigningKey {
    /// The key `kid`, created at `created_at_ms`, with an HS256 `secret`.
    pub fn new(kid: String, created_at_ms: u64, secret: &[u8]) -> Self {
        Self {
            kid,
            created_at_ms,
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            secret: secret.to_vec().into(),
        }
    }

    /// The raw HS256 secret (for the handover only).
    pub fn secret(&self) -> &[u8] {
        self.secret.expose_secret()
    }

    fn from_stored(stored: &StoredSigningKey) -> Self {
        Self::new(stored.kid.clone(), stored.created_at_ms, &stored.secret)
    }
}

/// Where the token service gets its keys: the one to sign with now, and
/// the one a token's `kid` names when it is verified. Only the source
/// generates, rotates and purges keys ([`SigningKeySource::maintain`]).
///
/// The single-node implementation is the [`KeyRing`] (sled, rotated by
/// housekeeping). Cluster mode's, [`super::RedisKeys`], keeps every key in
/// one hash, `signing_keys` (`kid` → secret, creation and activation time,
/// each field deleted once it can no longer verify a live token); the
/// signer is the newest key whose activation time has passed, so every
/// node has read a rotated key before anyone signs with it. A node caches
/// the whole hash, rereads on a notice, a poll, a reconnection and an
/// unknown `kid`, and rotates only while holding `signing_keys:rotating`
/// (`SET NX`, with a TTL of one housekeeping interval).
///
/// [`SigningKeySource::signing_key`] and [`SigningKeySource::verifying_key`]
/// run on request workers: they read memory only, never storage.
pub trait SigningKeySource: Send + Sync {
    /// The key that signs new tokens; `None` on an auth node that has not
    /// been handed one yet.
    fn signing_key(&self) -> Option<Arc<SigningKey>>;

    /// The key with this id, while it may still verify tokens.
    fn verifying_key(&self, kid: &str) -> Option<Arc<SigningKey>>;

    /// Whether this source knows every key that may be signing now, so an
    /// unknown `kid` is a bad token rather than a key not read yet. Always,
    /// for a source that holds its keys; a shared ring that cannot be read
    /// may not.
    fn keys_current(&self) -> bool {
        true
    }

    /// Rotates the signer when it is due and purges keys that can no
    /// longer have live tokens (housekeeping calls it each pass). A source
    /// whose keys another process generates does nothing here.
    fn maintain(&self) -> Result<KeyMaintenance, StoreError>;

    /// Every key that may still verify, with its activation time, for the
    /// handover to auth nodes (presence side; empty elsewhere).
    fn handover_keys(&self) -> Vec<(Arc<SigningKey>, u64)> {
        Vec::new()
    }

    /// Every key this source holds, with its activation time, for
    /// `presence-server keys list` (the handover's keys, unless the source
    /// holds keys it does not hand over).
    fn listed_keys(&self) -> Vec<(Arc<SigningKey>, u64)> {
        self.handover_keys()
    }

    /// Split roles, presence side: a retired key is kept until its
    /// successor has been held by an auth node for a whole token lifetime
    /// (`ledger` says since when, `None` while none has it), so an auth
    /// node that still signs with the old key never makes tokens nobody
    /// verifies.
    fn hold_retired_until_handed_over(&self, _ledger: HandoverLedger) {}
}

/// When an auth node first confirmed it holds a key (`None`: not yet).
pub type HandoverLedger = Arc<dyn Fn(&str) -> Option<u64> + Send + Sync>;

/// The time from which the successor of a retiring key counts as in use:
/// `since` without a ledger, else the later of `since` and its handover
/// (`None` while no auth node has it: the old key stays).
pub(super) fn retired_from(
    ledger: Option<&HandoverLedger>,
    successor: &str,
    since: u64,
) -> Option<u64> {
    match ledger {
        None => Some(since),
        Some(ledger) => ledger(successor).map(|at| at.max(since)),
    }
}

/// What one maintenance pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KeyMaintenance {
    pub rotated_to: Option<String>,
    pub purged: Vec<String>,
}

/// Keys by `kid`, and the current signer.
pub struct KeyRing {
    by_kid: DashMap<String, Arc<SigningKey>>,
    current: RwLock<Arc<SigningKey>>,
    store: Arc<Store>,
    clock: SharedClock,
    rotation_secs: u64,
    token_max_secs: u64,
    ledger: OnceLock<HandoverLedger>,
}

impl KeyRing {
    /// Loads the persisted ring, creating (and persisting) a first key when
    /// the store holds none. The newest key signs.
    pub fn load_or_create(
        store: Arc<Store>,
        clock: SharedClock,
        rotation_secs: u64,
        token_max_secs: u64,
    ) -> Result<Self, StoreError> {
        let mut stored = store.signing_keys()?;
        if stored.is_empty() {
            let key = generate(&clock);
            store.put_signing_key(&key)?;
            stored.push(key);
        }
        stored.sort_by_key(|k| k.created_at_ms);
        let by_kid = DashMap::new();
        let mut newest = None;
        for key in &stored {
            let key = Arc::new(SigningKey::from_stored(key));
            by_kid.insert(key.kid.clone(), key.clone());
            newest = Some(key);
        }
        let current = newest.ok_or_else(|| StoreError::Corrupt {
            tree: "signing_keys",
            reason: "no key after creation".into(),
        })?;
        Ok(Self {
            by_kid,
            current: RwLock::new(current),
            store,
            clock,
            rotation_secs,
            token_max_secs,
            ledger: OnceLock::new(),
        })
    }

    /// The key that signs new tokens.
    pub fn current(&self) -> Arc<SigningKey> {
        // A poisoned lock only means a writer panicked mid-swap of an `Arc`;
        // the value inside is still a whole key, so keep serving it.
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The key with this id, if it may still verify tokens.
    pub fn get(&self, kid: &str) -> Option<Arc<SigningKey>> {
        self.by_kid.get(kid).map(|entry| entry.value().clone())
    }

    /// Number of keys that still verify.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_kid.len()
    }

    /// Rotates if the current key is `key_rotation_secs` old, then purges
    /// keys that can no longer have live tokens. Called by housekeeping, and
    /// by tests after moving the clock.
    pub fn maintain(&self) -> Result<KeyMaintenance, StoreError> {
        let now_ms = self.clock.now_ms();
        let mut done = KeyMaintenance::default();
        if now_ms.saturating_sub(self.current().created_at_ms) >= self.rotation_secs * 1000 {
            done.rotated_to = Some(self.rotate_now()?);
        }
        done.purged = self.purge(now_ms)?;
        Ok(done)
    }

    /// Makes a fresh key the signer at once, whatever the current key's
    /// age (the rotation [`KeyRing::maintain`] makes when one is due, and
    /// `presence-server keys rotate`); the old key keeps verifying until
    /// it is purged. Returns the new `kid`.
    pub fn rotate_now(&self) -> Result<String, StoreError> {
        let mut stored = generate(&self.clock);
        // Strictly newer than the key it replaces, even within one
        // millisecond, so that a restart picks the same signer.
        let current_ms = self
            .current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .created_at_ms;
        stored.created_at_ms = stored.created_at_ms.max(current_ms + 1);
        // Durable before anyone signs with it.
        self.store.put_signing_key(&stored)?;
        let key = Arc::new(SigningKey::from_stored(&stored));
        self.by_kid.insert(key.kid.clone(), key.clone());
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = key;
        Ok(stored.kid)
    }

    /// Removes keys retired more than `token_max_secs` + leeway ago.
    fn purge(&self, now_ms: u64) -> Result<Vec<String>, StoreError> {
        let mut keys: Vec<Arc<SigningKey>> =
            self.by_kid.iter().map(|e| e.value().clone()).collect();
        keys.sort_by_key(|k| k.created_at_ms);
        let keep_ms = (self.token_max_secs + LEEWAY_SECS) * 1000;
        let mut purged = Vec::new();
        // A key retires when its successor is created.
        for pair in keys.windows(2) {
            let (old, successor) = (&pair[0], &pair[1]);
            let Some(since) =
                retired_from(self.ledger.get(), &successor.kid, successor.created_at_ms)
            else {
                break;
            };
            if since.saturating_add(keep_ms) < now_ms {
                self.store.remove_signing_key(&old.kid)?;
                self.by_kid.remove(&old.kid);
                purged.push(old.kid.clone());
            }
        }
        Ok(purged)
    }
}

impl SigningKeySource for KeyRing {
    fn signing_key(&self) -> Option<Arc<SigningKey>> {
        Some(self.current())
    }

    fn handover_keys(&self) -> Vec<(Arc<SigningKey>, u64)> {
        self.by_kid
            .iter()
            .map(|e| (e.value().clone(), e.value().created_at_ms))
            .collect()
    }

    fn hold_retired_until_handed_over(&self, ledger: HandoverLedger) {
        let _ = self.ledger.set(ledger);
    }

    fn verifying_key(&self, kid: &str) -> Option<Arc<SigningKey>> {
        self.get(kid)
    }

    fn maintain(&self) -> Result<KeyMaintenance, StoreError> {
        KeyRing::maintain(self)
    }
}

/// A fresh 256-bit key from the OS CSPRNG with a random `kid`.
fn generate(clock: &SharedClock) -> StoredSigningKey {
    let mut secret = vec![0u8; SECRET_BYTES];
    fill_random(&mut secret);
    StoredSigningKey {
        kid: random_id(9),
        secret,
        created_at_ms: clock.now_ms(),
    }
}
