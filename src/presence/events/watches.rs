//! Who watches which visitor: a two-way index so that events fan out by
//! visitor and an agent socket that goes away is removed in one step.

use std::collections::{HashMap, HashSet};

use actix::Recipient;

use super::{AgentEvent, AgentSocketId};
use crate::infra::ids::VisitorKey;
use crate::presence::visitor::VisitorEvent;

#[derive(Default)]
pub struct Watches {
    by_visitor: HashMap<VisitorKey, HashMap<AgentSocketId, Recipient<AgentEvent>>>,
    by_socket: HashMap<AgentSocketId, HashSet<VisitorKey>>,
}

impl Watches {
    pub fn add(&mut self, key: VisitorKey, id: AgentSocketId, events: Recipient<AgentEvent>) {
        self.by_socket.entry(id).or_default().insert(key.clone());
        self.by_visitor.entry(key).or_default().insert(id, events);
    }

    pub fn remove(&mut self, key: &VisitorKey, id: AgentSocketId) {
        if let Some(set) = self.by_socket.get_mut(&id) {
            set.remove(key);
            if set.is_empty() {
                self.by_socket.remove(&id);
            }
        }
        self.remove_from_visitor(key, id);
    }

    pub fn remove_all(&mut self, id: AgentSocketId) {
        for key in self.by_socket.remove(&id).unwrap_or_default() {
            self.remove_from_visitor(&key, id);
        }
    }

    fn remove_from_visitor(&mut self, key: &VisitorKey, id: AgentSocketId) {
        if let Some(map) = self.by_visitor.get_mut(key) {
            map.remove(&id);
            if map.is_empty() {
                self.by_visitor.remove(key);
            }
        }
    }

    /// Sends `event` to everyone watching `key`. Returns the sockets whose
    /// mailbox is full (an agent socket that stopped reading) or closed:
    /// they should be dropped, not buffered for without limit.
    pub fn notify(&self, key: &VisitorKey, event: &VisitorEvent) -> Vec<AgentSocketId> {
        let mut stalled = Vec::new();
        if let Some(map) = self.by_visitor.get(key) {
            for (id, recipient) in map {
                if recipient
                    .try_send(AgentEvent::Visitor(event.clone()))
                    .is_err()
                {
                    stalled.push(*id);
                }
            }
        }
        stalled
    }

    /// Number of (socket, visitor) pairs.
    pub fn len(&self) -> usize {
        self.by_socket.values().map(HashSet::len).sum()
    }
}
