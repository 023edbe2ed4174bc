//! `[webhooks]` (delivery tuning, one section for the server) and each
//! group's `webhooks = [{url, events, secret}]` subscriptions.

use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

/// The events a subscription may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookEventType {
    /// A visitor got its first connection.
    VisitorOnline,
    /// A visitor's grace period ended with no connection.
    VisitorOffline,
    /// A confirmation prompt was settled.
    Confirmation,
}

impl WebhookEventType {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEventType::VisitorOnline => "visitor_online",
            WebhookEventType::VisitorOffline => "visitor_offline",
            WebhookEventType::Confirmation => "confirmation",
        }
    }
}

/// `[[groups]] webhooks = [...]`: one receiver of the group's events.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSubscription {
    /// Where events are POSTed: https, or http to a loopback host (or any
    /// host with `webhooks.allow_http`).
    pub url: String,
    pub events: Vec<WebhookEventType>,
    /// The HMAC-SHA256 key of the `Presence-Signature` header.
    pub secret: SecretString,
}

/// `[webhooks]`: how events are delivered.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// One delivery attempt's deadline (connect, send, answer).
    pub timeout_ms: u64,
    /// Deliveries in flight at once, over every receiver.
    pub max_concurrency: usize,
    /// Deliveries in flight at once to one receiver URL (at most
    /// `max_concurrency`), so that a receiver that hangs cannot hold every
    /// slot: other receivers' events go on.
    pub max_concurrency_per_receiver: usize,
    /// Largest event body; a larger event is not queued (metric, log).
    pub max_payload_bytes: usize,
    /// How long an event is retried before it goes to the dead letters.
    pub retry_horizon_secs: u64,
    /// The first retry's delay; each later one doubles, jittered.
    pub backoff_base_ms: u64,
    /// The longest delay between two attempts.
    pub backoff_max_ms: u64,
    /// Deliveries waiting in the outbox at most; beyond it, new events go
    /// straight to the dead letters (`outbox_full`).
    pub max_outbox: usize,
    /// Dead letters kept at most; beyond it, the oldest are deleted.
    pub max_dead_letters: usize,
    /// Allows `http://` receivers on hosts other than loopback.
    pub allow_http: bool,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            timeout_ms: 10_000,
            max_concurrency: 16,
            max_concurrency_per_receiver: 4,
            max_payload_bytes: 65_536,
            retry_horizon_secs: 86_400,
            backoff_base_ms: 1_000,
            backoff_max_ms: 3_600_000,
            max_outbox: 100_000,
            max_dead_letters: 100_000,
            allow_http: false,
        }
    }
}

impl WebhooksConfig {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// Subscriptions a group may have at most.
pub const MAX_WEBHOOKS_PER_GROUP: usize = 10;
/// Shortest accepted subscription secret.
pub const MIN_WEBHOOK_SECRET_LEN: usize = 16;
