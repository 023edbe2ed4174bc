//! Tokens whose signature and fixed claims have already been checked.
//!
//! A console sends the same bearer token with every request, and checking
//! it in full (three header parses, an HMAC, two claim deserialisations)
//! was a fifth of the server's CPU at 5,000 invokes/s. An entry is keyed by
//! the exact token string, so only a byte-identical token ever hits, and it
//! remembers the key object it was verified with. A hit re-checks
//! everything that can change after signing: that the same key still
//! verifies (a retired or replaced key misses), the time claims against the
//! injectable clock, and revocation. The cache is bounded; when full,
//! expired entries are dropped, and if that frees nothing it is emptied
//! (every token then verifies in full once more).

use std::sync::Arc;

use dashmap::DashMap;
use serde_json::Value;

use super::keyring::SigningKey;
use super::AgentClaims;

/// Entries at most: a token string and its claims take about 600 bytes,
/// so the bound is a few MiB, far above the tokens live on one node.
pub const MAX_VERIFIED_TOKENS: usize = 4096;

/// What a full check of one token established.
#[derive(Clone)]
pub struct Verified {
    /// The key the signature was checked with.
    pub key: Arc<SigningKey>,
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
        match current(&hit.key.kid) {
            Some(key) if Arc::ptr_eq(&key, &hit.key) => Some(hit),
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
            if self.entries.len() >= self.capacity {
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
            key: key.clone(),
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
