//! A started server: what tests and `main` ask of it, and the graceful
//! shutdown that stops every part in order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use tokio_util::sync::CancellationToken;

use super::{housekeeping, ServerError};
use crate::auth::token::TokenService;
use crate::infra::{capacity, metrics, shutdown};
use crate::presence::registry::{PresenceDirectory, RegistryStats};
use crate::store::Store;
use crate::transport::metrics_server;

/// A started server.
pub struct RunningServer {
    pub(super) addr: SocketAddr,
    pub(super) handle: ServerHandle,
    pub(super) task: tokio::task::JoinHandle<std::io::Result<()>>,
    pub(super) parts: Parts,
    pub(super) metrics_server: Option<metrics_server::MetricsServer>,
    pub(super) internal_server: Option<crate::transport::internal::InternalServer>,
    pub(super) housekeeping: housekeeping::HousekeepingThread,
}

/// What a running server keeps to answer [`RunningServer`]'s questions and
/// to shut down in order.
pub(super) struct Parts {
    pub(super) gate: Arc<capacity::ConnectionGate>,
    pub(super) tokens: Arc<TokenService>,
    pub(super) chores: housekeeping::Chores,
    pub(super) metrics: Arc<metrics::Metrics>,
    pub(super) registry: Arc<dyn PresenceDirectory>,
    pub(super) shutdown: CancellationToken,
    pub(super) shutdown_timeout_secs: u64,
    pub(super) store: Arc<Store>,
    pub(super) audit: Arc<crate::auth::audit::Audit>,
    /// Cluster mode: this node's link to Redis.
    pub(super) cluster: Option<crate::store::cluster::ClusterLink>,
    /// Cluster mode: the cluster-wide presence directory.
    pub(super) cluster_presence: Option<crate::presence::cluster::ClusterPresence>,
    /// The webhook outbox and its delivery.
    pub(super) webhooks: Arc<crate::presence::webhooks::Outbox>,
    /// Re-reads and applies the config.
    pub(super) reloader: Arc<super::reload::Reloader>,
}

impl RunningServer {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Re-reads the config file and environment and applies them, as
    /// SIGHUP and `POST /internal/reload` do.
    pub async fn reload(&self) -> crate::infra::config::ReloadReport {
        use crate::infra::config::ConfigReloader;
        self.parts.reloader.clone().reload().await
    }

    /// Registers a hook called with the new config after every applied
    /// reload (for parts that must follow the config, e.g. webhooks).
    pub fn on_config_applied(&self, listener: super::reload::ReloadListener) {
        self.parts.reloader.on_applied(listener);
    }

    /// The address `/metrics` is served on, if metrics are on.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_server.as_ref().map(|m| m.addr)
    }

    /// The address of the internal listener (split roles, or role `all` with
    /// `server.internal_secret` set).
    pub fn internal_addr(&self) -> Option<SocketAddr> {
        self.internal_server.as_ref().map(|s| s.addr)
    }

    /// The `reason`s of this node's newest audit records of `group`
    /// (group 0 holds refused internal calls), newest first.
    pub fn audit_reasons(&self, group: u64) -> Vec<String> {
        let query = crate::auth::audit::Query {
            limit: 100,
            ..Default::default()
        };
        match self.parts.audit.query(group, &query) {
            Ok(Some(page)) => page.records.into_iter().filter_map(|r| r.reason).collect(),
            _ => Vec::new(),
        }
    }

    /// WebSocket connections open now, and the most the server holds.
    pub fn connections(&self) -> (usize, usize) {
        (self.parts.gate.open(), self.parts.gate.limit())
    }

    /// The token service, to mint or inspect tokens in-process.
    pub fn tokens(&self) -> Arc<TokenService> {
        self.parts.tokens.clone()
    }

    /// Runs a housekeeping pass now (key rotation and purge, session sweep),
    /// as the timer would; tests call it after moving the clock.
    pub fn housekeeping(&self) -> Result<housekeeping::Housekeeping, ServerError> {
        Ok(self.parts.chores.run_once()?)
    }

    /// The most inbound bytes any one socket has held buffered so far.
    pub fn socket_buffer_peak(&self) -> usize {
        self.parts.metrics.socket_buffer_peak()
    }

    /// Swaps the webhook subscriptions for those of `config` (validated):
    /// events emitted after this go to its receivers. For a config reload.
    pub fn replace_webhook_subscriptions(&self, config: &crate::infra::config::Config) {
        self.parts.webhooks.subscriptions().replace(config);
    }

    /// Live visitors, connections and watches.
    pub async fn stats(&self) -> Option<RegistryStats> {
        self.parts.registry.stats().await.ok()
    }

    /// Runs until SIGTERM or Ctrl-C, then shuts down gracefully.
    pub async fn run_until_signal(self) -> Result<(), ServerError> {
        shutdown::wait_for_signal().await;
        self.shutdown().await
    }

    /// Graceful shutdown: stop accepting, close every socket with 1001, let
    /// in-flight requests finish (up to `shutdown_timeout_secs`), flush and
    /// close sled.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        tracing::info!("shutting down");
        let stopped = self.handle.stop(true);
        if let Some(metrics) = &self.metrics_server {
            metrics.handle.stop(false).await;
        }
        if let Some(internal) = &self.internal_server {
            internal.handle.stop(true).await;
        }
        self.parts.shutdown.cancel();
        // Validation caps shutdown_timeout_secs at 25, so this stays under
        // the 30 s an orchestrator allows between SIGTERM and SIGKILL.
        let budget = Duration::from_secs(self.parts.shutdown_timeout_secs + 3);
        if tokio::time::timeout(budget, stopped).await.is_err() {
            tracing::warn!("workers did not stop in time");
        }
        match self.task.await {
            Ok(result) => result?,
            Err(e) => tracing::warn!(error = %e, "server task ended abnormally"),
        }
        // No pass may run into the closed store.
        self.housekeeping.stop().await;
        if let Some(presence) = &self.parts.cluster_presence {
            // Its sockets are closed: the others keep its visitors through
            // their grace period, then drop them, unless they come back.
            presence.withdraw().await;
        }
        if let Some(link) = &self.parts.cluster {
            // The other nodes hear at once that this one left.
            link.leave().await;
            link.close();
        }
        // Events already emitted reach the outbox; deliveries in flight
        // stop (they stay queued, and are sent again after the restart).
        self.parts.webhooks.drain(Duration::from_secs(2)).await;
        self.parts.webhooks.stop();
        // Flush and release the database now, rather than whenever the
        // last worker lets go of the app state, so the data directory can be
        // reopened at once (by a restart in the same process, or a test).
        self.parts.store.close()?;
        tracing::info!("shutdown complete");
        Ok(())
    }
}
