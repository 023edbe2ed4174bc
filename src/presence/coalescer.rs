//! Coalescing of one visitor connection's presence updates: at most one
//! reaches the registry per `presence.min_presence_interval_ms`, so a
//! socket sending presence frames as fast as it can costs the registry a
//! few messages a second, not one per frame.
//!
//! The first update after a quiet interval goes at once. Updates arriving
//! sooner are merged into one held update, sent when the interval since the
//! last one has passed. The registry merges each update into the stored
//! map key by key (keys the update names win, others stay), so the held
//! update is merged the same way: a later frame's value wins for its keys,
//! and a key only an earlier held frame named is kept. The registry ends up
//! with exactly the map it would have had from every frame one by one. Two
//! differences remain, both documented: the connection becomes the most
//! recently active one when the held update is sent, not when its first
//! frame came; and if the held update makes the stored map too large, the
//! registry refuses it whole (`bad_presence_data`), where frames sent one
//! by one would have been refused from the first that overflowed.

use std::time::{Duration, Instant};

use crate::presence::data::PresenceData;

/// What to do with an offered update.
#[derive(Debug, PartialEq)]
pub enum Offer {
    /// Send this to the registry now.
    SendNow(PresenceData),
    /// Held; schedule a flush after this long.
    HeldFlushIn(Duration),
    /// Merged into the update already held, whose flush is scheduled.
    Merged,
}

/// One connection's presence updates on their way to the registry.
#[derive(Debug)]
pub struct PresenceCoalescer {
    interval: Duration,
    last_sent: Option<Instant>,
    held: Option<PresenceData>,
}

impl PresenceCoalescer {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last_sent: None,
            held: None,
        }
    }

    /// Offers an update arriving at `now`. An error (the merged held update
    /// would be over the size cap) refuses this update only; what was held
    /// stays.
    pub fn offer(&mut self, update: PresenceData, now: Instant) -> Result<Offer, String> {
        if let Some(held) = &self.held {
            let (merged, _) = held.merged(&update)?;
            self.held = Some(merged);
            return Ok(Offer::Merged);
        }
        let since_last = self.last_sent.map(|at| now.saturating_duration_since(at));
        match since_last {
            Some(elapsed) if elapsed < self.interval => {
                self.held = Some(update);
                Ok(Offer::HeldFlushIn(self.interval - elapsed))
            }
            _ => {
                self.last_sent = Some(now);
                Ok(Offer::SendNow(update))
            }
        }
    }

    /// The held update, if any, to send now (its flush is due).
    pub fn flush(&mut self, now: Instant) -> Option<PresenceData> {
        let held = self.held.take()?;
        self.last_sent = Some(now);
        Some(held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(value: serde_json::Value) -> PresenceData {
        PresenceData::from_value(value).expect("valid")
    }

    #[test]
    fn the_first_update_goes_at_once_and_later_ones_wait_out_the_interval() {
        let start = Instant::now();
        let mut c = PresenceCoalescer::new(Duration::from_millis(250));
        let first = c.offer(data(json!({"a": 1})), start);
        assert_eq!(first, Ok(Offer::SendNow(data(json!({"a": 1})))));
        let soon = start + Duration::from_millis(100);
        assert_eq!(
            c.offer(data(json!({"a": 2})), soon),
            Ok(Offer::HeldFlushIn(Duration::from_millis(150)))
        );
        assert_eq!(c.offer(data(json!({"b": 3})), soon), Ok(Offer::Merged));
        let due = start + Duration::from_millis(250);
        assert_eq!(c.flush(due), Some(data(json!({"a": 2, "b": 3}))));
        assert_eq!(c.flush(due), None);
        // The flush counts as a send: the next update waits again.
        assert!(matches!(
            c.offer(data(json!({"c": 4})), due + Duration::from_millis(10)),
            Ok(Offer::HeldFlushIn(_))
        ));
        // After a quiet interval an update goes at once.
        let mut c = PresenceCoalescer::new(Duration::from_millis(250));
        c.offer(data(json!({"a": 1})), start).expect("offer");
        let quiet = start + Duration::from_millis(300);
        assert!(matches!(
            c.offer(data(json!({"a": 5})), quiet),
            Ok(Offer::SendNow(_))
        ));
    }

    #[test]
    fn the_latest_value_wins_and_no_earlier_key_is_lost() {
        let start = Instant::now();
        let mut c = PresenceCoalescer::new(Duration::from_secs(1));
        c.offer(data(json!({"url": "/0"})), start).expect("offer");
        for update in [
            json!({"url": "/1", "title": "One"}),
            json!({"cart": 2}),
            json!({"url": "/3"}),
        ] {
            c.offer(data(update), start).expect("offer");
        }
        assert_eq!(
            c.flush(start).map(|d| d.to_value()),
            Some(json!({"url": "/3", "title": "One", "cart": 2}))
        );
    }

    #[test]
    fn an_update_that_would_overflow_the_held_one_is_refused_alone() {
        let start = Instant::now();
        let mut c = PresenceCoalescer::new(Duration::from_secs(1));
        c.offer(data(json!({"x": 1})), start).expect("offer");
        let half = "y".repeat(crate::presence::data::MAX_PRESENCE_BYTES / 2);
        c.offer(data(json!({"a": half.clone()})), start)
            .expect("held");
        assert!(c.offer(data(json!({"b": half.clone()})), start).is_err());
        assert_eq!(c.flush(start), Some(data(json!({"a": half}))));
    }
}
