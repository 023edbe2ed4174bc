//! The auth role's [`SigningKeySource`]: the keys presence nodes handed
//! over (`POST /internal/keys`), persisted in sled's `received_keys` tree
//! before the handover is acknowledged, so tokens issued before a restart
//! keep verifying and the node signs again at once.
//!
//! It never generates a key. It signs with the newest key whose activation
//! time has passed, and with none (503 `no_signing_key`) until one arrives.
//! A key is purged once its successor has been active for a whole token
//! lifetime plus leeway, the presence side's rule, on this node's clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use dashmap::DashMap;

use super::handover::{HandoverReceipt, KeyHandover, MAX_HANDED_KEYS};
use super::keyring::{KeyMaintenance, SigningKey, SigningKeySource};
use super::LEEWAY_SECS;
use crate::infra::clock::SharedClock;
use crate::store::{ReceivedKey, Store, StoreError};

/// Why a handover was not taken.
#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    #[error("{0}")]
    Malformed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What `/healthz` shows of the received keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedKeysStatus {
    /// The key that signs now.
    pub signing: Option<String>,
    /// When the newest key arrived (Unix ms), if any has.
    pub last_received_ms: Option<u64>,
}

struct Held {
    key: Arc<SigningKey>,
    active_at_ms: u64,
}

/// Keys received from presence nodes.
pub struct ReceivedKeys {
    store: Arc<Store>,
    clock: SharedClock,
    keep_ms: u64,
    by_kid: DashMap<String, Arc<SigningKey>>,
    /// By activation time, then creation time and `kid`.
    order: RwLock<Vec<Held>>,
    last_received_ms: AtomicU64,
    /// One handover or purge at a time (store and memory change together).
    writing: Mutex<()>,
}

impl ReceivedKeys {
    /// Loads the keys received before a restart.
    pub fn load(
        store: Arc<Store>,
        clock: SharedClock,
        token_max_secs: u64,
    ) -> Result<Self, StoreError> {
        let keys = Self {
            store,
            clock,
            keep_ms: (token_max_secs + LEEWAY_SECS) * 1000,
            by_kid: DashMap::new(),
            order: RwLock::new(Vec::new()),
            last_received_ms: AtomicU64::new(0),
            writing: Mutex::new(()),
        };
        for stored in keys.store.received_keys()? {
            keys.hold(&stored);
        }
        Ok(keys)
    }

    fn hold(&self, stored: &ReceivedKey) {
        let key = Arc::new(SigningKey::new(
            stored.kid.clone(),
            stored.created_at_ms,
            &stored.secret,
        ));
        self.by_kid.insert(key.kid.clone(), key.clone());
        let mut order = self.order.write().unwrap_or_else(|p| p.into_inner());
        order.push(Held {
            key,
            active_at_ms: stored.active_at_ms,
        });
        order.sort_by(|a, b| {
            (a.active_at_ms, a.key.created_at_ms, &a.key.kid).cmp(&(
                b.active_at_ms,
                b.key.created_at_ms,
                &b.key.kid,
            ))
        });
        self.last_received_ms
            .fetch_max(stored.received_at_ms, Ordering::Relaxed);
    }

    /// Takes a handover: every new key is persisted (flushed) before it is
    /// used or acknowledged. A malformed key refuses the whole body.
    pub fn accept(&self, handover: &KeyHandover) -> Result<HandoverReceipt, HandoverError> {
        if handover.keys.is_empty() || handover.keys.len() > MAX_HANDED_KEYS {
            return Err(HandoverError::Malformed(format!(
                "a handover carries 1 to {MAX_HANDED_KEYS} keys"
            )));
        }
        let mut parsed = Vec::with_capacity(handover.keys.len());
        for wire in &handover.keys {
            parsed.push(wire.parse().map_err(HandoverError::Malformed)?);
        }
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.clock.now_ms();
        let fresh: Vec<ReceivedKey> = parsed
            .into_iter()
            .filter(|(key, _)| !self.by_kid.contains_key(&key.kid))
            .map(|(key, active_at_ms)| ReceivedKey {
                kid: key.kid.clone(),
                secret: key.secret().to_vec(),
                created_at_ms: key.created_at_ms,
                active_at_ms,
                received_at_ms: now,
            })
            .collect();
        if !fresh.is_empty() {
            self.store.put_received_keys(&fresh)?;
            for stored in &fresh {
                tracing::info!(kid = %stored.kid, active_at_ms = stored.active_at_ms, "signing key received");
                self.hold(stored);
            }
        }
        let order = self.order.read().unwrap_or_else(|p| p.into_inner());
        Ok(HandoverReceipt {
            held: order.iter().map(|h| h.key.kid.clone()).collect(),
            signing: self.signer(&order, now).map(|k| k.kid.clone()),
        })
    }

    fn signer<'a>(&self, order: &'a [Held], now: u64) -> Option<&'a Arc<SigningKey>> {
        order
            .iter()
            .rev()
            .find(|h| h.active_at_ms <= now)
            .map(|h| &h.key)
    }

    /// The signer and when the newest key arrived.
    pub fn status(&self) -> ReceivedKeysStatus {
        let order = self.order.read().unwrap_or_else(|p| p.into_inner());
        let last = self.last_received_ms.load(Ordering::Relaxed);
        ReceivedKeysStatus {
            signing: self
                .signer(&order, self.clock.now_ms())
                .map(|k| k.kid.clone()),
            last_received_ms: (last > 0 || !order.is_empty()).then_some(last),
        }
    }

    fn purge(&self) -> Result<Vec<String>, StoreError> {
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.clock.now_ms();
        let mut purged = Vec::new();
        loop {
            let old = {
                let order = self.order.read().unwrap_or_else(|p| p.into_inner());
                match order.get(1) {
                    Some(successor)
                        if successor.active_at_ms.saturating_add(self.keep_ms) < now =>
                    {
                        order[0].key.kid.clone()
                    }
                    _ => break,
                }
            };
            // Durable first: a restart never brings a purged key back.
            self.store.remove_received_key(&old)?;
            self.by_kid.remove(&old);
            self.order
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|h| h.key.kid != old);
            purged.push(old);
        }
        Ok(purged)
    }
}

impl SigningKeySource for ReceivedKeys {
    fn signing_key(&self) -> Option<Arc<SigningKey>> {
        let order = self.order.read().unwrap_or_else(|p| p.into_inner());
        self.signer(&order, self.clock.now_ms()).cloned()
    }

    fn verifying_key(&self, kid: &str) -> Option<Arc<SigningKey>> {
        self.by_kid.get(kid).map(|e| e.value().clone())
    }

    fn listed_keys(&self) -> Vec<(Arc<SigningKey>, u64)> {
        let order = self.order.read().unwrap_or_else(|p| p.into_inner());
        order
            .iter()
            .map(|held| (held.key.clone(), held.active_at_ms))
            .collect()
    }

    /// Purges; never rotates (presence nodes generate every key).
    fn maintain(&self) -> Result<KeyMaintenance, StoreError> {
        Ok(KeyMaintenance {
            rotated_to: None,
            purged: self.purge()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::token::handover::HandedKey;
    use crate::infra::clock::ManualClock;
    use base64::Engine;

    fn wire(kid: &str, created: u64, active: u64) -> HandedKey {
        HandedKey {
            kid: kid.into(),
            secret: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 32]),
            created_at_ms: created,
            active_at_ms: active,
        }
    }

    #[test]
    fn signs_with_the_newest_active_key_and_purges_on_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let clock = Arc::new(ManualClock::new(1_000_000));
        let keys = ReceivedKeys::load(store.clone(), clock.clone(), 600).unwrap();
        assert!(keys.signing_key().is_none(), "no key before a handover");
        let receipt = keys
            .accept(&KeyHandover {
                keys: vec![wire("a", 900_000, 900_000)],
            })
            .unwrap();
        assert_eq!(receipt.signing.as_deref(), Some("a"));
        // A key that activates later is held but does not sign yet.
        keys.accept(&KeyHandover {
            keys: vec![wire("a", 900_000, 900_000), wire("b", 1_000_000, 1_003_000)],
        })
        .unwrap();
        assert_eq!(keys.signing_key().unwrap().kid, "a");
        clock.advance(std::time::Duration::from_millis(3_000));
        assert_eq!(keys.signing_key().unwrap().kid, "b");
        // `a` goes exactly when `b` has been active for 600 s + leeway.
        clock.advance(std::time::Duration::from_millis(605_000));
        assert!(keys.maintain().unwrap().purged.is_empty());
        clock.advance(std::time::Duration::from_millis(1));
        assert_eq!(keys.maintain().unwrap().purged, vec!["a".to_string()]);
        assert!(keys.verifying_key("a").is_none());
        // And stays gone after a restart; `b` survives it.
        drop(keys);
        let again = ReceivedKeys::load(store, clock, 600).unwrap();
        assert!(again.verifying_key("a").is_none());
        assert_eq!(again.signing_key().unwrap().kid, "b");
    }

    #[test]
    fn a_malformed_key_refuses_the_whole_handover() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let keys = ReceivedKeys::load(store, Arc::new(ManualClock::new(1)), 600).unwrap();
        let mut short = wire("c", 0, 0);
        short.secret = "AAAA".into();
        for bad in [
            vec![],
            vec![wire("ok", 0, 0), short],
            vec![wire("bad kid", 0, 0)],
            vec![wire("d", 5, 4)],
        ] {
            assert!(matches!(
                keys.accept(&KeyHandover { keys: bad }),
                Err(HandoverError::Malformed(_))
            ));
        }
        assert!(keys.verifying_key("ok").is_none());
    }
}
