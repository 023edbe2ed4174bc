//! The published routing table. The registry actor is its only writer: after
//! every change to a visitor it publishes a fresh snapshot here. Handlers and
//! sessions read it without a mailbox hop or a global lock (a [`DashMap`]
//! shards its locks and holds each only for a pointer copy), so lookups and
//! invokes to live visitors never queue behind the registry.
//!
//! Snapshots share each connection's `open` flag with its session, so a
//! socket that is closing stops being a routing target, and stops counting,
//! the moment its session lets go, before the registry has caught up.

use std::sync::{Arc, OnceLock};

use dashmap::DashMap;
use serde_json::Value;

use super::entry::{LiveConnection, VisitorEntry};
use super::VisitorState;
use crate::infra::ids::{GroupId, VisitorKey};

/// What the directory knows of one present visitor.
pub struct Published {
    /// Connections, most recently active last (closing ones included; they
    /// are skipped by their flag).
    connections: Vec<LiveConnection>,
    data: Value,
    connected_at_ms: u64,
    last_active_ms: u64,
    /// Unix ms the grace period ends, while the visitor has no socket.
    grace_until_ms: Option<u64>,
}

impl Published {
    /// The connection commands should go to: the most recently active open
    /// one.
    pub fn target(&self) -> Option<&LiveConnection> {
        self.connections.iter().rev().find(|c| c.is_open())
    }

    /// The most recently active open connection that `accepts`.
    pub fn target_where(&self, accepts: impl Fn(&str) -> bool) -> Option<&LiveConnection> {
        self.connections
            .iter()
            .rev()
            .find(|c| c.is_open() && accepts(&c.id))
    }

    /// Every open connection (each of the visitor's tabs).
    pub fn open_connections(&self) -> impl Iterator<Item = &LiveConnection> {
        self.connections.iter().filter(|c| c.is_open())
    }

    /// The lookup document. A present visitor with no open connection is in
    /// its reconnect grace period: still online.
    ///
    /// `verified` and `identity` describe the connection commands would go
    /// to: the browser that would run an invoke is the one that matters.
    pub fn state(&self, key: &VisitorKey) -> VisitorState {
        let identity = self.target().and_then(|c| c.identity.as_deref().cloned());
        VisitorState {
            groupid: key.group,
            visitorid: key.visitor.as_str().to_owned(),
            online: true,
            connections: self.connections.iter().filter(|c| c.is_open()).count(),
            data: self.data.clone(),
            connected_at: Some(self.connected_at_ms),
            verified: identity.is_some(),
            identity,
        }
    }
}

impl Published {
    pub(super) fn from_entry(entry: &VisitorEntry, grace_ms: u64) -> Self {
        Self {
            connections: entry.connections.clone(),
            data: entry.data.to_value(),
            connected_at_ms: entry.connected_at_ms,
            last_active_ms: entry.last_active_ms,
            grace_until_ms: entry
                .grace
                .as_ref()
                .filter(|_| entry.connections.is_empty())
                .map(|g| g.started_ms + grace_ms),
        }
    }

    /// This node's share of the visitor, as the cluster shares it.
    pub fn portion(&self, node: &str, seq: u64) -> super::Portion {
        super::Portion {
            node: node.to_owned(),
            seq,
            connections: self
                .open_connections()
                .map(|c| super::PortionConnection {
                    id: c.id.clone(),
                    identity: c.identity.as_deref().cloned(),
                })
                .collect(),
            data: self.data.clone(),
            connected_at_ms: self.connected_at_ms,
            last_active_ms: self.last_active_ms,
            grace_until_ms: self.grace_until_ms,
        }
    }

    /// The open connection with this id.
    pub fn connection(&self, id: &str) -> Option<&LiveConnection> {
        self.open_connections().find(|c| c.id == id)
    }
}

/// Told of a key that changed.
pub type ChangeHook = Arc<dyn Fn(&VisitorKey) + Send + Sync>;
/// Takes a command the registry would park.
pub type ParkHook = Arc<dyn Fn(VisitorKey, super::VisitorCommand) + Send + Sync>;

/// A visitor's presence on this node began or ended.
#[derive(Debug, Clone)]
pub enum Transition {
    /// Its first connection here opened: its lookup document now.
    Online(VisitorState),
    /// Its grace period here ended with no connection: its lookup document
    /// just before.
    Offline(VisitorState),
}

/// Hears a visitor's transitions on this node (the webhooks).
pub trait TransitionListener: Send + Sync {
    /// Whether it wants this visitor's online (`true`) or offline
    /// transitions at all; the registry builds nothing when it does not.
    fn wants(&self, key: &VisitorKey, online: bool) -> bool;
    /// A transition it wants; must not block.
    fn transition(&self, key: &VisitorKey, transition: Transition);
}

/// Hooks into the local registry: cluster mode's (`changed`, `park`, unset
/// on one node) and the webhooks' (`transition`).
#[derive(Default)]
pub struct LocalHooks {
    /// Told, in the registry actor, when a visitor's first connection on
    /// this node opens and when its grace period here ends offline; it must
    /// not block.
    pub transition: OnceLock<Arc<dyn TransitionListener>>,
    /// Told after every publish, with the key that changed.
    pub changed: OnceLock<ChangeHook>,
    /// Takes the commands the registry would park (no open connection
    /// here): the visitor's next socket may open on any node.
    pub park: OnceLock<ParkHook>,
}

/// Visitor key → published snapshot.
#[derive(Default)]
pub struct Directory {
    visitors: DashMap<VisitorKey, Arc<Published>>,
    pub(super) hooks: LocalHooks,
    /// The registry actor's mailbox: the handle counts sends, the actor
    /// counts what it handles.
    pub(super) mailbox: super::mailbox::MailboxDepth,
}

impl Directory {
    /// Publishes `entry` for `key`, or withdraws the key when `None`.
    pub(super) fn publish(&self, key: &VisitorKey, entry: Option<&VisitorEntry>, grace_ms: u64) {
        match entry {
            Some(entry) => {
                self.visitors.insert(
                    key.clone(),
                    Arc::new(Published::from_entry(entry, grace_ms)),
                );
            }
            None => {
                self.visitors.remove(key);
            }
        }
        if let Some(changed) = self.hooks.changed.get() {
            changed(key);
        }
    }

    /// Every present visitor's key.
    pub fn keys(&self) -> Vec<VisitorKey> {
        self.visitors.iter().map(|e| e.key().clone()).collect()
    }

    /// The snapshot of a present visitor.
    pub fn get(&self, key: &VisitorKey) -> Option<Arc<Published>> {
        self.visitors.get(key).map(|entry| entry.value().clone())
    }

    /// Present visitors of `group` with ids after `after`, in id order, that
    /// `keep` accepts: at most `limit`, and whether more follow.
    pub fn page(
        &self,
        group: GroupId,
        after: Option<&str>,
        limit: usize,
        mut keep: impl FnMut(&VisitorState) -> bool,
    ) -> (Vec<VisitorState>, bool) {
        let mut candidates: Vec<(VisitorKey, Arc<Published>)> = self
            .visitors
            .iter()
            .filter(|e| {
                e.key().group == group && after.is_none_or(|a| e.key().visitor.as_str() > a)
            })
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect();
        candidates.sort_unstable_by(|a, b| a.0.visitor.cmp(&b.0.visitor));
        let mut page = Vec::new();
        for (key, published) in candidates {
            let state = published.state(&key);
            if keep(&state) {
                if page.len() == limit {
                    return (page, true);
                }
                page.push(state);
            }
        }
        (page, false)
    }
}
