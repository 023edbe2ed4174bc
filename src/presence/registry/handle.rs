//! The registry's interface to the rest of the server. Handlers and session
//! actors hold a [`RegistryHandle`], never the registry's state: it routes a
//! command straight to a live visitor connection found in the published
//! [`Directory`], and hands everything else (visitors between sockets,
//! stale snapshots, offline visitors) to the registry actor, which decides.
//! A multi-node directory slots in here without touching the sessions.

use std::sync::Arc;

use actix::dev::SendError;
use actix::{Actor, Addr};

use super::directory::Directory;
use super::{Registry, Route, VisitorCommand, VisitorState};
use crate::infra::clock::SharedClock;
use crate::infra::config::PresenceConfig;
use crate::infra::error::DomainError;
use crate::infra::ids::{GroupId, VisitorKey};
use crate::presence::events::EventBus;

/// A cheap, cloneable handle on the registry.
#[derive(Clone)]
pub struct RegistryHandle {
    addr: Addr<Registry>,
    directory: Arc<Directory>,
    max_pending_invokes: usize,
}

impl RegistryHandle {
    /// Starts the registry actor on the current arbiter; it tells watchers
    /// of changes through `events`.
    pub fn start(
        config: Arc<PresenceConfig>,
        clock: SharedClock,
        events: Arc<dyn EventBus>,
    ) -> Self {
        let directory = Arc::new(Directory::default());
        let max_pending_invokes = config.max_pending_invokes;
        let addr = Registry::new(config, clock, directory.clone(), events).start();
        Self {
            addr,
            directory,
            max_pending_invokes,
        }
    }

    /// The actor, for the messages sessions send it (connect, watch, ...).
    pub fn addr(&self) -> &Addr<Registry> {
        &self.addr
    }

    /// The visitor's lookup document.
    pub fn lookup(&self, key: &VisitorKey) -> VisitorState {
        self.directory
            .get(key)
            .map_or_else(|| VisitorState::offline(key), |p| p.state(key))
    }

    /// A page of the group's present visitors (see [`Directory::page`]).
    pub fn page(
        &self,
        group: GroupId,
        after: Option<&str>,
        limit: usize,
        keep: impl FnMut(&VisitorState) -> bool,
    ) -> (Vec<VisitorState>, bool) {
        self.directory.page(group, after, limit, keep)
    }

    /// Sends a command to every open connection of the visitor (each tab
    /// shows a confirmation prompt). A visitor between sockets gets nothing
    /// here; its next socket asks for what it should show.
    pub fn broadcast(&self, key: &VisitorKey, command: impl Fn() -> VisitorCommand) {
        if let Some(published) = self.directory.get(key) {
            for connection in published.open_connections() {
                // Rare and small, so past the mailbox bound rather than lost.
                connection.commands.do_send(command());
            }
        }
    }

    /// Routes a command to the visitor's most recently active connection.
    /// A command restricted to some connections (confirmation tickets)
    /// goes to the most recently active of those; if the visitor has open
    /// connections but none of them, it fails `confirmation_required`.
    pub fn route(&self, key: VisitorKey, mut command: VisitorCommand) {
        let published = self.directory.get(&key);
        // The snapshot's own sender, not a clone: a sender parks once the
        // session's mailbox is full and refuses until the session reads,
        // while a fresh clone would always get one more message in.
        let target = published
            .as_deref()
            .and_then(|p| p.target_where(|id| command.accepts(id)));
        if target.is_none() && published.as_ref().is_some_and(|p| p.target().is_some()) {
            return command.fail(DomainError::ConfirmationRequired);
        }
        if let Some(target) = target {
            match target.commands.try_send(command) {
                Ok(()) => return,
                Err(SendError::Full(back)) => {
                    return back.fail(DomainError::TooManyPending(self.max_pending_invokes))
                }
                // The session stopped since the snapshot: let the registry,
                // which will hear of it, decide.
                Err(SendError::Closed(back)) => command = back,
            }
        }
        self.addr.do_send(Route { key, command });
    }
}
