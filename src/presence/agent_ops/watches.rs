//! An agent socket's watch list: which visitors of its group it hears
//! about, capped at `presence.max_watches_per_agent`. The verbs watch and
//! unwatch go through the same authorization as every other verb.

use std::collections::HashSet;

use actix::Recipient;

use super::{AgentOps, Caller};
use crate::infra::error::DomainError;
use crate::infra::ids::{GroupId, VisitorId};
use crate::presence::registry::{Unwatch, UnwatchAll, VisitorEvent, Watch, WatcherId};

/// The visitors one agent socket watches.
pub struct Watches {
    watcher: WatcherId,
    watching: HashSet<VisitorId>,
}

impl Watches {
    pub fn new(watcher: WatcherId) -> Self {
        Self {
            watcher,
            watching: HashSet::new(),
        }
    }

    /// This socket's id among watchers.
    pub fn watcher(&self) -> WatcherId {
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
        events: Recipient<VisitorEvent>,
    ) -> Result<(), DomainError> {
        let (_, key) = ops.admit_visitor(caller, group, visitorid)?;
        let limit = ops.presence().max_watches_per_agent;
        if !self.watching.contains(&key.visitor) && self.watching.len() >= limit {
            return Err(DomainError::TooManyWatches(limit));
        }
        self.watching.insert(key.visitor.clone());
        ops.registry.addr().do_send(Watch {
            key,
            watcher: self.watcher,
            events,
        });
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
            ops.registry.addr().do_send(Unwatch {
                key,
                watcher: self.watcher,
            });
        }
        Ok(())
    }

    /// Drops every watch (the socket is closing).
    pub fn clear(&mut self, ops: &AgentOps) {
        if !self.watching.is_empty() {
            ops.registry.addr().do_send(UnwatchAll {
                watcher: self.watcher,
            });
            self.watching.clear();
        }
    }
}
