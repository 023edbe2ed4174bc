//! The split roles' trees: `received_keys` (auth role: the signing keys
//! presence nodes handed over), `key_handovers` (presence role: when an
//! auth node first confirmed each key) and `revocation_outbox` (auth role
//! without Redis: revocations the presence node has not confirmed yet).
//! Every write is flushed before it returns.

use serde::{Deserialize, Serialize};

use super::{decode, encode, Store, StoreError, TREE_RECEIVED_KEYS};

/// A signing key an auth node received. The secret is stored raw, as in
/// `signing_keys`.
#[derive(Clone, Serialize, Deserialize)]
pub struct ReceivedKey {
    pub kid: String,
    pub secret: Vec<u8>,
    pub created_at_ms: u64,
    /// When it may start signing (cluster rotations activate 3 s late).
    pub active_at_ms: u64,
    /// When this node first received it.
    pub received_at_ms: u64,
}

impl std::fmt::Debug for ReceivedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceivedKey")
            .field("kid", &self.kid)
            .field("secret", &"[REDACTED]")
            .field("created_at_ms", &self.created_at_ms)
            .field("active_at_ms", &self.active_at_ms)
            .field("received_at_ms", &self.received_at_ms)
            .finish()
    }
}

fn be(value: u64) -> [u8; 8] {
    value.to_be_bytes()
}

fn read_be(value: &[u8]) -> u64 {
    <[u8; 8]>::try_from(value)
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

impl Store {
    /// Every received key, in no particular order.
    pub fn received_keys(&self) -> Result<Vec<ReceivedKey>, StoreError> {
        self.with(|t| {
            t.received_keys
                .iter()
                .values()
                .map(|value| decode(TREE_RECEIVED_KEYS, &value?))
                .collect()
        })
    }

    /// Persists received keys (one flush for all of them).
    pub fn put_received_keys(&self, keys: &[ReceivedKey]) -> Result<(), StoreError> {
        self.with(|t| {
            for key in keys {
                t.received_keys
                    .insert(key.kid.as_bytes(), encode(TREE_RECEIVED_KEYS, key)?)?;
            }
            t.received_keys.flush()?;
            Ok(())
        })
    }

    /// Deletes a received key and flushes.
    pub fn remove_received_key(&self, kid: &str) -> Result<(), StoreError> {
        self.with(|t| {
            t.received_keys.remove(kid.as_bytes())?;
            t.received_keys.flush()?;
            Ok(())
        })
    }

    /// Records that an auth node confirmed `kid` at `at_ms`, unless an
    /// earlier confirmation is on record; returns the first one.
    pub fn record_key_handover(&self, kid: &str, at_ms: u64) -> Result<u64, StoreError> {
        self.with(|t| {
            let first = match t.key_handovers.compare_and_swap(
                kid.as_bytes(),
                None::<&[u8]>,
                Some(&be(at_ms)[..]),
            )? {
                Ok(()) => at_ms,
                Err(current) => current.current.as_deref().map_or(at_ms, read_be),
            };
            t.key_handovers.flush()?;
            Ok(first)
        })
    }

    /// When an auth node first confirmed `kid`, if one has.
    pub fn key_handover(&self, kid: &str) -> Result<Option<u64>, StoreError> {
        self.with(|t| Ok(t.key_handovers.get(kid.as_bytes())?.map(|v| read_be(&v))))
    }

    /// Forgets the confirmations of keys no longer held.
    pub fn retain_key_handovers(&self, held: &[String]) -> Result<(), StoreError> {
        self.with(|t| {
            for item in t.key_handovers.iter().keys() {
                let kid = item?;
                if !held.iter().any(|h| h.as_bytes() == kid.as_ref()) {
                    t.key_handovers.remove(kid)?;
                }
            }
            t.key_handovers.flush()?;
            Ok(())
        })
    }

    /// Queues revocations for the presence node (flushed before the revoke
    /// is acknowledged).
    pub fn queue_revocations(&self, revoked: &[(String, u64)]) -> Result<(), StoreError> {
        self.with(|t| {
            for (jti, exp) in revoked {
                t.revocation_outbox.insert(jti.as_bytes(), &be(*exp))?;
            }
            t.revocation_outbox.flush()?;
            Ok(())
        })
    }

    /// The queued revocations, `(jti, exp)`.
    pub fn queued_revocations(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.with(|t| {
            t.revocation_outbox
                .iter()
                .map(|item| {
                    let (k, v) = item?;
                    Ok((String::from_utf8_lossy(&k).into_owned(), read_be(&v)))
                })
                .collect()
        })
    }

    /// Drops delivered (or expired) revocations from the queue.
    pub fn dequeue_revocations(&self, jtis: &[String]) -> Result<(), StoreError> {
        self.with(|t| {
            for jti in jtis {
                t.revocation_outbox.remove(jti.as_bytes())?;
            }
            t.revocation_outbox.flush()?;
            Ok(())
        })
    }
}
