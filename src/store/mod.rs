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
//! - `session_keys`: big-endian group + code → [`StoredSessionKey`], the
//!   visitors' live 6-digit session keys.
//! - `received_keys` (auth role): `kid` → [`ReceivedKey`], the signing keys
//!   presence nodes handed over.
//! - `key_handovers` (presence role): `kid` → big-endian ms, when an auth
//!   node first confirmed it holds the key.
//! - `revocation_outbox` (auth role without Redis): `jti` → big-endian
//!   `exp`, revocations not yet confirmed by the presence node.
//! - `webhook_outbox`: big-endian sequence → [`OutboxDelivery`], webhook
//!   deliveries not yet acknowledged, in event order.
//! - `webhook_dead_letters`: big-endian group + sequence → [`DeadLetter`],
//!   deliveries that gave up, until replayed.

use std::path::Path;
use std::sync::RwLock;

use serde::Serialize;

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
/// Name of the visitors' session-key tree.
const TREE_SESSION_KEYS: &str = "session_keys";
/// Name of the auth role's handed-over keys.
const TREE_RECEIVED_KEYS: &str = "received_keys";
/// Name of the presence role's handover confirmations.
const TREE_KEY_HANDOVERS: &str = "key_handovers";
/// Name of the auth role's undelivered revocations.
const TREE_REVOCATION_OUTBOX: &str = "revocation_outbox";
/// Name of the webhook outbox.
const TREE_WEBHOOK_OUTBOX: &str = "webhook_outbox";
/// Name of the webhook dead letters.
const TREE_WEBHOOK_DEAD: &str = "webhook_dead_letters";

mod agents;
mod audit;
pub mod cluster;
mod confirmations;
mod handover;
mod session_keys;
mod sessions;
mod tokens;
mod webhooks;
pub use agents::{AgentRecord, AgentSource};
pub use confirmations::{
    grant_key, AgentCard, ConfirmationGrant, ConfirmationRecord, ConfirmationStatus, Settled,
};
pub use handover::ReceivedKey;
pub use session_keys::StoredSessionKey;
pub use sessions::StoredSession;
pub use tokens::{IssuedToken, StoredSigningKey};
pub use webhooks::{DeadLetter, OutboxDelivery};

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("corrupt record in tree {tree}: {reason}")]
    Corrupt { tree: &'static str, reason: String },
    #[error("the store is closed")]
    Closed,
    /// Another live process (a running server) holds the directory's lock.
    #[error("the data directory {0} is held by another process (a running server)")]
    Held(String),
    /// Cluster mode: Redis did not answer in time, or refused.
    #[error("shared state: {0}")]
    Unavailable(#[source] crate::infra::error::SharedStateUnavailable),
}

impl From<crate::infra::error::SharedStateUnavailable> for StoreError {
    fn from(e: crate::infra::error::SharedStateUnavailable) -> Self {
        StoreError::Unavailable(e)
    }
}

impl From<StoreError> for crate::infra::error::DomainError {
    /// `cluster_unavailable` when Redis failed, `internal` otherwise.
    fn from(e: StoreError) -> Self {
        crate::infra::error::DomainError::from_failure("store", &e)
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
    session_keys: sled::Tree,
    received_keys: sled::Tree,
    key_handovers: sled::Tree,
    revocation_outbox: sled::Tree,
    webhook_outbox: sled::Tree,
    webhook_dead: sled::Tree,
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
        let session_keys = db.open_tree(TREE_SESSION_KEYS)?;
        let received_keys = db.open_tree(TREE_RECEIVED_KEYS)?;
        let key_handovers = db.open_tree(TREE_KEY_HANDOVERS)?;
        let revocation_outbox = db.open_tree(TREE_REVOCATION_OUTBOX)?;
        let webhook_outbox = db.open_tree(TREE_WEBHOOK_OUTBOX)?;
        let webhook_dead = db.open_tree(TREE_WEBHOOK_DEAD)?;
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
                session_keys,
                received_keys,
                key_handovers,
                revocation_outbox,
                webhook_outbox,
                webhook_dead,
            })),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&Trees) -> Result<T, StoreError>) -> Result<T, StoreError> {
        // A poisoned lock means a panic while holding it; sled itself stays
        // consistent, so carry on with what is inside.
        let guard = self.trees.read().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().map_or(Err(StoreError::Closed), f)
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
/// [`LOCK_WAIT`]. Another live process holding the directory still fails,
/// with [`StoreError::Held`].
fn open_db(dir: &Path) -> Result<sled::Db, StoreError> {
    let started = std::time::Instant::now();
    loop {
        match sled::Config::new().path(dir).flush_every_ms(None).open() {
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                if started.elapsed() >= LOCK_WAIT {
                    return Err(StoreError::Held(dir.display().to_string()));
                }
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
    fn close_releases_the_directory_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = std::sync::Arc::new(Store::open(dir.path()).expect("open"));
        let still_held = store.clone();
        store.close().expect("close");
        assert!(matches!(still_held.signing_keys(), Err(StoreError::Closed)));
        Store::open(dir.path()).expect("reopens while the old handle lives");
    }

    #[test]
    fn a_held_directory_is_refused_as_held() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _holder = Store::open(dir.path()).expect("open");
        match Store::open(dir.path()) {
            Err(StoreError::Held(held)) => assert_eq!(held, dir.path().display().to_string()),
            other => panic!("expected Held, got {:?}", other.err()),
        }
    }
}
