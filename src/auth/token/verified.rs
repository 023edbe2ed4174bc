//! Tokens whose signature and fixed claims have already been checked.
//!
//! A console sends the same bearer token with every request, and checking
//! it in full (three header parses, an HMAC, two claim deserialisations)
//! was a fifth of the server's CPU at 5,000 invokes/s. An entry is keyed by
//! the exact token string, so only a byte-identical token ever hits, and it
//! remembers the key object it was verified with (weakly: a purged key's
//! secret is not kept alive by the cache). A hit re-checks everything that
//! can change after signing: that the same key still verifies (a retired,
//! replaced or purged key misses), the time claims against the injectable
//! clock, and revocation. Only tokens that passed every check are
//! remembered. The cache is bounded; when full, expired entries are
//! dropped, and if that frees less than an eighth of it, it is emptied
//! (every token then verifies in full once more).

use std::sync::{Arc, Weak};

use dashmap::DashMap;
use serde_json::Value;

use super::keyring::SigningKey;
use super::AgentClaims;

/// Entries at most: a typical token and its claims take under 1 KiB, and
/// a token may be up to 4 KiB, so the bound is 4 to 20 MiB, above the
/// tokens live on one node.
pub const MAX_VERIFIED_TOKENS: usize = 4096;

/// What a full check of one token established.
#[derive(Clone)]
pub struct Verified {
    /// The `kid` of the key the signature was checked with, and that key.
    pub kid: Box<str>,
    pub key: Weak<SigningKey>,
    pub claims: AgentClaims,
    /// The token's `nbf`, as sent (its form was already checked).
    pub nbf: Option<Value>,
}

/// Verified tokens by their exact text.
pub struct VerifiedTokens {
    entries: DashMap<Box<str>, Verified>,
    capacity: usize,
}

impl VerifiedTokens {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: DashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// The entry for `token` if its key is still `current` (the key the
    /// token's `kid` names now); an entry whose key changed is dropped.
    pub fn get(
        &self,
        token: &str,
        current: impl FnOnce(&str) -> Option<Arc<SigningKey>>,
    ) -> Option<Verified> {
        let hit = self.entries.get(token)?.value().clone();
        // The weak reference keeps the allocation, so an address equal to
        // the current key's is that very key, never a later one.
        match current(&hit.kid) {
            Some(key) if std::ptr::eq(Arc::as_ptr(&key), hit.key.as_ptr()) => Some(hit),
            _ => {
                self.entries.remove(token);
                None
            }
        }
    }

    /// Remembers `token`; `now` decides which entries are expired when the
    /// cache is full.
    pub fn insert(&self, token: &str, verified: Verified, now: u64) {
        if self.entries.len() >= self.capacity {
            self.entries.retain(|_, entry| entry.claims.exp > now);
            // Freeing only a few would mean a sweep on nearly every miss.
            let room = self.capacity.saturating_sub(self.entries.len());
            if room < (self.capacity / 8).max(1) {
                self.entries.clear();
            }
        }
        self.entries.insert(token.into(), verified);
    }

    /// Forgets `token` (it expired or was revoked: no later hit can pass).
    pub fn remove(&self, token: &str) {
        self.entries.remove(token);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infra::config::Role;

    fn verified(key: &Arc<SigningKey>, exp: u64) -> Verified {
        Verified {
            kid: key.kid.as_str().into(),
            key: Arc::downgrade(key),
            claims: AgentClaims {
                iss: "presence-server".into(),
                aud: "presence".into(),
                sub: "fred".into(),
                groupid: 7,
                role: Role::Agent,
                iat: 0,
                exp,
                jti: "j".into(),
                name: None,
                policy: None,
            },
            nbf: None,
        }
    }

    #[test]
    fn a_hit_needs_the_very_key_it_was_verified_with() {
        let key = Arc::new(SigningKey::new("k".into(), 0, &[1; 32]));
        let same_kid = Arc::new(SigningKey::new("k".into(), 0, &[2; 32]));
        let cache = VerifiedTokens::new(8);
        cache.insert("a.b.c", verified(&key, 100), 0);
        assert!(cache.get("a.b.c", |_| Some(key.clone())).is_some());
        assert!(
            cache.get("a.b.", |_| Some(key.clone())).is_none(),
            "exact text only"
        );
        // A key replaced under the same kid, or gone: a miss, and the entry
        // is dropped so the full check runs.
        assert!(cache.get("a.b.c", |_| Some(same_kid.clone())).is_none());
        assert_eq!(cache.len(), 0);
        cache.insert("a.b.c", verified(&key, 100), 0);
        assert!(cache.get("a.b.c", |_| None).is_none());
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn a_purged_key_is_not_kept_alive_and_never_hits_again() {
        let key = Arc::new(SigningKey::new("k".into(), 0, &[1; 32]));
        let cache = VerifiedTokens::new(8);
        cache.insert("a.b.c", verified(&key, 100), 0);
        let weak = Arc::downgrade(&key);
        drop(key);
        assert_eq!(
            weak.strong_count(),
            0,
            "the cache holds no strong reference"
        );
        let successor = Arc::new(SigningKey::new("k".into(), 0, &[1; 32]));
        assert!(cache.get("a.b.c", |_| Some(successor.clone())).is_none());
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn a_full_cache_drops_expired_entries_first_and_never_grows_past_its_bound() {
        let key = Arc::new(SigningKey::new("k".into(), 0, &[1; 32]));
        let cache = VerifiedTokens::new(3);
        cache.insert("old", verified(&key, 10), 0);
        cache.insert("live1", verified(&key, 100), 0);
        cache.insert("live2", verified(&key, 100), 0);
        cache.insert("live3", verified(&key, 100), 50);
        assert_eq!(cache.len(), 3);
        assert!(cache.get("old", |_| Some(key.clone())).is_none());
        assert!(cache.get("live1", |_| Some(key.clone())).is_some());
        // Nothing expired: emptied, then the new entry.
        cache.insert("live4", verified(&key, 100), 50);
        assert_eq!(cache.len(), 1);
        assert!(cache.get("live4", |_| Some(key.clone())).is_some());
        for n in 0..50 {
            cache.insert(&format!("t{n}"), verified(&key, 100), 50);
            assert!(cache.len() <= 3);
        }
    }
}
