//! The token bucket behind each socket's inbound frame-rate limit: it holds
//! at most `burst` tokens, starts full, refills at `per_sec` tokens a
//! second, and every inbound frame takes one. A frame finding the bucket
//! empty is over the limit.

use std::time::Instant;

/// A token bucket of frames.
#[derive(Debug)]
pub struct TokenBucket {
    burst: f64,
    per_sec: f64,
    tokens: f64,
    refilled_at: Instant,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens refilling at `per_sec` a second.
    pub fn new(per_sec: u32, burst: u32, now: Instant) -> Self {
        Self {
            burst: f64::from(burst),
            per_sec: f64::from(per_sec),
            tokens: f64::from(burst),
            refilled_at: now,
        }
    }

    /// Takes one token at `now`; false if the bucket is empty.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.burst);
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn allows_the_burst_then_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, 3, start);
        assert!((0..3).all(|_| bucket.take(start)));
        assert!(!bucket.take(start));
        // A tenth of a second refills one token at 10 a second.
        let later = start + Duration::from_millis(100);
        assert!(bucket.take(later));
        assert!(!bucket.take(later));
    }

    #[test]
    fn never_holds_more_than_the_burst() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(1000, 2, start);
        let much_later = start + Duration::from_secs(3600);
        assert!(bucket.take(much_later));
        assert!(bucket.take(much_later));
        assert!(!bucket.take(much_later));
    }
}
