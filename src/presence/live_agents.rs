//! Live agent sockets, indexed two ways: by the `jti` of their token, so a
//! revocation closes them at once, and by (group, username), so the outcome
//! of a confirmation prompt reaches every socket of the agent that asked,
//! whichever way (REST or socket) it started the prompt.

use std::collections::HashMap;

use actix::Addr;
use dashmap::DashMap;

use crate::infra::ids::GroupId;
use crate::presence::registry::WatcherId;
use crate::store::ConfirmationRecord;
use crate::transport::agent_session::{AgentSession, ConfirmationSettled, TokenRevoked};

type Sessions = HashMap<WatcherId, Addr<AgentSession>>;

/// The index.
#[derive(Default)]
pub struct LiveAgents {
    by_jti: DashMap<String, Sessions>,
    by_agent: DashMap<(GroupId, String), Sessions>,
}

impl LiveAgents {
    /// Makes an authenticated socket findable.
    pub fn register(
        &self,
        jti: &str,
        group: GroupId,
        username: &str,
        session: WatcherId,
        addr: Addr<AgentSession>,
    ) {
        self.by_jti
            .entry(jti.to_owned())
            .or_default()
            .insert(session, addr.clone());
        self.by_agent
            .entry((group, username.to_owned()))
            .or_default()
            .insert(session, addr);
    }

    /// Forgets a socket that is closing.
    pub fn unregister(&self, jti: &str, group: GroupId, username: &str, session: WatcherId) {
        self.by_jti.remove_if_mut(jti, |_, sessions| {
            sessions.remove(&session);
            sessions.is_empty()
        });
        self.by_agent
            .remove_if_mut(&(group, username.to_owned()), |_, sessions| {
                sessions.remove(&session);
                sessions.is_empty()
            });
    }

    /// Tells every socket using `jti` to close; returns how many.
    pub fn revoke(&self, jti: &str) -> usize {
        self.by_jti
            .remove(jti)
            .map(|(_, sessions)| {
                for addr in sessions.values() {
                    addr.do_send(TokenRevoked);
                }
                sessions.len()
            })
            .unwrap_or(0)
    }

    /// Tells the asking agent's sockets how its prompt ended.
    pub fn confirmation_settled(&self, record: &ConfirmationRecord) {
        let Some(sessions) = self.by_agent.get(&(record.groupid, record.agent.clone())) else {
            return;
        };
        for addr in sessions.values() {
            addr.do_send(ConfirmationSettled {
                visitorid: record.visitorid.clone(),
                id: record.id.clone(),
                status: record.status,
            });
        }
    }
}
