//! The webhook subscriptions of every group, read through one holder so a
//! configuration reload can swap them at once ([`WebhookSubscriptions::replace`]).
//! Deliveries already queued keep their receiver URL; their secret is read
//! here at each attempt, so a rotated secret signs the next attempt, and a
//! receiver removed from the config ends its queued deliveries in the dead
//! letters (`unsubscribed`).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use secrecy::SecretString;

use crate::infra::config::{Config, WebhookEventType};
use crate::infra::ids::GroupId;

/// One receiver of a group's events.
#[derive(Debug, Clone)]
pub struct Receiver {
    pub url: String,
    pub events: Vec<WebhookEventType>,
    pub secret: SecretString,
}

type ByGroup = HashMap<GroupId, Vec<Receiver>>;

/// Every group's receivers.
#[derive(Default)]
pub struct WebhookSubscriptions {
    groups: RwLock<Arc<ByGroup>>,
}

impl WebhookSubscriptions {
    pub fn from_config(config: &Config) -> Self {
        let holder = Self::default();
        holder.replace(config);
        holder
    }

    /// Takes the subscriptions of `config` (validated) in place of the
    /// current ones; events emitted after this go to the new receivers.
    pub fn replace(&self, config: &Config) {
        let groups: ByGroup = config
            .groups
            .iter()
            .filter(|g| !g.webhooks.is_empty())
            .map(|g| {
                let receivers = g
                    .webhooks
                    .iter()
                    .map(|w| Receiver {
                        url: w.url.clone(),
                        events: w.events.clone(),
                        secret: w.secret.clone(),
                    })
                    .collect();
                (g.id, receivers)
            })
            .collect();
        *self.groups.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(groups);
    }

    fn current(&self) -> Arc<ByGroup> {
        self.groups
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether any receiver of `group` wants `event` (cheap: the registry
    /// asks before it builds an event).
    pub fn wants(&self, group: GroupId, event: WebhookEventType) -> bool {
        self.current()
            .get(&group)
            .is_some_and(|r| r.iter().any(|r| r.events.contains(&event)))
    }

    /// The URLs of `group`'s receivers of `event`.
    pub fn receivers_of(&self, group: GroupId, event: WebhookEventType) -> Vec<String> {
        self.current()
            .get(&group)
            .map(|r| {
                r.iter()
                    .filter(|r| r.events.contains(&event))
                    .map(|r| r.url.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The receiver of `group` at `url`, if it is still subscribed.
    pub fn receiver(&self, group: GroupId, url: &str) -> Option<Receiver> {
        self.current()
            .get(&group)
            .and_then(|r| r.iter().find(|r| r.url == url).cloned())
    }
}
