//! The denylist of revoked agent tokens, and the index of who each live
//! token was issued to (so a revocation can be authorised). Both are
//! persisted; the denylist is mirrored in a [`DashMap`] that verification
//! reads on every request. Entries go once their token has expired anyway.
//!
//! Two backends: this process alone (sled, [`LocalRevocations`]), or the
//! cluster's shared state in Redis ([`SharedRevocations`], see
//! `redis_revocations.rs`). Every method but [`Revocations::is_revoked`]
//! and [`Revocations::on_revoked`] may block on storage: call them on the
//! blocking pool.

use std::sync::Arc;

use dashmap::DashMap;

use super::redis_revocations::SharedRevocations;
use super::LEEWAY_SECS;
use crate::store::{IssuedToken, Store, StoreError};

/// Called with a `jti` when this node learns that another node revoked it
/// (never for revocations made on this node: their caller closes the local
/// sockets itself); returns how many sockets it closed.
pub type RevokedHook = Arc<dyn Fn(&str) -> usize + Send + Sync>;

/// Called, on the revoking thread, with each `(jti, exp)` this process
/// revokes alone (no Redis): the auth role queues it, durably, for the
/// presence node.
pub type RevocationForwarder = Arc<dyn Fn(&str, u64) -> Result<(), StoreError> + Send + Sync>;

/// Where revocations and the issued-token index live.
pub enum Revocations {
    /// This process alone.
    Local(LocalRevocations),
    /// Shared by every node of a cluster.
    Shared(SharedRevocations),
}

impl Revocations {
    /// Loads the persisted denylist (single node).
    pub fn load(store: Arc<Store>) -> Result<Self, StoreError> {
        Ok(Self::Local(LocalRevocations::load(store)?))
    }

    /// Remembers who `jti` was issued to, durably.
    pub fn record_issued(&self, jti: &str, token: &IssuedToken) -> Result<(), StoreError> {
        match self {
            Self::Local(local) => local.store.put_issued(jti, token),
            Self::Shared(shared) => shared.record_issued(jti, token),
        }
    }

    /// Who `jti` was issued to, while it is live.
    pub fn owner(&self, jti: &str) -> Result<Option<IssuedToken>, StoreError> {
        match self {
            Self::Local(local) => local.store.issued(jti),
            Self::Shared(shared) => shared.owner(jti),
        }
    }

    /// The live tokens of `sub` in `groupid`, `(jti, owner)`.
    pub fn live_tokens_of(
        &self,
        groupid: u64,
        sub: &str,
        now: u64,
    ) -> Result<Vec<(String, IssuedToken)>, StoreError> {
        match self {
            Self::Local(local) => {
                local
                    .store
                    .issued_to(groupid, sub, now.saturating_sub(LEEWAY_SECS))
            }
            Self::Shared(shared) => shared.live_tokens_of(groupid, sub, now),
        }
    }

    /// Denies `jti` until `exp`, durably, then in memory; in a cluster,
    /// returns once every live node that answers in time denies it too.
    /// Returns how many sockets other nodes closed (this node's are for the
    /// caller to close).
    pub fn revoke(&self, jti: &str, exp: u64) -> Result<usize, StoreError> {
        match self {
            Self::Local(local) => {
                local.store.put_revoked(jti, exp)?;
                local.denied.insert(jti.to_owned(), exp);
                if let Some(forward) = local.forward.get() {
                    forward(jti, exp)?;
                }
                Ok(0)
            }
            Self::Shared(shared) => shared.revoke(jti, exp),
        }
    }

    /// Whether `jti` is denied (memory only).
    pub fn is_revoked(&self, jti: &str) -> bool {
        match self {
            Self::Local(local) => local.denied.contains_key(jti),
            Self::Shared(shared) => shared.is_revoked(jti),
        }
    }

    /// Forgets tokens that have expired (with leeway) before `now`.
    pub fn purge(&self, now: u64) -> Result<usize, StoreError> {
        let cutoff = now.saturating_sub(LEEWAY_SECS);
        match self {
            Self::Local(local) => {
                local.denied.retain(|_, exp| *exp >= cutoff);
                local.store.remove_expired_tokens(cutoff)
            }
            Self::Shared(shared) => Ok(shared.purge(cutoff)),
        }
    }

    /// Auth role without Redis: hands every revocation made here to
    /// `forward` as well (cluster mode shares revocations through Redis).
    pub fn forward_local(&self, forward: RevocationForwarder) {
        if let Self::Local(local) = self {
            let _ = local.forward.set(forward);
        }
    }

    /// Registers what closes the local sockets of a token another node
    /// revoked. A single node has no other nodes: it never calls it.
    pub fn on_revoked(&self, hook: RevokedHook) {
        if let Self::Shared(shared) = self {
            shared.on_revoked(hook);
        }
    }
}

/// The single-node backend: sled, and the denylist mirrored in memory.
pub struct LocalRevocations {
    store: Arc<Store>,
    denied: DashMap<String, u64>,
    forward: std::sync::OnceLock<RevocationForwarder>,
}

impl LocalRevocations {
    /// Loads the persisted denylist.
    pub fn load(store: Arc<Store>) -> Result<Self, StoreError> {
        let denied = store.revoked()?.into_iter().collect();
        Ok(Self {
            store,
            denied,
            forward: std::sync::OnceLock::new(),
        })
    }
}
