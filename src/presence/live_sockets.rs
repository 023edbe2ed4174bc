//! This node's live sockets by group and Origin, so that a config reload
//! can close the ones its new rules no longer admit: a visitor socket of
//! a group removed, without Presence, or whose Origin left the group's
//! list gets that error and close 1008; an agent socket whose Origin left
//! the list gets `origin_not_allowed`, and one whose group is gone
//! `token_revoked` (its token no longer verifies).

use std::sync::atomic::{AtomicU64, Ordering};

use actix::{Message, Recipient};
use dashmap::DashMap;

use crate::infra::error::DomainError;
use crate::infra::ids::GroupId;
use crate::presence::admission::GroupAccess;
use crate::presence::origin::RequestOrigin;

/// Tells a socket the rules in force no longer admit it: it sends the
/// error and closes with the error's close code.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct AdmissionWithdrawn(pub DomainError);

/// Which side a socket serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveSocketKind {
    Visitor,
    Agent,
}

struct LiveSocket {
    group: GroupId,
    origin: RequestOrigin,
    kind: LiveSocketKind,
    notify: Recipient<AdmissionWithdrawn>,
}

/// The admitted sockets of this node.
#[derive(Default)]
pub struct LiveSockets {
    next: AtomicU64,
    sockets: DashMap<u64, LiveSocket>,
}

impl LiveSockets {
    /// Records a socket admitted to `group` from `origin`, then checks it
    /// once more against the rules in force, so a reload that raced its
    /// admission cannot miss it. Its id, for [`LiveSockets::remove`], or
    /// the error it must close with.
    pub fn add(
        &self,
        groups: &GroupAccess,
        group: GroupId,
        origin: &RequestOrigin,
        kind: LiveSocketKind,
        notify: Recipient<AdmissionWithdrawn>,
    ) -> Result<u64, DomainError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.sockets.insert(
            id,
            LiveSocket {
                group,
                origin: origin.clone(),
                kind,
                notify,
            },
        );
        if let Err(error) = still_admitted(groups, group, origin, kind) {
            self.sockets.remove(&id);
            return Err(error);
        }
        Ok(id)
    }

    /// Forgets a closing socket.
    pub fn remove(&self, id: u64) {
        self.sockets.remove(&id);
    }

    /// Tells every socket the rules of `groups` no longer admit to close;
    /// returns how many of each kind, (visitors, agents).
    pub fn recheck(&self, groups: &GroupAccess) -> (usize, usize) {
        let (mut visitors, mut agents) = (0, 0);
        self.sockets.retain(|_, socket| {
            match still_admitted(groups, socket.group, &socket.origin, socket.kind) {
                Ok(()) => true,
                Err(error) => {
                    socket.notify.do_send(AdmissionWithdrawn(error));
                    match socket.kind {
                        LiveSocketKind::Visitor => visitors += 1,
                        LiveSocketKind::Agent => agents += 1,
                    }
                    false
                }
            }
        });
        (visitors, agents)
    }
}

fn still_admitted(
    groups: &GroupAccess,
    group: GroupId,
    origin: &RequestOrigin,
    kind: LiveSocketKind,
) -> Result<(), DomainError> {
    match (groups.admit(group, origin), kind) {
        (Ok(_), _) => Ok(()),
        // An agent's token names a group that is gone: it no longer
        // verifies, and the agent hears so.
        (Err(DomainError::UnknownGroup(_)), LiveSocketKind::Agent) => {
            Err(DomainError::TokenRevoked)
        }
        (Err(error), _) => Err(error),
    }
}
