//! The webhook parts of the assembly: the outbox (resumed from sled) and
//! its delivery, the single node's registry transitions as events, and the
//! subscriptions following a reload.

use std::sync::Arc;

use super::reload::Reloader;
use super::ServerError;
use crate::infra::clock::SharedClock;
use crate::infra::config::{Config, ConfigError};
use crate::infra::ids::VisitorKey;
use crate::infra::metrics::Metrics;
use crate::presence::registry::{RegistryHandle, Transition, TransitionListener};
use crate::presence::webhooks::{Outbox, WebhookEvent, WebhookSubscriptions};
use crate::store::Store;

/// Opens the outbox and starts delivering from it.
pub(super) fn start(
    config: &Config,
    store: &Arc<Store>,
    metrics: &Arc<Metrics>,
    clock: &SharedClock,
) -> Result<Arc<Outbox>, ServerError> {
    let outbox = Outbox::start(
        store.clone(),
        Arc::new(WebhookSubscriptions::from_config(config)),
        config.webhooks.clone(),
        metrics.clone(),
        clock.clone(),
    )?;
    crate::transport::webhooks::start(outbox.clone())
        .map_err(|m| ConfigError::new("webhooks", m))?;
    Ok(outbox)
}

/// A reload's new receivers take the group's next events; deliveries
/// already queued for a removed receiver end as `unsubscribed`.
pub(super) fn follow_reloads(reloader: &Reloader, outbox: &Arc<Outbox>) {
    let outbox = outbox.clone();
    reloader.on_applied(Arc::new(move |config| {
        outbox.subscriptions().replace(config)
    }));
}

/// Single node: the registry's transitions are the visitor's, and become
/// `visitor_online` and `visitor_offline` events.
struct SingleNodeTransitions(Arc<Outbox>);

impl TransitionListener for SingleNodeTransitions {
    fn wants(&self, key: &VisitorKey, online: bool) -> bool {
        self.0.wants_presence(key.group, online)
    }

    fn transition(&self, _key: &VisitorKey, transition: Transition) {
        let now = self.0.now_ms();
        self.0.emit(match &transition {
            Transition::Online(state) => WebhookEvent::visitor_online(state, now),
            Transition::Offline(last) => WebhookEvent::visitor_offline(last, now),
        });
    }
}

pub(super) fn emit_transitions(registry: &RegistryHandle, outbox: &Arc<Outbox>) {
    let listener = Arc::new(SingleNodeTransitions(outbox.clone()));
    let _ = registry.hooks().transition.set(listener);
}
