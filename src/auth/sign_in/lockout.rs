//! Failed-attempt limits: per account and per client IP, a sliding window of
//! failure times. After `limit` failures within `window`, further attempts
//! are refused with 429 until the oldest of them leaves the window.
//!
//! An attempt reserves its failure slot *before* its credentials are
//! checked and gives it back on success, so concurrent guesses cannot all
//! pass the check while the first ones are still hashing.
//!
//! This is the "equivalent" the issue allows instead of governor: GCRA's
//! burst-and-refill shape cannot express "5 failures in 15 minutes", and
//! the window must run on the injectable clock so tests need no sleeps.
//!
//! [`LockoutCounters`] is the seam every user holds (credential sign-ins,
//! session-key lookups); [`InMemoryLockout`] is its single-node
//! implementation, `redis_lockout` the cluster one.

use std::collections::VecDeque;
use std::sync::Arc;

use dashmap::DashMap;
use futures_core::future::BoxFuture;

use crate::infra::clock::SharedClock;
use crate::infra::error::SharedStateUnavailable;

/// What the asynchronous lockout methods return: the answer, or the shared
/// state (cluster mode) did not answer.
pub type Pending<T> = BoxFuture<'static, Result<T, SharedStateUnavailable>>;

/// One keyed window of failure (or reserved) times.
struct Window {
    limit: usize,
    window_ms: u64,
    failures: DashMap<String, VecDeque<u64>>,
}

impl Window {
    fn new(limit: usize, window_ms: u64) -> Self {
        Self {
            limit,
            window_ms,
            failures: DashMap::new(),
        }
    }

    /// Reserves a slot for `key` at `now`: the slot's position (1-based), or
    /// the milliseconds until one frees.
    fn reserve(&self, key: &str, now: u64) -> Result<usize, u64> {
        let mut times = self.failures.entry(key.to_owned()).or_default();
        while times.front().is_some_and(|t| now >= *t + self.window_ms) {
            times.pop_front();
        }
        if times.len() >= self.limit {
            let oldest = times[times.len() - self.limit];
            return Err((oldest + self.window_ms).saturating_sub(now));
        }
        times.push_back(now);
        Ok(times.len())
    }

    /// Gives back a slot reserved at `at`.
    fn release(&self, key: &str, at: u64) {
        self.failures.remove_if_mut(key, |_, times| {
            if let Some(pos) = times.iter().position(|t| *t == at) {
                times.remove(pos);
            }
            times.is_empty()
        });
    }

    fn sweep(&self, now: u64) -> usize {
        let before = self.failures.len();
        self.failures
            .retain(|_, times| times.back().is_some_and(|t| now < *t + self.window_ms));
        before - self.failures.len()
    }
}

/// Why an attempt is refused before its credentials are looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locked {
    pub retry_after_secs: u64,
    pub what: &'static str,
}

/// An attempt holding failure slots until it is settled.
#[derive(Debug, Clone)]
#[must_use = "settle the attempt with succeeded() or failed()"]
pub struct Attempt {
    /// When the slots were reserved (Unix ms).
    pub at: u64,
    /// Tells this attempt's slots from others reserved in the same
    /// millisecond (on other nodes); 0 in memory.
    pub nonce: u64,
    /// The account's key and the 1-based position of its reserved slot.
    pub account: Option<(String, usize)>,
    /// The client's key and the position of its reserved slot.
    pub client: Option<(String, usize)>,
}

/// Failed-attempt counters per account and per client, each a sliding
/// window with its own limit.
///
/// A Redis implementation keeps each key's failure times in a sorted set,
/// `lockout:{scope}:{account|client}:{key}` scored by Unix ms, trimmed to
/// the window and expiring one window after its newest entry; `begin`
/// reserves in both sets in one script, so nodes cannot overrun a limit.
///
/// Every method returns a future, so no request worker blocks on Redis;
/// the in-memory one settles at once. Every user (credential sign-ins,
/// session-key lookups) goes through them, so the cluster-wide count is
/// exact.
pub trait LockoutCounters: Send + Sync {
    /// Starts an attempt, or refuses it while its account or client is
    /// locked.
    fn begin_async(
        &self,
        account: Option<&str>,
        client: Option<&str>,
    ) -> Pending<Result<Attempt, Locked>>;

    /// The credentials were good: the attempt does not count.
    fn succeeded_async(&self, attempt: Attempt) -> Pending<()>;

    /// The credentials were bad: the slot stays taken. Returns what this
    /// failure locked (the one that filled the window), for the audit log.
    fn failed_async(&self, attempt: Attempt) -> Pending<Vec<&'static str>>;

    /// Forgets keys with no failure in the window; bounds memory. Returns
    /// how many went.
    fn sweep(&self) -> usize;
}

/// An attempt whose slots are given back if it is dropped unsettled (its
/// caller went away before the outcome was known, so nobody learnt
/// anything from it).
pub struct Reservation {
    counters: Arc<dyn LockoutCounters>,
    attempt: Option<Attempt>,
}

impl Reservation {
    /// Begins an attempt on `counters`; as [`LockoutCounters::begin_async`].
    pub async fn begin(
        counters: &Arc<dyn LockoutCounters>,
        account: Option<&str>,
        client: Option<&str>,
    ) -> Result<Result<Self, Locked>, SharedStateUnavailable> {
        let begun = counters.begin_async(account, client).await?;
        Ok(begun.map(|attempt| Self {
            counters: counters.clone(),
            attempt: Some(attempt),
        }))
    }

    /// The attempt does not count.
    pub fn succeeded(mut self) -> Pending<()> {
        match self.attempt.take() {
            Some(attempt) => self.counters.succeeded_async(attempt),
            None => Box::pin(std::future::ready(Ok(()))),
        }
    }

    /// The attempt failed; what it locked.
    pub fn failed(mut self) -> Pending<Vec<&'static str>> {
        match self.attempt.take() {
            Some(attempt) => self.counters.failed_async(attempt),
            None => Box::pin(std::future::ready(Ok(Vec::new()))),
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(attempt) = self.attempt.take() {
            // The release is under way once asked for (Redis commands are
            // spawned), so the future may go.
            drop(self.counters.succeeded_async(attempt));
        }
    }
}

/// What a failed attempt locked: the windows its slot filled.
pub(crate) fn filled(
    attempt: &Attempt,
    account_limit: usize,
    client_limit: usize,
) -> Vec<&'static str> {
    let mut locked = Vec::new();
    if attempt
        .account
        .as_ref()
        .is_some_and(|(_, pos)| *pos == account_limit)
    {
        locked.push("account");
    }
    if attempt
        .client
        .as_ref()
        .is_some_and(|(_, pos)| *pos == client_limit)
    {
        locked.push("client");
    }
    locked
}

/// Per-account and per-IP failure limits, in this process's memory.
pub struct InMemoryLockout {
    clock: SharedClock,
    accounts: Window,
    clients: Window,
}

impl InMemoryLockout {
    pub fn new(
        clock: SharedClock,
        account_limit: usize,
        client_limit: usize,
        window_secs: u64,
    ) -> Self {
        Self {
            clock,
            accounts: Window::new(account_limit, window_secs * 1000),
            clients: Window::new(client_limit, window_secs * 1000),
        }
    }
}

impl InMemoryLockout {
    /// Starts an attempt, or refuses it while locked.
    pub fn begin(&self, account: Option<&str>, client: Option<&str>) -> Result<Attempt, Locked> {
        let at = self.clock.now_ms();
        let locked = |ms: u64, what| Locked {
            retry_after_secs: ms.div_ceil(1000).max(1),
            what,
        };
        let account = match account {
            Some(a) => Some((
                a.to_owned(),
                self.accounts
                    .reserve(a, at)
                    .map_err(|ms| locked(ms, "account"))?,
            )),
            None => None,
        };
        let client = match client {
            Some(c) => match self.clients.reserve(c, at) {
                Ok(pos) => Some((c.to_owned(), pos)),
                Err(ms) => {
                    if let Some((a, _)) = &account {
                        self.accounts.release(a, at);
                    }
                    return Err(locked(ms, "client"));
                }
            },
            None => None,
        };
        Ok(Attempt {
            at,
            nonce: 0,
            account,
            client,
        })
    }

    /// The attempt does not count: its slots are given back.
    pub fn succeeded(&self, attempt: Attempt) {
        if let Some((a, _)) = &attempt.account {
            self.accounts.release(a, attempt.at);
        }
        if let Some((c, _)) = &attempt.client {
            self.clients.release(c, attempt.at);
        }
    }

    /// The attempt failed: its slots stay taken; what it filled.
    pub fn failed(&self, attempt: Attempt) -> Vec<&'static str> {
        filled(&attempt, self.accounts.limit, self.clients.limit)
    }
}

impl LockoutCounters for InMemoryLockout {
    fn begin_async(
        &self,
        account: Option<&str>,
        client: Option<&str>,
    ) -> Pending<Result<Attempt, Locked>> {
        Box::pin(std::future::ready(Ok(self.begin(account, client))))
    }

    fn succeeded_async(&self, attempt: Attempt) -> Pending<()> {
        self.succeeded(attempt);
        Box::pin(std::future::ready(Ok(())))
    }

    fn failed_async(&self, attempt: Attempt) -> Pending<Vec<&'static str>> {
        Box::pin(std::future::ready(Ok(self.failed(attempt))))
    }

    fn sweep(&self) -> usize {
        let now = self.clock.now_ms();
        self.accounts.sweep(now) + self.clients.sweep(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infra::clock::ManualClock;
    use std::time::Duration;

    #[tokio::test]
    async fn a_reservation_dropped_unsettled_gives_its_slot_back() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let counters: Arc<dyn LockoutCounters> = Arc::new(InMemoryLockout::new(clock, 1, 20, 900));
        let held = Reservation::begin(&counters, Some("fred"), None).await;
        let held = held.expect("reachable").expect("a slot");
        let second = Reservation::begin(&counters, Some("fred"), None).await;
        assert!(second.expect("reachable").is_err(), "the one slot is held");
        drop(held);
        let again = Reservation::begin(&counters, Some("fred"), None).await;
        let again = again.expect("reachable").expect("given back");
        let _ = again.failed().await;
        let locked = Reservation::begin(&counters, Some("fred"), None).await;
        assert!(
            locked.expect("reachable").is_err(),
            "a settled failure counts"
        );
    }

    #[test]
    fn five_failures_in_the_window_lock_the_account_until_the_oldest_expires() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let lockout = InMemoryLockout::new(clock.clone(), 5, 20, 900);
        for i in 0..5 {
            let attempt = lockout.begin(Some("fred"), None).expect("not locked yet");
            let locked = lockout.failed(attempt);
            assert_eq!(locked.is_empty(), i < 4, "attempt {i}");
            clock.advance(Duration::from_secs(60));
        }
        // Failures at t=0,60,..,240; now t=300: locked until t=900.
        let locked = lockout.begin(Some("fred"), None).expect_err("locked");
        assert_eq!((locked.retry_after_secs, locked.what), (600, "account"));
        assert!(
            lockout.begin(Some("ada"), None).is_ok(),
            "other accounts are unaffected"
        );
        clock.advance(Duration::from_secs(599));
        assert!(lockout.begin(Some("fred"), None).is_err());
        clock.advance(Duration::from_secs(1));
        assert!(lockout.begin(Some("fred"), None).is_ok());
    }

    #[test]
    fn concurrent_attempts_cannot_overrun_the_limit() {
        let clock = Arc::new(ManualClock::new(0));
        let lockout = InMemoryLockout::new(clock, 5, 100, 900);
        let in_flight: Vec<_> = (0..5)
            .map(|_| lockout.begin(Some("fred"), None).expect("slot"))
            .collect();
        assert!(
            lockout.begin(Some("fred"), None).is_err(),
            "all slots are taken"
        );
        let locks: Vec<_> = in_flight.into_iter().map(|a| lockout.failed(a)).collect();
        assert_eq!(
            locks.iter().filter(|l| !l.is_empty()).count(),
            1,
            "one lockout record"
        );
    }

    #[test]
    fn successes_give_their_slot_back() {
        let clock = Arc::new(ManualClock::new(0));
        let lockout = InMemoryLockout::new(clock, 2, 100, 900);
        for _ in 0..10 {
            let attempt = lockout.begin(Some("fred"), Some("ip")).expect("slot");
            lockout.succeeded(attempt);
        }
        let attempt = lockout.begin(Some("fred"), None).expect("slot");
        assert!(lockout.failed(attempt).is_empty());
    }

    #[test]
    fn failures_spread_wider_than_the_window_never_lock() {
        let clock = Arc::new(ManualClock::new(0));
        let lockout = InMemoryLockout::new(clock.clone(), 5, 20, 900);
        for _ in 0..20 {
            let attempt = lockout.begin(Some("fred"), None).expect("never locked");
            let _ = lockout.failed(attempt);
            clock.advance(Duration::from_secs(181));
        }
    }

    #[test]
    fn clients_are_limited_across_accounts_and_swept() {
        let clock = Arc::new(ManualClock::new(0));
        let lockout = InMemoryLockout::new(clock.clone(), 5, 3, 900);
        for user in ["a", "b", "c"] {
            let attempt = lockout.begin(Some(user), Some("10.0.0.1")).expect("slot");
            let _ = lockout.failed(attempt);
        }
        let locked = lockout
            .begin(Some("d"), Some("10.0.0.1"))
            .expect_err("client locked");
        assert_eq!(locked.what, "client");
        // The refused attempt did not keep an account slot.
        for _ in 0..5 {
            let attempt = lockout.begin(Some("d"), Some("10.0.0.2")).expect("slot");
            lockout.succeeded(attempt);
        }
        clock.advance(Duration::from_secs(900));
        assert_eq!(lockout.sweep(), 4);
        assert!(lockout.begin(Some("d"), Some("10.0.0.1")).is_ok());
    }
}
