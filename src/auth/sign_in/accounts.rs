//! The configured accounts of one config, and what is derived from them
//! for signing in: built whole, swapped whole by a config reload.

use std::collections::HashMap;
use std::sync::Arc;

use super::sso::SsoVerifier;
use super::Records;
use crate::auth::password::PasswordChecker;
use crate::infra::config::{Config, GroupConfig, UserConfig};
use crate::infra::ids::GroupId;

/// The configured accounts and what is derived from them (the password
/// checker sized by their hashes, the usernames' records, the SSO
/// verifiers): built whole from one config, swapped whole by a reload.
pub struct Accounts {
    pub(super) config: Arc<Config>,
    pub(super) passwords: Arc<PasswordChecker>,
    pub(super) by_username: HashMap<String, Records>,
    pub(super) sso: HashMap<GroupId, SsoVerifier>,
}

impl Accounts {
    /// Derives everything from `config`; an SSO key that does not load is
    /// the error.
    pub fn build(config: Arc<Config>, passwords: Arc<PasswordChecker>) -> Result<Self, String> {
        let sso = SsoVerifier::for_groups(&config.groups, &config.server.public_url)?;
        let mut by_username: HashMap<String, Records> = HashMap::new();
        for group in &config.groups {
            for (i, user) in group.users.iter().enumerate() {
                by_username
                    .entry(user.username.clone())
                    .or_default()
                    .push((group.id, i));
            }
        }
        Ok(Self {
            config,
            passwords,
            by_username,
            sso,
        })
    }

    pub(super) fn user(&self, group: GroupId, index: usize) -> Option<(&GroupConfig, &UserConfig)> {
        let group = self.config.group(group)?;
        Some((group, group.users.get(index)?))
    }

    /// `username`'s record in `group`, and nowhere else: no credential is
    /// ever checked against another group's record.
    pub(super) fn record_in(
        &self,
        username: &str,
        group: GroupId,
    ) -> Option<(&GroupConfig, &UserConfig)> {
        let records = self.by_username.get(username)?;
        let (g, i) = records.iter().find(|(g, _)| *g == group)?;
        self.user(*g, *i)
    }
}
