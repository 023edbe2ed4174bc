//! A token bucket in whole milliseconds, on whatever clock the caller
//! reads (the injectable clock, or an `Instant` base): it holds at most
//! `burst` tokens, starts full, and refills `per_window` tokens every
//! `window_ms`. Integer credit keeps it exact: a token is `window_ms`
//! units, and every millisecond adds `per_window` units.
//!
//! Used for each socket's inbound frame rate and each group's session-key
//! minting.

/// A token bucket.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    per_window: u64,
    window_ms: u64,
    capacity: u64,
    credit: u64,
    at_ms: u64,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens refilling `per_window` per `window_ms`.
    pub fn new(per_window: u64, window_ms: u64, burst: u64, now_ms: u64) -> Self {
        let window_ms = window_ms.max(1);
        let capacity = burst.max(1).saturating_mul(window_ms);
        Self {
            per_window: per_window.max(1),
            window_ms,
            capacity,
            credit: capacity,
            at_ms: now_ms,
        }
    }

    /// Takes one token at `now_ms`, or says how many ms until one refills.
    pub fn take(&mut self, now_ms: u64) -> Result<(), u64> {
        let elapsed = now_ms.saturating_sub(self.at_ms);
        self.credit = self
            .credit
            .saturating_add(elapsed.saturating_mul(self.per_window))
            .min(self.capacity);
        self.at_ms = self.at_ms.max(now_ms);
        if self.credit < self.window_ms {
            return Err((self.window_ms - self.credit).div_ceil(self.per_window));
        }
        self.credit -= self.window_ms;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_burst_then_the_rate() {
        // 10 a second, burst 3.
        let mut bucket = TokenBucket::new(10, 1000, 3, 0);
        assert!((0..3).all(|_| bucket.take(0).is_ok()));
        assert_eq!(bucket.take(0), Err(100));
        // A tenth of a second refills one token.
        assert!(bucket.take(100).is_ok());
        assert!(bucket.take(100).is_err());
    }

    #[test]
    fn never_holds_more_than_the_burst() {
        let mut bucket = TokenBucket::new(1000, 1000, 2, 0);
        let much_later = 3_600_000;
        assert!(bucket.take(much_later).is_ok());
        assert!(bucket.take(much_later).is_ok());
        assert!(bucket.take(much_later).is_err());
    }

    #[test]
    fn a_clock_going_back_refills_nothing() {
        let mut bucket = TokenBucket::new(1, 60_000, 1, 10_000);
        assert!(bucket.take(10_000).is_ok());
        assert!(bucket.take(5_000).is_err());
        assert_eq!(bucket.take(10_000), Err(60_000));
    }
}
