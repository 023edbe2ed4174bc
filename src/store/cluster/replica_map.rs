//! A node-local replica of shared entries (session keys, confirmation
//! grants): changed by this node's writes and by other nodes' broadcasts,
//! and re-read from Redis after every (re)connection of the subscriber.
//!
//! A re-read takes a while, and broadcasts keep arriving meanwhile, so it
//! must not undo them: [`ReplicaMap::reload`] remembers the keys changed
//! while it reads, and when it applies what it read, a key changed meanwhile
//! keeps its newer value (or its removal). Only what neither Redis nor a
//! change vouched for is dropped. [`scan_values`] reads the entries page by
//! page, each page under the command deadline, however large the keyspace.

use std::collections::HashSet;
use std::future::Future;
use std::hash::Hash;
use std::sync::Mutex;

use dashmap::DashMap;

use super::ClusterLink;
use crate::infra::error::SharedStateUnavailable;

/// Keys asked for per `SCAN` page (Redis's default of 10 made a large
/// keyspace cost tens of thousands of round trips).
const SCAN_COUNT: usize = 1000;

/// A replicated map; reads go to [`ReplicaMap::entries`].
pub struct ReplicaMap<K: Eq + Hash + Clone, V> {
    entries: DashMap<K, V>,
    /// While a re-read runs: the keys changed since it began. Changes and
    /// the re-read's apply step hold this lock, so neither interleaves.
    changed_during_reload: Mutex<Option<HashSet<K>>>,
    /// One re-read at a time.
    reloading: tokio::sync::Mutex<()>,
}

impl<K: Eq + Hash + Clone, V> Default for ReplicaMap<K, V> {
    fn default() -> Self {
        Self {
            entries: DashMap::new(),
            changed_during_reload: Mutex::new(None),
            reloading: tokio::sync::Mutex::new(()),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl<K: Eq + Hash + Clone, V> ReplicaMap<K, V> {
    /// The entries, for reads and expiry sweeps (expiry is not a change:
    /// Redis expires the same entries by itself).
    pub fn entries(&self) -> &DashMap<K, V> {
        &self.entries
    }

    /// Sets `key` (a write of this node, or another node's broadcast).
    pub fn insert(&self, key: K, value: V) {
        let mut changed = lock(&self.changed_during_reload);
        if let Some(changed) = changed.as_mut() {
            changed.insert(key.clone());
        }
        self.entries.insert(key, value);
    }

    /// Removes `key` if `drop` says so (a change only then); the removed
    /// value.
    pub fn remove_if(&self, key: &K, drop: impl FnOnce(&K, &V) -> bool) -> Option<V> {
        let mut changed = lock(&self.changed_during_reload);
        let removed = self.entries.remove_if(key, drop).map(|(_, v)| v);
        if let (Some(changed), Some(_)) = (changed.as_mut(), &removed) {
            changed.insert(key.clone());
        }
        removed
    }

    /// Removes `key` (a removal broadcast by another node, or this node's):
    /// a change even if this replica did not hold it yet, so a re-read that
    /// read it before the removal does not bring it back.
    pub fn remove(&self, key: &K) -> Option<V> {
        let mut changed = lock(&self.changed_during_reload);
        if let Some(changed) = changed.as_mut() {
            changed.insert(key.clone());
        }
        self.entries.remove(key).map(|(_, v)| v)
    }

    /// Replaces the entries with what `read` finds in Redis, except keys
    /// changed while it read.
    pub async fn reload<E>(
        &self,
        read: impl Future<Output = Result<Vec<(K, V)>, E>>,
    ) -> Result<(), E> {
        let _one = self.reloading.lock().await;
        *lock(&self.changed_during_reload) = Some(HashSet::new());
        let found = read.await;
        let mut tracking = lock(&self.changed_during_reload);
        let changed = tracking.take().unwrap_or_default();
        let found = found?;
        let in_redis: HashSet<K> = found.iter().map(|(k, _)| k.clone()).collect();
        self.entries
            .retain(|k, _| in_redis.contains(k) || changed.contains(k));
        for (k, v) in found {
            if !changed.contains(&k) {
                self.entries.insert(k, v);
            }
        }
        drop(tracking);
        Ok(())
    }
}

/// Every `(key, value)` of string keys matching `pattern` (a full key,
/// prefix included), read with `SCAN … COUNT` and `MGET` page by page, each
/// page a command of its own with its own deadline.
pub async fn scan_values(
    link: &ClusterLink,
    what: &'static str,
    pattern: String,
) -> Result<Vec<(String, String)>, SharedStateUnavailable> {
    let mut out = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let pattern = pattern.clone();
        let (next, page): (u64, Vec<(String, String)>) = link
            .run(what, move |mut conn| async move {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(SCAN_COUNT)
                    .query_async(&mut conn)
                    .await?;
                if keys.is_empty() {
                    return Ok((next, Vec::new()));
                }
                let values: Vec<Option<String>> =
                    redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
                let page = keys
                    .into_iter()
                    .zip(values)
                    .filter_map(|(k, v)| Some((k, v?)))
                    .collect();
                Ok((next, page))
            })
            .await?;
        out.extend(page);
        if next == 0 {
            return Ok(out);
        }
        cursor = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_change_during_a_reload_is_not_undone_by_it() {
        let map: ReplicaMap<&str, u32> = ReplicaMap::default();
        map.insert("stale", 1);
        map.insert("removed-meanwhile", 1);
        let read = async {
            // Broadcasts arriving while Redis is read.
            map.insert("added-meanwhile", 2);
            map.remove(&"removed-meanwhile");
            map.remove(&"never-held-removed-meanwhile");
            map.insert("updated-meanwhile", 3);
            Ok::<_, ()>(vec![
                ("removed-meanwhile", 1),
                ("never-held-removed-meanwhile", 1),
                ("updated-meanwhile", 1),
                ("in-redis", 4),
            ])
        };
        map.reload(read).await.expect("reload");
        let mut now: Vec<(&str, u32)> = map
            .entries()
            .iter()
            .map(|e| (*e.key(), *e.value()))
            .collect();
        now.sort();
        assert_eq!(
            now,
            vec![
                ("added-meanwhile", 2),
                ("in-redis", 4),
                ("updated-meanwhile", 3)
            ],
            "the stale entry goes, changes made meanwhile stay"
        );
        // Outside a reload nothing is tracked.
        map.insert("later", 5);
        assert!(lock(&map.changed_during_reload).is_none());
    }

    #[tokio::test]
    async fn a_failed_reload_changes_nothing() {
        let map: ReplicaMap<&str, u32> = ReplicaMap::default();
        map.insert("kept", 1);
        assert_eq!(
            map.reload(async { Err::<Vec<_>, _>("down") }).await,
            Err("down")
        );
        assert_eq!(map.entries().get("kept").map(|v| *v), Some(1));
    }
}
