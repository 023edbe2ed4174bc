//! The event bus: what the presence core tells live agent sockets. Three
//! kinds of news travel on it: watch events about visitors, the close of
//! every socket of a revoked token, and the outcome of a confirmation
//! prompt, for the sockets of the agent that asked.
//!
//! Agent sockets subscribe with a [`Recipient<AgentEvent>`] once their token
//! is verified and unsubscribe when they close. Watches are kept by the bus
//! too, but only the registry actor changes them and publishes visitor
//! events, so a watch's initial `state` and the events after it keep their
//! order (the registry is the serialisation point of a node).
//!
//! [`LocalEventBus`] is the single-node implementation.

mod local;
mod watches;

use actix::{Message, Recipient};

use crate::infra::ids::{GroupId, VisitorKey};
use crate::presence::visitor::{VisitorEvent, VisitorState};
use crate::store::{ConfirmationRecord, ConfirmationStatus};

pub use local::LocalEventBus;

/// Identifies one agent socket, on the bus and among watchers.
pub type AgentSocketId = u64;

/// What reaches an agent socket from the presence core.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub enum AgentEvent {
    /// A watched visitor came, went or changed, or (kind `state`) a watch
    /// began.
    Visitor(VisitorEvent),
    /// The socket's token was revoked: it closes.
    TokenRevoked,
    /// A confirmation prompt its agent started ended.
    ConfirmationSettled {
        visitorid: String,
        /// The confirmation id.
        id: String,
        status: ConfirmationStatus,
    },
}

/// Delivers the presence core's news to agent sockets.
///
/// A delivery never waits: an agent socket's mailbox is bounded, and watch
/// events to a socket whose mailbox is full (an agent that stopped reading)
/// or closed drop all that socket's watches instead of queueing without
/// limit. Revocations and confirmation outcomes are rare and small, and
/// always queued.
///
/// A multi-node implementation (Redis) keeps the same local indexes per node
/// and adds pub/sub: `revoke` and `confirmation_settled` are broadcast on a
/// control channel so every node closes or tells its own sockets (`revoke`
/// then counts this node's sockets); `visitor_event`
/// publishes on the group's watch channel (`ps:w:{group}`) with the
/// group's sequence number, and a node subscribes to that channel only
/// while it has local watches in the group, fanning incoming events out to
/// them and resynchronising their state on a sequence gap.
pub trait EventBus: Send + Sync {
    /// Makes a verified agent socket reachable by its token id (for
    /// revocation) and by its agent (for confirmation outcomes).
    fn subscribe(
        &self,
        jti: &str,
        group: GroupId,
        username: &str,
        socket: AgentSocketId,
        events: Recipient<AgentEvent>,
    );

    /// Forgets a socket that is closing (its watches go with
    /// [`unwatch_all`](Self::unwatch_all)).
    fn unsubscribe(&self, jti: &str, group: GroupId, username: &str, socket: AgentSocketId);

    /// Tells every socket using `jti` to close; returns how many.
    fn revoke(&self, jti: &str) -> usize;

    /// Tells this node's sockets of every agent `(group, username)` that
    /// `removed` picks to close as revoked (a config reload removed their
    /// group or user); returns how many. This node only: a reload applies
    /// where it was made.
    fn revoke_agents(&self, removed: &dyn Fn(GroupId, &str) -> bool) -> usize;

    /// Tells the sockets of the agent that started the prompt how it ended.
    fn confirmation_settled(&self, record: &ConfirmationRecord);

    /// Begins a watch: sends `current` to `events` as a `state` event and,
    /// if its mailbox took it, adds the watch. A socket whose mailbox is
    /// already full gets no new watch. Called by the registry actor only.
    fn watch(
        &self,
        key: VisitorKey,
        socket: AgentSocketId,
        events: Recipient<AgentEvent>,
        current: VisitorState,
    );

    /// Ends one watch. Called by the registry actor only.
    fn unwatch(&self, key: &VisitorKey, socket: AgentSocketId);

    /// Ends every watch of a socket. Called by the registry actor only.
    fn unwatch_all(&self, socket: AgentSocketId);

    /// Delivers `event` to everyone watching `key`, dropping the watches of
    /// sockets that stopped reading. Called by the registry actor only,
    /// after it published the change.
    fn visitor_event(&self, key: &VisitorKey, event: VisitorEvent);

    /// Number of (socket, visitor) watches.
    fn watch_count(&self) -> usize;
}

#[cfg(test)]
mod tests;
