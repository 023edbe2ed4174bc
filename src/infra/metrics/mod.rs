//! Prometheus metrics, served in the OpenMetrics text format at `/metrics`
//! on `server.metrics_bind`, a listener apart from the public one so that
//! it is never exposed by accident.
//!
//! One `Metrics` per server (not a global), so servers started side by side
//! in tests count apart.

mod cluster;
mod reload;
mod roles;
mod webhooks;

use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::infra::error::DomainError;

pub use cluster::ClusterMetrics;
pub use reload::ReloadMetrics;
pub use roles::RoleMetrics;
pub use webhooks::WebhookMetrics;

/// The kind of a socket: `visitor` or `agent`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum SocketKind {
    Visitor,
    Agent,
}

impl SocketKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SocketKind::Visitor => "visitor",
            SocketKind::Agent => "agent",
        }
    }

    fn label(self) -> KindLabel {
        KindLabel {
            kind: self.as_str(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CredentialLabel {
    credential: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Every metric the server exports.
pub struct Metrics {
    registry: Registry,
    connections: Family<KindLabel, Gauge>,
    refused_connections: Family<KindLabel, Counter>,
    invokes: Family<OutcomeLabel, Counter>,
    invoke_seconds: Histogram,
    pending_invokes: Gauge,
    tokens_issued: Family<CredentialLabel, Counter>,
    auth_failures: Family<ReasonLabel, Counter>,
    confirmations: Family<OutcomeLabel, Counter>,
    registry_visitors: Gauge,
    registry_connections: Gauge,
    registry_mailbox_depth: Gauge,
    registry_mailbox_peak: Gauge,
    socket_buffer_peak: Gauge,
    audit_records: Family<OutcomeLabel, Counter>,
    audit_suppressed: Family<RuleLabel, Counter>,
    limited_connections: Family<LimitLabel, Counter>,
    invokes_reparked: Counter,
    visitor_closes: Family<KindLabel, Counter>,
    /// Cluster mode's own counters.
    pub cluster: ClusterMetrics,
    /// The split roles' counters.
    pub roles: RoleMetrics,
    /// Webhook delivery's counters.
    pub webhooks: WebhookMetrics,
    /// Live config reloads.
    pub reloads: ReloadMetrics,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabel {
    rule: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabel {
    limit: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("presence");
        let connections = Family::<KindLabel, Gauge>::default();
        registry.register(
            "open_connections",
            "Open WebSocket connections by kind",
            connections.clone(),
        );
        let refused_connections = Family::<KindLabel, Counter>::default();
        registry.register(
            "refused_connections",
            "WebSocket upgrades refused at the connection limit, by kind",
            refused_connections.clone(),
        );
        let invokes = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "invokes",
            "Invokes by outcome: ok, failed (the page's function failed) or an error code",
            invokes.clone(),
        );
        // 0.25 ms to about 8 s.
        let invoke_seconds = Histogram::new(exponential_buckets(0.000_25, 2.0, 16));
        registry.register(
            "invoke_duration_seconds",
            "Invoke round trip as the server sees it, from routing to result",
            invoke_seconds.clone(),
        );
        let pending_invokes = Gauge::default();
        registry.register(
            "pending_invokes",
            "Invokes waiting for a visitor's result",
            pending_invokes.clone(),
        );
        let tokens_issued = Family::<CredentialLabel, Counter>::default();
        registry.register(
            "tokens_issued",
            "Agent tokens issued by credential kind",
            tokens_issued.clone(),
        );
        let auth_failures = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "auth_failures",
            "Refused token requests and sign-ins, by error code",
            auth_failures.clone(),
        );
        let confirmations = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "confirmations",
            "Confirmation prompts by outcome",
            confirmations.clone(),
        );
        let registry_visitors = Gauge::default();
        registry.register(
            "registry_visitors",
            "Visitors present in the registry (including those in their reconnect grace)",
            registry_visitors.clone(),
        );
        let registry_connections = Gauge::default();
        registry.register(
            "registry_connections",
            "Visitor connections registered",
            registry_connections.clone(),
        );
        let registry_mailbox_depth = Gauge::default();
        registry.register(
            "registry_mailbox_depth",
            "Messages waiting in the registry actor's mailbox",
            registry_mailbox_depth.clone(),
        );
        let registry_mailbox_peak = Gauge::default();
        registry.register(
            "registry_mailbox_peak",
            "The most messages that have waited in the registry actor's mailbox at once since start",
            registry_mailbox_peak.clone(),
        );
        let socket_buffer_peak = Gauge::default();
        registry.register(
            "socket_buffer_peak_bytes",
            "The most inbound bytes one socket has held buffered (frame parser and fragment reassembly)",
            socket_buffer_peak.clone(),
        );
        let audit_records = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "audit_records",
            "Audit records written, by outcome",
            audit_records.clone(),
        );
        let audit_suppressed = Family::<RuleLabel, Counter>::default();
        registry.register(
            "audit_suppressed",
            "Refusals that wrote no audit record, by rule: unknown_group, locked_out, client_rate",
            audit_suppressed.clone(),
        );
        let limited_connections = Family::<LimitLabel, Counter>::default();
        registry.register(
            "limited_connections",
            "Connections and upgrades refused with too_many_connections, by limit: \
             connections_per_ip, sockets_per_ip, group_visitors",
            limited_connections.clone(),
        );
        let invokes_reparked = Counter::default();
        registry.register(
            "invokes_reparked",
            "Invokes written to a visitor socket that closed before their receipt, routed again",
            invokes_reparked.clone(),
        );
        let visitor_closes = Family::<KindLabel, Counter>::default();
        registry.register(
            "visitor_closes",
            "Registered visitor sockets closed, by kind: leaving (the page said so first) \
             or unannounced",
            visitor_closes.clone(),
        );
        let cluster = ClusterMetrics::register(&mut registry);
        let roles = RoleMetrics::register(&mut registry);
        let webhooks = WebhookMetrics::register(&mut registry);
        let reloads = ReloadMetrics::register(&mut registry);
        Self {
            cluster,
            roles,
            webhooks,
            reloads,
            invokes_reparked,
            visitor_closes,
            audit_records,
            audit_suppressed,
            limited_connections,
            registry,
            connections,
            refused_connections,
            invokes,
            invoke_seconds,
            pending_invokes,
            tokens_issued,
            auth_failures,
            confirmations,
            registry_visitors,
            registry_connections,
            registry_mailbox_depth,
            registry_mailbox_peak,
            socket_buffer_peak,
        }
    }

    pub fn connection_opened(&self, kind: SocketKind) {
        self.connections.get_or_create(&kind.label()).inc();
    }

    pub fn connection_closed(&self, kind: SocketKind) {
        self.connections.get_or_create(&kind.label()).dec();
    }

    pub fn connection_refused(&self, kind: SocketKind) {
        self.refused_connections.get_or_create(&kind.label()).inc();
    }

    /// Marks an invoke as waiting; the guard records its outcome.
    pub fn invoke_started(self: &Arc<Self>) -> InvokeTimer {
        self.pending_invokes.inc();
        InvokeTimer {
            metrics: self.clone(),
            started: std::time::Instant::now(),
        }
    }

    pub fn token_issued(&self, credential: &'static str) {
        self.tokens_issued
            .get_or_create(&CredentialLabel { credential })
            .inc();
    }

    pub fn auth_failed(&self, reason: &'static str) {
        self.auth_failures
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    pub fn audit_recorded(&self, outcome: &'static str) {
        self.audit_records
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    pub fn audit_suppressed(&self, rule: &'static str) {
        self.audit_suppressed
            .get_or_create(&RuleLabel { rule })
            .inc();
    }

    pub fn connection_limited(&self, limit: &'static str) {
        self.limited_connections
            .get_or_create(&LimitLabel { limit })
            .inc();
    }

    /// `count` unreceipted invokes of a closed socket were routed again.
    pub fn invokes_reparked(&self, count: usize) {
        self.invokes_reparked.inc_by(count as u64);
    }

    /// A registered visitor socket closed; `leaving` if it said so first.
    pub fn visitor_closed(&self, leaving: bool) {
        let kind = if leaving { "leaving" } else { "unannounced" };
        self.visitor_closes.get_or_create(&KindLabel { kind }).inc();
    }

    pub fn confirmation_settled(&self, outcome: &'static str) {
        self.confirmations
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// One socket now holds `bytes` of inbound data buffered.
    pub fn socket_buffered(&self, bytes: usize) {
        self.socket_buffer_peak
            .inner()
            .fetch_max(saturating_i64(bytes), std::sync::atomic::Ordering::Relaxed);
    }

    /// The most inbound bytes one socket has held buffered.
    pub fn socket_buffer_peak(&self) -> usize {
        usize::try_from(self.socket_buffer_peak.get()).unwrap_or(0)
    }

    /// The exposition, after setting the gauges read at scrape time.
    pub fn render(&self, registry: RegistryFigures) -> Result<String, DomainError> {
        self.registry_visitors
            .set(saturating_i64(registry.visitors));
        self.registry_connections
            .set(saturating_i64(registry.connections));
        self.registry_mailbox_depth
            .set(saturating_i64(registry.mailbox_depth));
        self.registry_mailbox_peak
            .set(saturating_i64(registry.mailbox_peak));
        let mut text = String::new();
        encode(&mut text, &self.registry)
            .map_err(|e| DomainError::Internal(format!("metrics encoding: {e}")))?;
        Ok(text)
    }
}

/// The registry's figures read at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct RegistryFigures {
    pub visitors: usize,
    pub connections: usize,
    pub mailbox_depth: usize,
    pub mailbox_peak: usize,
}

fn saturating_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// One invoke in flight: counted as pending until `finish` (or drop, which
/// counts as abandoned: the waiter went away).
pub struct InvokeTimer {
    metrics: Arc<Metrics>,
    started: std::time::Instant,
}

impl InvokeTimer {
    /// Counts the invoke under `outcome`: `ok`, `failed` (the function
    /// threw) or the error code it ended with.
    pub fn finish(self, outcome: &'static str) {
        self.metrics
            .invokes
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
        self.metrics
            .invoke_seconds
            .observe(self.started.elapsed().as_secs_f64());
        // Drop decrements the pending gauge.
    }
}

impl Drop for InvokeTimer {
    fn drop(&mut self) {
        self.metrics.pending_invokes.dec();
    }
}
