//! The single-node event bus. Live agent sockets are indexed two ways: by
//! the `jti` of their token, so a revocation closes them at once, and by
//! (group, username), so the outcome of a confirmation prompt reaches every
//! socket of the agent that asked, whichever way (REST or socket) it started
//! the prompt. Watches are indexed by visitor; only the registry actor
//! touches them, so their lock is never contended.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use actix::Recipient;
use dashmap::DashMap;

use super::watches::Watches;
use super::{AgentEvent, AgentSocketId, EventBus};
use crate::infra::ids::{GroupId, VisitorKey};
use crate::presence::visitor::{EventKind, VisitorEvent, VisitorState};
use crate::store::ConfirmationRecord;

type Sockets = HashMap<AgentSocketId, Recipient<AgentEvent>>;

/// The bus of one node.
#[derive(Default)]
pub struct LocalEventBus {
    by_jti: DashMap<String, Sockets>,
    by_agent: DashMap<(GroupId, String), Sockets>,
    watches: Mutex<Watches>,
}

impl LocalEventBus {
    fn watches(&self) -> MutexGuard<'_, Watches> {
        // The index stays consistent whatever panicked while holding it.
        self.watches.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl EventBus for LocalEventBus {
    fn subscribe(
        &self,
        jti: &str,
        group: GroupId,
        username: &str,
        socket: AgentSocketId,
        events: Recipient<AgentEvent>,
    ) {
        self.by_jti
            .entry(jti.to_owned())
            .or_default()
            .insert(socket, events.clone());
        self.by_agent
            .entry((group, username.to_owned()))
            .or_default()
            .insert(socket, events);
    }

    fn unsubscribe(&self, jti: &str, group: GroupId, username: &str, socket: AgentSocketId) {
        self.by_jti.remove_if_mut(jti, |_, sockets| {
            sockets.remove(&socket);
            sockets.is_empty()
        });
        self.by_agent
            .remove_if_mut(&(group, username.to_owned()), |_, sockets| {
                sockets.remove(&socket);
                sockets.is_empty()
            });
    }

    fn revoke(&self, jti: &str) -> usize {
        self.by_jti
            .remove(jti)
            .map(|(_, sockets)| {
                for events in sockets.values() {
                    events.do_send(AgentEvent::TokenRevoked);
                }
                sockets.len()
            })
            .unwrap_or(0)
    }

    fn revoke_agents(&self, removed: &dyn Fn(GroupId, &str) -> bool) -> usize {
        let mut closed = 0;
        for agent in self.by_agent.iter() {
            let (group, username) = agent.key();
            if removed(*group, username) {
                for events in agent.value().values() {
                    events.do_send(AgentEvent::TokenRevoked);
                }
                closed += agent.value().len();
            }
        }
        closed
    }

    fn confirmation_settled(&self, record: &ConfirmationRecord) {
        let Some(sockets) = self.by_agent.get(&(record.groupid, record.agent.clone())) else {
            return;
        };
        for events in sockets.values() {
            events.do_send(AgentEvent::ConfirmationSettled {
                visitorid: record.visitorid.clone(),
                id: record.id.clone(),
                status: record.status,
            });
        }
    }

    fn watch(
        &self,
        key: VisitorKey,
        socket: AgentSocketId,
        events: Recipient<AgentEvent>,
        current: VisitorState,
    ) {
        let state = AgentEvent::Visitor(VisitorEvent {
            kind: EventKind::State,
            state: current,
        });
        if events.try_send(state).is_ok() {
            self.watches().add(key, socket, events);
        }
    }

    fn unwatch(&self, key: &VisitorKey, socket: AgentSocketId) {
        self.watches().remove(key, socket);
    }

    fn unwatch_all(&self, socket: AgentSocketId) {
        self.watches().remove_all(socket);
    }

    fn visitor_event(&self, key: &VisitorKey, event: VisitorEvent) {
        let mut watches = self.watches();
        for stalled in watches.notify(key, &event) {
            tracing::warn!(
                watcher = stalled,
                "dropping the watches of an agent socket that stopped reading"
            );
            watches.remove_all(stalled);
        }
    }

    fn watch_count(&self) -> usize {
        self.watches().len()
    }
}
