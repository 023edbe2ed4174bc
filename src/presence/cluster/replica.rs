//! This node's copy of the other nodes' portions of every visitor, kept
//! current from the presence channel and re-read from Redis after every
//! (re)connection. Lookups, pages and routing read it from memory.
//!
//! A portion never replaces a newer one of the same node (`seq`), and a
//! removal leaves a short-lived tombstone so that a re-read that raced it
//! cannot bring the visitor back. A re-read stamps what it found with a
//! new generation; a later prune drops what no re-read found since.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;

use super::stored_portion::{NodeNames, StoredPortion};
use crate::infra::ids::{GroupId, VisitorKey};
use crate::presence::registry::Portion;

/// How long a removal is remembered.
const TOMBSTONE_TTL: Duration = Duration::from_secs(60);

#[derive(Default)]
pub(super) struct Replica {
    /// Each visitor's portions, one per node (a boxed slice: a `Vec`
    /// would reserve room for four).
    visitors: DashMap<VisitorKey, Box<[StoredPortion]>>,
    nodes: NodeNames,
    /// The keys that hold a portion in grace, so that expiry (ten times a
    /// second) looks at those and not at every visitor of the cluster. A
    /// key is added under its entry's lock; a stale key is dropped by
    /// the next expiry. Lock order: an entry, then this set.
    expiring: Mutex<HashSet<VisitorKey>>,
    tombstones: Mutex<HashMap<(VisitorKey, String), (u64, Instant)>>,
    generation: AtomicU64,
}

/// Drops the portions `drop` picks from a visitor's; true if there were any.
fn drop_from(held: &mut Box<[StoredPortion]>, drop: impl Fn(&StoredPortion) -> bool) -> bool {
    if !held.iter().any(&drop) {
        return false;
    }
    let mut kept = std::mem::take(held).into_vec();
    kept.retain(|h| !drop(h));
    *held = kept.into_boxed_slice();
    true
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Replica {
    /// Applies `node`'s portion of `key` (or its removal) at `seq`; true if
    /// it changed anything.
    pub(super) fn apply(
        &self,
        key: &VisitorKey,
        node: &str,
        seq: u64,
        portion: Option<Portion>,
    ) -> bool {
        let tomb = (key.clone(), node.to_owned());
        {
            let mut tombstones = lock(&self.tombstones);
            if tombstones
                .get(&tomb)
                .is_some_and(|(dead_at, _)| *dead_at >= seq)
            {
                return false;
            }
            if portion.is_none() {
                tombstones.insert(tomb, (seq, Instant::now()));
            }
        }
        let generation = self.generation.load(Ordering::Relaxed);
        let mut entry = self.visitors.entry(key.clone()).or_default();
        let held = entry.iter().position(|h| h.node() == node);
        let changed = match (held, portion) {
            (Some(i), _) if entry[i].seq() > seq => false,
            (Some(i), Some(portion)) => {
                let stored = StoredPortion::new(&portion, self.nodes.intern(node), generation);
                let changed = !entry[i].same_as(&stored);
                entry[i] = stored;
                changed
            }
            (Some(_), None) => drop_from(&mut entry, |h| h.node() == node),
            (None, Some(portion)) => {
                let mut held = std::mem::take(&mut *entry).into_vec();
                held.push(StoredPortion::new(
                    &portion,
                    self.nodes.intern(node),
                    generation,
                ));
                *entry = held.into_boxed_slice();
                true
            }
            (None, None) => false,
        };
        self.note_expiry(key, &entry);
        let empty = entry.is_empty();
        drop(entry);
        if empty {
            self.visitors.remove_if(key, |_, held| held.is_empty());
        }
        changed
    }

    /// The live portions of `key` at `now_ms`.
    pub(super) fn get(&self, key: &VisitorKey, now_ms: u64) -> Vec<Portion> {
        self.visitors.get(key).map_or_else(Vec::new, |held| {
            held.iter()
                .filter(|h| h.is_live(now_ms))
                .map(StoredPortion::portion)
                .collect()
        })
    }

    /// Visitor ids of `group` after `after` with a portion here.
    pub(super) fn visitors_of(&self, group: GroupId, after: Option<&str>) -> Vec<String> {
        self.visitors
            .iter()
            .filter(|e| {
                e.key().group == group && after.is_none_or(|a| e.key().visitor.as_str() > a)
            })
            .map(|e| e.key().visitor.as_str().to_owned())
            .collect()
    }

    /// Drops every portion of `node`; the keys that changed.
    pub(super) fn remove_node(&self, node: &str) -> Vec<VisitorKey> {
        self.remove_where(|h| h.node() == node)
    }

    /// A node left: its portions that still hold sockets are between
    /// sockets from now, in grace until `grace_until_ms`; the keys that
    /// changed.
    pub(super) fn node_left(&self, node: &str, grace_until_ms: u64) -> Vec<VisitorKey> {
        let mut changed = Vec::new();
        for mut entry in self.visitors.iter_mut() {
            let mut touched = false;
            for held in entry.value_mut().iter_mut() {
                if held.node() == node && held.close_connections(grace_until_ms) {
                    touched = true;
                }
            }
            if touched {
                self.note_expiry(entry.key(), entry.value());
                changed.push(entry.key().clone());
            }
        }
        changed
    }

    /// Keeps `key`'s place in [`Replica::expiring`] right; called with its
    /// entry held.
    fn note_expiry(&self, key: &VisitorKey, held: &[StoredPortion]) {
        if held.iter().any(StoredPortion::can_expire) {
            lock(&self.expiring).insert(key.clone());
        } else {
            lock(&self.expiring).remove(key);
        }
    }

    /// Drops portions whose grace period ended; the keys that changed.
    pub(super) fn expire(&self, now_ms: u64) -> Vec<VisitorKey> {
        let candidates: Vec<VisitorKey> = lock(&self.expiring).iter().cloned().collect();
        let mut changed = Vec::new();
        for key in candidates {
            // Under the entry's lock, vacant or not: an `apply` of a
            // portion in grace may be adding the key right now.
            match self.visitors.entry(key.clone()) {
                Entry::Vacant(_) => {
                    lock(&self.expiring).remove(&key);
                }
                Entry::Occupied(mut held) => {
                    if drop_from(held.get_mut(), |h| !h.is_live(now_ms)) {
                        changed.push(key.clone());
                    }
                    self.note_expiry(&key, held.get());
                    if held.get().is_empty() {
                        held.remove();
                    }
                }
            }
        }
        changed
    }

    /// Starts a re-read: what it finds is stamped with the new generation.
    pub(super) fn next_generation(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Drops what neither a re-read nor an update has confirmed since
    /// `generation` began (entries removed while this node was not
    /// listening). The keys that changed.
    pub(super) fn prune_before(&self, generation: u64) -> Vec<VisitorKey> {
        self.remove_where(|h| h.generation < generation)
    }

    /// Forgets old tombstones, and the ids of nodes no portion is of.
    pub(super) fn purge_tombstones(&self) {
        lock(&self.tombstones).retain(|_, (_, at)| at.elapsed() < TOMBSTONE_TTL);
        self.nodes.purge();
    }

    fn remove_where(&self, drop: impl Fn(&StoredPortion) -> bool) -> Vec<VisitorKey> {
        let mut changed = Vec::new();
        self.visitors.retain(|key, held| {
            if drop_from(held, &drop) {
                changed.push(key.clone());
            }
            !held.is_empty()
        });
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infra::ids::VisitorId;
    use crate::presence::registry::PortionConnection;

    fn portion(node: &str, seq: u64, sockets: usize) -> Portion {
        Portion {
            node: node.to_owned(),
            seq,
            connections: (0..sockets)
                .map(|i| PortionConnection {
                    id: format!("c{i}"),
                    identity: None,
                })
                .collect(),
            data: serde_json::json!({}),
            connected_at_ms: 1,
            last_active_ms: 1,
            grace_until_ms: None,
        }
    }

    /// A portion between sockets, in grace until `until_ms`.
    fn in_grace(node: &str, seq: u64, until_ms: u64) -> Portion {
        Portion {
            grace_until_ms: Some(until_ms),
            ..portion(node, seq, 0)
        }
    }

    #[test]
    fn a_node_that_left_without_announcing_puts_its_visitors_in_grace() {
        let replica = Replica::default();
        let key = VisitorKey::new(72, VisitorId::parse("v-1").expect("id"));
        assert!(replica.apply(&key, "gone", 1, Some(portion("gone", 1, 1))));
        assert!(replica.apply(&key, "stays", 1, Some(portion("stays", 1, 1))));
        assert_eq!(replica.node_left("gone", 5_000), vec![key.clone()]);
        let now = replica.get(&key, 4_999);
        assert_eq!(now.len(), 2, "in grace until 5000");
        assert!(now
            .iter()
            .any(|p| p.node == "gone" && p.connections.is_empty()));
        assert_eq!(replica.expire(5_000), vec![key.clone()]);
        let left: Vec<String> = replica
            .get(&key, 5_000)
            .into_iter()
            .map(|p| p.node)
            .collect();
        assert_eq!(
            left,
            vec!["stays".to_owned()],
            "the other node's portion stays"
        );
        assert!(
            replica.node_left("gone", 9_000).is_empty(),
            "nothing more to do"
        );
    }

    #[test]
    fn a_portion_announced_in_grace_expires_and_a_reconnected_one_does_not() {
        let replica = Replica::default();
        let key = VisitorKey::new(72, VisitorId::parse("v-2").expect("id"));
        assert!(replica.apply(&key, "n", 1, Some(in_grace("n", 1, 5_000))));
        assert!(replica.expire(4_999).is_empty());
        assert_eq!(replica.expire(5_000), vec![key.clone()]);
        assert!(replica.get(&key, 5_000).is_empty());

        let later = VisitorKey::new(72, VisitorId::parse("v-3").expect("id"));
        assert!(replica.apply(&later, "n", 2, Some(in_grace("n", 2, 5_000))));
        assert!(replica.apply(&later, "n", 3, Some(portion("n", 3, 1))));
        assert!(replica.expire(9_000).is_empty(), "it has a socket again");
        assert_eq!(replica.get(&later, 9_000).len(), 1);
        assert!(lock(&replica.expiring).is_empty(), "nothing left to watch");
    }

    #[test]
    fn a_key_left_stale_by_a_dropped_node_still_expires_when_it_returns_in_grace() {
        let replica = Replica::default();
        let key = VisitorKey::new(72, VisitorId::parse("v-4").expect("id"));
        assert!(replica.apply(&key, "a", 1, Some(in_grace("a", 1, 5_000))));
        assert_eq!(replica.remove_node("a"), vec![key.clone()]);
        assert!(replica.apply(&key, "b", 1, Some(in_grace("b", 1, 5_000))));
        assert!(replica.expire(4_000).is_empty());
        assert_eq!(replica.expire(5_000), vec![key.clone()]);
        assert!(replica.expire(6_000).is_empty());
        assert!(lock(&replica.expiring).is_empty());
    }
}
