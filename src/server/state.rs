//! What every handler and socket actor shares: config, registry address,
//! token service, origin policy, store, clock and the shutdown signal.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::auth::audit::Audit;
use crate::auth::sign_in::{Authenticator, LockoutCounters};
use crate::auth::token::{AgentClaims, TokenService};
use crate::infra::capacity::ConnectionGate;
use crate::infra::clock::SharedClock;
use crate::infra::config::function_allowed;
use crate::infra::config::{Config, GroupConfig};
use crate::infra::error::DomainError;
use crate::infra::ids::{GroupId, VisitorKey};
use crate::infra::metrics::Metrics;
use crate::presence::confirmation::Confirmations;
use crate::presence::live_agents::LiveAgents;
use crate::presence::origin::OriginPolicy;
use crate::presence::registry::{RegistryHandle, VisitorState};
use crate::presence::session_keys::{self, SessionKeys};
use crate::server::housekeeping::Chores;
use crate::store::Store;

pub struct AppState {
    pub config: Arc<Config>,
    pub registry: RegistryHandle,
    pub tokens: Arc<TokenService>,
    pub origins: Arc<OriginPolicy>,
    pub auth: Arc<Authenticator>,
    pub audit: Arc<Audit>,
    /// Visitors' session keys.
    pub session_keys: Arc<dyn SessionKeys>,
    /// Session-key lookups that missed, per token and per client.
    pub session_key_misses: Arc<dyn LockoutCounters>,
    /// Agent sockets by token id and by agent.
    pub live_agents: Arc<LiveAgents>,
    /// Confirmation prompts and grants.
    pub confirmations: Arc<Confirmations>,
    pub chores: Chores,
    pub store: Arc<Store>,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
    /// Open WebSockets against the server's limit.
    pub gate: Arc<ConnectionGate>,
    /// Load balancers whose forwarding headers name the client.
    pub trusted_proxies: Arc<crate::transport::client_addr::TrustedProxies>,
    /// Cancelled when shutdown begins; sockets then close with 1001.
    pub shutdown: CancellationToken,
}

/// A visitor's lookup document as one agent sees it.
#[derive(Debug, serde::Serialize)]
pub struct VisitorView {
    #[serde(flatten)]
    pub state: VisitorState,
    /// Whether this agent holds a live confirmation of the visitor.
    pub confirmed: bool,
}

impl AppState {
    /// The configured group (tokens can outlive a config change).
    pub fn group(&self, id: GroupId) -> Result<&GroupConfig, DomainError> {
        self.config.group(id).ok_or(DomainError::UnknownGroup(id))
    }

    /// The lookup document of `key` as the token's agent may see it; a
    /// visitor outside its policy reads as `visitor_not_present`.
    pub fn visitor_view(
        &self,
        key: &VisitorKey,
        claims: &AgentClaims,
    ) -> Result<VisitorView, DomainError> {
        let state = self.registry.lookup(key);
        if !in_scope(claims, &state) {
            return Err(DomainError::not_present());
        }
        Ok(VisitorView {
            state,
            confirmed: self.confirmations.shows_confirmed(key, &claims.sub),
        })
    }

    /// The policy checks of a command: the visitor must be in the token's
    /// scope (else it reads as not present, so agents cannot probe who is
    /// online) and so must `func`, when there is one.
    pub fn check_scope(
        &self,
        claims: &AgentClaims,
        key: &VisitorKey,
        func: Option<&str>,
    ) -> Result<(), DomainError> {
        let Some(policy) = &claims.policy else {
            return Ok(());
        };
        if !in_scope(claims, &self.registry.lookup(key)) {
            return Err(DomainError::not_present());
        }
        match func {
            Some(func) if !policy.allows_function(func) => {
                Err(DomainError::FunctionNotAllowed(func.to_owned()))
            }
            _ => Ok(()),
        }
    }
}

impl AppState {
    /// The visitor holding session key `key`, for REST and the agent
    /// socket alike. A key whose visitor's online period has ended (offline
    /// after the grace period, or back in a later period) is dropped and
    /// reads as a miss. Misses (including a visitor outside the token's
    /// policy) count per token and per client; past the limit every
    /// lookup is `too_many_attempts`.
    pub fn find_session(
        &self,
        claims: &AgentClaims,
        key: &str,
        client: Option<&str>,
    ) -> Result<VisitorView, DomainError> {
        let token = format!("jti:{}", claims.jti);
        let attempt = self
            .session_key_misses
            .begin(Some(&token), client)
            .map_err(|locked| DomainError::TooManyAttempts(locked.retry_after_secs))?;
        let found = session_keys::well_formed(key)
            .then(|| self.session_keys.find(claims.groupid, key))
            .flatten()
            .filter(|holder| {
                let state = self.registry.lookup(&holder.visitor);
                let current = state.online && state.connected_at == Some(holder.online_since);
                if !current {
                    self.session_keys.drop_key(claims.groupid, key);
                }
                current
            })
            .and_then(|holder| self.visitor_view(&holder.visitor, claims).ok());
        match found {
            Some(view) => {
                self.session_key_misses.succeeded(attempt);
                Ok(view)
            }
            None => {
                let _ = self.session_key_misses.failed(attempt);
                Err(DomainError::SessionKeyNotFound)
            }
        }
    }

    /// The `invoke_allow` patterns a token may use: the group's list, or
    /// with a policy the patterns both lists allow. Patterns are compared
    /// as names, so this is a hint for consoles; `check_invoke` and
    /// `check_scope` remain the enforcement.
    pub fn usable_functions(&self, claims: &AgentClaims) -> Vec<String> {
        let Some(group) = self.config.group(claims.groupid) else {
            return Vec::new();
        };
        let allow = &group.invoke_allow;
        let Some(policy) = &claims.policy else {
            return allow.clone();
        };
        let mut usable: Vec<String> = allow
            .iter()
            .filter(|pattern| policy.allows_function(pattern))
            .cloned()
            .collect();
        for pattern in policy.functions.iter().flatten() {
            if function_allowed(allow, pattern) && !usable.contains(pattern) {
                usable.push(pattern.clone());
            }
        }
        usable
    }
}

/// Whether a token's policy (if any) reaches a visitor in `state`.
pub fn in_scope(claims: &AgentClaims, state: &VisitorState) -> bool {
    claims
        .policy
        .as_ref()
        .is_none_or(|policy| policy.admits(&state.visitorid, state.online.then_some(&state.data)))
}
