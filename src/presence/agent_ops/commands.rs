//! One struct per agent verb, each with `apply`: the checks in the order
//! the module header lists, then the work. Verbs that wait (invoke, signal,
//! confirmation prompts) return their checks' outcome at once and a
//! [`Pending`] answer, so a socket can count the request in flight only
//! once it is accepted.

use serde_json::Value;
use std::future::Future;
use std::pin::Pin;

use super::{AgentOps, Caller, VisitorView};
use crate::auth::sign_in::lockout::Reservation;
use crate::infra::error::DomainError;
use crate::infra::ids::GroupId;
use crate::presence::confirmation::{card_for, ConfirmOptions, ConfirmationView, Started};
use crate::presence::invoke::{self, check_invoke};
use crate::presence::registry::InvokeOutcome;
use crate::presence::session_keys;

/// An accepted request's answer, still on its way.
pub type Pending<T> = Pin<Box<dyn Future<Output = Result<T, DomainError>>>>;

/// Looks a visitor up.
pub struct Lookup<'a> {
    pub group: GroupId,
    pub visitorid: &'a str,
}

impl Lookup<'_> {
    pub fn apply(self, ops: &AgentOps, caller: &Caller) -> Result<VisitorView, DomainError> {
        let (_, key) = ops.admit_visitor(caller, self.group, self.visitorid)?;
        ops.view(&key, caller.claims)
    }
}

/// Runs a function in the visitor's browser and waits for its result.
pub struct Invoke<'a> {
    pub group: GroupId,
    pub visitorid: &'a str,
    pub func: String,
    pub args: Value,
    pub timeout_ms: Option<u64>,
}

impl Invoke<'_> {
    pub fn apply(
        self,
        ops: &AgentOps,
        caller: &Caller,
    ) -> Result<Pending<InvokeOutcome>, DomainError> {
        let (group, key) = ops.admit_visitor(caller, self.group, self.visitorid)?;
        let timeout_ms = check_invoke(
            &self.func,
            self.timeout_ms,
            ops.presence(),
            &group.invoke_allow,
        )?;
        ops.check_scope(caller.claims, &key, Some(&self.func))?;
        let only_to = ops
            .confirmations
            .check_gate(&group, &key, &caller.claims.sub)?;
        let registry = ops.registry.clone();
        let metrics = ops.metrics.clone();
        let (func, args) = (self.func, self.args);
        Ok(Box::pin(async move {
            invoke::invoke(
                registry.as_ref(),
                &metrics,
                key,
                func,
                args,
                timeout_ms,
                only_to,
            )
            .await
        }))
    }
}

/// Sends the visitor's page a signal; answered once a connection has it.
pub struct Signal<'a> {
    pub group: GroupId,
    pub visitorid: &'a str,
    pub data: Value,
}

impl Signal<'_> {
    pub fn apply(self, ops: &AgentOps, caller: &Caller) -> Result<Pending<()>, DomainError> {
        let (group, key) = ops.admit_visitor(caller, self.group, self.visitorid)?;
        ops.check_scope(caller.claims, &key, None)?;
        let only_to = ops
            .confirmations
            .check_gate(&group, &key, &caller.claims.sub)?;
        let registry = ops.registry.clone();
        let presence = ops.presence().clone();
        let data = self.data;
        Ok(Box::pin(async move {
            invoke::signal(registry.as_ref(), key, data, &presence, only_to).await
        }))
    }
}

/// Shows the visitor a confirmation prompt; answers with the button the
/// agent reads out.
pub struct StartConfirmation<'a> {
    pub group: GroupId,
    pub visitorid: &'a str,
    /// The prompt's options, or why they could not be read: reported only
    /// once the caller is authorised, so a stranger learns nothing.
    pub options: Result<ConfirmOptions, DomainError>,
}

impl StartConfirmation<'_> {
    pub fn apply(self, ops: &AgentOps, caller: &Caller) -> Result<Pending<Started>, DomainError> {
        let (group, key) = ops.admit_visitor(caller, self.group, self.visitorid)?;
        let options = self.options?;
        ops.check_scope(caller.claims, &key, None)?;
        let claims = caller.claims;
        let card = card_for(&group, &claims.sub, claims.name.as_deref(), options.agent)?;
        let confirmations = ops.confirmations.clone();
        let agent = claims.sub.clone();
        Ok(Box::pin(async move {
            confirmations
                .start(key, &agent, card, options.choices)
                .await
        }))
    }
}

/// A prompt's outcome, for agents that poll instead of holding a socket.
pub struct CheckConfirmation<'a> {
    pub group: GroupId,
    pub visitorid: &'a str,
    pub confirmation: String,
}

impl CheckConfirmation<'_> {
    pub async fn apply(
        self,
        ops: &AgentOps,
        caller: &Caller<'_>,
    ) -> Result<ConfirmationView, DomainError> {
        let (_, key) = ops.admit_visitor(caller, self.group, self.visitorid)?;
        ops.confirmations
            .view(key, &caller.claims.sub, self.confirmation)
            .await
    }
}

/// Ends the agent's prompt and confirmation of the visitor; true if there
/// was either.
pub struct EndConfirmation<'a> {
    pub group: GroupId,
    pub visitorid: &'a str,
}

impl EndConfirmation<'_> {
    pub async fn apply(self, ops: &AgentOps, caller: &Caller<'_>) -> Result<bool, DomainError> {
        let (_, key) = ops.admit_visitor(caller, self.group, self.visitorid)?;
        ops.confirmations.cancel(key, &caller.claims.sub).await
    }
}

/// The visitor holding a session key. A key whose visitor's online period
/// has ended (offline after the grace period, or back in a later period)
/// is dropped and reads as a miss. Misses (including a visitor outside the
/// token's policy) count per token and per client; past the limit every
/// lookup is `too_many_attempts`.
pub struct FindSession<'a> {
    pub group: GroupId,
    pub key: &'a str,
}

impl FindSession<'_> {
    /// Counts misses in the shared counters (exact across nodes in cluster
    /// mode; 503 `cluster_unavailable` when they cannot be reached).
    pub async fn apply(
        self,
        ops: &AgentOps,
        caller: &Caller<'_>,
    ) -> Result<VisitorView, DomainError> {
        ops.admit(caller, self.group)?;
        let claims = caller.claims;
        let token = format!("jti:{}", claims.jti);
        // Dropped unsettled (the caller went away), the slot is given back.
        let attempt = Reservation::begin(&ops.session_key_misses, Some(&token), caller.client)
            .await
            .map_err(|e| DomainError::ClusterUnavailable(e.0))?
            .map_err(|locked| DomainError::TooManyAttempts(locked.retry_after_secs))?;
        let found = session_keys::well_formed(self.key)
            .then(|| ops.session_keys.find(claims.groupid, self.key))
            .flatten()
            .filter(|holder| {
                let state = ops.registry.lookup(&holder.visitor);
                let current = state.online
                    && state
                        .connected_at
                        .is_some_and(|at| holder.period.includes(at));
                if !current {
                    ops.session_keys.not_current(claims.groupid, self.key);
                }
                current
            })
            .and_then(|holder| ops.view(&holder.visitor, claims).ok());
        match found {
            Some(view) => {
                if let Err(e) = attempt.succeeded().await {
                    // The reserved slot expires with its window.
                    tracing::warn!(error = %e, "could not release a session-key slot");
                }
                Ok(view)
            }
            None => {
                attempt
                    .failed()
                    .await
                    .map_err(|e| DomainError::ClusterUnavailable(e.0))?;
                Err(DomainError::SessionKeyNotFound)
            }
        }
    }
}
