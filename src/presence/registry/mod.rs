//! The registry actor: the one place that knows which visitor sockets are
//! live, routes agent commands to them by (group, visitor), and tells
//! watching agents when a visitor comes, goes or changes page.
//!
//! Its interface is closed: the rest of the server holds an
//! `Arc<dyn PresenceDirectory>` ([`PresenceDirectory`], implemented on one
//! node by [`RegistryHandle`]), and the actor's messages are private to this
//! module (`messages.rs`). The actor is the only writer of the published
//! [`directory::Directory`] that the handle reads to route commands to live
//! visitors without a mailbox hop. Watch events go out through the
//! [`EventBus`]; the actor is the one place on a node that changes watches
//! and publishes events, so a watch's initial state and the events after it
//! keep their order.
//!
//! What is routed (invokes, signals, prompts, and their reply channels) is
//! defined here too, in `commands.rs`.
//!
//! Page navigation closes a socket and opens another a moment later. When a
//! visitor's last socket closes, the visitor stays present for
//! `reconnect_grace_ms`: commands for it are parked and delivered to the new
//! socket, and watchers hear `disconnected` only if the grace period ends
//! with no reconnect.

mod commands;
mod directory;
mod entry;
mod handle;
mod mailbox;
mod messages;
mod portion;
mod presence_directory;

use std::collections::HashMap;
use std::sync::Arc;

use actix::{Actor, AsyncContext, Context, Handler, MessageResult};
use serde::Serialize;

use crate::infra::clock::SharedClock;
use crate::infra::config::PresenceConfig;
use crate::infra::error::DomainError;
use crate::infra::ids::VisitorKey;
use crate::presence::events::EventBus;
use crate::presence::visitor::{EventKind, VisitorEvent};

pub use crate::presence::visitor::VisitorState;
pub use commands::{
    ConnectionFilter, InvokeOutcome, InvokeRequest, Prompt, SignalRequest, VisitorCommand,
};
use directory::Directory;
pub use directory::{LocalHooks, Transition, TransitionListener};
pub use entry::LiveConnection;
use entry::{Grace, Routed, VisitorEntry};
pub use handle::{RegistryHandle, Undelivered};
use messages::{
    Connect, Disconnect, PresenceUpdate, Repark, Route, Stats, Unwatch, UnwatchAll, Watch,
};
pub use portion::{merged_state, most_recent_first, portion_is_live, Portion, PortionConnection};
pub use presence_directory::PresenceDirectory;

/// Mailbox size; `send` callers wait (back-pressure) beyond it.
const MAILBOX_CAPACITY: usize = 65_536;

/// The routing registry.
struct Registry {
    config: Arc<PresenceConfig>,
    clock: SharedClock,
    visitors: HashMap<VisitorKey, VisitorEntry>,
    /// Where watch events go; it also keeps the watches.
    events: Arc<dyn EventBus>,
    next_generation: u64,
    directory: Arc<Directory>,
    /// Presence updates handled since start.
    presence_updates: u64,
}

impl Registry {
    fn new(
        config: Arc<PresenceConfig>,
        clock: SharedClock,
        directory: Arc<Directory>,
        events: Arc<dyn EventBus>,
    ) -> Self {
        Self {
            config,
            clock,
            visitors: HashMap::new(),
            events,
            next_generation: 0,
            directory,
            presence_updates: 0,
        }
    }

    fn lookup(&self, key: &VisitorKey) -> VisitorState {
        match self.visitors.get(key) {
            Some(entry) => {
                directory::Published::from_entry(entry, self.config.reconnect_grace_ms).state(key)
            }
            None => VisitorState::offline(key),
        }
    }

    /// Publishes the visitor's current entry (or its absence). Called after
    /// every change and before any event about it, so an agent that saw an
    /// event finds the directory at least as new.
    fn publish(&self, key: &VisitorKey) {
        self.directory
            .publish(key, self.visitors.get(key), self.config.reconnect_grace_ms);
    }

    fn notify(&self, key: &VisitorKey, kind: EventKind) {
        let event = VisitorEvent {
            kind,
            state: self.lookup(key),
        };
        self.events.visitor_event(key, event);
    }

    /// Begins the grace period of a visitor with no live socket.
    fn start_grace(&mut self, key: &VisitorKey, ctx: &mut Context<Self>) {
        let Some(entry) = self.visitors.get_mut(key) else {
            return;
        };
        if entry.grace.is_some() {
            return;
        }
        self.next_generation += 1;
        let generation = self.next_generation;
        entry.grace = Some(Grace {
            generation,
            parked: Vec::new(),
            started_ms: self.clock.now_ms(),
        });
        let key = key.clone();
        ctx.run_later(self.config.reconnect_grace(), move |registry, _| {
            registry.end_grace(&key, generation);
        });
    }

    /// The grace period ended: if the visitor did not come back, it is gone.
    fn end_grace(&mut self, key: &VisitorKey, generation: u64) {
        let expired = self.visitors.get(key).is_some_and(|entry| {
            entry.connections.is_empty()
                && entry
                    .grace
                    .as_ref()
                    .is_some_and(|g| g.generation == generation)
        });
        if !expired {
            return;
        }
        let hook = self
            .directory
            .hooks
            .transition
            .get()
            .filter(|h| h.wants(key, false));
        let last = hook.map(|_| self.lookup(key));
        if let Some(entry) = self.visitors.remove(key) {
            for command in entry.grace.map(|g| g.parked).unwrap_or_default() {
                command.fail(DomainError::went_offline());
            }
        }
        self.publish(key);
        self.notify(key, EventKind::Disconnected);
        if let (Some(hook), Some(last)) = (hook, last) {
            hook.transition(key, Transition::Offline(last));
        }
    }

    fn route(&mut self, key: &VisitorKey, command: VisitorCommand, ctx: &mut Context<Self>) {
        let Some(entry) = self.visitors.get_mut(key) else {
            command.fail(DomainError::not_present());
            return;
        };
        let limit = self.config.max_pending_invokes;
        match entry.route(command) {
            Routed::Delivered => {}
            Routed::Busy(command) => command.fail(DomainError::TooManyPending(limit)),
            Routed::Refused(command) => command.fail(DomainError::ConfirmationRequired),
            Routed::NoConnection(command) => {
                // Either already in grace, or every connection turned out
                // stopped: park until the visitor comes back or grace ends.
                self.start_grace(key, ctx);
                if let Some(park) = self.directory.hooks.park.get() {
                    // Cluster mode: the visitor's next socket may open on
                    // any node, so the cluster parks it.
                    self.publish(key);
                    park(key.clone(), command);
                    return;
                }
                match self.visitors.get_mut(key).and_then(|e| e.grace.as_mut()) {
                    Some(grace) if grace.parked.len() < limit => grace.parked.push(command),
                    Some(_) => command.fail(DomainError::TooManyPending(limit)),
                    None => command.fail(DomainError::not_present()),
                }
            }
        }
        // Routing may have dropped closing connections.
        self.publish(key);
    }
}

impl Actor for Registry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
    }
}

impl Handler<Connect> for Registry {
    type Result = Result<(), DomainError>;

    fn handle(&mut self, msg: Connect, _ctx: &mut Self::Context) -> Self::Result {
        self.directory.mailbox.handled();
        let now = self.clock.now_ms();
        let Some(entry) = self.visitors.get_mut(&msg.key) else {
            self.visitors.insert(
                msg.key.clone(),
                VisitorEntry::new(msg.connection, msg.data, now),
            );
            self.publish(&msg.key);
            self.notify(&msg.key, EventKind::Connected);
            let hook = self.directory.hooks.transition.get();
            if let Some(hook) = hook.filter(|h| h.wants(&msg.key, true)) {
                hook.transition(&msg.key, Transition::Online(self.lookup(&msg.key)));
            }
            return Ok(());
        };
        let (merged, changed) = entry
            .data
            .merged(&msg.data)
            .map_err(DomainError::BadPresenceData)?;
        entry.data = merged;
        entry.connections.push(msg.connection);
        entry.last_active_ms = now;
        if let Some(grace) = entry.grace.take() {
            let limit = self.config.max_pending_invokes;
            for command in grace.parked {
                match entry.route(command) {
                    Routed::Delivered => {}
                    Routed::Busy(command) => command.fail(DomainError::TooManyPending(limit)),
                    Routed::Refused(command) => command.fail(DomainError::ConfirmationRequired),
                    Routed::NoConnection(command) => command.fail(DomainError::not_present()),
                }
            }
        }
        self.publish(&msg.key);
        if changed {
            self.notify(&msg.key, EventKind::Presence);
        }
        Ok(())
    }
}

impl Handler<Disconnect> for Registry {
    type Result = ();

    fn handle(&mut self, msg: Disconnect, ctx: &mut Self::Context) {
        self.directory.mailbox.handled();
        let Some(entry) = self.visitors.get_mut(&msg.key) else {
            return;
        };
        if entry.remove(&msg.connection_id) && entry.connections.is_empty() {
            if self.config.reconnect_grace_ms == 0 {
                self.next_generation += 1;
                let generation = self.next_generation;
                entry.grace = Some(Grace {
                    generation,
                    parked: Vec::new(),
                    started_ms: self.clock.now_ms(),
                });
                self.end_grace(&msg.key, generation);
            } else {
                self.start_grace(&msg.key, ctx);
            }
        }
        self.publish(&msg.key);
    }
}

impl Handler<PresenceUpdate> for Registry {
    type Result = Result<(), DomainError>;

    fn handle(&mut self, msg: PresenceUpdate, _ctx: &mut Self::Context) -> Self::Result {
        self.directory.mailbox.handled();
        self.presence_updates += 1;
        let Some(entry) = self.visitors.get_mut(&msg.key) else {
            return Err(DomainError::NotRegistered);
        };
        if !entry.touch(&msg.connection_id) {
            return Err(DomainError::NotRegistered);
        }
        entry.last_active_ms = self.clock.now_ms();
        let (merged, changed) = entry
            .data
            .merged(&msg.data)
            .map_err(DomainError::BadPresenceData)?;
        entry.data = merged;
        self.publish(&msg.key);
        if changed {
            self.notify(&msg.key, EventKind::Presence);
        }
        Ok(())
    }
}

impl Handler<Route> for Registry {
    type Result = ();

    fn handle(&mut self, msg: Route, ctx: &mut Self::Context) {
        self.directory.mailbox.handled();
        self.route(&msg.key, msg.command, ctx);
    }
}

impl Handler<Repark> for Registry {
    type Result = ();

    fn handle(&mut self, msg: Repark, ctx: &mut Self::Context) {
        self.directory.mailbox.handled();
        // The closing socket's Disconnect came first (same mailbox), so
        // these go to another open tab, or are parked for the next page.
        for command in msg.commands {
            self.route(&msg.key, command, ctx);
        }
    }
}

impl Handler<Watch> for Registry {
    type Result = ();

    fn handle(&mut self, msg: Watch, _ctx: &mut Self::Context) {
        self.directory.mailbox.handled();
        let current = self.lookup(&msg.key);
        self.events.watch(msg.key, msg.watcher, msg.events, current);
    }
}

impl Handler<Unwatch> for Registry {
    type Result = ();

    fn handle(&mut self, msg: Unwatch, _ctx: &mut Self::Context) {
        self.directory.mailbox.handled();
        self.events.unwatch(&msg.key, msg.watcher);
    }
}

impl Handler<UnwatchAll> for Registry {
    type Result = ();

    fn handle(&mut self, msg: UnwatchAll, _ctx: &mut Self::Context) {
        self.directory.mailbox.handled();
        self.events.unwatch_all(msg.watcher);
    }
}

/// Counts for health and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RegistryStats {
    pub visitors: usize,
    pub connections: usize,
    pub watches: usize,
    /// Presence updates the registry has handled since start.
    pub presence_updates: u64,
    /// Messages waiting in the registry actor's mailbox now, and the most
    /// that have waited at once since start.
    pub mailbox_depth: usize,
    pub mailbox_peak: usize,
}

impl Handler<Stats> for Registry {
    type Result = MessageResult<Stats>;

    fn handle(&mut self, _msg: Stats, _ctx: &mut Self::Context) -> Self::Result {
        self.directory.mailbox.handled();
        MessageResult(RegistryStats {
            visitors: self.visitors.len(),
            connections: self.visitors.values().map(|e| e.connections.len()).sum(),
            watches: self.events.watch_count(),
            presence_updates: self.presence_updates,
            mailbox_depth: self.directory.mailbox.depth(),
            mailbox_peak: self.directory.mailbox.peak(),
        })
    }
}

#[cfg(test)]
mod tests;
