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
//!
//! A million codes is a small space, so lookups that miss are limited per
//! token and per client (see [`crate::auth::sign_in::LockoutCounters`]).
//!
//! Handlers and sessions hold the [`SessionKeys`] seam;
//! [`InMemorySessionKeys`] is its single-node implementation.

use dashmap::DashMap;

use crate::infra::clock::SharedClock;
use crate::infra::error::DomainError;
use crate::infra::ids::{fill_random, GroupId, VisitorKey};
use crate::infra::rate::TokenBucket;

/// Draws before giving up on finding an unused code.
const MAX_DRAWS: usize = 32;

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
    /// Unix ms at which the visitor's online period began when the key was
    /// minted; the key is good only within that period.
    pub online_since: u64,
}

/// Why no key was handed out; the text is for the visitor's error frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IssueError {
    /// The group's minting budget is spent for now.
    #[error("this group is minting session keys too fast; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// No unused code turned up in [`MAX_DRAWS`] draws.
    #[error("no free session key right now; retry shortly")]
    Exhausted,
}

impl From<IssueError> for DomainError {
    fn from(e: IssueError) -> Self {
        match e {
            IssueError::RateLimited { retry_after_secs } => {
                DomainError::SessionKeyMintLimited(retry_after_secs)
            }
            IssueError::Exhausted => DomainError::SessionKeysExhausted,
        }
    }
}

struct Entry {
    holder: KeyHolder,
    expires: u64,
}

/// One token bucket per group, on the injectable clock.
struct MintBudget {
    per_minute: u64,
    buckets: DashMap<GroupId, TokenBucket>,
}

impl MintBudget {
    fn new(per_minute: u64) -> Self {
        Self {
            per_minute: per_minute.max(1),
            buckets: DashMap::new(),
        }
    }

    /// Spends one mint of `group`, or says how many ms until one refills.
    fn spend(&self, group: GroupId, now_ms: u64) -> Result<(), u64> {
        self.buckets
            .entry(group)
            .or_insert_with(|| TokenBucket::new(self.per_minute, 60_000, self.per_minute, now_ms))
            .take(now_ms)
    }
}

/// Visitors' live session keys: minting (one per connection, within the
/// group's budget), lookup by code, and expiry.
///
/// A Redis implementation keeps `session_key:{group}:{code}` → the holder,
/// claimed with `SET NX` and a TTL of `session_key_ttl_secs` (so codes stay
/// unique per group and expire by themselves, leaving `sweep` nothing to
/// do), `session_key:conn:{connection}` → the connection's code with the
/// same TTL, and each group's mint budget as a token bucket updated by one
/// script.
///
/// The methods are synchronous and called on request workers and visitor
/// actors: today they touch only memory. A Redis implementation must not
/// block there; the cluster issue makes `issue` and `find` return futures
/// or serves them from a node-local replica.
pub trait SessionKeys: Send + Sync {
    /// The live key of `connection`, or a fresh one for `holder` (spending
    /// one of its group's mints).
    fn issue(&self, holder: &KeyHolder, connection: &str) -> Result<SessionKey, IssueError>;

    /// The connection closed: it can no longer ask for its key again. The
    /// key itself lives on for the rest of the visitor's online period.
    fn connection_closed(&self, connection: &str);

    /// Who holds `key` in `group`, if the key is live. The caller checks
    /// the holder's online period and calls [`SessionKeys::drop_key`] if it
    /// has ended.
    fn find(&self, group: GroupId, key: &str) -> Option<KeyHolder>;

    /// Drops `key` of `group` (its visitor went offline).
    fn drop_key(&self, group: GroupId, key: &str);

    /// Drops expired keys; returns how many.
    fn sweep(&self) -> usize;
}

/// Live session keys, in this process's memory.
pub struct InMemorySessionKeys {
    clock: SharedClock,
    ttl_secs: u64,
    by_code: DashMap<(GroupId, String), Entry>,
    /// Each open connection's key, so asking again returns it.
    by_connection: DashMap<String, SessionKey>,
    mints: MintBudget,
}

/// A uniform 6-digit code from the OS CSPRNG (rejection sampling, so no
/// code is likelier than another).
fn draw() -> String {
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

impl InMemorySessionKeys {
    /// Keys live `ttl_secs`; each group mints at most `mints_per_minute`
    /// a minute (with that much burst).
    pub fn new(clock: SharedClock, ttl_secs: u64, mints_per_minute: u64) -> Self {
        Self {
            clock,
            ttl_secs,
            by_code: DashMap::new(),
            by_connection: DashMap::new(),
            mints: MintBudget::new(mints_per_minute),
        }
    }
}

impl SessionKeys for InMemorySessionKeys {
    fn issue(&self, holder: &KeyHolder, connection: &str) -> Result<SessionKey, IssueError> {
        let now_ms = self.clock.now_ms();
        let now = now_ms / 1000;
        if let Some(live) = self.by_connection.get(connection) {
            if live.expires > now {
                return Ok(live.clone());
            }
        }
        let group = holder.visitor.group;
        self.mints
            .spend(group, now_ms)
            .map_err(|ms| IssueError::RateLimited {
                retry_after_secs: ms.div_ceil(1000).max(1),
            })?;
        let expires = now + self.ttl_secs;
        for _ in 0..MAX_DRAWS {
            let code = draw();
            let mut fresh = false;
            let entry = || Entry {
                holder: holder.clone(),
                expires,
            };
            self.by_code
                .entry((group, code.clone()))
                .and_modify(|e| {
                    // An expired code may be reused.
                    if e.expires <= now {
                        *e = entry();
                        fresh = true;
                    }
                })
                .or_insert_with(|| {
                    fresh = true;
                    entry()
                });
            if fresh {
                let key = SessionKey { key: code, expires };
                self.by_connection
                    .insert(connection.to_owned(), key.clone());
                return Ok(key);
            }
        }
        Err(IssueError::Exhausted)
    }

    fn connection_closed(&self, connection: &str) {
        self.by_connection.remove(connection);
    }

    fn find(&self, group: GroupId, key: &str) -> Option<KeyHolder> {
        let now = self.clock.now_secs();
        let entry = self.by_code.get(&(group, key.to_owned()))?;
        (entry.expires > now).then(|| entry.holder.clone())
    }

    fn drop_key(&self, group: GroupId, key: &str) {
        self.by_code.remove(&(group, key.to_owned()));
    }

    fn sweep(&self) -> usize {
        let now = self.clock.now_secs();
        let before = self.by_code.len();
        self.by_code.retain(|_, e| e.expires > now);
        self.by_connection.retain(|_, key| key.expires > now);
        before - self.by_code.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infra::clock::ManualClock;
    use crate::infra::ids::VisitorId;
    use std::sync::Arc;
    use std::time::Duration;

    fn holder(group: u64, id: &str) -> KeyHolder {
        KeyHolder {
            visitor: VisitorKey::new(group, VisitorId::parse(id).expect("id")),
            online_since: 7,
        }
    }

    #[test]
    fn codes_are_six_digits_and_find_their_visitor_until_they_expire() {
        let clock = Arc::new(ManualClock::new(1_800_000_000_000));
        let keys = InMemorySessionKeys::new(clock.clone(), 1200, 100);
        let v = holder(72, "v-1");
        let code = keys.issue(&v, "c1").expect("code");
        assert!(well_formed(&code.key), "{code:?}");
        assert_eq!(code.expires, 1_800_000_000 + 1200);
        assert_eq!(keys.find(72, &code.key), Some(v.clone()));
        assert_eq!(keys.find(73, &code.key), None, "keys are per group");
        clock.advance(Duration::from_secs(1200));
        assert_eq!(keys.find(72, &code.key), None);
        assert_eq!(keys.sweep(), 1);
    }

    #[test]
    fn a_connection_keeps_its_key_until_it_expires_and_tabs_hold_their_own() {
        let clock = Arc::new(ManualClock::new(1_800_000_000_000));
        let keys = InMemorySessionKeys::new(clock.clone(), 1200, 100);
        let v = holder(72, "v-1");
        let first = keys.issue(&v, "c1").expect("code");
        clock.advance(Duration::from_secs(1199));
        assert_eq!(keys.issue(&v, "c1"), Ok(first.clone()), "same key");
        let tab = keys.issue(&v, "c2").expect("code");
        assert_ne!(tab.key, first.key, "another tab holds its own");
        clock.advance(Duration::from_secs(1));
        let renewed = keys.issue(&v, "c1").expect("code");
        assert_ne!(renewed.expires, first.expires, "a fresh key once expired");
        keys.connection_closed("c2");
        assert_eq!(
            keys.find(72, &tab.key),
            Some(v),
            "the key outlives its socket"
        );
        keys.drop_key(72, &tab.key);
        assert_eq!(keys.find(72, &tab.key), None);
    }

    #[test]
    fn minting_spends_a_per_group_bucket_that_refills_over_the_minute() {
        let clock = Arc::new(ManualClock::new(1_800_000_000_000));
        let keys = InMemorySessionKeys::new(clock.clone(), 1200, 3);
        let v = holder(72, "v-1");
        for c in ["c1", "c2", "c3"] {
            keys.issue(&v, c).expect("within the burst");
        }
        assert_eq!(
            keys.issue(&v, "c4"),
            Err(IssueError::RateLimited {
                retry_after_secs: 20
            })
        );
        assert!(keys.issue(&v, "c1").is_ok(), "a held key is no new mint");
        assert!(keys.issue(&holder(73, "v-1"), "c5").is_ok(), "per group");
        clock.advance(Duration::from_secs(20));
        assert!(keys.issue(&v, "c4").is_ok(), "one mint refilled");
        assert!(keys.issue(&v, "c6").is_err());
    }

    #[test]
    fn codes_are_unique_within_a_group() {
        let clock = Arc::new(ManualClock::new(0));
        let keys = InMemorySessionKeys::new(clock, 1200, 10_000);
        let mut seen = std::collections::HashSet::new();
        for i in 0..2000 {
            let id = format!("v-{i}");
            let code = keys.issue(&holder(72, &id), &id).expect("code");
            assert!(seen.insert(code.key), "duplicate code");
        }
    }

    #[test]
    fn shape_check() {
        for ok in ["000000", "482913"] {
            assert!(well_formed(ok));
        }
        for bad in ["", "12345", "1234567", "12a456", "١٢٣٤٥٦"] {
            assert!(!well_formed(bad), "{bad}");
        }
    }
}
