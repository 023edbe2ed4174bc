//! The agent operations: every verb an agent console can use, in one place
//! that both transports call (the REST handlers and the agent socket's
//! frames are thin adapters that parse, call [`AgentOps`] and format the
//! answer). Authorization happens here, once, in one order:
//!
//! 1. the token's group is the group asked for (`wrong_group`);
//! 2. the group exists (`unknown_group`) and has Presence
//!    (`presence_not_subscribed`);
//! 3. the request's Origin is on the group's list (`origin_not_allowed`);
//! 4. the administrator role, for the verbs that need it (`forbidden`);
//! 5. the visitor id is well formed (`bad_request`);
//! 6. for an invoke, the function name and the group's allow-list
//!    (`bad_request`, `function_not_allowed`) and the timeout;
//! 7. the token's policy scope: a visitor outside it reads as
//!    `visitor_not_present`, a function outside it is `function_not_allowed`;
//! 8. for invoke and signal, the confirmation gate (`confirmation_required`).
//!
//! A request body or query that cannot be read is reported after the
//! caller is admitted (after step 5 for a confirmation prompt's body, after
//! step 4 for the visitor list's query), so a stranger learns nothing from
//! it. So a verb answers with the same error code whichever transport
//! asked.

mod commands;
mod visitor_list;
mod watches;

use std::sync::Arc;

use serde::Serialize;

use crate::auth::sign_in::LockoutCounters;
use crate::auth::token::AgentClaims;
use crate::infra::config::{function_allowed, PresenceConfig, Role};
use crate::infra::error::DomainError;
use crate::infra::ids::{GroupId, VisitorId, VisitorKey};
use crate::infra::metrics::Metrics;
use crate::presence::admission::{GroupAccess, GroupRef};
use crate::presence::confirmation::Confirmations;
use crate::presence::origin::RequestOrigin;
use crate::presence::registry::PresenceDirectory;
use crate::presence::session_keys::SessionKeys;
use crate::presence::visitor::VisitorState;

pub use commands::{
    CheckConfirmation, EndConfirmation, FindSession, Invoke, Lookup, Pending, Signal,
    StartConfirmation,
};
pub use visitor_list::{ListVisitors, VisitorPage, VisitorQuery};
pub use watches::Watches;

/// Who asks: a verified agent token, the Origin its request or socket
/// carried, and the client's address (for per-client limits).
pub struct Caller<'a> {
    pub claims: &'a AgentClaims,
    pub origin: &'a RequestOrigin,
    pub client: Option<&'a str>,
}

/// A visitor's lookup document as one agent sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VisitorView {
    #[serde(flatten)]
    pub state: VisitorState,
    /// Whether this agent holds a live confirmation of the visitor.
    pub confirmed: bool,
}

/// What the agent operations use; built once at start-up.
pub struct AgentOps {
    groups: Arc<GroupAccess>,
    registry: Arc<dyn PresenceDirectory>,
    confirmations: Arc<Confirmations>,
    session_keys: Arc<dyn SessionKeys>,
    /// Session-key lookups that missed, per token and per client.
    session_key_misses: Arc<dyn LockoutCounters>,
    metrics: Arc<Metrics>,
}

impl AgentOps {
    pub fn new(
        groups: Arc<GroupAccess>,
        registry: Arc<dyn PresenceDirectory>,
        confirmations: Arc<Confirmations>,
        session_keys: Arc<dyn SessionKeys>,
        session_key_misses: Arc<dyn LockoutCounters>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            groups,
            registry,
            confirmations,
            session_keys,
            session_key_misses,
            metrics,
        }
    }

    /// The groups and their admission rules.
    pub fn groups(&self) -> &GroupAccess {
        &self.groups
    }

    /// The presence settings (limits and timeouts).
    fn presence(&self) -> &PresenceConfig {
        self.groups.presence()
    }

    /// Steps 1 to 3: the caller may act on `group`.
    pub fn admit(&self, caller: &Caller, group: GroupId) -> Result<GroupRef, DomainError> {
        if caller.claims.groupid != group {
            return Err(DomainError::WrongGroup {
                token: caller.claims.groupid,
                path: group,
            });
        }
        self.groups.admit(group, caller.origin)
    }

    /// Steps 1 to 4: as [`AgentOps::admit`], and the token must be an
    /// administrator's.
    pub fn admit_admin(&self, caller: &Caller, group: GroupId) -> Result<GroupRef, DomainError> {
        let config = self.admit(caller, group)?;
        if caller.claims.role != Role::Administrator {
            return Err(DomainError::Forbidden(
                "this needs an administrator token of the group".into(),
            ));
        }
        Ok(config)
    }

    /// Steps 1 to 3 and 5: the group's config and the visitor's key.
    fn admit_visitor(
        &self,
        caller: &Caller,
        group: GroupId,
        visitorid: &str,
    ) -> Result<(GroupRef, VisitorKey), DomainError> {
        let config = self.admit(caller, group)?;
        let visitor = VisitorId::parse(visitorid).map_err(DomainError::BadRequest)?;
        Ok((config, VisitorKey::new(group, visitor)))
    }

    /// Step 7: the visitor must be in the token's scope (else it reads as
    /// not present, so agents cannot probe who is online), and so must
    /// `func`, when there is one.
    fn check_scope(
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

    /// The lookup document of `key` as the token's agent may see it; a
    /// visitor outside its policy reads as `visitor_not_present`.
    fn view(&self, key: &VisitorKey, claims: &AgentClaims) -> Result<VisitorView, DomainError> {
        let state = self.registry.lookup(key);
        if !in_scope(claims, &state) {
            return Err(DomainError::not_present());
        }
        Ok(VisitorView {
            state,
            confirmed: self.confirmations.shows_confirmed(key, &claims.sub),
        })
    }

    /// A watched visitor's new state as the token's agent may see it: a
    /// visitor outside its policy always looks offline.
    pub fn event_view(&self, claims: &AgentClaims, state: VisitorState) -> VisitorView {
        if !in_scope(claims, &state) {
            return VisitorView {
                state: state.hidden(),
                confirmed: false,
            };
        }
        let confirmed = VisitorId::parse(&state.visitorid).is_ok_and(|visitor| {
            self.confirmations
                .shows_confirmed(&VisitorKey::new(state.groupid, visitor), &claims.sub)
        });
        VisitorView { state, confirmed }
    }

    /// The `invoke_allow` patterns a token may use: the group's list, or
    /// with a policy the patterns both lists allow. Patterns are compared
    /// as names, so this is a hint for consoles; the invoke checks remain
    /// the enforcement.
    pub fn usable_functions(&self, claims: &AgentClaims) -> Vec<String> {
        let Some(group) = self.groups.group(claims.groupid) else {
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
fn in_scope(claims: &AgentClaims, state: &VisitorState) -> bool {
    claims
        .policy
        .as_ref()
        .is_none_or(|policy| policy.admits(&state.visitorid, state.online.then_some(&state.data)))
}
