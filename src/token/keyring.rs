//! The HS256 key ring: every key that may still verify a live token, indexed
//! by `kid`, plus the one that signs new tokens.
//!
//! Verification looks keys up in a [`DashMap`], so the per-request hot path
//! never waits on a lock held by issuance or rotation. The ring is loaded
//! from, and written through to, [`Store`], so a restart keeps every issued
//! token valid.

use std::sync::{Arc, RwLock};

use dashmap::DashMap;
use jsonwebtoken::{DecodingKey, EncodingKey};

use crate::clock::SharedClock;
use crate::ids::{fill_random, random_id};
use crate::store::{Store, StoreError, StoredSigningKey};

/// Bytes of an HS256 secret (256 bits).
pub const SECRET_BYTES: usize = 32;

/// One key, ready to sign and verify.
pub struct SigningKey {
    pub kid: String,
    pub created_at_ms: u64,
    pub(super) encoding: EncodingKey,
    pub(super) decoding: DecodingKey,
}

impl SigningKey {
    fn from_stored(stored: &StoredSigningKey) -> Self {
        Self {
            kid: stored.kid.clone(),
            created_at_ms: stored.created_at_ms,
            encoding: EncodingKey::from_secret(&stored.secret),
            decoding: DecodingKey::from_secret(&stored.secret),
        }
    }
}

/// Keys by `kid`, and the current signer.
pub struct KeyRing {
    by_kid: DashMap<String, Arc<SigningKey>>,
    current: RwLock<Arc<SigningKey>>,
}

impl KeyRing {
    /// Loads the persisted ring, creating (and persisting) a first key when
    /// the store holds none. The newest key signs.
    pub fn load_or_create(store: &Store, clock: &SharedClock) -> Result<Self, StoreError> {
        let mut stored = store.signing_keys()?;
        if stored.is_empty() {
            let key = generate(clock);
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
        // `stored` is non-empty here, so `newest` is set.
        let current = newest.ok_or_else(|| StoreError::Corrupt {
            tree: "signing_keys",
            reason: "no key after creation".into(),
        })?;
        Ok(Self {
            by_kid,
            current: RwLock::new(current),
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
    pub fn len(&self) -> usize {
        self.by_kid.len()
    }

    /// Whether the ring is empty (never true after construction).
    pub fn is_empty(&self) -> bool {
        self.by_kid.is_empty()
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
