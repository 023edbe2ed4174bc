//! The registry's single-node [`PresenceDirectory`]. Handlers and session
//! actors hold it (as `Arc<dyn PresenceDirectory>`), never the registry's
//! state: it routes a command straight to a live visitor connection found
//! in the published [`Directory`], and hands everything else (visitors
//! between sockets, stale snapshots, offline visitors) to the registry
//! actor, which decides. Every change goes to the actor as one of its
//! private messages.

use std::sync::Arc;

use actix::dev::SendError;
use actix::{Actor, Addr, Recipient};
use futures_core::future::LocalBoxFuture;

use super::directory::Directory;
use super::messages::{
    Connect, Disconnect, PresenceUpdate, Repark, Route, Stats, Unwatch, UnwatchAll, Watch,
};
use super::{LiveConnection, PresenceDirectory, Registry, RegistryStats, VisitorCommand};
use crate::infra::clock::SharedClock;
use crate::infra::config::PresenceConfig;
use crate::infra::error::DomainError;
use crate::infra::ids::{GroupId, VisitorKey};
use crate::presence::data::PresenceData;
use crate::presence::events::{AgentEvent, AgentSocketId, EventBus};
use crate::presence::visitor::VisitorState;

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
}

/// The registry actor has stopped (it never does while the server runs).
fn unavailable() -> DomainError {
    DomainError::Internal("the registry is unavailable".to_owned())
}

impl PresenceDirectory for RegistryHandle {
    fn connect(
        &self,
        key: VisitorKey,
        connection: LiveConnection,
        data: PresenceData,
    ) -> LocalBoxFuture<'static, Result<(), DomainError>> {
        self.directory.mailbox.queued();
        let reply = self.addr.send(Connect {
            key,
            connection,
            data,
        });
        Box::pin(async move {
            match reply.await {
                Ok(result) => result,
                Err(_) => Err(unavailable()),
            }
        })
    }

    fn disconnect(&self, key: VisitorKey, connection_id: &str, held: Option<PresenceData>) {
        // Through the same mailbox, so the update goes ahead.
        if let Some(data) = held {
            self.directory.mailbox.queued();
            self.addr.do_send(PresenceUpdate {
                key: key.clone(),
                connection_id: connection_id.to_owned(),
                data,
            });
        }
        self.directory.mailbox.queued();
        self.addr.do_send(Disconnect {
            key,
            connection_id: connection_id.to_owned(),
        });
    }

    fn repark(&self, key: VisitorKey, commands: Vec<VisitorCommand>) {
        if !commands.is_empty() {
            // Through the actor, behind the socket's Disconnect.
            self.directory.mailbox.queued();
            self.addr.do_send(Repark { key, commands });
        }
    }

    fn presence_update(
        &self,
        key: VisitorKey,
        connection_id: &str,
        data: PresenceData,
    ) -> LocalBoxFuture<'static, Result<(), DomainError>> {
        self.directory.mailbox.queued();
        let reply = self.addr.send(PresenceUpdate {
            key,
            connection_id: connection_id.to_owned(),
            data,
        });
        Box::pin(async move {
            match reply.await {
                Ok(result) => result,
                Err(_) => Err(unavailable()),
            }
        })
    }

    fn watch(&self, key: VisitorKey, socket: AgentSocketId, events: Recipient<AgentEvent>) {
        self.directory.mailbox.queued();
        self.addr.do_send(Watch {
            key,
            watcher: socket,
            events,
        });
    }

    fn unwatch(&self, key: VisitorKey, socket: AgentSocketId) {
        self.directory.mailbox.queued();
        self.addr.do_send(Unwatch {
            key,
            watcher: socket,
        });
    }

    fn unwatch_all(&self, socket: AgentSocketId) {
        self.directory.mailbox.queued();
        self.addr.do_send(UnwatchAll { watcher: socket });
    }

    fn stats(&self) -> LocalBoxFuture<'static, Result<RegistryStats, DomainError>> {
        self.directory.mailbox.queued();
        let reply = self.addr.send(Stats);
        Box::pin(async move {
            reply
                .await
                .map_err(|e| DomainError::Internal(format!("registry stats: {e}")))
        })
    }

    fn lookup(&self, key: &VisitorKey) -> VisitorState {
        self.directory
            .get(key)
            .map_or_else(|| VisitorState::offline(key), |p| p.state(key))
    }

    fn page(
        &self,
        group: GroupId,
        after: Option<&str>,
        limit: usize,
        keep: &mut dyn FnMut(&VisitorState) -> bool,
    ) -> (Vec<VisitorState>, bool) {
        self.directory.page(group, after, limit, keep)
    }

    fn route(&self, key: VisitorKey, mut command: VisitorCommand) {
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
        self.directory.mailbox.queued();
        self.addr.do_send(Route { key, command });
    }

    fn broadcast(&self, key: &VisitorKey, command: &dyn Fn() -> VisitorCommand) {
        if let Some(published) = self.directory.get(key) {
            for connection in published.open_connections() {
                // Rare and small, so past the mailbox bound rather than lost.
                connection.commands.do_send(command());
            }
        }
    }
}

/// Why a command pinned to one connection was not delivered (it is
/// dropped: its waiter is answered by whoever chose the connection).
pub enum Undelivered {
    /// The connection's mailbox is full.
    Busy,
    /// The connection is not open here (any more).
    Gone,
}

/// What cluster mode reads of, and asks of, the local registry.
impl RegistryHandle {
    /// Cluster mode's hooks: told of every change, handed the commands
    /// the registry would park.
    pub fn hooks(&self) -> &super::LocalHooks {
        &self.directory.hooks
    }

    /// This node's share of the visitor, if it is present here.
    pub fn portion(&self, key: &VisitorKey, node: &str, seq: u64) -> Option<super::Portion> {
        self.directory.get(key).map(|p| p.portion(node, seq))
    }

    /// Every visitor present on this node.
    pub fn keys(&self) -> Vec<VisitorKey> {
        self.directory.keys()
    }

    /// Hands `command` to this node's open connection `connection_id` of
    /// the visitor (chosen by the node that routed it).
    pub fn deliver(
        &self,
        key: &VisitorKey,
        connection_id: &str,
        command: VisitorCommand,
    ) -> Result<(), Undelivered> {
        let published = self.directory.get(key);
        let Some(target) = published
            .as_deref()
            .and_then(|p| p.connection(connection_id))
        else {
            return Err(Undelivered::Gone);
        };
        match target.commands.try_send(command) {
            Ok(()) => Ok(()),
            Err(SendError::Full(_)) => Err(Undelivered::Busy),
            Err(SendError::Closed(_)) => Err(Undelivered::Gone),
        }
    }

    /// Hands `command` to every open connection of the visitor here.
    pub fn deliver_to_all(&self, key: &VisitorKey, command: &dyn Fn() -> VisitorCommand) {
        PresenceDirectory::broadcast(self, key, command);
    }
}
