//! The registry's record of one visitor: its live connections ordered by
//! activity, its merged presence data, and, between its last socket closing
//! and the grace period ending, the commands waiting for it to come back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix::dev::SendError;
use actix::Recipient;

use super::VisitorCommand;
use crate::presence::data::PresenceData;

/// One visitor socket the registry can route to.
#[derive(Clone)]
pub struct LiveConnection {
    pub id: String,
    pub commands: Recipient<VisitorCommand>,
    /// Cleared by the session the moment it starts closing.
    pub open: Arc<AtomicBool>,
    /// Custom claims of the visitor identity token this socket presented.
    pub identity: Option<Arc<serde_json::Value>>,
}

impl LiveConnection {
    /// Whether the session still accepts commands.
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }
}

/// Commands parked while a visitor is between sockets.
pub struct Grace {
    pub generation: u64,
    pub parked: Vec<VisitorCommand>,
    /// Unix ms the grace period began.
    pub started_ms: u64,
}

pub struct VisitorEntry {
    /// Live sockets; the last is the most recently active one.
    pub connections: Vec<LiveConnection>,
    pub data: PresenceData,
    pub connected_at_ms: u64,
    /// Unix ms a socket of the visitor last connected or sent presence.
    pub last_active_ms: u64,
    /// Set while no socket is live but the visitor is still present.
    pub grace: Option<Grace>,
}

/// What happened to a routed command.
pub enum Routed {
    Delivered,
    /// The most recent connection's mailbox is full: it is not keeping up
    /// (or its client stopped reading). The command comes back.
    Busy(VisitorCommand),
    /// No live connection accepted it; the command comes back.
    NoConnection(VisitorCommand),
    /// Live connections exist, but the command may go to none of them.
    Refused(VisitorCommand),
}

impl VisitorEntry {
    pub fn new(connection: LiveConnection, data: PresenceData, now_ms: u64) -> Self {
        Self {
            connections: vec![connection],
            data,
            connected_at_ms: now_ms,
            last_active_ms: now_ms,
            grace: None,
        }
    }

    /// Marks a connection as the most recently active. Returns false if it
    /// is not one of ours.
    pub fn touch(&mut self, connection_id: &str) -> bool {
        match self.connections.iter().position(|c| c.id == connection_id) {
            Some(pos) => {
                let conn = self.connections.remove(pos);
                self.connections.push(conn);
                true
            }
            None => false,
        }
    }

    pub fn remove(&mut self, connection_id: &str) -> bool {
        let before = self.connections.len();
        self.connections.retain(|c| c.id != connection_id);
        before != self.connections.len()
    }

    /// Hands `command` to the most recently active connection it accepts,
    /// dropping any connection whose actor has already stopped and trying
    /// the next. Session mailboxes are bounded, so a stalled client cannot
    /// make commands pile up without limit.
    pub fn route(&mut self, mut command: VisitorCommand) -> Routed {
        let mut passed_over = false;
        let mut i = self.connections.len();
        while i > 0 {
            i -= 1;
            let conn = &self.connections[i];
            if !conn.is_open() {
                // Closing: its Disconnect is on the way. Never write to it.
                self.connections.remove(i);
                continue;
            }
            if !command.accepts(&conn.id) {
                passed_over = true;
                continue;
            }
            match conn.commands.try_send(command) {
                Ok(()) => return Routed::Delivered,
                Err(SendError::Full(back)) => return Routed::Busy(back),
                Err(SendError::Closed(back)) => {
                    command = back;
                    self.connections.remove(i);
                }
            }
        }
        if passed_over {
            Routed::Refused(command)
        } else {
            Routed::NoConnection(command)
        }
    }
}
