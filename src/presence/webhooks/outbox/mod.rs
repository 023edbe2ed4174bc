//! The durable outbox. An event is written to sled (`webhook_outbox`,
//! flushed) for each receiver that wants it before any delivery is tried,
//! and a delivery leaves it only once its receiver answered 2xx, or it
//! gave up into the dead letters.
//!
//! The registry actor never waits on a disk flush: [`Outbox::emit`] hands
//! the event to a bounded queue and one writer task writes what queued up
//! in one batch and one flush (group commit), usually within a millisecond
//! or two. An event still in that queue when the process is killed is
//! lost (README "Webhooks" says so); one written is delivered, at least
//! once, whatever happens after. [`Outbox::emit_durable`] (confirmation
//! outcomes) returns only after its write.
//!
//! Everything runs on a small runtime of its own ("webhooks"), apart from
//! actix's arbiters.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Notify};

mod attempts;
mod dead_letters;
mod letters;

pub use dead_letters::MAX_REPLAY;
pub use letters::NamedLetter;

use super::event::WebhookEvent;
use super::lanes::{LaneKey, Lanes};
use super::subscriptions::{Receiver, WebhookSubscriptions};
use crate::infra::clock::SharedClock;
use crate::infra::config::{WebhookEventType, WebhooksConfig};
use crate::infra::error::off_thread;
use crate::infra::ids::GroupId;
use crate::infra::metrics::Metrics;
use crate::store::{DeadLetter, OutboxDelivery, Store, StoreError};

/// Events waiting for the writer at most; beyond it an event is refused
/// (`queue_full`) rather than the registry waiting.
const QUEUE: usize = 65_536;
/// Events written per batch at most.
const BATCH: usize = 512;

struct Queued {
    event: WebhookEvent,
    written: Option<oneshot::Sender<()>>,
}

/// A delivery whose turn it is, with its receiver as subscribed now.
pub struct ReadyDelivery {
    pub lane: LaneKey,
    pub delivery: OutboxDelivery,
    pub receiver: Receiver,
}

/// How one attempt went.
pub enum Attempt {
    /// The receiver answered 2xx.
    Delivered,
    /// It did not; `reason` is a metric label (`status`, `timeout`,
    /// `connect`), `error` what the dead letter will show.
    Failed { reason: &'static str, error: String },
}

/// The outbox and its delivery order.
pub struct Outbox {
    store: Arc<Store>,
    subscriptions: Arc<WebhookSubscriptions>,
    config: WebhooksConfig,
    metrics: Arc<Metrics>,
    clock: SharedClock,
    lanes: Mutex<Lanes>,
    /// Told when a lane may have become ready.
    wake: Notify,
    queue: mpsc::Sender<Queued>,
    /// Events emitted and not yet written (or refused).
    unwritten: AtomicUsize,
    written: Notify,
    runtime: tokio::runtime::Handle,
    /// Cluster mode: the link other nodes' letters are reached through.
    cluster: std::sync::OnceLock<crate::store::cluster::ClusterLink>,
    /// Taken (and shut down in the background) by [`Outbox::stop`].
    owned: Mutex<Option<tokio::runtime::Runtime>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn lane_of(d: &OutboxDelivery) -> LaneKey {
    LaneKey {
        url: d.url.clone(),
        group: d.groupid,
        visitor: d.visitorid.clone(),
    }
}

impl Outbox {
    /// Opens the outbox: reads what an earlier run left in it (in order)
    /// and starts the writer on a runtime of its own.
    pub fn start(
        store: Arc<Store>,
        subscriptions: Arc<WebhookSubscriptions>,
        config: WebhooksConfig,
        metrics: Arc<Metrics>,
        clock: SharedClock,
    ) -> Result<Arc<Self>, StoreError> {
        let owned = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("webhooks")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Corrupt {
                tree: "webhook_outbox",
                reason: format!("cannot start the webhook runtime: {e}"),
            })?;
        let mut lanes = Lanes::new(
            config
                .max_concurrency_per_receiver
                .min(config.max_concurrency),
        );
        let left = store.webhook_outbox()?;
        for d in &left {
            lanes.push(lane_of(d), d.seq, d.next_attempt_ms);
        }
        if !left.is_empty() {
            tracing::info!(deliveries = left.len(), "webhook outbox resumed");
        }
        metrics.webhooks.set_outbox_depth(lanes.depth());
        let (queue, incoming) = mpsc::channel(QUEUE);
        let outbox = Arc::new(Self {
            store,
            subscriptions,
            config,
            metrics,
            clock,
            lanes: Mutex::new(lanes),
            wake: Notify::new(),
            queue,
            unwritten: AtomicUsize::new(0),
            written: Notify::new(),
            runtime: owned.handle().clone(),
            cluster: std::sync::OnceLock::new(),
            owned: Mutex::new(Some(owned)),
        });
        outbox.runtime.spawn(outbox.clone().write_loop(incoming));
        Ok(outbox)
    }

    /// Stops the writer and every delivery (after [`Outbox::drain`]); what
    /// is queued stays in the outbox for the next start.
    pub fn stop(&self) {
        if let Some(runtime) = lock(&self.owned).take() {
            runtime.shutdown_background();
        }
    }

    /// The runtime delivery runs on.
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    pub fn config(&self) -> &WebhooksConfig {
        &self.config
    }

    pub fn subscriptions(&self) -> &Arc<WebhookSubscriptions> {
        &self.subscriptions
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Whether a receiver of `group` wants its `visitor_online` (`online`)
    /// or `visitor_offline` events.
    pub fn wants_presence(&self, group: GroupId, online: bool) -> bool {
        let event = match online {
            true => WebhookEventType::VisitorOnline,
            false => WebhookEventType::VisitorOffline,
        };
        self.subscriptions.wants(group, event)
    }

    /// Counts an event refused before it reached the outbox.
    pub fn refused(&self, reason: &'static str) {
        self.metrics.webhooks.refused(reason);
    }

    /// Queues `event` for its receivers without waiting (the registry's
    /// path). Refused, with a metric and a log, if the queue is full.
    pub fn emit(&self, event: WebhookEvent) {
        if !self.subscriptions.wants(event.groupid, event.event_type) {
            return;
        }
        self.unwritten.fetch_add(1, Ordering::AcqRel);
        if let Err(e) = self.queue.try_send(Queued {
            event,
            written: None,
        }) {
            self.unwritten.fetch_sub(1, Ordering::AcqRel);
            let event = match e {
                mpsc::error::TrySendError::Full(q) | mpsc::error::TrySendError::Closed(q) => {
                    q.event
                }
            };
            self.metrics.webhooks.refused("queue_full");
            tracing::error!(event = %event.id, kind = event.kind, "webhook queue full: event dropped");
        }
    }

    /// Queues `event` and returns once it is in the outbox (or refused).
    pub async fn emit_durable(&self, event: WebhookEvent) {
        if !self.subscriptions.wants(event.groupid, event.event_type) {
            return;
        }
        let (written, wait) = oneshot::channel();
        self.unwritten.fetch_add(1, Ordering::AcqRel);
        let queued = Queued {
            event,
            written: Some(written),
        };
        if self.queue.send(queued).await.is_err() {
            self.unwritten.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        let _ = wait.await;
    }

    /// Waits (at most `within`) until every event emitted so far is
    /// written: the graceful shutdown calls it before closing the store.
    pub async fn drain(&self, within: Duration) {
        let wait = async {
            loop {
                let notified = self.written.notified();
                if self.unwritten.load(Ordering::Acquire) == 0 {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(within, wait).await;
    }

    async fn write_loop(self: Arc<Self>, mut incoming: mpsc::Receiver<Queued>) {
        let mut batch = Vec::with_capacity(BATCH);
        while incoming.recv_many(&mut batch, BATCH).await > 0 {
            let count = batch.len();
            let mut waiters = Vec::new();
            let mut deliveries = Vec::new();
            let now = self.clock.now_ms();
            for Queued { event, written } in batch.drain(..) {
                waiters.extend(written);
                deliveries.extend(self.deliveries_of(&event, now));
            }
            if !deliveries.is_empty() {
                self.write(deliveries).await;
            }
            self.unwritten.fetch_sub(count, Ordering::AcqRel);
            self.written.notify_waiters();
            for told in waiters {
                let _ = told.send(());
            }
        }
    }

    /// One delivery per receiver of `event`, or none if it is too large.
    fn deliveries_of(&self, event: &WebhookEvent, now: u64) -> Vec<OutboxDelivery> {
        let body = match serde_json::to_string(event) {
            Ok(body) => body,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a webhook event");
                return Vec::new();
            }
        };
        if body.len() > self.config.max_payload_bytes {
            self.metrics.webhooks.refused("too_large");
            tracing::warn!(
                event = %event.id, kind = event.kind, bytes = body.len(),
                limit = self.config.max_payload_bytes,
                "webhook event over webhooks.max_payload_bytes: not queued"
            );
            return Vec::new();
        }
        self.subscriptions
            .receivers_of(event.groupid, event.event_type)
            .into_iter()
            .map(|url| OutboxDelivery {
                seq: 0,
                event_id: event.id.clone(),
                event_type: event.kind.to_owned(),
                groupid: event.groupid,
                visitorid: event.visitorid.clone(),
                url,
                body: body.clone(),
                created_ms: now,
                attempts: 0,
                next_attempt_ms: now,
                last_error: None,
            })
            .collect()
    }

    /// Writes a batch (flushed), beyond `max_outbox` to the dead letters.
    async fn write(&self, deliveries: Vec<OutboxDelivery>) {
        let room = self
            .config
            .max_outbox
            .saturating_sub(lock(&self.lanes).depth());
        let keep = self.config.max_dead_letters;
        let store = self.store.clone();
        let now = self.clock.now_ms();
        let written = off_thread("webhook outbox", move || {
            let mut deliveries = store.enqueue_webhooks(deliveries)?;
            let overflow = deliveries.split_off(room.min(deliveries.len()));
            for delivery in &overflow {
                let letter = DeadLetter {
                    delivery: delivery.clone(),
                    failed_ms: now,
                    reason: "outbox_full".to_owned(),
                };
                store.webhook_dead_letter(&letter, keep)?;
            }
            Ok::<_, StoreError>((deliveries, overflow.len()))
        })
        .await;
        match written {
            Ok((queued, overflow)) => {
                for _ in 0..overflow {
                    self.metrics.webhooks.dead_lettered("outbox_full");
                }
                if overflow > 0 {
                    tracing::error!(overflow, "webhook outbox full: deliveries dead-lettered");
                }
                self.enqueued(&queued);
            }
            Err(e) => {
                self.metrics.webhooks.refused("store");
                tracing::error!(error = %e, "cannot write webhook events: dropped");
            }
        }
    }

    fn enqueued(&self, queued: &[OutboxDelivery]) {
        let mut lanes = lock(&self.lanes);
        for d in queued {
            lanes.push(lane_of(d), d.seq, d.next_attempt_ms);
        }
        self.metrics.webhooks.set_outbox_depth(lanes.depth());
        drop(lanes);
        self.wake.notify_one();
    }

    /// Up to `max` lanes whose head may be tried now.
    pub fn ready(&self, max: usize) -> Vec<(LaneKey, u64)> {
        lock(&self.lanes).take_ready(self.clock.now_ms(), max)
    }

    /// How long until the next lane may be ready (none queued: `None`).
    pub fn next_ready_in(&self) -> Option<Duration> {
        let at = lock(&self.lanes).next_ready_ms()?;
        Some(Duration::from_millis(
            at.saturating_sub(self.clock.now_ms()),
        ))
    }

    /// Resolves when a lane may have become ready.
    pub async fn woken(&self) {
        self.wake.notified().await;
    }
}
