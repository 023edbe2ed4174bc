//! The agents a group has seen or provisioned (first and last issued a
//! token), behind the [`ProvisionedAgents`] seam: the store's `agents`
//! tree on one node, Redis in cluster mode, so the administrator's agent
//! list shows the agents every node provisioned.
//!
//! Redis layout (under `{prefix}:`): `agents:{group}`, a hash username →
//! the [`AgentRecord`] as JSON, and `agents:{group}:first_seen`, a hash
//! username → Unix seconds, set once (`HSETNX`) by the script that
//! records a sign-in, so racing first sign-ins on two nodes keep one
//! first-seen time.

use std::collections::HashMap;
use std::sync::LazyLock;

use redis::Script;

use crate::infra::ids::GroupId;
use crate::store::cluster::ClusterLink;
use crate::store::{AgentRecord, Store, StoreError};

/// Agents seen or provisioned, per group. Every method may wait on disk or
/// Redis: callers run them on the blocking pool.
pub trait ProvisionedAgents: Send + Sync {
    /// The agent `username` of `group`, if it was ever seen.
    fn agent(&self, group: GroupId, username: &str) -> Result<Option<AgentRecord>, StoreError>;

    /// Records that an agent signed in at `now` (first seen, or last
    /// seen); durable before it returns.
    fn touch_agent(
        &self,
        group: GroupId,
        record: &AgentRecord,
        now: u64,
    ) -> Result<AgentRecord, StoreError>;

    /// Every agent of `group` ever seen, by username.
    fn agents(&self, group: GroupId) -> Result<Vec<AgentRecord>, StoreError>;
}

/// The single-node record: the store's `agents` tree.
impl ProvisionedAgents for Store {
    fn agent(&self, group: GroupId, username: &str) -> Result<Option<AgentRecord>, StoreError> {
        Store::agent(self, group, username)
    }

    fn touch_agent(
        &self,
        group: GroupId,
        record: &AgentRecord,
        now: u64,
    ) -> Result<AgentRecord, StoreError> {
        Store::touch_agent(self, group, record, now)
    }

    fn agents(&self, group: GroupId) -> Result<Vec<AgentRecord>, StoreError> {
        Store::agents(self, group)
    }
}

/// KEYS: records, first-seen times. ARGV: username, record JSON, now.
/// Returns the agent's first-seen time.
static TOUCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return tonumber(redis.call('HGET', KEYS[2], ARGV[1]))
",
    )
});

/// Agents shared by every node.
pub struct RedisAgents {
    link: ClusterLink,
}

fn corrupt(reason: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        tree: "agents (redis)",
        reason: reason.to_string(),
    }
}

fn decode(json: &str, first_seen: Option<u64>) -> Result<AgentRecord, StoreError> {
    let mut record: AgentRecord = serde_json::from_str(json).map_err(corrupt)?;
    record.first_seen = first_seen.unwrap_or(record.last_seen);
    Ok(record)
}

impl RedisAgents {
    pub fn new(link: &ClusterLink) -> Self {
        Self { link: link.clone() }
    }

    fn keys(&self, group: GroupId) -> (String, String) {
        (
            self.link.key(&format!("agents:{group}")),
            self.link.key(&format!("agents:{group}:first_seen")),
        )
    }
}

impl ProvisionedAgents for RedisAgents {
    fn agent(&self, group: GroupId, username: &str) -> Result<Option<AgentRecord>, StoreError> {
        let ((records, first), user) = (self.keys(group), username.to_owned());
        let (json, first_seen) =
            self.link
                .run_blocking("agent read", move |mut conn| async move {
                    redis::pipe()
                        .cmd("HGET")
                        .arg(records)
                        .arg(&user)
                        .cmd("HGET")
                        .arg(first)
                        .arg(&user)
                        .query_async::<(Option<String>, Option<u64>)>(&mut conn)
                        .await
                })?;
        json.map(|json| decode(&json, first_seen)).transpose()
    }

    fn touch_agent(
        &self,
        group: GroupId,
        record: &AgentRecord,
        now: u64,
    ) -> Result<AgentRecord, StoreError> {
        let mut next = AgentRecord {
            first_seen: now,
            last_seen: now,
            ..record.clone()
        };
        let json = serde_json::to_string(&next).map_err(corrupt)?;
        let ((records, first), user) = (self.keys(group), record.username.clone());
        next.first_seen = self
            .link
            .run_blocking("agent touch", move |mut conn| async move {
                TOUCH
                    .key(records)
                    .key(first)
                    .arg(user)
                    .arg(json)
                    .arg(now)
                    .invoke_async::<u64>(&mut conn)
                    .await
            })?;
        Ok(next)
    }

    fn agents(&self, group: GroupId) -> Result<Vec<AgentRecord>, StoreError> {
        let (records, first) = self.keys(group);
        let (all, first_seen) =
            self.link
                .run_blocking("agent list", move |mut conn| async move {
                    redis::pipe()
                        .cmd("HGETALL")
                        .arg(records)
                        .cmd("HGETALL")
                        .arg(first)
                        .query_async::<(HashMap<String, String>, HashMap<String, u64>)>(&mut conn)
                        .await
                })?;
        let mut agents = all
            .iter()
            .map(|(user, json)| decode(json, first_seen.get(user).copied()))
            .collect::<Result<Vec<_>, _>>()?;
        agents.sort_by(|a, b| a.username.cmp(&b.username));
        Ok(agents)
    }
}
