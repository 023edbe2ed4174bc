//! Webhook metrics: deliveries, failed attempts by reason, dead letters,
//! events refused at enqueue, and the outbox's depth.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// What webhook delivery counts.
pub struct WebhookMetrics {
    delivered: Counter,
    failed_attempts: Family<ReasonLabel, Counter>,
    dead_lettered: Family<ReasonLabel, Counter>,
    refused: Family<ReasonLabel, Counter>,
    outbox_depth: Gauge,
}

impl WebhookMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let delivered = Counter::default();
        registry.register(
            "webhook_deliveries",
            "Webhook events delivered (the receiver answered 2xx)",
            delivered.clone(),
        );
        let failed_attempts = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "webhook_failed_attempts",
            "Webhook delivery attempts that failed, by reason: status (a non-2xx answer), \
             timeout, connect",
            failed_attempts.clone(),
        );
        let dead_lettered = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "webhook_dead_letters",
            "Webhook deliveries moved to the dead letters, by reason: horizon, outbox_full, \
             unsubscribed",
            dead_lettered.clone(),
        );
        let refused = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "webhook_events_refused",
            "Webhook events never queued, by reason: too_large (over \
             webhooks.max_payload_bytes), queue_full, store",
            refused.clone(),
        );
        let outbox_depth = Gauge::default();
        registry.register(
            "webhook_outbox_depth",
            "Webhook deliveries waiting in the outbox",
            outbox_depth.clone(),
        );
        Self {
            delivered,
            failed_attempts,
            dead_lettered,
            refused,
            outbox_depth,
        }
    }

    pub fn delivered(&self) {
        self.delivered.inc();
    }

    pub fn attempt_failed(&self, reason: &'static str) {
        self.failed_attempts
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    pub fn dead_lettered(&self, reason: &'static str) {
        self.dead_lettered
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    pub fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&ReasonLabel { reason }).inc();
    }

    pub fn set_outbox_depth(&self, depth: usize) {
        self.outbox_depth
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
    }
}
