//! Group admission, the one check every visitor hello and every agent
//! request starts with: the group exists (`unknown_group`), it has Presence
//! (`presence_not_subscribed`) and the Origin is on its list
//! (`origin_not_allowed`), in that order.

use std::sync::Arc;

use crate::infra::config::{Config, GroupConfig};
use crate::infra::error::DomainError;
use crate::infra::ids::GroupId;
use crate::presence::origin::{OriginPolicy, RequestOrigin};

/// The configured groups and their Origin rules.
pub struct GroupAccess {
    config: Arc<Config>,
    origins: Arc<OriginPolicy>,
}

impl GroupAccess {
    pub fn new(config: Arc<Config>, origins: Arc<OriginPolicy>) -> Self {
        Self { config, origins }
    }

    /// The group's config, if a request from `origin` may use it.
    pub fn admit(
        &self,
        group: GroupId,
        origin: &RequestOrigin,
    ) -> Result<&GroupConfig, DomainError> {
        let config = self
            .config
            .group(group)
            .ok_or(DomainError::UnknownGroup(group))?;
        if !config.presence {
            return Err(DomainError::PresenceNotSubscribed(group));
        }
        self.origins.check_group(group, origin)?;
        Ok(config)
    }

    /// The group's config, checks aside (tokens can outlive a config change).
    pub fn group(&self, group: GroupId) -> Option<&GroupConfig> {
        self.config.group(group)
    }

    /// The server's whole config.
    pub fn config(&self) -> &Config {
        &self.config
    }
}
