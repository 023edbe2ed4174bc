//! Cluster mode's link to Redis: the one place that holds Redis
//! connections. Every shared-state implementation (presence, keys,
//! revocations, sign-in state, confirmations) goes through a
//! [`ClusterLink`]; nothing else names a Redis connection.
//!
//! All Redis I/O runs on a small runtime of its own (two threads), apart
//! from actix's single-threaded arbiters: async callers await a spawned
//! task, blocking-pool callers wait on a channel. Every command has a
//! deadline (`cluster.redis_timeout_ms`) and at most
//! `cluster.max_redis_in_flight` are outstanding, so a Redis that stops
//! answering fails callers fast (`cluster_unavailable`) instead of growing
//! queues or hanging requests.
//!
//! Keys and channels are `{key_prefix}:...`, so deployments can share one
//! Redis. `channels.rs` runs the pub/sub subscriber (with reconnects),
//! `nodes.rs` the node lease and the table of live nodes (`reaping.rs`
//! what happens to a dead one's entries), `rpc.rs` requests from one node
//! to another with their replies, `replica_map.rs` node-local replicas
//! of shared entries and their re-reads.

mod channels;
mod config_drift;
mod nodes;
mod reaping;
mod replica_map;
mod rpc;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::RedisResult;
use tokio::runtime::{Handle, Runtime};
use tokio::sync::Semaphore;

use crate::infra::config::ClusterConfig;
use crate::infra::error::SharedStateUnavailable;
use crate::infra::ids;
use crate::infra::metrics::Metrics;

pub use config_drift::{publish_reload, RELOAD_BROADCAST};
pub use nodes::NodeEvent;
pub use replica_map::{scan_values, ReplicaMap};
pub use rpc::{RequestError, RpcReply, WireError};

/// A cheap, cloneable handle on this node's link to the cluster.
#[derive(Clone)]
pub struct ClusterLink {
    inner: Arc<Inner>,
}

struct Inner {
    /// Owned so that it stops with the link.
    runtime: OwnedRuntime,
    handle: Handle,
    client: redis::Client,
    commands: ConnectionManager,
    prefix: String,
    node_id: String,
    timeout: Duration,
    in_flight: Arc<Semaphore>,
    /// Whether the last command, and the subscriber, got through.
    reachable: AtomicBool,
    metrics: Arc<Metrics>,
    config: ClusterConfig,
    channels: channels::Subscriptions,
    nodes: nodes::NodeTable,
    rpc: rpc::Requests,
}

/// A runtime shut down in the background when dropped: dropping a runtime
/// the ordinary way from async code (where the server drops the link)
/// would panic.
struct OwnedRuntime(std::sync::Mutex<Option<Runtime>>);

impl OwnedRuntime {
    fn shut_down(&self) {
        let runtime = self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(runtime) = runtime {
            runtime.shutdown_background();
        }
    }
}

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// Why the link could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cluster.redis_url: {0}")]
    Url(String),
    #[error("cannot start the Redis runtime: {0}")]
    Runtime(#[from] std::io::Error),
    #[error("Redis at cluster.redis_url did not answer: {0}")]
    Unreachable(String),
}

impl ClusterLink {
    /// Connects to Redis (which must answer within three command
    /// deadlines) with a fresh node id. Nothing is subscribed or published
    /// until [`ClusterLink::start`].
    pub async fn connect(config: &ClusterConfig, metrics: Arc<Metrics>) -> Result<Self, LinkError> {
        use redis::IntoConnectionInfo;
        let url_error = |e: redis::RedisError| LinkError::Url(e.to_string());
        // Without TCP_NODELAY, Nagle's algorithm holds a small command back
        // while an earlier one is unacknowledged: a cross-node invoke (two
        // PUBLISHes) waited milliseconds for it on loopback.
        let info = config
            .redis_url()
            .into_connection_info()
            .map_err(url_error)?;
        let tcp = info.tcp_settings().clone().set_nodelay(true);
        let client = redis::Client::open(info.set_tcp_settings(tcp)).map_err(url_error)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("redis-link")
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let runtime = OwnedRuntime(std::sync::Mutex::new(Some(runtime)));
        let timeout = config.redis_timeout();
        let manager_config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(timeout))
            .set_connection_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let connecting = client.clone();
        let commands = handle
            .spawn(async move {
                tokio::time::timeout(
                    timeout * 3,
                    ConnectionManager::new_with_config(connecting, manager_config),
                )
                .await
            })
            .await
            .map_err(|e| LinkError::Unreachable(e.to_string()))?
            .map_err(|_| LinkError::Unreachable("timed out".into()))?
            .map_err(|e| LinkError::Unreachable(e.to_string()))?;
        let node_id = ids::random_id(12);
        let inner = Inner {
            runtime,
            handle,
            client,
            commands,
            prefix: config.key_prefix.clone(),
            node_id: node_id.clone(),
            timeout,
            in_flight: Arc::new(Semaphore::new(config.max_redis_in_flight)),
            reachable: AtomicBool::new(true),
            metrics,
            config: config.clone(),
            channels: channels::Subscriptions::default(),
            nodes: nodes::NodeTable::new(node_id),
            rpc: rpc::Requests::default(),
        };
        let link = Self {
            inner: Arc::new(inner),
        };
        link.run("ping", |mut conn| async move {
            redis::cmd("PING").query_async::<String>(&mut conn).await
        })
        .await
        .map_err(|e| LinkError::Unreachable(e.0))?;
        rpc::install(&link);
        nodes::seed(&link).await;
        Ok(link)
    }

    /// Starts the subscriber, the heartbeat and the node table. Register
    /// every channel handler, node listener and RPC handler first.
    pub fn start(&self) {
        channels::start(self);
        nodes::start(self);
    }

    /// Says goodbye: the lease goes and the other nodes hear at once that
    /// this node left (they need not wait for the lease to run out).
    pub async fn leave(&self) {
        nodes::leave(self).await;
    }

    /// Stops every task of the link (the subscriber, the heartbeat, the
    /// requests in flight); after [`ClusterLink::leave`], at shutdown.
    pub fn close(&self) {
        self.inner.runtime.shut_down();
    }

    /// This process's node id, fresh at every start.
    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.inner.config
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// `{key_prefix}:{suffix}`: every key and channel name.
    pub fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.inner.prefix)
    }

    /// Whether Redis answered the last command and the subscriber is
    /// connected.
    pub fn is_reachable(&self) -> bool {
        self.inner.reachable.load(Ordering::Relaxed) && self.inner.channels.connected()
    }

    /// The runtime Redis I/O runs on (for tasks of the layers above that
    /// wait on Redis, or on replies from other nodes).
    pub fn runtime(&self) -> &Handle {
        &self.inner.handle
    }

    /// Runs `call` on the command connection with the deadline and the
    /// in-flight bound. Callable from any async context.
    pub fn run<T, F, Fut>(
        &self,
        what: &'static str,
        call: F,
    ) -> impl Future<Output = Result<T, SharedStateUnavailable>> + Send + 'static
    where
        T: Send + 'static,
        F: FnOnce(ConnectionManager) -> Fut + Send + 'static,
        Fut: Future<Output = RedisResult<T>> + Send + 'static,
    {
        let link = self.clone();
        let permit = self.inner.in_flight.clone().try_acquire_owned();
        let task = permit.map(|permit| {
            let conn = self.inner.commands.clone();
            let timeout = self.inner.timeout;
            self.inner.handle.spawn(async move {
                let _permit = permit;
                tokio::time::timeout(timeout, call(conn)).await
            })
        });
        async move {
            let started = Instant::now();
            let Ok(task) = task else {
                return Err(link.failed(what, "saturated", "too many Redis commands in flight"));
            };
            let outcome = match task.await {
                Ok(Ok(Ok(value))) => Ok(value),
                Ok(Ok(Err(e))) => Err(link.failed(what, "error", &e.to_string())),
                Ok(Err(_elapsed)) => Err(link.failed(what, "timeout", "no answer in time")),
                Err(e) => Err(link.failed(what, "error", &e.to_string())),
            };
            link.inner
                .metrics
                .cluster
                .redis_latency(started.elapsed().as_secs_f64());
            if outcome.is_ok() {
                link.inner.reachable.store(true, Ordering::Relaxed);
            }
            outcome
        }
    }

    /// As [`ClusterLink::run`], for callers on the blocking pool (or any
    /// thread that is not an async worker): waits on a channel, so it never
    /// needs a runtime of its own. Never call it on an async worker.
    pub fn run_blocking<T, F, Fut>(
        &self,
        what: &'static str,
        call: F,
    ) -> Result<T, SharedStateUnavailable>
    where
        T: Send + 'static,
        F: FnOnce(ConnectionManager) -> Fut + Send + 'static,
        Fut: Future<Output = RedisResult<T>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let fut = self.run(what, call);
        self.inner.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        // The task has its own deadline; this one only guards a runtime
        // that stopped.
        rx.recv_timeout(self.inner.timeout * 2 + Duration::from_millis(100))
            .unwrap_or_else(|_| {
                Err(SharedStateUnavailable(format!(
                    "{what}: the Redis runtime stopped"
                )))
            })
    }

    /// Publishes `payload` on the channel `{prefix}:{channel}`; the number
    /// of subscribers that got it.
    pub fn publish(
        &self,
        channel: &str,
        payload: Vec<u8>,
    ) -> impl Future<Output = Result<u64, SharedStateUnavailable>> + Send + 'static {
        let channel = self.key(channel);
        self.run("publish", move |mut conn| async move {
            redis::cmd("PUBLISH")
                .arg(channel)
                .arg(payload)
                .query_async(&mut conn)
                .await
        })
    }

    fn failed(
        &self,
        what: &'static str,
        cause: &'static str,
        detail: &str,
    ) -> SharedStateUnavailable {
        self.inner.metrics.cluster.redis_error(cause);
        if cause != "saturated" {
            self.inner.reachable.store(false, Ordering::Relaxed);
        }
        tracing::warn!(what, cause, detail, "redis command failed");
        SharedStateUnavailable(format!("{what}: {detail}"))
    }

    fn client(&self) -> &redis::Client {
        &self.inner.client
    }
}
