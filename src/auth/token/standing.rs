//! Whether a token still stands after a config reload. A group removed by
//! a reload loses every token issued up to its removal, whatever kind of
//! agent holds it; so does an agent removed from `[[groups.users]]` (a
//! later token, from SSO with `auto_provision`, is the agent's anew).
//! Checked on every verify, so such a token stops verifying on its next
//! request; the reload closes the sockets. (A token of a group that was
//! not configured at start-up still verifies, and group admission refuses
//! it with `unknown_group`, as it always has.)

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

/// Removals made by reloads, each with the Unix second it was applied.
pub struct ConfiguredStanding {
    live: Arc<LiveConfig>,
    /// (group, username) → when a reload removed the user.
    removed_users: DashMap<(GroupId, String), u64>,
    /// group → when a reload removed it.
    removed_groups: DashMap<GroupId, u64>,
}

impl ConfiguredStanding {
    pub fn new(live: Arc<LiveConfig>) -> Self {
        Self {
            live,
            removed_users: DashMap::new(),
            removed_groups: DashMap::new(),
        }
    }

    /// A reload at `now_secs` removed `users` and `groups`: their tokens
    /// issued until then stop standing. Those `restored` (configured
    /// again) stand anew; removals older than any token can live are
    /// forgotten.
    pub fn removed(&self, removal: Removal<'_>, now_secs: u64, token_max_secs: u64) {
        for user in removal.users {
            self.removed_users.insert(user.clone(), now_secs);
        }
        for group in removal.groups {
            self.removed_groups.insert(*group, now_secs);
        }
        for user in removal.restored_users {
            self.removed_users.remove(user);
        }
        for group in removal.restored_groups {
            self.removed_groups.remove(group);
        }
        let horizon = token_max_secs.saturating_add(2 * LEEWAY_SECS);
        let recent = |at: &mut u64| at.saturating_add(horizon) > now_secs;
        self.removed_users.retain(|_, at| recent(at));
        self.removed_groups.retain(|_, at| recent(at));
    }
}

/// What one reload removed and restored.
#[derive(Default)]
pub struct Removal<'a> {
    pub users: &'a [(GroupId, String)],
    pub groups: &'a [GroupId],
    pub restored_users: &'a [(GroupId, String)],
    pub restored_groups: &'a [GroupId],
}

impl Standing for ConfiguredStanding {
    fn stands(&self, claims: &AgentClaims) -> bool {
        let issued_before = |at: &u64| claims.iat <= *at;
        if !self.removed_groups.is_empty()
            && self.live.load().group(claims.groupid).is_none()
            && self
                .removed_groups
                .get(&claims.groupid)
                .is_some_and(|at| issued_before(&at))
        {
            return false;
        }
        if self.removed_users.is_empty() {
            return true;
        }
        !self
            .removed_users
            .get(&(claims.groupid, claims.sub.clone()))
            .is_some_and(|at| issued_before(&at))
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
    fn a_group_or_user_removed_by_a_reload_no_longer_stands() {
        let config = Config::from_toml_str("[[groups]]\nid = 1\nname = \"a\"\n").expect("config");
        let live = Arc::new(LiveConfig::new(Arc::new(config)));
        let standing = ConfiguredStanding::new(live.clone());
        assert!(standing.stands(&claims(1, "ann", 100)));
        assert!(
            standing.stands(&claims(2, "ann", 100)),
            "never configured: admission says unknown_group"
        );
        let users = [(1, "ann".to_owned())];
        let removal = Removal {
            users: &users,
            ..Removal::default()
        };
        standing.removed(removal, 200, 7200);
        assert!(
            !standing.stands(&claims(1, "ann", 200)),
            "issued until removal"
        );
        assert!(standing.stands(&claims(1, "ann", 201)), "issued after");
        assert!(standing.stands(&claims(1, "bob", 100)), "another user");
        let restored = Removal {
            restored_users: &users,
            ..Removal::default()
        };
        standing.removed(restored, 300, 7200);
        assert!(standing.stands(&claims(1, "ann", 100)), "restored");

        live.replace(Arc::new(Config::default()));
        let groups = [1];
        let removal = Removal {
            groups: &groups,
            ..Removal::default()
        };
        standing.removed(removal, 400, 7200);
        assert!(
            !standing.stands(&claims(1, "sso-agent", 400)),
            "every agent of the group"
        );
        assert!(standing.stands(&claims(1, "sso-agent", 401)));
        standing.removed(Removal::default(), 400 + 7200 + 10, 7200);
        assert!(
            standing.stands(&claims(1, "sso-agent", 100)),
            "forgotten past every token"
        );
    }
}
