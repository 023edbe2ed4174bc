//! The per-visitor failure lock of confirmation prompts: after
//! [`FAILURE_LIMIT`] failed prompts (wrong answer, decline, timeout) within
//! [`FAILURE_WINDOW_MS`], new prompts for that visitor are refused for
//! [`LOCK_MS`], counted from the failure that tripped it. It runs on the
//! injectable clock, so tests move time instead of waiting.
//!
//! The service holds the [`PromptFailureLocks`] seam;
//! [`InMemoryFailureLocks`] is its single-node implementation.

use std::collections::VecDeque;

use dashmap::DashMap;
use futures_util::future::{self, BoxFuture};
use futures_util::FutureExt;

use crate::infra::ids::VisitorKey;
use crate::store::StoreError;

/// Failed prompts that lock a visitor.
pub const FAILURE_LIMIT: usize = 3;
/// The window they must fall in.
pub const FAILURE_WINDOW_MS: u64 = 10 * 60 * 1000;
/// How long the lock lasts.
pub const LOCK_MS: u64 = 10 * 60 * 1000;

#[derive(Default)]
struct Track {
    recent: VecDeque<u64>,
    locked_until_ms: u64,
}

/// The per-visitor failure lock of confirmation prompts.
///
/// A Redis implementation keeps `confirm_failures:{group}/{visitor}`, a
/// sorted set of failure times (Unix ms) trimmed to [`FAILURE_WINDOW_MS`]
/// and expiring with its newest entry, and `confirm_lock:{group}/{visitor}`
/// with a TTL of [`LOCK_MS`], set by the script that records the failure
/// which trips it; nothing is left for `sweep` (see
/// [`super::RedisFailureLocks`]).
///
/// `locked_for` and `record` return futures: the service awaits them on
/// its async paths, so a Redis implementation never blocks a worker, and
/// a lock set on one node applies on every node at once.
pub trait PromptFailureLocks: Send + Sync {
    /// Milliseconds until `visitor` may be prompted again, if it is locked.
    fn locked_for(&self, visitor: &VisitorKey, now_ms: u64) -> Checked<Option<u64>>;

    /// Counts a failed prompt; true if it locked the visitor.
    fn record(&self, visitor: &VisitorKey, now_ms: u64) -> Checked<bool>;

    /// Forgets visitors with no lock and no failure in the window; returns
    /// how many.
    fn sweep(&self, now_ms: u64) -> usize;
}

/// An answer of the failure locks.
pub type Checked<T> = BoxFuture<'static, Result<T, StoreError>>;

/// Failure counts and locks by visitor, in this process's memory.
#[derive(Default)]
pub struct InMemoryFailureLocks {
    by_visitor: DashMap<VisitorKey, Track>,
}

impl PromptFailureLocks for InMemoryFailureLocks {
    fn locked_for(&self, visitor: &VisitorKey, now_ms: u64) -> Checked<Option<u64>> {
        future::ready(Ok(self.locked_for_now(visitor, now_ms))).boxed()
    }

    fn record(&self, visitor: &VisitorKey, now_ms: u64) -> Checked<bool> {
        future::ready(Ok(self.record_now(visitor, now_ms))).boxed()
    }

    fn sweep(&self, now_ms: u64) -> usize {
        self.sweep_now(now_ms)
    }
}

impl InMemoryFailureLocks {
    fn locked_for_now(&self, visitor: &VisitorKey, now_ms: u64) -> Option<u64> {
        let track = self.by_visitor.get(visitor)?;
        (track.locked_until_ms > now_ms).then(|| track.locked_until_ms - now_ms)
    }

    fn record_now(&self, visitor: &VisitorKey, now_ms: u64) -> bool {
        let mut track = self.by_visitor.entry(visitor.clone()).or_default();
        while track
            .recent
            .front()
            .is_some_and(|t| now_ms >= t + FAILURE_WINDOW_MS)
        {
            track.recent.pop_front();
        }
        track.recent.push_back(now_ms);
        if track.recent.len() >= FAILURE_LIMIT {
            track.recent.clear();
            track.locked_until_ms = now_ms + LOCK_MS;
            return true;
        }
        false
    }

    fn sweep_now(&self, now_ms: u64) -> usize {
        let before = self.by_visitor.len();
        self.by_visitor.retain(|_, t| {
            t.locked_until_ms > now_ms
                || t.recent
                    .back()
                    .is_some_and(|f| now_ms < f + FAILURE_WINDOW_MS)
        });
        before - self.by_visitor.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infra::ids::VisitorId;

    fn v(id: &str) -> VisitorKey {
        VisitorKey::new(72, VisitorId::parse(id).expect("id"))
    }

    #[test]
    fn three_failures_in_the_window_lock_for_ten_minutes() {
        let lock = InMemoryFailureLocks::default();
        let t0 = 1_000_000;
        assert!(!lock.record_now(&v("a"), t0));
        assert!(!lock.record_now(&v("a"), t0 + 60_000));
        assert_eq!(lock.locked_for_now(&v("a"), t0 + 60_000), None);
        assert!(lock.record_now(&v("a"), t0 + 120_000));
        assert_eq!(lock.locked_for_now(&v("a"), t0 + 120_000), Some(LOCK_MS));
        assert_eq!(
            lock.locked_for_now(&v("b"), t0 + 120_000),
            None,
            "per visitor"
        );
        assert_eq!(lock.locked_for_now(&v("a"), t0 + 120_000 + LOCK_MS), None);
    }

    #[test]
    fn failures_spread_beyond_the_window_do_not_lock() {
        let lock = InMemoryFailureLocks::default();
        let t0 = 1_000_000;
        lock.record_now(&v("a"), t0);
        lock.record_now(&v("a"), t0 + 1);
        assert!(!lock.record_now(&v("a"), t0 + FAILURE_WINDOW_MS));
        assert_eq!(lock.sweep_now(t0 + 2 * FAILURE_WINDOW_MS), 1);
    }
}
