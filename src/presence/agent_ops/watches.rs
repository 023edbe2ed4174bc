//! An agent socket's watch list: which visitors of its group it hears
//! about, capped at `presence.max_watches_per_agent`. The verbs watch and
//! unwatch go through the same authorization as every other verb.

use std::collections::HashSet;

use actix::Recipient;

use super::{AgentOps, Caller};
use crate::infra::error::DomainError;
use crate::infra::ids::{GroupId, VisitorId};
use crate::presence::events::{AgentEvent, AgentSocketId};

/// The visitors one agent socket watches.
pub struct Watches {
    watcher: AgentSocketId,
    watching: HashSet<VisitorId>,
}

impl Watches {
    pub fn new(watcher: AgentSocketId) -> Self {
        Self {
            watcher,
            watching: HashSet::new(),
        }
    }

    /// This socket's id among watchers.
    pub fn watcher(&self) -> AgentSocketId {
        self.watcher
    }

    /// Whether events about `visitor` are still wanted (events queued for a
    /// visitor just unwatched are dropped).
    pub fn contains(&self, visitor: &str) -> bool {
        self.watching.contains(visitor)
    }

    /// Starts watching; events go to `events`. Watching a visitor again is
    /// a no-op beyond a fresh state event.
    pub fn watch(
        &mut self,
        ops: &AgentOps,
        caller: &Caller,
        group: GroupId,
        visitorid: &str,
        events: Recipient<AgentEvent>,
    ) -> Result<(), DomainError> {
        let (_, key) = ops.admit_visitor(caller, group, visitorid)?;
        let limit = ops.presence().max_watches_per_agent;
        if !self.watching.contains(&key.visitor) && self.watching.len() >= limit {
            return Err(DomainError::TooManyWatches(limit));
        }
        self.watching.insert(key.visitor.clone());
        ops.registry.watch(key, self.watcher, events);
        Ok(())
    }

    /// Stops watching. Unwatching a visitor not watched is a no-op, like a
    /// repeated DELETE.
    pub fn unwatch(
        &mut self,
        ops: &AgentOps,
        caller: &Caller,
        group: GroupId,
        visitorid: &str,
    ) -> Result<(), DomainError> {
        let (_, key) = ops.admit_visitor(caller, group, visitorid)?;
        if self.watching.remove(&key.visitor) {
            ops.registry.unwatch(key, self.watcher);
        }
        Ok(())
    }

    /// Drops every watch (the socket is closing).
    pub fn clear(&mut self, ops: &AgentOps) {
        if !self.watching.is_empty() {
            ops.registry.unwatch_all(self.watcher);
            self.watching.clear();
        }
    }
}
