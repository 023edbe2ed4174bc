//! The authorization service: checks agent credentials of every kind and
//! says who the agent is. Issuing the token, and the signing keys, live
//! elsewhere (`token`); this module never sees a key.
//!
//! A token is always for the one group named in the request. Credentials
//! are checked first; only then is membership of that group checked, so
//! `not_a_member` (403) is never an oracle for someone without valid
//! credentials. A login key is signed by one group's `api_key` and is a
//! credential for that group only.

mod accounts;
pub mod agents;
pub mod credentials;
pub mod lockout;
pub mod login_key;
pub mod redis_lockout;
pub mod redis_sessions;
pub mod sessions;
mod single_sign_on;
pub mod sso;

use std::sync::Arc;

use arc_swap::ArcSwap;
use secrecy::ExposeSecret;

use crate::auth::password::{CheckError, PasswordChecker};
use crate::auth::policy::Policy;
use crate::infra::capacity::KeyedSlots;
use crate::infra::clock::SharedClock;
use crate::infra::config::{Config, GroupConfig, Role};
use crate::infra::error::{on_blocking_pool, DomainError};
use crate::infra::ids::GroupId;
use crate::store::{AgentRecord, AgentSource};

pub use accounts::Accounts;
pub use agents::{ProvisionedAgents, RedisAgents};
pub use credentials::{CredentialKind, Credentials};
pub use lockout::{InMemoryLockout, LockoutCounters};
pub use redis_lockout::RedisLockout;
pub use redis_sessions::{RedisUsedSsoTokens, RedisWebsiteSessions};
pub use sessions::{SessionDigest, SledWebsiteSessions, WebsiteSessions};
pub use single_sign_on::UsedSsoTokens;

/// Who presented valid credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub username: String,
    pub role: Role,
    pub kind: CredentialKind,
    /// The name shown to visitors.
    pub name: Option<String>,
    /// An SSO token's scoping policy.
    pub policy: Option<Policy>,
    /// The website session the credential was, if it was one (the digest
    /// its tokens are filed under, so logging out revokes them).
    pub session: Option<SessionDigest>,
}

/// A refused attempt: what the client is told, and, for the audit log
/// only, why (never a secret).
#[derive(Debug, Clone)]
pub struct AuthFailure {
    pub error: DomainError,
    pub reason: &'static str,
    pub username: Option<String>,
}

impl AuthFailure {
    fn invalid(reason: &'static str, username: Option<&str>) -> Self {
        Self {
            error: DomainError::InvalidCredentials,
            reason,
            username: username.map(str::to_owned),
        }
    }
}

/// Where a username appears: (group id, index in that group's users).
type Records = Vec<(GroupId, usize)>;

/// The short-lived state signing in shares across requests (and, in a
/// cluster, across nodes), each behind its seam; the server chooses the
/// implementations at start-up.
pub struct SignInState {
    /// Failed attempts per account and per client.
    pub lockout: Arc<dyn LockoutCounters>,
    /// Website sessions and the tokens each issued.
    pub sessions: Arc<dyn WebsiteSessions>,
    /// Ids of SSO tokens already used.
    pub used_sso_tokens: Arc<dyn UsedSsoTokens>,
    /// Agents seen or provisioned.
    pub agents: Arc<dyn ProvisionedAgents>,
}

/// Checks credentials against the configured users.
pub struct Authenticator {
    accounts: ArcSwap<Accounts>,
    sessions: Arc<dyn WebsiteSessions>,
    lockout: Arc<dyn LockoutCounters>,
    used_sso_tokens: Arc<dyn UsedSsoTokens>,
    clock: SharedClock,
    agents: Arc<dyn ProvisionedAgents>,
    /// Password checks in flight per client address.
    checks_in_flight: Arc<KeyedSlots<String>>,
}

/// Password checks one client address may have in flight at once; a
/// further one is refused (429) at once, so that no address can hold every
/// hashing slot while others wait.
pub const PASSWORD_CHECKS_PER_CLIENT: usize = 2;

impl Authenticator {
    pub fn new(
        config: Arc<Config>,
        passwords: Arc<PasswordChecker>,
        clock: SharedClock,
        state: SignInState,
    ) -> Result<Self, String> {
        Ok(Self {
            accounts: ArcSwap::from_pointee(Accounts::build(config, passwords)?),
            sessions: state.sessions,
            lockout: state.lockout,
            used_sso_tokens: state.used_sso_tokens,
            clock,
            agents: state.agents,
            checks_in_flight: KeyedSlots::new(),
        })
    }

    /// Puts accounts built from a reloaded config in force; sign-ins
    /// already past their record lookup finish on the old ones.
    pub fn replace_accounts(&self, accounts: Accounts) {
        self.accounts.store(Arc::new(accounts));
    }

    /// Website sessions (their calls may flush: run them off the async
    /// workers).
    pub fn sessions(&self) -> &Arc<dyn WebsiteSessions> {
        &self.sessions
    }

    /// Forgets used SSO token ids whose tokens have expired.
    pub fn forget_used_sso_tokens(&self) -> Result<usize, crate::store::StoreError> {
        self.used_sso_tokens.forget_expired(
            self.clock
                .now_secs()
                .saturating_sub(crate::auth::token::LEEWAY_SECS),
        )
    }

    /// Agents seen or provisioned (their calls may wait on disk or Redis:
    /// run them off the async workers).
    pub fn agents(&self) -> &Arc<dyn ProvisionedAgents> {
        &self.agents
    }

    /// Whether `username` is an agent of `group`: configured, or seen
    /// (provisioned) before.
    pub async fn knows(&self, group: &GroupConfig, username: &str) -> Result<bool, DomainError> {
        if group.users.iter().any(|u| u.username == username) {
            return Ok(true);
        }
        let (agents, groupid, username) = (self.agents.clone(), group.id, username.to_owned());
        let seen = crate::infra::error::off_thread("agent store", move || {
            agents.agent(groupid, &username)
        })
        .await?;
        Ok(seen.is_some())
    }

    /// Failed-attempt limits.
    pub fn lockout(&self) -> &dyn LockoutCounters {
        self.lockout.as_ref()
    }

    /// The group a website sign-in without `groupid` is for: the one group
    /// `username` belongs to, `Ok(None)` for a name no group has (its
    /// password is still checked against the dummy hash), or
    /// `groupid_required` when several groups have it.
    pub fn sign_in_group(&self, username: &str) -> Result<Option<GroupId>, DomainError> {
        match self
            .accounts
            .load()
            .by_username
            .get(username)
            .map(Vec::as_slice)
        {
            None | Some([]) => Ok(None),
            Some([(group, _)]) => Ok(Some(*group)),
            Some(_) => Err(DomainError::GroupIdRequired),
        }
    }

    /// Checks a username and password against the user's record in `group`
    /// only (no group membership check beyond that). With no group, or no
    /// record there, the dummy hash does the same work and the answer is no.
    /// At most [`PASSWORD_CHECKS_PER_CLIENT`] checks of one `client` run
    /// at once; beyond that, 429 `too_many_attempts` at once.
    pub async fn check_password(
        &self,
        username: &str,
        password: String,
        group: Option<GroupId>,
        client: Option<&str>,
    ) -> Result<(), AuthFailure> {
        let _in_flight = match client {
            Some(client) => Some(
                self.checks_in_flight
                    .take(client.to_owned(), PASSWORD_CHECKS_PER_CLIENT)
                    .ok_or_else(|| AuthFailure {
                        error: DomainError::TooManyAttempts(1),
                        reason: "password_checks_in_flight",
                        username: Some(username.to_owned()),
                    })?,
            ),
            None => None,
        };
        let accounts = self.accounts.load_full();
        let record = group.and_then(|g| accounts.record_in(username, g));
        let hash = record
            .and_then(|(_, u)| u.password_hash.as_ref())
            .map(|h| h.expose_secret().to_owned());
        let known = hash.is_some();
        let matches = accounts
            .passwords
            .clone()
            .check_off_thread(password, hash)
            .await
            .map_err(|e| AuthFailure {
                error: match e {
                    CheckError::Busy => DomainError::Busy,
                    CheckError::Failed => DomainError::Internal("password check failed".into()),
                },
                reason: "password_check_unavailable",
                username: Some(username.to_owned()),
            })?;
        match (known, matches) {
            (true, true) => Ok(()),
            (true, false) => Err(AuthFailure::invalid("wrong_password", Some(username))),
            (false, _) => Err(AuthFailure::invalid("unknown_user", Some(username))),
        }
    }

    /// Checks `credentials` and that the agent belongs to `group`.
    pub async fn authenticate(
        &self,
        group: &GroupConfig,
        credentials: Credentials,
        client: Option<&str>,
    ) -> Result<Authenticated, AuthFailure> {
        let kind = credentials.kind();
        let mut session = None;
        let accounts = self.accounts.load_full();
        let username = match credentials {
            Credentials::Password { username, password } => {
                self.check_password(&username, password, Some(group.id), client)
                    .await?;
                username
            }
            Credentials::PartnerLoginKey {
                partner_id,
                partner_user_id,
                login_key,
            } => {
                let partner = accounts
                    .config
                    .group(partner_id)
                    .ok_or_else(|| AuthFailure::invalid("unknown_partner", None))?;
                let user = partner
                    .users
                    .iter()
                    .find(|u| u.partner_user_id.as_deref() == Some(partner_user_id.as_str()));
                self.check_login_key(
                    &accounts,
                    partner,
                    &partner_user_id,
                    &login_key,
                    user.map(|u| u.username.as_str()),
                )?;
                let user = user.ok_or_else(|| AuthFailure::invalid("unknown_user", None))?;
                // A partner's key speaks only for its own group: it must not
                // let one tenant sign its users into another tenant's group
                // (with that group's role), even under a shared username.
                if partner.id != group.id {
                    return Err(AuthFailure {
                        error: DomainError::NotAMember(group.id),
                        reason: "login_key_for_another_group",
                        username: Some(user.username.clone()),
                    });
                }
                user.username.clone()
            }
            Credentials::UsernameLoginKey {
                username,
                login_key,
            } => {
                let (home, user) = accounts
                    .record_in(&username, group.id)
                    .ok_or_else(|| AuthFailure::invalid("unknown_user", Some(&username)))?;
                let puid = user
                    .partner_user_id
                    .as_deref()
                    .ok_or_else(|| AuthFailure::invalid("no_partner_user_id", Some(&username)))?;
                self.check_login_key(&accounts, home, puid, &login_key, Some(&username))?;
                username
            }
            Credentials::Sso { jwt } => return self.single_sign_on(group, &jwt).await,
            Credentials::Session { session_id } => {
                // Using a session extends it: a flushed write, off the workers.
                let sessions = self.sessions.clone();
                let session_store_failed = |error| AuthFailure {
                    error,
                    reason: "session_store_failed",
                    username: None,
                };
                let signed_in =
                    on_blocking_pool("website sessions", move || sessions.touch(&session_id))
                        .await
                        .map_err(session_store_failed)?
                        .map_err(|e| session_store_failed(DomainError::from(e)))?
                        .ok_or_else(|| AuthFailure::invalid("unknown_or_expired_session", None))?;
                // A session speaks for the one (group, user) record whose
                // password was checked, never for another group.
                if signed_in.groupid != group.id {
                    return Err(AuthFailure {
                        error: DomainError::NotAMember(group.id),
                        reason: "session_for_another_group",
                        username: Some(signed_in.username),
                    });
                }
                session = Some(signed_in.digest);
                signed_in.username
            }
        };
        let member = group.users.iter().find(|u| u.username == username);
        let Some(member) = member else {
            return Err(AuthFailure {
                error: DomainError::NotAMember(group.id),
                reason: "not_a_member",
                username: Some(username),
            });
        };
        let seen = AgentRecord {
            username: username.clone(),
            name: member.name.clone(),
            role: member.role,
            source: AgentSource::Config,
            first_seen: 0,
            last_seen: 0,
        };
        self.touch_agent(group.id, seen).await?;
        Ok(Authenticated {
            username,
            role: member.role,
            kind,
            name: member.name.clone(),
            policy: None,
            session,
        })
    }

    /// Records that an agent signed in now (first seen, or last seen), off
    /// the async workers: the write is flushed.
    async fn touch_agent(&self, group: GroupId, record: AgentRecord) -> Result<(), AuthFailure> {
        let (agents, now) = (self.agents.clone(), self.clock.now_secs());
        on_store("agent store", move || {
            agents.touch_agent(group, &record, now)
        })
        .await?;
        Ok(())
    }

    fn check_login_key(
        &self,
        accounts: &Accounts,
        partner: &GroupConfig,
        partner_user_id: &str,
        key: &str,
        username: Option<&str>,
    ) -> Result<(), AuthFailure> {
        let api_key = partner
            .api_key
            .as_ref()
            .ok_or_else(|| AuthFailure::invalid("partner_has_no_api_key", username))?;
        login_key::verify(
            key,
            api_key.expose_secret().as_bytes(),
            partner.id,
            partner_user_id,
            self.clock.now_secs(),
            accounts.config.auth.login_key_max_future_secs,
        )
        .map_err(|e| {
            AuthFailure::invalid(
                match e {
                    login_key::LoginKeyError::Malformed => "login_key_malformed",
                    login_key::LoginKeyError::Expired => "login_key_expired",
                    login_key::LoginKeyError::TooFarInFuture => "login_key_too_far_in_future",
                    login_key::LoginKeyError::BadSignature => "login_key_bad_signature",
                },
                username,
            )
        })
    }
}

/// Runs a store call on the blocking pool (its writes are flushed); a
/// failure of the pool or of the store is a `store_failed` refusal.
async fn on_store<T: Send + 'static>(
    what: &'static str,
    call: impl FnOnce() -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, AuthFailure> {
    on_blocking_pool(what, call)
        .await
        .map_err(|error| AuthFailure {
            error,
            reason: "store_failed",
            username: None,
        })?
        .map_err(store_failure)
}

/// `cluster_unavailable` when Redis failed, `internal` otherwise.
fn store_failure(e: crate::store::StoreError) -> AuthFailure {
    AuthFailure {
        error: DomainError::from(e),
        reason: "store_failed",
        username: None,
    }
}
