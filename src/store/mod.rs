//! Durable state in sled. This is the only module that touches sled; every
//! other module goes through the typed methods here, each bound to a named
//! tree. Writes that a client will be told about are flushed before the
//! method returns, so acknowledged data survives a crash.
//!
//! Trees:
//! - `signing_keys`: the agent-token key ring, `kid` → [`StoredSigningKey`].
//! - `sessions`: website sessions, SHA-256 of the id → [`StoredSession`].
//! - `audit`: token audit records, big-endian ms timestamp + 8 random bytes
//!   → JSON record, so a range scan walks them in time order.
//! - `issued_tokens`: `jti` → [`IssuedToken`] (owner), until the token expires.
//! - `revoked_tokens`: `jti` → big-endian `exp`, the denylist.
//! - `confirmations`: confirmation id → [`ConfirmationRecord`].
//! - `confirmation_grants`: `group/visitor/agent` → [`ConfirmationGrant`],
//!   the live confirmed pairs the invoke gate reads.
//! - `agents`: `group/username` → [`AgentRecord`], agents seen or provisioned.
//! - `sso_jtis`: `group/jti` → big-endian `exp`, SSO tokens already used.
//! - `session_tokens`: session digest + `jti` → big-endian `exp`, the
//!   tokens a website session issued (revoked when it logs out).

use std::path::Path;
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

/// Name of the key-ring tree.
const TREE_SIGNING_KEYS: &str = "signing_keys";
/// Name of the website-session tree.
const TREE_SESSIONS: &str = "sessions";
/// Name of the audit tree.
const TREE_AUDIT: &str = "audit";
/// Name of the issued-token index.
const TREE_ISSUED: &str = "issued_tokens";
/// Name of the denylist.
const TREE_REVOKED: &str = "revoked_tokens";
/// Name of the confirmation-prompt tree.
const TREE_CONFIRMATIONS: &str = "confirmations";
/// Name of the confirmed-pair tree.
const TREE_GRANTS: &str = "confirmation_grants";

/// Name of the agent tree.
const TREE_AGENTS: &str = "agents";
/// Name of the used-SSO-token tree.
const TREE_SSO_JTIS: &str = "sso_jtis";
/// Name of the tree of tokens issued from website sessions.
const TREE_SESSION_TOKENS: &str = "session_tokens";

mod agents;
mod confirmations;
mod sessions;
pub use agents::{AgentRecord, AgentSource};
pub use confirmations::{
    grant_key, AgentCard, ConfirmationGrant, ConfirmationRecord, ConfirmationStatus, Settled,
};
pub use sessions::StoredSession;

/// Who a token was issued to, kept until it expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedToken {
    pub sub: String,
    pub groupid: u64,
    pub exp: u64,
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("corrupt record in tree {tree}: {reason}")]
    Corrupt { tree: &'static str, reason: String },
    #[error("the store is closed")]
    Closed,
}

/// A signing key as persisted. The secret is stored raw: the data directory
/// is as sensitive as the config file and must be protected the same way.
#[derive(Clone, Serialize, Deserialize)]
pub struct StoredSigningKey {
    pub kid: String,
    pub secret: Vec<u8>,
    pub created_at_ms: u64,
}

impl std::fmt::Debug for StoredSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSigningKey")
            .field("kid", &self.kid)
            .field("secret", &"[REDACTED]")
            .field("created_at_ms", &self.created_at_ms)
            .finish()
    }
}

/// The open database and its named trees.
struct Trees {
    db: sled::Db,
    signing_keys: sled::Tree,
    sessions: sled::Tree,
    audit: sled::Tree,
    issued: sled::Tree,
    revoked: sled::Tree,
    confirmations: sled::Tree,
    grants: sled::Tree,
    agents: sled::Tree,
    sso_jtis: sled::Tree,
    session_tokens: sled::Tree,
}

/// The embedded database. [`Store::close`] releases it (and its directory
/// lock) even while other parts of the server still hold the `Store`.
pub struct Store {
    trees: RwLock<Option<Trees>>,
}

impl Store {
    /// Opens (or creates) the database in `dir`. Fails if another process
    /// holds it.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = open_db(dir)?;
        let signing_keys = db.open_tree(TREE_SIGNING_KEYS)?;
        let sessions = db.open_tree(TREE_SESSIONS)?;
        let audit = db.open_tree(TREE_AUDIT)?;
        let issued = db.open_tree(TREE_ISSUED)?;
        let revoked = db.open_tree(TREE_REVOKED)?;
        let confirmations = db.open_tree(TREE_CONFIRMATIONS)?;
        let grants = db.open_tree(TREE_GRANTS)?;
        let agents = db.open_tree(TREE_AGENTS)?;
        let sso_jtis = db.open_tree(TREE_SSO_JTIS)?;
        let session_tokens = db.open_tree(TREE_SESSION_TOKENS)?;
        Ok(Self {
            trees: RwLock::new(Some(Trees {
                db,
                signing_keys,
                sessions,
                audit,
                issued,
                revoked,
                confirmations,
                grants,
                agents,
                sso_jtis,
                session_tokens,
            })),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&Trees) -> Result<T, StoreError>) -> Result<T, StoreError> {
        // A poisoned lock means a panic while holding it; sled itself stays
        // consistent, so carry on with what is inside.
        let guard = self.trees.read().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().map_or(Err(StoreError::Closed), f)
    }

    /// Every stored signing key, in no particular order.
    pub fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError> {
        self.with(|t| {
            t.signing_keys
                .iter()
                .values()
                .map(|value| decode(TREE_SIGNING_KEYS, &value?))
                .collect()
        })
    }

    /// Persists a signing key and flushes it to disk before returning.
    pub fn put_signing_key(&self, key: &StoredSigningKey) -> Result<(), StoreError> {
        let bytes = encode(TREE_SIGNING_KEYS, key)?;
        self.with(|t| {
            t.signing_keys.insert(key.kid.as_bytes(), bytes)?;
            t.signing_keys.flush()?;
            Ok(())
        })
    }

    /// Deletes a signing key and flushes.
    pub fn remove_signing_key(&self, kid: &str) -> Result<(), StoreError> {
        self.with(|t| {
            t.signing_keys.remove(kid.as_bytes())?;
            t.signing_keys.flush()?;
            Ok(())
        })
    }

    /// Appends an audit record under `key` and flushes before returning.
    pub fn put_audit<T: Serialize>(&self, key: &[u8], record: &T) -> Result<(), StoreError> {
        let bytes = encode(TREE_AUDIT, record)?;
        self.with(|t| {
            t.audit.insert(key, bytes)?;
            t.audit.flush()?;
            Ok(())
        })
    }

    /// Walks audit records with `lower <= key < upper` newest first, keeping
    /// those `keep` accepts, until `limit` are kept.
    pub fn audit_newest_first<T: serde::de::DeserializeOwned>(
        &self,
        lower: &[u8],
        upper: &[u8],
        limit: usize,
        mut keep: impl FnMut(&T) -> bool,
    ) -> Result<Vec<(Vec<u8>, T)>, StoreError> {
        self.with(|t| {
            let mut out = Vec::new();
            if lower >= upper {
                return Ok(out);
            }
            for item in t.audit.range(lower..upper).rev() {
                let (key, value) = item?;
                let record: T = decode(TREE_AUDIT, &value)?;
                if keep(&record) {
                    out.push((key.to_vec(), record));
                    if out.len() >= limit {
                        break;
                    }
                }
            }
            Ok(out)
        })
    }

    /// Deletes audit records with keys before `cutoff`; returns how many.
    pub fn remove_audit_before(&self, cutoff: &[u8]) -> Result<usize, StoreError> {
        self.with(|t| {
            let mut removed = 0;
            for key in t.audit.range(..cutoff).keys() {
                t.audit.remove(key?)?;
                removed += 1;
            }
            t.audit.flush()?;
            Ok(removed)
        })
    }

    /// Records who a token was issued to, flushed.
    pub fn put_issued(&self, jti: &str, token: &IssuedToken) -> Result<(), StoreError> {
        let bytes = encode(TREE_ISSUED, token)?;
        self.with(|t| {
            t.issued.insert(jti.as_bytes(), bytes)?;
            t.issued.flush()?;
            Ok(())
        })
    }

    /// Who a token was issued to, if it is still indexed.
    pub fn issued(&self, jti: &str) -> Result<Option<IssuedToken>, StoreError> {
        self.with(|t| {
            t.issued
                .get(jti.as_bytes())?
                .map(|v| decode(TREE_ISSUED, &v))
                .transpose()
        })
    }

    /// Every indexed token of `sub` in `groupid` that expires after `now`.
    pub fn issued_to(
        &self,
        groupid: u64,
        sub: &str,
        now: u64,
    ) -> Result<Vec<(String, IssuedToken)>, StoreError> {
        self.with(|t| {
            let mut out = Vec::new();
            for item in t.issued.iter() {
                let (key, value) = item?;
                let token: IssuedToken = decode(TREE_ISSUED, &value)?;
                if token.groupid == groupid && token.sub == sub && token.exp > now {
                    out.push((String::from_utf8_lossy(&key).into_owned(), token));
                }
            }
            Ok(out)
        })
    }

    /// Adds a token to the denylist until `exp`, flushed.
    pub fn put_revoked(&self, jti: &str, exp: u64) -> Result<(), StoreError> {
        self.with(|t| {
            t.revoked.insert(jti.as_bytes(), &exp.to_be_bytes())?;
            t.revoked.flush()?;
            Ok(())
        })
    }

    /// The whole denylist, `(jti, exp)`.
    pub fn revoked(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.with(|t| {
            t.revoked
                .iter()
                .map(|item| {
                    let (k, v) = item?;
                    let exp = <[u8; 8]>::try_from(v.as_ref()).map_err(|_| StoreError::Corrupt {
                        tree: TREE_REVOKED,
                        reason: "exp is not 8 bytes".into(),
                    })?;
                    Ok((
                        String::from_utf8_lossy(&k).into_owned(),
                        u64::from_be_bytes(exp),
                    ))
                })
                .collect()
        })
    }

    /// Drops index and denylist entries of tokens expired before `now`
    /// (Unix seconds); returns how many.
    pub fn remove_expired_tokens(&self, now: u64) -> Result<usize, StoreError> {
        self.with(|t| {
            let mut removed = 0;
            for item in t.issued.iter() {
                let (key, value) = item?;
                let token: IssuedToken = decode(TREE_ISSUED, &value)?;
                if token.exp < now {
                    t.issued.remove(key)?;
                    removed += 1;
                }
            }
            t.issued.flush()?;
            Ok(removed + remove_expired_before(&t.revoked, now)?)
        })
    }

    /// Flushes and closes the database; later calls answer
    /// [`StoreError::Closed`]. Called once, on shutdown.
    pub fn close(&self) -> Result<(), StoreError> {
        let mut guard = self.trees.write().unwrap_or_else(|p| p.into_inner());
        if let Some(trees) = guard.take() {
            trees.db.flush()?;
        }
        Ok(())
    }
}

/// In a tree whose values are big-endian `exp` (Unix seconds), deletes the
/// entries that expired before `now` (an unreadable value counts as
/// expired) and flushes; returns how many.
fn remove_expired_before(tree: &sled::Tree, now: u64) -> Result<usize, StoreError> {
    let mut removed = 0;
    for item in tree.iter() {
        let (key, value) = item?;
        let exp = <[u8; 8]>::try_from(value.as_ref())
            .map(u64::from_be_bytes)
            .unwrap_or(0);
        if exp < now {
            tree.remove(key)?;
            removed += 1;
        }
    }
    tree.flush()?;
    Ok(removed)
}

/// How long [`Store::open`] waits for a directory lock that is being
/// released.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
const LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(10);

/// Opens sled in `dir`.
///
/// No periodic background flush: every write a client is told about is
/// flushed explicitly. sled releases its directory lock when its last
/// internal handle drops, which its I/O threads can delay by a moment after
/// a close in the same process (a restart in tests or an embedding host);
/// sled offers no event for it, so a held lock is retried for up to
/// [`LOCK_WAIT`]. Another live process holding the directory still fails.
fn open_db(dir: &Path) -> Result<sled::Db, StoreError> {
    let started = std::time::Instant::now();
    loop {
        match sled::Config::new().path(dir).flush_every_ms(None).open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && started.elapsed() < LOCK_WAIT =>
            {
                std::thread::sleep(LOCK_RETRY);
            }
            other => return Ok(other?),
        }
    }
}

fn encode<T: Serialize>(tree: &'static str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt {
        tree,
        reason: e.to_string(),
    })
}

fn decode<T: serde::de::DeserializeOwned>(
    tree: &'static str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        tree,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_keys_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = StoredSigningKey {
            kid: "k1".into(),
            secret: vec![7; 32],
            created_at_ms: 42,
        };
        {
            let store = Store::open(dir.path()).expect("open");
            store.put_signing_key(&key).expect("put");
        }
        let store = Store::open(dir.path()).expect("reopen");
        let keys = store.signing_keys().expect("read");
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid, "k1");
        assert_eq!(keys[0].secret, vec![7; 32]);
        store.remove_signing_key("k1").expect("remove");
        assert!(store.signing_keys().expect("read").is_empty());
    }

    #[test]
    fn close_releases_the_directory_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = std::sync::Arc::new(Store::open(dir.path()).expect("open"));
        let still_held = store.clone();
        store.close().expect("close");
        assert!(matches!(still_held.signing_keys(), Err(StoreError::Closed)));
        Store::open(dir.path()).expect("reopens while the old handle lives");
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let key = StoredSigningKey {
            kid: "k1".into(),
            secret: b"super-secret-bytes".to_vec(),
            created_at_ms: 1,
        };
        let shown = format!("{key:?}");
        assert!(!shown.contains("115"), "{shown}");
        assert!(shown.contains("REDACTED"));
    }
}
