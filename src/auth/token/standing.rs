//! Whether a token still stands after a config reload: its group must
//! still be configured, and an agent removed from `[[groups.users]]` loses
//! every token issued up to its removal (whatever credential signed it in;
//! a later token, from SSO with `auto_provision`, is the agent's anew).
//! Checked on every verify, so a removed group's or user's token stops
//! working on the next request; their sockets are closed by the reload.

use std::sync::Arc;

use dashmap::DashMap;

use super::{AgentClaims, LEEWAY_SECS};
use crate::infra::config::LiveConfig;
use crate::infra::ids::GroupId;

/// Asked on every verify, after the signature, time and denylist checks.
pub trait Standing: Send + Sync {
    /// Whether the token's holder still stands where the token puts it.
    fn stands(&self, claims: &AgentClaims) -> bool;
}

/// The config in force decides: the group must exist, and the agent must
/// not have been removed after the token was issued.
pub struct ConfiguredStanding {
    live: Arc<LiveConfig>,
    /// (group, username) → the Unix second a reload removed the user.
    removed: DashMap<(GroupId, String), u64>,
}

impl ConfiguredStanding {
    pub fn new(live: Arc<LiveConfig>) -> Self {
        Self {
            live,
            removed: DashMap::new(),
        }
    }

    /// A reload removed `users` at `now_secs`: their tokens issued until
    /// then stop standing. Those `restored` (configured again) stand anew;
    /// removals older than any token can live are forgotten.
    pub fn removed(
        &self,
        users: &[(GroupId, String)],
        restored: &[(GroupId, String)],
        now_secs: u64,
        token_max_secs: u64,
    ) {
        for user in users {
            self.removed.insert(user.clone(), now_secs);
        }
        for user in restored {
            self.removed.remove(user);
        }
        let horizon = token_max_secs.saturating_add(2 * LEEWAY_SECS);
        self.removed
            .retain(|_, at| at.saturating_add(horizon) > now_secs);
    }
}

impl Standing for ConfiguredStanding {
    fn stands(&self, claims: &AgentClaims) -> bool {
        if self.live.load().group(claims.groupid).is_none() {
            return false;
        }
        if self.removed.is_empty() {
            return true;
        }
        match self.removed.get(&(claims.groupid, claims.sub.clone())) {
            Some(at) => claims.iat > *at,
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infra::config::{Config, Role};

    fn claims(group: GroupId, sub: &str, iat: u64) -> AgentClaims {
        AgentClaims {
            iss: "i".into(),
            aud: "a".into(),
            sub: sub.into(),
            groupid: group,
            role: Role::Agent,
            iat,
            exp: iat + 60,
            jti: "j".into(),
            name: None,
            policy: None,
        }
    }

    #[test]
    fn a_removed_group_or_user_no_longer_stands() {
        let config = Config::from_toml_str("[[groups]]\nid = 1\nname = \"a\"\n").expect("config");
        let standing = ConfiguredStanding::new(Arc::new(LiveConfig::new(Arc::new(config))));
        assert!(standing.stands(&claims(1, "ann", 100)));
        assert!(!standing.stands(&claims(2, "ann", 100)), "unknown group");
        standing.removed(&[(1, "ann".into())], &[], 200, 7200);
        assert!(
            !standing.stands(&claims(1, "ann", 200)),
            "issued until removal"
        );
        assert!(standing.stands(&claims(1, "ann", 201)), "issued after");
        assert!(standing.stands(&claims(1, "bob", 100)), "another user");
        standing.removed(&[], &[(1, "ann".into())], 300, 7200);
        assert!(standing.stands(&claims(1, "ann", 100)), "restored");
        standing.removed(&[(1, "ann".into())], &[], 400, 7200);
        standing.removed(&[], &[], 400 + 7200 + 10, 7200);
        assert!(
            standing.stands(&claims(1, "ann", 100)),
            "forgotten past every token"
        );
    }
}
