//! The denylist of revoked agent tokens, and the index of who each live
//! token was issued to (so a revocation can be authorised). Both are
//! persisted; the denylist is mirrored in a [`DashMap`] that verification
//! reads on every request. Entries go once their token has expired anyway.

use std::sync::Arc;

use dashmap::DashMap;

use super::LEEWAY_SECS;
use crate::store::{IssuedToken, Store, StoreError};

pub struct Revocations {
    store: Arc<Store>,
    denied: DashMap<String, u64>,
}

impl Revocations {
    /// Loads the persisted denylist.
    pub fn load(store: Arc<Store>) -> Result<Self, StoreError> {
        let denied = store.revoked()?.into_iter().collect();
        Ok(Self { store, denied })
    }

    /// Remembers who `jti` was issued to, durably.
    pub fn record_issued(&self, jti: &str, token: &IssuedToken) -> Result<(), StoreError> {
        self.store.put_issued(jti, token)
    }

    /// Who `jti` was issued to, while it is live.
    pub fn owner(&self, jti: &str) -> Result<Option<IssuedToken>, StoreError> {
        self.store.issued(jti)
    }

    /// The live tokens of `sub` in `groupid`, `(jti, owner)`.
    pub fn live_tokens_of(
        &self,
        groupid: u64,
        sub: &str,
        now: u64,
    ) -> Result<Vec<(String, IssuedToken)>, StoreError> {
        self.store
            .issued_to(groupid, sub, now.saturating_sub(LEEWAY_SECS))
    }

    /// Denies `jti` until `exp`, durably, then in memory.
    pub fn revoke(&self, jti: &str, exp: u64) -> Result<(), StoreError> {
        self.store.put_revoked(jti, exp)?;
        self.denied.insert(jti.to_owned(), exp);
        Ok(())
    }

    /// Whether `jti` is denied.
    pub fn is_revoked(&self, jti: &str) -> bool {
        self.denied.contains_key(jti)
    }

    /// Forgets tokens that have expired (with leeway) before `now`.
    pub fn purge(&self, now: u64) -> Result<usize, StoreError> {
        let cutoff = now.saturating_sub(LEEWAY_SECS);
        self.denied.retain(|_, exp| *exp >= cutoff);
        self.store.remove_expired_tokens(cutoff)
    }
}
