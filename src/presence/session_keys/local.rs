//! [`LocalSessionKeys`]: this node's session keys, served from memory and,
//! when given the store, written through to sled (flushed before a key is
//! handed out) and restored at start-up.

use std::sync::Arc;

use dashmap::DashMap;

use super::{draw, IssueError, KeyHolder, MintBudget, OnlinePeriod, SessionKey, SessionKeys};
use crate::infra::clock::SharedClock;
use crate::infra::ids::{GroupId, VisitorId, VisitorKey};
use crate::store::{Store, StoreError, StoredSessionKey};

/// Draws before giving up on finding an unused code.
const MAX_DRAWS: usize = 32;

struct Entry {
    holder: KeyHolder,
    expires: u64,
}

/// Live session keys: one map by code, one by connection.
pub struct LocalSessionKeys {
    clock: SharedClock,
    ttl_secs: u64,
    by_code: DashMap<(GroupId, String), Entry>,
    /// Each open connection's key, so asking again returns it.
    by_connection: DashMap<String, SessionKey>,
    mints: MintBudget,
    store: Option<Arc<Store>>,
}

impl LocalSessionKeys {
    /// Keys in memory only: they live `ttl_secs`; each group mints at most
    /// `mints_per_minute` a minute (with that much burst).
    pub fn in_memory(clock: SharedClock, ttl_secs: u64, mints_per_minute: u64) -> Self {
        Self {
            clock,
            ttl_secs,
            by_code: DashMap::new(),
            by_connection: DashMap::new(),
            mints: MintBudget::new(mints_per_minute),
            store: None,
        }
    }

    /// Keys kept in `store` as well. The live keys it holds come back,
    /// each bound to the first online period of its visitor that begins
    /// within `grace_ms` from now.
    pub fn durable(
        store: Arc<Store>,
        clock: SharedClock,
        ttl_secs: u64,
        mints_per_minute: u64,
        grace_ms: u64,
    ) -> Result<Self, StoreError> {
        let now_ms = clock.now_ms();
        let mut keys = Self::in_memory(clock, ttl_secs, mints_per_minute);
        let restored_by = OnlinePeriod::FirstBy(now_ms.saturating_add(grace_ms));
        for (group, code, stored) in store.live_session_keys(now_ms / 1000)? {
            let Ok(id) = VisitorId::parse(&stored.visitorid) else {
                tracing::warn!(group, "dropping a stored session key with a bad visitor id");
                store.remove_session_key(group, &code)?;
                continue;
            };
            let holder = KeyHolder {
                visitor: VisitorKey::new(group, id),
                period: restored_by,
            };
            keys.by_code.insert(
                (group, code),
                Entry {
                    holder,
                    expires: stored.expires,
                },
            );
        }
        keys.store = Some(store);
        Ok(keys)
    }

    /// Whether no key is held.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.by_code.is_empty()
    }

    /// Writes a fresh key through to the store, if there is one.
    fn persist(&self, holder: &KeyHolder, key: &SessionKey) -> Result<(), IssueError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let online_since = match holder.period {
            OnlinePeriod::Began(at) | OnlinePeriod::FirstBy(at) => at,
        };
        let stored = StoredSessionKey {
            visitorid: holder.visitor.visitor.as_str().to_owned(),
            online_since,
            expires: key.expires,
        };
        store
            .put_session_key(holder.visitor.group, &key.key, &stored)
            .map_err(|e| IssueError::Store(e.to_string()))
    }

    fn forget(&self, group: GroupId, code: &str) {
        if let Some(store) = &self.store {
            if let Err(e) = store.remove_session_key(group, code) {
                tracing::warn!(group, error = %e, "could not delete a session key");
            }
        }
    }
}

impl SessionKeys for LocalSessionKeys {
    fn issue(&self, holder: &KeyHolder, connection: &str) -> Result<SessionKey, IssueError> {
        let now_ms = self.clock.now_ms();
        let now = now_ms / 1000;
        if let Some(live) = self.by_connection.get(connection) {
            if live.expires > now {
                return Ok(live.clone());
            }
        }
        let group = holder.visitor.group;
        self.mints
            .spend(group, now_ms)
            .map_err(|ms| IssueError::RateLimited {
                retry_after_secs: ms.div_ceil(1000).max(1),
            })?;
        let expires = now + self.ttl_secs;
        for _ in 0..MAX_DRAWS {
            let code = draw();
            let mut fresh = false;
            let entry = || Entry {
                holder: holder.clone(),
                expires,
            };
            self.by_code
                .entry((group, code.clone()))
                .and_modify(|e| {
                    // An expired code may be reused.
                    if e.expires <= now {
                        *e = entry();
                        fresh = true;
                    }
                })
                .or_insert_with(|| {
                    fresh = true;
                    entry()
                });
            if fresh {
                let key = SessionKey { key: code, expires };
                if let Err(e) = self.persist(holder, &key) {
                    self.by_code.remove(&(group, key.key));
                    return Err(e);
                }
                self.by_connection
                    .insert(connection.to_owned(), key.clone());
                return Ok(key);
            }
        }
        Err(IssueError::Exhausted)
    }

    fn connection_closed(&self, connection: &str) {
        self.by_connection.remove(connection);
    }

    fn find(&self, group: GroupId, key: &str) -> Option<KeyHolder> {
        let now = self.clock.now_secs();
        let entry = self.by_code.get(&(group, key.to_owned()))?;
        (entry.expires > now).then(|| entry.holder.clone())
    }

    fn not_current(&self, group: GroupId, key: &str) {
        let now_ms = self.clock.now_ms();
        if self
            .by_code
            .remove_if(&(group, key.to_owned()), |_, e| !awaited(e, now_ms))
            .is_some()
        {
            self.forget(group, key);
        }
    }

    fn sweep(&self, in_period: &dyn Fn(&KeyHolder) -> bool) -> usize {
        let now_ms = self.clock.now_ms();
        let now = now_ms / 1000;
        let mut ended = Vec::new();
        self.by_code.retain(|(group, code), e| {
            let keep = e.expires > now && (awaited(e, now_ms) || in_period(&e.holder));
            if !keep {
                ended.push((*group, code.clone()));
            }
            keep
        });
        self.by_connection.retain(|_, key| key.expires > now);
        if let Some(store) = &self.store {
            let removed = ended
                .iter()
                .try_for_each(|(group, code)| store.remove_session_key(*group, code))
                .and_then(|()| store.remove_expired_session_keys(now));
            if let Err(e) = removed {
                tracing::warn!(error = %e, "could not sweep stored session keys");
            }
        }
        ended.len()
    }
}

/// A key restored after a restart whose visitor may still come back.
fn awaited(e: &Entry, now_ms: u64) -> bool {
    matches!(e.holder.period, OnlinePeriod::FirstBy(by) if now_ms <= by)
}

#[cfg(test)]
mod tests;
