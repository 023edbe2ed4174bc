//! The visitor script's reconnect backoff, and where and when a visitor
//! that lost its socket connects next.

use std::time::{Duration, Instant};

use rand::Rng;

/// Where a visitor connects next, and when (with `--reconnect`).
pub struct Retry {
    pub node: usize,
    failures: u32,
    pub at: Instant,
    /// When the visitor last lost its socket (None while connected).
    offline_since: Option<Instant>,
}

/// The visitor script's reconnect backoff (`backoffDelay` in
/// `presence-visitor.js`): a uniform delay in
/// [500 ms, min(20 s, 500 ms * 2^attempt, max(500 ms, offline))].
pub fn sdk_backoff(attempt: u32, offline: Duration, random: f64) -> Duration {
    const MIN_MS: f64 = 500.0;
    const MAX_MS: f64 = 20_000.0;
    let offline_ms = (offline.as_millis() as f64).max(MIN_MS);
    let ceiling = (MIN_MS * 2f64.powi(attempt.min(16) as i32))
        .min(MAX_MS)
        .min(offline_ms);
    Duration::from_millis((MIN_MS + (random * (ceiling - MIN_MS)).floor()) as u64)
}

impl Retry {
    /// A visitor connecting to node `node` now.
    pub fn new(node: usize) -> Self {
        Self {
            node,
            failures: 0,
            at: Instant::now(),
            offline_since: None,
        }
    }

    /// After a drop or a failed attempt: the next node, after the visitor
    /// script's backoff for this many failures in a row.
    pub fn move_on(&mut self, nodes: usize) {
        self.node = (self.node + 1) % nodes.max(1);
        let now = Instant::now();
        let offline = now - *self.offline_since.get_or_insert(now);
        let delay = sdk_backoff(self.failures, offline, rand::rng().random::<f64>());
        self.failures += 1;
        self.at = now + delay;
    }

    /// A socket is open again: the next loss starts the backoff afresh.
    pub fn succeeded(&mut self) {
        self.failures = 0;
        self.offline_since = None;
    }
}

#[cfg(test)]
mod tests {
    use super::sdk_backoff;
    use std::time::Duration;

    #[test]
    fn backoff_is_the_visitor_scripts_jitter() {
        // presence-visitor.js: 500 + floor(random * (ceiling - 500)), with
        // ceiling = min(20000, 500 * 2^attempt, max(500, offline)).
        let long = Duration::from_secs(3600);
        let ms = Duration::from_millis;
        assert_eq!(sdk_backoff(0, Duration::ZERO, 0.0), ms(500));
        assert_eq!(sdk_backoff(0, long, 0.999), ms(500));
        assert_eq!(sdk_backoff(3, long, 0.5), ms(2250));
        assert_eq!(sdk_backoff(1, long, 0.5), ms(750));
        assert_eq!(sdk_backoff(3, long, 0.1), ms(850));
        assert_eq!(sdk_backoff(10, long, 0.999_999), ms(19_999));
        assert_eq!(sdk_backoff(40, long, 0.999_999), ms(19_999));
    }

    #[test]
    fn backoff_never_waits_longer_than_the_time_offline() {
        // The same cases as tests/sdk/visitor.test.mjs.
        let ms = Duration::from_millis;
        assert_eq!(sdk_backoff(4, ms(2500), 0.999_999), ms(2499));
        assert_eq!(sdk_backoff(4, ms(100), 0.999_999), ms(500));
    }
}
