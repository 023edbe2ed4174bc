//! Signing in with a customer-signed SSO token: the verified identity is
//! checked against the group (known, or provisioned), and the token's `jti`
//! is claimed so it is accepted once. The used ids are shared short-lived
//! state behind [`UsedSsoTokens`]; the store's `sso_jtis` tree is its
//! single-node implementation, `redis_sessions` the cluster one.

use super::sso::SsoError;
use super::{on_store, AuthFailure, Authenticated, Authenticator, CredentialKind};
use crate::infra::config::GroupConfig;
use crate::infra::error::DomainError;
use crate::infra::ids::GroupId;
use crate::store::{AgentRecord, AgentSource, Store, StoreError};

/// The ids of SSO tokens already used, each kept until its token expires,
/// so that a token signs in once.
///
/// A Redis implementation claims `sso_jti:{group}/{jti}` with `SET NX`
/// and an expiry at the token's `exp` plus the leeway, so claims are
/// atomic across nodes and [`UsedSsoTokens::forget_expired`] has nothing
/// left to do.
pub trait UsedSsoTokens: Send + Sync {
    /// Marks `jti` of `group` used until `exp` (Unix seconds); false if it
    /// already was. Atomic: of two racing claims one wins. Durable before
    /// it returns.
    fn claim(&self, group: GroupId, jti: &str, exp: u64) -> Result<bool, StoreError>;

    /// Forgets ids whose tokens expired before `now`; returns how many.
    fn forget_expired(&self, now: u64) -> Result<usize, StoreError>;
}

/// The single-node record: the `sso_jtis` tree, keyed `group/jti`.
impl UsedSsoTokens for Store {
    fn claim(&self, group: GroupId, jti: &str, exp: u64) -> Result<bool, StoreError> {
        self.claim_sso_jti(&format!("{group}/{jti}"), exp)
    }

    fn forget_expired(&self, now: u64) -> Result<usize, StoreError> {
        self.remove_expired_sso_jtis(now)
    }
}

impl Authenticator {
    /// Checks a customer-signed SSO token for `group`: signature and claims,
    /// then whether the agent is known or may be provisioned, then that the
    /// token was not used before (last, so a refused token stays unused).
    pub(super) async fn single_sign_on(
        &self,
        group: &GroupConfig,
        jwt: &str,
    ) -> Result<Authenticated, AuthFailure> {
        let accounts = self.accounts.load_full();
        let verifier = accounts
            .sso
            .get(&group.id)
            .ok_or_else(|| AuthFailure::invalid("sso_not_configured", None))?;
        let identity = verifier
            .verify(jwt, self.clock.now_secs())
            .map_err(|e| AuthFailure {
                reason: e.reason(),
                error: match e {
                    SsoError::RoleNotAllowed => DomainError::RoleNotAllowed,
                    SsoError::BadPolicy(message) => DomainError::BadPolicy(message),
                    _ => DomainError::InvalidCredentials,
                },
                username: None,
            })?;
        let email = identity.email.clone();
        // Without a jti a token cannot be told from its replay.
        if identity.jti.is_none() && verifier.require_jti {
            return Err(AuthFailure::invalid("sso_jti_missing", Some(&email)));
        }
        let configured = group.users.iter().find(|u| u.username == email);
        let known = self
            .knows(group, &email)
            .await
            .map_err(|error| AuthFailure {
                error,
                reason: "store_failed",
                username: None,
            })?;
        if !known && !verifier.auto_provision {
            return Err(AuthFailure {
                error: DomainError::UnknownAgent,
                reason: "unknown_agent",
                username: Some(email),
            });
        }
        if let Some(jti) = identity.jti.clone() {
            // A durable claim, flushed: off the async workers.
            let (used, groupid, exp) = (self.used_sso_tokens.clone(), group.id, identity.exp);
            let fresh = on_store("sso token ids", move || used.claim(groupid, &jti, exp)).await?;
            if !fresh {
                return Err(AuthFailure::invalid("sso_replay", Some(&email)));
            }
        }
        let name = identity
            .display_name
            .clone()
            .or_else(|| configured.and_then(|u| u.name.clone()));
        let record = AgentRecord {
            username: email.clone(),
            name: name.clone(),
            role: identity.role,
            source: if configured.is_some() {
                AgentSource::Config
            } else {
                AgentSource::Sso
            },
            first_seen: 0,
            last_seen: 0,
        };
        self.touch_agent(group.id, record).await?;
        Ok(Authenticated {
            username: email,
            role: identity.role,
            kind: CredentialKind::Sso,
            name,
            policy: identity.policy,
            session: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_claims_each_group_and_jti_once_until_it_expires() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let used: &dyn UsedSsoTokens = &store;
        assert!(used.claim(72, "j1", 50).expect("claim"));
        assert!(!used.claim(72, "j1", 50).expect("claim"), "a replay");
        assert!(used.claim(73, "j1", 50).expect("claim"), "per group");
        assert!(used.claim(7, "2/j1", 50).expect("claim"), "no key clash");
        assert_eq!(used.forget_expired(50).expect("sweep"), 0, "not yet");
        assert_eq!(used.forget_expired(51).expect("sweep"), 3);
        assert!(used.claim(72, "j1", 90).expect("claim"), "forgotten");
    }
}
