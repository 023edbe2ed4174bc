//! Session keys: the "read me the code on your screen" flow. A visitor asks
//! for a 6-digit code (CSPRNG, unique within its group, lasting
//! `session_key_ttl_secs`); an agent of the group looks the visitor up by
//! it.
//!
//! Limits:
//! - **One live key per connection.** A socket that asks again gets the
//!   same key and expiry until it expires; another tab of the visitor holds
//!   its own. A key outlives its socket (a page navigation keeps it), but
//!   the connection's claim on it ends when the socket closes.
//! - **Per-group minting budget.** Every fresh key spends one mint from its
//!   group's token bucket: `session_key_mints_per_minute` of burst, refilled
//!   at that rate. Beyond it a request is refused until a mint refills.
//! - **Bound to one online period.** A key remembers when its visitor's
//!   online period began ([`VisitorState::connected_at`](super::registry::VisitorState::connected_at));
//!   once the visitor is offline after the grace period, or online again
//!   in a later period, the key no longer resolves and is dropped.
//! - **Durable.** A key is written to sled and flushed before the visitor
//!   sees it. After a restart every visitor's online period has ended with
//!   the process, so a restored key is bound to the first period that
//!   begins within `reconnect_grace_ms` of the start: to its visitor, a
//!   crash looks like a page navigation.
//!
//! A million codes is a small space, so lookups that miss are limited per
//! token and per client (see [`crate::auth::sign_in::LockoutCounters`]).
//!
//! Handlers and sessions hold the [`SessionKeys`] seam;
//! [`LocalSessionKeys`] is its single-node implementation.

use dashmap::DashMap;

use crate::infra::error::DomainError;
use crate::infra::ids::{fill_random, GroupId, VisitorKey};
use crate::infra::rate::TokenBucket;

mod cluster;
mod local;
pub use cluster::RedisSessionKeys;
pub use local::LocalSessionKeys;

/// A code handed to a visitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionKey {
    pub key: String,
    /// Unix seconds.
    pub expires: u64,
}

/// Who a live key belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyHolder {
    pub visitor: VisitorKey,
    /// The online period the key is good in.
    pub period: OnlinePeriod,
}

/// Which of its visitor's online periods a key is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnlinePeriod {
    /// The period that began at this Unix ms.
    Began(u64),
    /// A key restored after a restart: the first period that began at or
    /// before this Unix ms (the start plus the grace period). A later
    /// period can only begin after the visitor was offline for the grace
    /// period, so exactly one period matches.
    FirstBy(u64),
}

impl OnlinePeriod {
    /// Whether a visitor whose online period began at `connected_at` (Unix
    /// ms) is in this period.
    pub fn includes(self, connected_at: u64) -> bool {
        match self {
            OnlinePeriod::Began(at) => connected_at == at,
            OnlinePeriod::FirstBy(deadline) => connected_at <= deadline,
        }
    }
}

/// Why no key was handed out; the text is for the visitor's error frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssueError {
    /// The group's minting budget is spent for now.
    #[error("this group is minting session keys too fast; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// No unused code turned up in a bounded number of draws.
    #[error("no free session key right now; retry shortly")]
    Exhausted,
    /// The key could not be made durable; nobody was shown it.
    #[error("session key store: {0}")]
    Store(String),
    /// Cluster mode: Redis did not answer in time; nobody was shown a key.
    #[error("shared state: {0}")]
    Unavailable(String),
}

impl From<IssueError> for DomainError {
    fn from(e: IssueError) -> Self {
        match e {
            IssueError::RateLimited { retry_after_secs } => {
                DomainError::SessionKeyMintLimited(retry_after_secs)
            }
            IssueError::Exhausted => DomainError::SessionKeysExhausted,
            IssueError::Store(e) => DomainError::Internal(format!("session key store: {e}")),
            IssueError::Unavailable(e) => DomainError::ClusterUnavailable(e),
        }
    }
}

/// One token bucket per group, on the injectable clock.
pub(super) struct MintBudget {
    per_minute: u64,
    buckets: DashMap<GroupId, TokenBucket>,
}

impl MintBudget {
    pub(super) fn new(per_minute: u64) -> Self {
        Self {
            per_minute: per_minute.max(1),
            buckets: DashMap::new(),
        }
    }

    /// Spends one mint of `group`, or says how many ms until one refills.
    pub(super) fn spend(&self, group: GroupId, now_ms: u64) -> Result<(), u64> {
        self.buckets
            .entry(group)
            .or_insert_with(|| TokenBucket::new(self.per_minute, 60_000, self.per_minute, now_ms))
            .take(now_ms)
    }
}

/// Visitors' live session keys: minting (one per connection, within the
/// group's budget), lookup by code, and expiry.
///
/// The Redis implementation ([`RedisSessionKeys`]) keeps
/// `session_key:{group}:{code}` → the holder, claimed with `SET NX` and a
/// TTL of `session_key_ttl_secs` (so codes stay unique per group across
/// nodes and expire by themselves), and each group's mint budget
/// (`session_key_mints:{group}`) as a token bucket updated by one script.
/// A connection's own key stays in its node's memory: a connection lives
/// on one node.
///
/// The methods are synchronous. `issue` writes durably and may block, so
/// visitor sessions call it on the blocking pool; the others touch only
/// memory and run on request workers and visitor actors. The Redis
/// implementation ([`RedisSessionKeys`]) keeps them so: `find` reads a
/// node-local replica of the live keys, kept current by broadcasts that
/// `issue` awaits before the visitor sees its code, and drops are written
/// in the background.
pub trait SessionKeys: Send + Sync {
    /// The live key of `connection`, or a fresh one for `holder` (spending
    /// one of its group's mints).
    fn issue(&self, holder: &KeyHolder, connection: &str) -> Result<SessionKey, IssueError>;

    /// The connection closed: it can no longer ask for its key again. The
    /// key itself lives on for the rest of the visitor's online period.
    fn connection_closed(&self, connection: &str);

    /// Who holds `key` in `group`, if the key is live. The caller checks
    /// the holder's online period and calls [`SessionKeys::not_current`]
    /// if the visitor is not in it.
    fn find(&self, group: GroupId, key: &str) -> Option<KeyHolder>;

    /// The holder of `key` of `group` is not in the key's online period:
    /// the key is dropped, unless it was restored after a restart and its
    /// visitor may still come back within the grace period.
    fn not_current(&self, group: GroupId, key: &str);

    /// Drops expired keys, and keys whose holder is no longer in their
    /// online period (`in_period` says whether it is; a key restored after
    /// a restart is kept while its visitor may still come back), so that
    /// a key of an ended period does not come back after a restart.
    /// Returns how many.
    fn sweep(&self, in_period: &dyn Fn(&KeyHolder) -> bool) -> usize;
}

/// A uniform 6-digit code from the OS CSPRNG (rejection sampling, so no
/// code is likelier than another).
pub(super) fn draw() -> String {
    const LIMIT: u32 = u32::MAX - u32::MAX % 1_000_000;
    loop {
        let mut bytes = [0u8; 4];
        fill_random(&mut bytes);
        let n = u32::from_le_bytes(bytes);
        if n < LIMIT {
            return format!("{:06}", n % 1_000_000);
        }
    }
}

/// Whether `key` has the shape of a session key.
pub fn well_formed(key: &str) -> bool {
    key.len() == 6 && key.bytes().all(|b| b.is_ascii_digit())
}
