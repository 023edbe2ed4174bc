//! A portion as the replica stores it. Every node holds one for each
//! visitor of every other node, so its size is multiplied by the visitors
//! and by the nodes: the connections and the page data are kept as one
//! JSON text (a `serde_json::Map` alone takes a 600-byte B-tree node,
//! whatever it holds), node ids are shared, and only what the replica
//! decides on (node, `seq`, liveness, generation) stays unpacked. Readers
//! get an ordinary [`Portion`] back.

use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::presence::registry::{portion_is_live, Portion, PortionConnection};

/// One shared copy of each node id.
#[derive(Default)]
pub(super) struct NodeNames(Mutex<Vec<Arc<str>>>);

impl NodeNames {
    pub(super) fn intern(&self, node: &str) -> Arc<str> {
        let mut names = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(name) = names.iter().find(|n| &***n == node) {
            return name.clone();
        }
        let name: Arc<str> = Arc::from(node);
        names.push(name.clone());
        name
    }

    /// Forgets ids no portion uses any more (node ids are fresh at every
    /// start, so they would otherwise pile up).
    pub(super) fn purge(&self) {
        let mut names = self.0.lock().unwrap_or_else(|p| p.into_inner());
        names.retain(|n| Arc::strong_count(n) > 1);
    }
}

pub(super) struct StoredPortion {
    node: Arc<str>,
    seq: u64,
    /// The re-read (or update) that last vouched for it.
    pub(super) generation: u64,
    connected_at_ms: u64,
    last_active_ms: u64,
    grace_until_ms: Option<u64>,
    open: bool,
    /// `[connections, data]` as JSON.
    body: Box<str>,
}

fn encode(connections: &[PortionConnection], data: &Value) -> Box<str> {
    // Neither can fail to serialize: plain structs and a JSON value.
    serde_json::to_string(&(connections, data))
        .unwrap_or_default()
        .into_boxed_str()
}

impl StoredPortion {
    pub(super) fn new(portion: &Portion, node: Arc<str>, generation: u64) -> Self {
        Self {
            node,
            seq: portion.seq,
            generation,
            connected_at_ms: portion.connected_at_ms,
            last_active_ms: portion.last_active_ms,
            grace_until_ms: portion.grace_until_ms,
            open: !portion.connections.is_empty(),
            body: encode(&portion.connections, &portion.data),
        }
    }

    pub(super) fn node(&self) -> &str {
        &self.node
    }

    pub(super) fn seq(&self) -> u64 {
        self.seq
    }

    pub(super) fn is_live(&self, now_ms: u64) -> bool {
        portion_is_live(self.open, self.grace_until_ms, now_ms)
    }

    /// Whether it will stop counting by itself: no sockets, a grace end.
    pub(super) fn can_expire(&self) -> bool {
        !self.open && self.grace_until_ms.is_some()
    }

    /// Whether both store the same portion.
    pub(super) fn same_as(&self, other: &Self) -> bool {
        self.node == other.node
            && self.seq == other.seq
            && self.connected_at_ms == other.connected_at_ms
            && self.last_active_ms == other.last_active_ms
            && self.grace_until_ms == other.grace_until_ms
            && self.body == other.body
    }

    pub(super) fn portion(&self) -> Portion {
        let (connections, data): (Vec<PortionConnection>, Value) =
            serde_json::from_str(&self.body).unwrap_or_default();
        Portion {
            node: self.node.to_string(),
            seq: self.seq,
            connections,
            data,
            connected_at_ms: self.connected_at_ms,
            last_active_ms: self.last_active_ms,
            grace_until_ms: self.grace_until_ms,
        }
    }

    /// Its node went away: no sockets any more, in grace until
    /// `grace_until_ms`. False if it had none already.
    pub(super) fn close_connections(&mut self, grace_until_ms: u64) -> bool {
        if !self.open {
            return false;
        }
        let mut portion = self.portion();
        portion.connections.clear();
        self.body = encode(&portion.connections, &portion.data);
        self.open = false;
        self.grace_until_ms = Some(grace_until_ms);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_stored_comes_back_whole() {
        let names = NodeNames::default();
        let portion = Portion {
            node: "n-1".into(),
            seq: 7,
            connections: vec![PortionConnection {
                id: "c-1".into(),
                identity: Some(serde_json::json!({"sub": "42"})),
            }],
            data: serde_json::json!({"url": "https://shop.example/", "n": 1.5}),
            connected_at_ms: 3,
            last_active_ms: 5,
            grace_until_ms: Some(9),
        };
        let stored = StoredPortion::new(&portion, names.intern("n-1"), 1);
        assert_eq!(stored.portion(), portion);
        let again = StoredPortion::new(&portion, names.intern("n-1"), 2);
        assert!(stored.same_as(&again), "the generation is not content");
        let mut other = portion.clone();
        other.data["n"] = serde_json::json!(2);
        assert!(!stored.same_as(&StoredPortion::new(&other, names.intern("n-1"), 1)));
    }

    #[test]
    fn node_ids_are_shared_and_forgotten_when_unused() {
        let names = NodeNames::default();
        let a = names.intern("n-1");
        let b = names.intern("n-1");
        assert!(Arc::ptr_eq(&a, &b));
        drop((a, b));
        names.purge();
        assert!(names.0.lock().expect("lock").is_empty());
    }
}
