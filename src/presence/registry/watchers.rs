//! Who watches which visitor: a two-way index so that events fan out by
//! visitor and an agent socket that goes away is removed in one step.

use std::collections::{HashMap, HashSet};

use actix::Recipient;

use super::VisitorEvent;
use crate::infra::ids::VisitorKey;

/// Identifies one agent socket among watchers.
pub type WatcherId = u64;

#[derive(Default)]
pub struct Watchers {
    by_visitor: HashMap<VisitorKey, HashMap<WatcherId, Recipient<VisitorEvent>>>,
    by_watcher: HashMap<WatcherId, HashSet<VisitorKey>>,
}

impl Watchers {
    pub fn add(&mut self, key: VisitorKey, id: WatcherId, events: Recipient<VisitorEvent>) {
        self.by_watcher.entry(id).or_default().insert(key.clone());
        self.by_visitor.entry(key).or_default().insert(id, events);
    }

    pub fn remove(&mut self, key: &VisitorKey, id: WatcherId) {
        if let Some(set) = self.by_watcher.get_mut(&id) {
            set.remove(key);
            if set.is_empty() {
                self.by_watcher.remove(&id);
            }
        }
        self.remove_from_visitor(key, id);
    }

    pub fn remove_all(&mut self, id: WatcherId) {
        for key in self.by_watcher.remove(&id).unwrap_or_default() {
            self.remove_from_visitor(&key, id);
        }
    }

    fn remove_from_visitor(&mut self, key: &VisitorKey, id: WatcherId) {
        if let Some(map) = self.by_visitor.get_mut(key) {
            map.remove(&id);
            if map.is_empty() {
                self.by_visitor.remove(key);
            }
        }
    }

    /// Sends `event` to everyone watching `key`. Returns the watchers whose
    /// mailbox is full (an agent socket that stopped reading) or closed:
    /// they should be dropped, not buffered for without limit.
    pub fn notify(&self, key: &VisitorKey, event: &VisitorEvent) -> Vec<WatcherId> {
        let mut stalled = Vec::new();
        if let Some(map) = self.by_visitor.get(key) {
            for (id, recipient) in map {
                if recipient.try_send(event.clone()).is_err() {
                    stalled.push(*id);
                }
            }
        }
        stalled
    }

    /// Number of (watcher, visitor) pairs.
    pub fn len(&self) -> usize {
        self.by_watcher.values().map(HashSet::len).sum()
    }
}
