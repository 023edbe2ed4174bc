//! The dead letters: deliveries that gave up (past the retry horizon, over
//! the outbox bound, or unsubscribed), listed and replayed by the group's
//! administrators.

use super::Outbox;
use crate::infra::error::{off_thread, DomainError};
use crate::infra::ids::GroupId;
use crate::presence::webhooks::lanes::LaneKey;
use crate::store::{DeadLetter, OutboxDelivery};

/// Dead letters replayed per call at most.
pub const MAX_REPLAY: usize = 1_000;

/// A receiver URL as logs show it: a query string may carry a receiver's
/// own token, so it is left out.
fn without_query(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            parsed.set_query(None);
            parsed.to_string()
        }
        Err(_) => String::new(),
    }
}

impl Outbox {
    pub(super) async fn dead_letter(
        &self,
        lane: LaneKey,
        delivery: OutboxDelivery,
        reason: &'static str,
    ) {
        tracing::warn!(
            event = %delivery.event_id, receiver = %without_query(&delivery.url), attempts = delivery.attempts,
            reason, "webhook delivery gave up: dead letter"
        );
        let letter = DeadLetter {
            delivery,
            failed_ms: self.clock.now_ms(),
            reason: reason.to_owned(),
        };
        let (store, keep) = (self.store.clone(), self.config.max_dead_letters);
        match off_thread("webhook outbox", move || {
            store.webhook_dead_letter(&letter, keep)
        })
        .await
        {
            Ok(()) => {
                self.metrics.webhooks.dead_lettered(reason);
                self.finished(&lane);
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot dead-letter a webhook delivery");
                self.retry_lane(&lane, self.config.backoff_max_ms);
            }
        }
    }

    /// The group's dead letters after `after`, oldest first.
    pub async fn dead_letters(
        &self,
        group: GroupId,
        after: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<DeadLetter>, bool), DomainError> {
        let store = self.store.clone();
        off_thread("webhook dead letters", move || {
            store.webhook_dead_letters(group, after, limit)
        })
        .await
    }

    /// Queues the group's dead letters again (`only` those, or the oldest
    /// [`MAX_REPLAY`]) with a fresh horizon, after everything queued now.
    /// Returns how many, and whether more letters remain.
    pub async fn replay(
        &self,
        group: GroupId,
        only: Option<Vec<u64>>,
    ) -> Result<(usize, bool), DomainError> {
        let store = self.store.clone();
        let now = self.clock.now_ms();
        let (queued, more) = off_thread("webhook dead letters", move || {
            store.replay_webhook_dead_letters(group, only.as_deref(), MAX_REPLAY, |d| {
                d.attempts = 0;
                d.created_ms = now;
                d.next_attempt_ms = now;
                d.last_error = None;
            })
        })
        .await?;
        self.enqueued(&queued);
        Ok((queued.len(), more))
    }
}
