//! Live config reload metrics: how many reloads ended how, and the last
//! one's outcome and time.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The outcomes of a reload, as labelled.
pub const RELOAD_OUTCOMES: [&str; 3] = ["applied", "refused", "failed"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// What reloads count.
pub struct ReloadMetrics {
    reloads: Family<OutcomeLabel, Counter>,
    last_outcome: Family<OutcomeLabel, Gauge>,
    last_at: Gauge,
}

impl ReloadMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let reloads = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "config_reloads",
            "Config reloads, by outcome: applied, refused (a restart-only key changed) or \
             failed (the file or environment did not load or validate)",
            reloads.clone(),
        );
        let last_outcome = Family::<OutcomeLabel, Gauge>::default();
        registry.register(
            "config_last_reload",
            "1 for the last reload's outcome (applied, refused or failed), 0 for the others",
            last_outcome.clone(),
        );
        let last_at = Gauge::default();
        registry.register(
            "config_last_reload_timestamp_seconds",
            "Unix time of the last reload attempt (0: none since start-up)",
            last_at.clone(),
        );
        for outcome in RELOAD_OUTCOMES {
            let _ = reloads.get_or_create(&OutcomeLabel { outcome });
            let _ = last_outcome.get_or_create(&OutcomeLabel { outcome });
        }
        Self {
            reloads,
            last_outcome,
            last_at,
        }
    }

    /// Counts a reload that ended with `outcome` (one of
    /// [`RELOAD_OUTCOMES`]) at `at_secs`.
    pub fn reloaded(&self, outcome: &'static str, at_secs: u64) {
        self.reloads.get_or_create(&OutcomeLabel { outcome }).inc();
        for other in RELOAD_OUTCOMES {
            self.last_outcome
                .get_or_create(&OutcomeLabel { outcome: other })
                .set(i64::from(other == outcome));
        }
        self.last_at.set(at_secs.min(i64::MAX as u64) as i64);
    }
}
