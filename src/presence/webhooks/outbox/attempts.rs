//! One delivery's attempts: loading a ready lane head, recording how its
//! attempt went (delivered, or retried after a jittered, doubling delay
//! until the retry horizon), and freeing its lane.

use super::{lock, Attempt, Outbox, ReadyDelivery};
use crate::infra::error::off_thread;
use crate::infra::ids::fill_random;
use crate::presence::webhooks::lanes::LaneKey;

impl Outbox {
    /// Loads a ready head. `None` if it left the outbox meanwhile, or its
    /// receiver is no longer subscribed (then it is dead-lettered).
    pub async fn prepare(&self, lane: LaneKey, seq: u64) -> Option<ReadyDelivery> {
        let store = self.store.clone();
        let loaded = off_thread("webhook outbox", move || store.webhook_delivery(seq)).await;
        let delivery = match loaded {
            Ok(Some(delivery)) => delivery,
            Ok(None) => {
                self.finished(&lane);
                return None;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read the webhook outbox");
                self.retry_lane(&lane, 1);
                return None;
            }
        };
        match self.subscriptions.receiver(lane.group, &lane.url) {
            Some(receiver) => Some(ReadyDelivery {
                lane,
                delivery,
                receiver,
            }),
            None => {
                // `reason` says why; `last_error` keeps the last attempt's.
                self.dead_letter(lane, delivery, "unsubscribed").await;
                None
            }
        }
    }

    /// Records how an attempt went: delivered leaves the outbox; a failure
    /// is retried after a jittered, doubling delay, or dead-lettered once
    /// the next try would fall past the retry horizon.
    pub async fn record(&self, ready: ReadyDelivery, attempt: Attempt) {
        let ReadyDelivery {
            lane, mut delivery, ..
        } = ready;
        match attempt {
            Attempt::Delivered => {
                let (store, seq) = (self.store.clone(), delivery.seq);
                if let Err(e) =
                    off_thread("webhook outbox", move || store.webhook_delivered(seq)).await
                {
                    // It stays queued: delivered again after a restart.
                    tracing::error!(error = %e, "cannot remove a delivered webhook");
                }
                self.metrics.webhooks.delivered();
                self.finished(&lane);
            }
            Attempt::Failed { reason, error } => {
                self.metrics.webhooks.attempt_failed(reason);
                delivery.attempts = delivery.attempts.saturating_add(1);
                delivery.last_error = Some(error);
                let now = self.clock.now_ms();
                let next = now.saturating_add(self.backoff_ms(delivery.attempts));
                let horizon = delivery
                    .created_ms
                    .saturating_add(self.config.retry_horizon_secs.saturating_mul(1000));
                if next > horizon {
                    self.dead_letter(lane, delivery, "horizon").await;
                    return;
                }
                delivery.next_attempt_ms = next;
                let store = self.store.clone();
                let saved = delivery.clone();
                if let Err(e) =
                    off_thread("webhook outbox", move || store.webhook_retry_later(&saved)).await
                {
                    tracing::error!(error = %e, "cannot record a failed webhook attempt");
                }
                lock(&self.lanes).retry_at(&lane, next);
                self.wake.notify_one();
            }
        }
    }

    /// The delay before attempt `attempts + 1`: `backoff_base_ms` doubled
    /// per failure, capped at `backoff_max_ms`, drawn uniformly from its
    /// upper half (jitter, so receivers that come back are not hit by
    /// every lane at once).
    fn backoff_ms(&self, attempts: u32) -> u64 {
        let shift = attempts.saturating_sub(1).min(40);
        let ceiling = self
            .config
            .backoff_base_ms
            .saturating_mul(1u64 << shift)
            .min(self.config.backoff_max_ms);
        let mut bytes = [0u8; 8];
        fill_random(&mut bytes);
        let half = ceiling / 2;
        half + u64::from_le_bytes(bytes) % (ceiling - half + 1)
    }

    pub(super) fn finished(&self, lane: &LaneKey) {
        let mut lanes = lock(&self.lanes);
        lanes.finished(lane, self.clock.now_ms());
        self.metrics.webhooks.set_outbox_depth(lanes.depth());
        drop(lanes);
        self.wake.notify_one();
    }

    pub(super) fn retry_lane(&self, lane: &LaneKey, after_ms: u64) {
        lock(&self.lanes).retry_at(lane, self.clock.now_ms().saturating_add(after_ms));
    }
}
