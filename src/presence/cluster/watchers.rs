//! Watch events in cluster mode. A visitor's state is the merge of its
//! portions on every node, so events are derived here, on the watching
//! agent's node, from the merged state: `connected` when it turns online,
//! `disconnected` when it turns offline, `presence` when its data changes.
//! Every change (a local publish, a portion from another node, a node's
//! death, a grace period ending) passes through one lock per node, so a
//! watch's initial `state` and the events after it keep their order, and
//! no older state is ever delivered after a newer one.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use actix::Recipient;

use crate::infra::ids::VisitorKey;
use crate::presence::events::{AgentEvent, AgentSocketId, EventBus};
use crate::presence::visitor::{EventKind, VisitorEvent, VisitorState};

struct Watched {
    last: VisitorState,
    sockets: HashSet<AgentSocketId>,
}

pub(super) struct Watchers {
    bus: Arc<dyn EventBus>,
    state: Mutex<HashMap<VisitorKey, Watched>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Watchers {
    pub(super) fn new(bus: Arc<dyn EventBus>) -> Self {
        Self {
            bus,
            state: Mutex::default(),
        }
    }

    /// Begins a watch with the current merged state.
    pub(super) fn watch(
        &self,
        key: VisitorKey,
        socket: AgentSocketId,
        events: Recipient<AgentEvent>,
        current: impl FnOnce() -> VisitorState,
    ) {
        let mut state = lock(&self.state);
        let current = match state.get(&key) {
            Some(watched) => watched.last.clone(),
            None => current(),
        };
        self.bus.watch(key.clone(), socket, events, current.clone());
        state
            .entry(key)
            .or_insert_with(|| Watched {
                last: current,
                sockets: HashSet::new(),
            })
            .sockets
            .insert(socket);
    }

    pub(super) fn unwatch(&self, key: &VisitorKey, socket: AgentSocketId) {
        let mut state = lock(&self.state);
        self.bus.unwatch(key, socket);
        if let Some(watched) = state.get_mut(key) {
            watched.sockets.remove(&socket);
            if watched.sockets.is_empty() {
                state.remove(key);
            }
        }
    }

    pub(super) fn unwatch_all(&self, socket: AgentSocketId) {
        let mut state = lock(&self.state);
        self.bus.unwatch_all(socket);
        state.retain(|_, watched| {
            watched.sockets.remove(&socket);
            !watched.sockets.is_empty()
        });
    }

    /// Something about `key` changed: tells its watchers what, if anything.
    pub(super) fn changed(&self, key: &VisitorKey, current: impl FnOnce() -> VisitorState) {
        let mut state = lock(&self.state);
        let Some(watched) = state.get_mut(key) else {
            return;
        };
        let now = current();
        let kind = match (watched.last.online, now.online) {
            (false, true) => Some(EventKind::Connected),
            (true, false) => Some(EventKind::Disconnected),
            (true, true) if watched.last.data != now.data => Some(EventKind::Presence),
            _ => None,
        };
        watched.last = now.clone();
        if let Some(kind) = kind {
            self.bus
                .visitor_event(key, VisitorEvent { kind, state: now });
        }
        // The bus drops the watches of sockets that stopped reading.
        if self.bus.watch_count() == 0 {
            state.clear();
        }
    }
}
