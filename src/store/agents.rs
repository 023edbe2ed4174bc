//! The agent trees: agents seen or provisioned per group (`agents`), and
//! the SSO token ids already used (`sso_jtis`), so a customer-signed token
//! is accepted once. Callers reach them through seams
//! (`auth::sign_in::ProvisionedAgents`, `UsedSsoTokens`), which cluster
//! mode fills with Redis instead.

use serde::{Deserialize, Serialize};

use super::{decode, encode, remove_expired_before, Store, StoreError, TREE_AGENTS};
use crate::infra::config::Role;

/// How an agent came to exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AgentSource {
    /// A `[[groups.users]]` entry.
    Config,
    /// Auto-provisioned from a customer-signed SSO token.
    Sso,
}

/// An agent as remembered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub username: String,
    #[serde(default)]
    pub name: Option<String>,
    pub role: Role,
    pub source: AgentSource,
    /// Unix seconds.
    pub first_seen: u64,
    pub last_seen: u64,
}

fn agent_key(groupid: u64, username: &str) -> String {
    format!("{groupid}/{username}")
}

impl Store {
    /// The agent `username` of `groupid`, if it was ever seen.
    pub fn agent(&self, groupid: u64, username: &str) -> Result<Option<AgentRecord>, StoreError> {
        self.with(|t| {
            t.agents
                .get(agent_key(groupid, username).as_bytes())?
                .map(|v| decode(TREE_AGENTS, &v))
                .transpose()
        })
    }

    /// Records that an agent signed in at `now`: creates it (first seen) or
    /// refreshes its name, role and last seen. Flushed: the token that
    /// follows may be the proof that it was provisioned.
    pub fn touch_agent(
        &self,
        groupid: u64,
        record: &AgentRecord,
        now: u64,
    ) -> Result<AgentRecord, StoreError> {
        self.with(|t| {
            let key = agent_key(groupid, &record.username);
            let merged = t.agents.update_and_fetch(key.as_bytes(), |old| {
                let first_seen = old
                    .and_then(|bytes| decode::<AgentRecord>(TREE_AGENTS, bytes).ok())
                    .map_or(now, |old| old.first_seen);
                let next = AgentRecord {
                    first_seen,
                    last_seen: now,
                    ..record.clone()
                };
                encode(TREE_AGENTS, &next).ok()
            })?;
            t.agents.flush()?;
            let bytes = merged.ok_or(StoreError::Corrupt {
                tree: TREE_AGENTS,
                reason: "agent record did not encode".into(),
            })?;
            decode(TREE_AGENTS, &bytes)
        })
    }

    /// Every agent of `groupid` ever seen, by username.
    pub fn agents(&self, groupid: u64) -> Result<Vec<AgentRecord>, StoreError> {
        self.with(|t| {
            t.agents
                .scan_prefix(format!("{groupid}/").as_bytes())
                .values()
                .map(|v| decode(TREE_AGENTS, &v?))
                .collect()
        })
    }

    /// Marks an SSO token id used until `exp`; false if it already was.
    /// One compare-and-swap, flushed, so two racing uses cannot both pass.
    pub fn claim_sso_jti(&self, key: &str, exp: u64) -> Result<bool, StoreError> {
        self.with(|t| {
            let fresh = t
                .sso_jtis
                .compare_and_swap(
                    key.as_bytes(),
                    None as Option<&[u8]>,
                    Some(&exp.to_be_bytes()),
                )?
                .is_ok();
            if fresh {
                t.sso_jtis.flush()?;
            }
            Ok(fresh)
        })
    }

    /// Forgets SSO token ids whose tokens expired before `now`.
    pub fn remove_expired_sso_jtis(&self, now: u64) -> Result<usize, StoreError> {
        self.with(|t| remove_expired_before(&t.sso_jtis, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fred() -> AgentRecord {
        AgentRecord {
            username: "fred@acme.test".into(),
            name: Some("Fred".into()),
            role: Role::Agent,
            source: AgentSource::Sso,
            first_seen: 0,
            last_seen: 0,
        }
    }

    #[test]
    fn touching_keeps_first_seen_and_moves_last_seen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        assert_eq!(store.agent(72, "fred@acme.test").expect("read"), None);
        store.touch_agent(72, &fred(), 100).expect("touch");
        let again = store.touch_agent(72, &fred(), 200).expect("touch");
        assert_eq!((again.first_seen, again.last_seen), (100, 200));
        assert_eq!(store.agents(72).expect("list").len(), 1);
        assert!(store.agents(7).expect("list").is_empty(), "prefix is exact");
        assert!(store.agents(720).expect("list").is_empty());
    }

    #[test]
    fn an_sso_jti_is_claimed_once_until_it_expires() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        assert!(store.claim_sso_jti("72/j1", 50).expect("claim"));
        assert!(!store.claim_sso_jti("72/j1", 50).expect("claim"));
        assert!(store.claim_sso_jti("73/j1", 50).expect("claim"));
        assert_eq!(store.remove_expired_sso_jtis(51).expect("sweep"), 2);
        assert!(store.claim_sso_jti("72/j1", 90).expect("claim"));
    }
}
