//! Cluster-mode metrics: cross-node invokes, Redis commands, live nodes and
//! re-publications after Redis came back. Registered in every build (they
//! stay at zero on a single node) so dashboards need no mode switch.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabel {
    cause: &'static str,
}

/// What the cluster layer counts.
pub struct ClusterMetrics {
    cross_node_invokes: Family<OutcomeLabel, Counter>,
    redis_errors: Family<CauseLabel, Counter>,
    redis_seconds: Histogram,
    live_nodes: Gauge,
    republishes: Counter,
}

impl ClusterMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let cross_node_invokes = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "cluster_invokes",
            "Invokes and signals sent to a visitor on another node, by outcome: ok, failed \
             or an error code",
            cross_node_invokes.clone(),
        );
        let redis_errors = Family::<CauseLabel, Counter>::default();
        registry.register(
            "redis_errors",
            "Redis commands that failed, by cause: timeout, saturated (too many in flight) \
             or error",
            redis_errors.clone(),
        );
        // 50 µs to about 1.6 s.
        let redis_seconds = Histogram::new(exponential_buckets(0.000_05, 2.0, 16));
        registry.register(
            "redis_command_duration_seconds",
            "Redis command (or pipeline, or script) round trip",
            redis_seconds.clone(),
        );
        let live_nodes = Gauge::default();
        registry.register(
            "cluster_nodes",
            "Live cluster nodes this node knows of, itself included",
            live_nodes.clone(),
        );
        let republishes = Counter::default();
        registry.register(
            "cluster_republishes",
            "Times this node re-published its live visitors and resubscribed after its Redis \
             connection came back",
            republishes.clone(),
        );
        Self {
            cross_node_invokes,
            redis_errors,
            redis_seconds,
            live_nodes,
            republishes,
        }
    }

    /// A cross-node invoke or signal ended with `outcome`.
    pub fn cross_node_invoke(&self, outcome: &'static str) {
        self.cross_node_invokes
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// A Redis command failed: `timeout`, `saturated` or `error`.
    pub fn redis_error(&self, cause: &'static str) {
        self.redis_errors.get_or_create(&CauseLabel { cause }).inc();
    }

    pub fn redis_latency(&self, seconds: f64) {
        self.redis_seconds.observe(seconds);
    }

    pub fn set_live_nodes(&self, n: usize) {
        self.live_nodes.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn republished(&self) {
        self.republishes.inc();
    }
}
