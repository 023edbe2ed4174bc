//! The registry actor's messages. They are private to the registry: the
//! rest of the server reaches it through [`super::PresenceDirectory`], which
//! [`super::RegistryHandle`] implements by sending these.

use actix::{Message, Recipient};

use super::{LiveConnection, RegistryStats, VisitorCommand};
use crate::infra::error::DomainError;
use crate::infra::ids::VisitorKey;
use crate::presence::data::PresenceData;
use crate::presence::events::{AgentEvent, AgentSocketId};

/// A visitor socket said hello. Answers an error if the merged presence data
/// would be too large.
#[derive(Message)]
#[rtype(result = "Result<(), DomainError>")]
pub(super) struct Connect {
    pub key: VisitorKey,
    pub connection: LiveConnection,
    pub data: PresenceData,
}

/// A visitor socket closed.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Disconnect {
    pub key: VisitorKey,
    pub connection_id: String,
}

/// A visitor socket published presence data; it becomes the most recently
/// active connection.
#[derive(Message)]
#[rtype(result = "Result<(), DomainError>")]
pub(super) struct PresenceUpdate {
    pub key: VisitorKey,
    pub connection_id: String,
    pub data: PresenceData,
}

/// Route a command to the visitor's most recently active connection, or
/// park it while the visitor is between sockets. The handle sends this
/// whenever it cannot deliver directly.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Route {
    pub key: VisitorKey,
    pub command: VisitorCommand,
}

/// Invokes a closing socket had written but never got a receipt for: they
/// provably did not run, so they are routed again (parked while the
/// visitor is between sockets).
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Repark {
    pub key: VisitorKey,
    pub commands: Vec<VisitorCommand>,
}

/// Start watching a visitor; the current state arrives first, as an event,
/// so it is ordered with the events that follow.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Watch {
    pub key: VisitorKey,
    pub watcher: AgentSocketId,
    pub events: Recipient<AgentEvent>,
}

/// Stop watching one visitor.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Unwatch {
    pub key: VisitorKey,
    pub watcher: AgentSocketId,
}

/// An agent socket went away: drop all its watches.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct UnwatchAll {
    pub watcher: AgentSocketId,
}

/// Counts for health and metrics.
#[derive(Message)]
#[rtype(result = "RegistryStats")]
pub(super) struct Stats;
