//! The website-session trees: `sessions` (SHA-256 of the id →
//! [`StoredSession`]) and `session_tokens` (digest + `jti` → big-endian
//! `exp`), the tokens each session issued, so that logging out revokes
//! them.

use serde::{Deserialize, Serialize};

use super::{
    decode, encode, remove_expired_before, Store, StoreError, TREE_SESSIONS, TREE_SESSION_TOKENS,
};
use crate::infra::ids::GroupId;

/// A website session as persisted (under a hash of its id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSession {
    /// The group whose user record the password was checked against.
    /// Sessions stored before sessions were bound to a group have none,
    /// and are refused.
    #[serde(default)]
    pub groupid: Option<GroupId>,
    pub username: String,
    pub created_at: u64,
    pub last_used: u64,
}

/// Key of one link in `session_tokens`: the session digest, then the jti.
fn token_link(session: &[u8], jti: &str) -> Vec<u8> {
    let mut key = session.to_vec();
    key.extend_from_slice(jti.as_bytes());
    key
}

impl Store {
    /// The session stored under `key` (a hash of its id).
    pub fn session(&self, key: &[u8]) -> Result<Option<StoredSession>, StoreError> {
        self.with(|t| {
            t.sessions
                .get(key)?
                .map(|v| decode(TREE_SESSIONS, &v))
                .transpose()
        })
    }

    /// Writes a session and flushes: the client is about to be told.
    pub fn put_session(&self, key: &[u8], session: &StoredSession) -> Result<(), StoreError> {
        let bytes = encode(TREE_SESSIONS, session)?;
        self.with(|t| {
            t.sessions.insert(key, bytes)?;
            t.sessions.flush()?;
            Ok(())
        })
    }

    /// Deletes a session and flushes; true if it existed.
    pub fn remove_session(&self, key: &[u8]) -> Result<bool, StoreError> {
        self.with(|t| {
            let existed = t.sessions.remove(key)?.is_some();
            t.sessions.flush()?;
            Ok(existed)
        })
    }

    /// Deletes sessions last used before `cutoff` (Unix seconds).
    pub fn remove_sessions_idle_since(&self, cutoff: u64) -> Result<usize, StoreError> {
        self.with(|t| {
            let mut removed = 0;
            for item in t.sessions.iter() {
                let (key, value) = item?;
                let session: StoredSession = decode(TREE_SESSIONS, &value)?;
                if session.last_used < cutoff {
                    t.sessions.remove(key)?;
                    removed += 1;
                }
            }
            t.sessions.flush()?;
            Ok(removed)
        })
    }

    /// Files token `jti` (expiring at `exp`) under the session that issued
    /// it, flushed before the token is handed out.
    pub fn put_session_token(&self, session: &[u8], jti: &str, exp: u64) -> Result<(), StoreError> {
        self.with(|t| {
            t.session_tokens
                .insert(token_link(session, jti), &exp.to_be_bytes())?;
            t.session_tokens.flush()?;
            Ok(())
        })
    }

    /// Removes and returns the tokens filed under a session, `(jti, exp)`.
    pub fn take_session_tokens(&self, session: &[u8]) -> Result<Vec<(String, u64)>, StoreError> {
        self.with(|t| {
            let mut tokens = Vec::new();
            for item in t.session_tokens.scan_prefix(session) {
                let (key, value) = item?;
                let exp = <[u8; 8]>::try_from(value.as_ref()).map_err(|_| StoreError::Corrupt {
                    tree: TREE_SESSION_TOKENS,
                    reason: "exp is not 8 bytes".into(),
                })?;
                let jti = String::from_utf8_lossy(&key[session.len()..]).into_owned();
                tokens.push((jti, u64::from_be_bytes(exp)));
                t.session_tokens.remove(key)?;
            }
            t.session_tokens.flush()?;
            Ok(tokens)
        })
    }

    /// Forgets links of tokens that expired before `now`.
    pub fn remove_expired_session_tokens(&self, now: u64) -> Result<usize, StoreError> {
        self.with(|t| remove_expired_before(&t.session_tokens, now))
    }
}
