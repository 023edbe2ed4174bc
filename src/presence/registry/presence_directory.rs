//! The seam between the presence directory and everyone who uses it.

use actix::Recipient;
use futures_core::future::LocalBoxFuture;

use super::{LiveConnection, RegistryStats, VisitorCommand};
use crate::infra::error::DomainError;
use crate::infra::ids::{GroupId, VisitorKey};
use crate::presence::data::PresenceData;
use crate::presence::events::{AgentEvent, AgentSocketId};
use crate::presence::visitor::VisitorState;

/// Which visitors are present, and the way commands and watches reach them.
/// Sessions, handlers, invokes and confirmations hold an
/// `Arc<dyn PresenceDirectory>` chosen at start-up; they never see how it
/// is kept. [`super::RegistryHandle`] is the single-node implementation.
///
/// Calls take effect in the order they are made: a method returning a
/// future has issued its request when it returns, and the future only
/// waits for the answer.
///
/// A multi-node implementation (Redis) keeps the same contract. Presence
/// lives in a shared hash per group (`visitor/connection` → node id,
/// connection id, online since, data), written by the node owning the
/// socket and refreshed under a TTL so the entries of a dead node expire;
/// `lookup` and `page` read it (through a local cache of the node's own
/// visitors). `route` and `broadcast` find the node that owns the target
/// connection and deliver locally, or publish the command on that node's
/// unicast channel, with the waiter's reply address, failing at once when
/// no node receives it. Watches stay on the agent's node; visitor events
/// cross nodes on the event bus (see [`crate::presence::events`]). `stats`
/// counts this node's visitors, connections and watches.
///
/// `lookup`, `page`, `route` and `broadcast` are synchronous: they run on
/// request workers and actor threads, so they must answer from memory and
/// never wait on the network. A Redis implementation serves them from a
/// node-local replica of the shared presence, kept current from the bus;
/// its network writes happen in the async methods and behind `route`'s
/// fire-and-forget publish.
pub trait PresenceDirectory: Send + Sync {
    /// Registers a visitor socket that said hello. Refused with
    /// `bad_presence_data` if the merged presence data would be too large.
    fn connect(
        &self,
        key: VisitorKey,
        connection: LiveConnection,
        data: PresenceData,
    ) -> LocalBoxFuture<'static, Result<(), DomainError>>;

    /// A visitor socket is closing, or said `leaving`: either way it is no
    /// longer one of the visitor's connections. `held` is a presence update
    /// the socket had not sent yet: it still counts, applied before the
    /// disconnect. The visitor stays present through its reconnect grace
    /// period. A second call for the same connection changes nothing.
    fn disconnect(&self, key: VisitorKey, connection_id: &str, held: Option<PresenceData>);

    /// Routes again the invokes a closing socket wrote but got no receipt
    /// for (they provably did not run), after that socket's `disconnect`:
    /// to another open connection, parked for the visitor's next socket
    /// during its grace period, or failed `visitor_not_present`. Each keeps
    /// its responder and deadline. A Redis implementation routes them like
    /// `route` does.
    fn repark(&self, key: VisitorKey, commands: Vec<VisitorCommand>);

    /// Merges presence data published by a visitor socket, which becomes
    /// the visitor's most recently active one. Refused with
    /// `bad_presence_data` if the merge would be too large or the
    /// connection is not registered.
    fn presence_update(
        &self,
        key: VisitorKey,
        connection_id: &str,
        data: PresenceData,
    ) -> LocalBoxFuture<'static, Result<(), DomainError>>;

    /// Starts watching a visitor for an agent socket: its current state
    /// arrives first, as a `state` event, then every change.
    fn watch(&self, key: VisitorKey, socket: AgentSocketId, events: Recipient<AgentEvent>);

    /// Stops watching one visitor.
    fn unwatch(&self, key: VisitorKey, socket: AgentSocketId);

    /// Stops every watch of an agent socket that went away.
    fn unwatch_all(&self, socket: AgentSocketId);

    /// Counts for health and metrics.
    fn stats(&self) -> LocalBoxFuture<'static, Result<RegistryStats, DomainError>>;

    /// The visitor's lookup document.
    fn lookup(&self, key: &VisitorKey) -> VisitorState;

    /// Present visitors of `group` with ids after `after`, in id order, that
    /// `keep` accepts: at most `limit`, and whether more follow.
    fn page(
        &self,
        group: GroupId,
        after: Option<&str>,
        limit: usize,
        keep: &mut dyn FnMut(&VisitorState) -> bool,
    ) -> (Vec<VisitorState>, bool);

    /// Routes a command to the visitor's most recently active connection,
    /// parking it while the visitor is between sockets. A command
    /// restricted to some connections (confirmation tickets) goes to the
    /// most recently active of those; if the visitor has open connections
    /// but none of them, it fails `confirmation_required`. Every failure is
    /// answered on the command's responder.
    fn route(&self, key: VisitorKey, command: VisitorCommand);

    /// Sends a command to every open connection of the visitor (each tab
    /// shows a confirmation prompt). A visitor between sockets gets nothing;
    /// its next socket asks for what it should show.
    fn broadcast(&self, key: &VisitorKey, command: &dyn Fn() -> VisitorCommand);
}
