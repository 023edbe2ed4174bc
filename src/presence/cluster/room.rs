//! Commands waiting for a visitor who is between sockets on every node
//! (its grace period runs on some node). Its next socket may open on any
//! node, so in cluster mode commands wait here, on the node that routed
//! them, instead of in the registry of the node whose socket closed; each
//! change of the visitor routes them again. At most
//! `max_pending_invokes` wait per visitor on each routing node (so a
//! cluster of N nodes may hold N times that for a visitor between pages;
//! each one is still bounded by its waiter's deadline); a command whose
//! waiter gave up is dropped at the next change or sweep.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::infra::error::DomainError;
use crate::infra::ids::VisitorKey;
use crate::presence::registry::VisitorCommand;

pub(super) struct Room {
    limit: usize,
    parked: Mutex<HashMap<VisitorKey, Vec<VisitorCommand>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Room {
    pub(super) fn new(limit: usize) -> Self {
        Self {
            limit,
            parked: Mutex::default(),
        }
    }

    /// Parks `command` for `key`'s next socket.
    pub(super) fn park(&self, key: VisitorKey, command: VisitorCommand) {
        let mut parked = lock(&self.parked);
        let waiting = parked.entry(key).or_default();
        waiting.retain(|c| !c.is_abandoned());
        if waiting.len() >= self.limit {
            drop(parked);
            command.fail(DomainError::TooManyPending(self.limit));
            return;
        }
        waiting.push(command);
    }

    /// Takes what waits for `key`.
    pub(super) fn take(&self, key: &VisitorKey) -> Vec<VisitorCommand> {
        lock(&self.parked).remove(key).unwrap_or_default()
    }

    /// Whether anything waits for `key`.
    pub(super) fn holds(&self, key: &VisitorKey) -> bool {
        lock(&self.parked).contains_key(key)
    }

    /// Drops commands whose waiters gave up.
    pub(super) fn sweep(&self) {
        lock(&self.parked).retain(|_, waiting| {
            waiting.retain(|c| !c.is_abandoned());
            !waiting.is_empty()
        });
    }
}
