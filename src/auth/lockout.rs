//! Failed-attempt limits: per account and per client IP, a sliding window of
//! failure times. After `limit` failures within `window`, further attempts
//! are refused with 429 until the oldest of them leaves the window.
//!
//! This is the "equivalent" the issue allows instead of governor: GCRA's
//! burst-and-refill shape cannot express "5 failures in 15 minutes", and
//! the window must run on the injectable clock so tests need no sleeps.

use std::collections::VecDeque;

use dashmap::DashMap;

use crate::clock::SharedClock;

/// One keyed window.
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

    /// Milliseconds until `key` may try again, if it is locked.
    fn locked_for(&self, key: &str, now: u64) -> Option<u64> {
        let times = self.failures.get(key)?;
        let recent = times.iter().filter(|t| now < **t + self.window_ms).count();
        if recent < self.limit {
            return None;
        }
        // Locked until the oldest of the last `limit` failures expires.
        let oldest = times[times.len() - self.limit];
        Some((oldest + self.window_ms).saturating_sub(now))
    }

    /// Records a failure; true if it is the one that locks the key.
    fn fail(&self, key: &str, now: u64) -> bool {
        let mut times = self.failures.entry(key.to_owned()).or_default();
        while times.front().is_some_and(|t| now >= *t + self.window_ms) {
            times.pop_front();
        }
        times.push_back(now);
        while times.len() > self.limit {
            times.pop_front();
        }
        times.len() == self.limit
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

/// Per-account and per-IP failure limits.
pub struct Lockout {
    clock: SharedClock,
    accounts: Window,
    clients: Window,
}

impl Lockout {
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

    /// Refuses an attempt while its account or client is locked.
    pub fn check(&self, account: Option<&str>, client: Option<&str>) -> Result<(), Locked> {
        let now = self.clock.now_ms();
        let locked = |window: &Window, key: Option<&str>, what| {
            key.and_then(|k| window.locked_for(k, now))
                .map(|ms| Locked {
                    retry_after_secs: ms.div_ceil(1000).max(1),
                    what,
                })
        };
        match locked(&self.accounts, account, "account")
            .or_else(|| locked(&self.clients, client, "client"))
        {
            Some(l) => Err(l),
            None => Ok(()),
        }
    }

    /// Records a failed attempt; returns what it locked, if anything.
    pub fn fail(&self, account: Option<&str>, client: Option<&str>) -> Vec<&'static str> {
        let now = self.clock.now_ms();
        let mut locked = Vec::new();
        if account.is_some_and(|a| self.accounts.fail(a, now)) {
            locked.push("account");
        }
        if client.is_some_and(|c| self.clients.fail(c, now)) {
            locked.push("client");
        }
        locked
    }

    /// Forgets keys with no failure in the window; bounds memory.
    pub fn sweep(&self) -> usize {
        let now = self.clock.now_ms();
        self.accounts.sweep(now) + self.clients.sweep(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn five_failures_in_the_window_lock_the_account_until_the_oldest_expires() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let lockout = Lockout::new(clock.clone(), 5, 20, 900);
        for i in 0..5 {
            assert_eq!(lockout.check(Some("fred"), None), Ok(()), "attempt {i}");
            let locked = lockout.fail(Some("fred"), None);
            assert_eq!(locked.is_empty(), i < 4);
            clock.advance(Duration::from_secs(60));
        }
        // Failures at t=0,60,..,240; now t=300: locked until t=900.
        let locked = lockout.check(Some("fred"), None).expect_err("locked");
        assert_eq!((locked.retry_after_secs, locked.what), (600, "account"));
        assert_eq!(
            lockout.check(Some("ada"), None),
            Ok(()),
            "other accounts are unaffected"
        );
        clock.advance(Duration::from_secs(599));
        assert!(lockout.check(Some("fred"), None).is_err());
        clock.advance(Duration::from_secs(1));
        assert_eq!(lockout.check(Some("fred"), None), Ok(()));
    }

    #[test]
    fn failures_spread_wider_than_the_window_never_lock() {
        let clock = Arc::new(ManualClock::new(0));
        let lockout = Lockout::new(clock.clone(), 5, 20, 900);
        for _ in 0..20 {
            assert_eq!(lockout.check(Some("fred"), None), Ok(()));
            lockout.fail(Some("fred"), None);
            clock.advance(Duration::from_secs(181));
        }
    }

    #[test]
    fn clients_are_limited_across_accounts_and_swept() {
        let clock = Arc::new(ManualClock::new(0));
        let lockout = Lockout::new(clock.clone(), 5, 3, 900);
        for user in ["a", "b", "c"] {
            lockout.fail(Some(user), Some("10.0.0.1"));
        }
        let locked = lockout
            .check(Some("d"), Some("10.0.0.1"))
            .expect_err("client locked");
        assert_eq!(locked.what, "client");
        assert_eq!(lockout.check(Some("d"), Some("10.0.0.2")), Ok(()));
        clock.advance(Duration::from_secs(900));
        assert_eq!(lockout.sweep(), 4);
        assert_eq!(lockout.check(Some("d"), Some("10.0.0.1")), Ok(()));
    }
}
