//! Split-role metrics: internal calls refused, key handovers and
//! revocation notices between auth and presence nodes. Registered in every
//! build (zero with `server.role = "all"`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// What the split roles count.
pub struct RoleMetrics {
    refused: Family<ReasonLabel, Counter>,
    handovers: Family<OutcomeLabel, Counter>,
    notices: Family<OutcomeLabel, Counter>,
}

impl RoleMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let refused = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "internal_calls_refused",
            "Calls to the internal listener refused, by reason: bad_signature, stale_request, \
             replayed_request, bad_request",
            refused.clone(),
        );
        let handovers = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "key_handovers",
            "Signing-key handovers to one auth node, by outcome: ok or failed",
            handovers.clone(),
        );
        let notices = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "revocation_notices",
            "Revocation notices to the presence node, by outcome: ok or failed",
            notices.clone(),
        );
        Self {
            refused,
            handovers,
            notices,
        }
    }

    pub fn internal_call_refused(&self, reason: &'static str) {
        self.refused.get_or_create(&ReasonLabel { reason }).inc();
    }

    pub fn key_handover(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "failed" };
        self.handovers
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    pub fn revocation_notice(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "failed" };
        self.notices.get_or_create(&OutcomeLabel { outcome }).inc();
    }
}
