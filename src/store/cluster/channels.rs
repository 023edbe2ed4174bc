//! The pub/sub subscriber: one dedicated connection, subscribed to every
//! channel a handler was registered for, reconnected with backoff whenever
//! it drops. After every (re)connection the connection hooks run, so the
//! layers above re-publish what Redis may have lost and re-read what they
//! may have missed: pub/sub is at-most-once, and a reconnect is where
//! other servers lost subscriptions (socket.io-redis-adapter #446).
//!
//! Handlers run on the reader task and must not wait: they hand work to
//! a spawned task or an actor (a reader that awaits per message caps
//! throughput at a tenth, measured in `cluster-anchors.md`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Notify;

use super::ClusterLink;

/// What a channel's messages are handed to: the payload.
pub type MessageHandler = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// What runs after the subscriber (re)connected: `true` the first time.
pub type ConnectionHook = Arc<dyn Fn(bool) + Send + Sync>;

/// Handlers by full channel name, and the subscriber's state.
#[derive(Default)]
pub(super) struct Subscriptions {
    handlers: Mutex<HashMap<String, MessageHandler>>,
    hooks: Mutex<Vec<ConnectionHook>>,
    connected: AtomicBool,
    /// Wakes the reader to drop a connection that looks stale.
    reconnect: Notify,
}

impl Subscriptions {
    pub(super) fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    pub(super) fn force_reconnect(&self) {
        self.reconnect.notify_one();
    }

    /// Runs the connection hooks as after a reconnection: re-publish and
    /// re-read.
    pub(super) fn run_hooks(&self, first: bool) {
        let hooks = lock(&self.hooks).clone();
        for hook in hooks {
            hook(first);
        }
    }
}

impl ClusterLink {
    /// Hands every message on `{prefix}:{channel}` to `handler`. Register
    /// before [`ClusterLink::start`].
    pub fn subscribe(&self, channel: &str, handler: MessageHandler) {
        lock(&self.inner.channels.handlers).insert(self.key(channel), handler);
    }

    /// Runs `hook` after every (re)connection of the subscriber.
    pub fn on_connected(&self, hook: ConnectionHook) {
        lock(&self.inner.channels.hooks).push(hook);
    }

    /// Whether the subscriber is connected now.
    pub fn subscriber_connected(&self) -> bool {
        self.inner.channels.connected()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

pub(super) fn start(link: &ClusterLink) {
    let link = link.clone();
    link.inner.handle.clone().spawn(async move {
        let mut first = true;
        let mut backoff = Duration::from_millis(50);
        loop {
            match subscribe_all(&link).await {
                Ok(pubsub) => {
                    backoff = Duration::from_millis(50);
                    link.inner.channels.connected.store(true, Ordering::Relaxed);
                    if !first {
                        link.inner.metrics.cluster.republished();
                        tracing::info!("redis subscriber reconnected; re-publishing");
                    }
                    link.inner.channels.run_hooks(first);
                    first = false;
                    read(&link, pubsub).await;
                    link.inner
                        .channels
                        .connected
                        .store(false, Ordering::Relaxed);
                    tracing::warn!("redis subscriber disconnected");
                }
                Err(e) => tracing::warn!(error = %e, "cannot subscribe to redis"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
    });
}

async fn subscribe_all(link: &ClusterLink) -> Result<redis::aio::PubSub, String> {
    let timeout = link.inner.timeout;
    let channels: Vec<String> = lock(&link.inner.channels.handlers)
        .keys()
        .cloned()
        .collect();
    let subscribing = async {
        let mut pubsub = link.client().get_async_pubsub().await?;
        for channel in &channels {
            pubsub.subscribe(channel).await?;
        }
        Ok::<_, redis::RedisError>(pubsub)
    };
    match tokio::time::timeout(timeout * 2, subscribing).await {
        Ok(Ok(pubsub)) => Ok(pubsub),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

async fn read(link: &ClusterLink, pubsub: redis::aio::PubSub) {
    let handlers = lock(&link.inner.channels.handlers).clone();
    let mut messages = pubsub.into_on_message();
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else { return };
                if let Some(handler) = handlers.get(message.get_channel_name()) {
                    handler(message.get_payload_bytes());
                }
            }
            () = link.inner.channels.reconnect.notified() => return,
        }
    }
}
