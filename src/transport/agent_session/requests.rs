//! The request frames of an agent socket after `auth`: watch, invoke,
//! signal, lookup, session-key search and confirmation prompts. Each is a
//! thin adapter over the agent operations: it checks the frame's `id`,
//! calls the verb and answers a frame carrying the `id`, or an error frame
//! echoing it. A frame may name its `groupid`; without one it is the
//! token's group.

use std::sync::Arc;

use actix::{ActorFutureExt, AsyncContext, WrapFuture};
use actix_web_actors::ws::WebsocketContext;
use serde_json::Value;

use super::{AgentSession, MAX_IN_FLIGHT_PER_AGENT};
use crate::auth::token::AgentClaims;
use crate::infra::error::DomainError;
use crate::infra::ids::GroupId;
use crate::presence::agent_ops::{
    Caller, FindSession, Invoke, Lookup, Pending, Signal, StartConfirmation, VisitorView,
};
use crate::presence::confirmation::ConfirmOptions;
use crate::presence::registry::InvokeOutcome;
use crate::transport::protocol::{check_request_id, ServerFrame};
use crate::transport::ws_support::{reject, send_error};

impl AgentSession {
    fn caller<'a>(&'a self, claims: &'a AgentClaims) -> Caller<'a> {
        Caller {
            claims,
            origin: &self.origin,
            client: self.client.as_deref(),
        }
    }

    /// Checks a request's `id`, answering an error frame if it is bad.
    fn request_id(&mut self, id: &str, ctx: &mut WebsocketContext<Self>) -> bool {
        match check_request_id(id) {
            Ok(()) => true,
            Err(e) => {
                reject(self, ctx, None, &DomainError::BadRequest(e.message()));
                false
            }
        }
    }

    /// Runs an accepted request in flight (bounded per socket), then
    /// answers it with `answer`, or with the error it ended with.
    fn in_flight<T: 'static>(
        &mut self,
        id: Option<String>,
        accepted: Result<Pending<T>, DomainError>,
        answer: fn(&mut WebsocketContext<Self>, Option<&str>, T),
        ctx: &mut WebsocketContext<Self>,
    ) {
        let pending = match accepted {
            Ok(pending) => pending,
            Err(e) => return reject(self, ctx, id.as_deref(), &e),
        };
        if self.in_flight >= MAX_IN_FLIGHT_PER_AGENT {
            let e = DomainError::TooManyPending(MAX_IN_FLIGHT_PER_AGENT);
            return send_error(ctx, id.as_deref(), &e);
        }
        self.in_flight += 1;
        ctx.spawn(pending.into_actor(self).map(move |outcome, session, ctx| {
            session.in_flight -= 1;
            match outcome {
                Ok(value) => answer(ctx, id.as_deref(), value),
                Err(e) => send_error(ctx, id.as_deref(), &e),
            }
        }));
    }

    pub(super) fn watch(
        &mut self,
        claims: &AgentClaims,
        group: Option<GroupId>,
        visitorid: &str,
        ctx: &mut WebsocketContext<Self>,
    ) {
        let events = ctx.address().recipient();
        let group = group.unwrap_or(claims.groupid);
        let caller = Caller {
            claims,
            origin: &self.origin,
            client: self.client.as_deref(),
        };
        if let Err(e) = self
            .watches
            .watch(&self.deps.ops, &caller, group, visitorid, events)
        {
            reject(self, ctx, None, &e);
        }
    }

    pub(super) fn unwatch(
        &mut self,
        claims: &AgentClaims,
        group: Option<GroupId>,
        visitorid: &str,
        ctx: &mut WebsocketContext<Self>,
    ) {
        let group = group.unwrap_or(claims.groupid);
        let caller = Caller {
            claims,
            origin: &self.origin,
            client: self.client.as_deref(),
        };
        if let Err(e) = self
            .watches
            .unwatch(&self.deps.ops, &caller, group, visitorid)
        {
            reject(self, ctx, None, &e);
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn invoke(
        &mut self,
        claims: &AgentClaims,
        id: String,
        group: Option<GroupId>,
        visitorid: &str,
        func: String,
        args: Value,
        timeout_ms: Option<u64>,
        ctx: &mut WebsocketContext<Self>,
    ) {
        if !self.request_id(&id, ctx) {
            return;
        }
        let accepted = Invoke {
            group: group.unwrap_or(claims.groupid),
            visitorid,
            func,
            args,
            timeout_ms,
        }
        .apply(&self.deps.ops, &self.caller(claims));
        self.in_flight(Some(id), accepted, answer_invoke, ctx);
    }

    pub(super) fn signal(
        &mut self,
        claims: &AgentClaims,
        id: Option<String>,
        group: Option<GroupId>,
        visitorid: &str,
        data: Value,
        ctx: &mut WebsocketContext<Self>,
    ) {
        if let Some(id) = &id {
            if !self.request_id(id, ctx) {
                return;
            }
        }
        let accepted = Signal {
            group: group.unwrap_or(claims.groupid),
            visitorid,
            data,
        }
        .apply(&self.deps.ops, &self.caller(claims));
        self.in_flight(id, accepted, answer_signal, ctx);
    }

    pub(super) fn lookup(
        &mut self,
        claims: &AgentClaims,
        id: String,
        group: Option<GroupId>,
        visitorid: &str,
        ctx: &mut WebsocketContext<Self>,
    ) {
        if !self.request_id(&id, ctx) {
            return;
        }
        let view = Lookup {
            group: group.unwrap_or(claims.groupid),
            visitorid,
        }
        .apply(&self.deps.ops, &self.caller(claims));
        self.answer_lookup(&id, view, ctx);
    }

    /// Starts a confirmation prompt; the answer to read out comes back as a
    /// `confirm` frame, the outcome later as a `confirmation` frame.
    pub(super) fn confirm(
        &mut self,
        claims: &AgentClaims,
        id: String,
        group: Option<GroupId>,
        visitorid: &str,
        options: ConfirmOptions,
        ctx: &mut WebsocketContext<Self>,
    ) {
        if !self.request_id(&id, ctx) {
            return;
        }
        let accepted = StartConfirmation {
            group: group.unwrap_or(claims.groupid),
            visitorid,
            options: Ok(options),
        }
        .apply(&self.deps.ops, &self.caller(claims));
        let visitorid = visitorid.to_owned();
        let accepted = accepted.map(|pending| -> Pending<(String, _)> {
            Box::pin(async move { Ok((visitorid, pending.await?)) })
        });
        self.in_flight(Some(id), accepted, answer_confirm, ctx);
    }

    /// Finds the visitor holding a session key; answered like a lookup.
    /// Misses count against the same per-token and per-client limit as
    /// `GET /presence/{groupid}/sessions/{key}`.
    pub(super) fn find_session(
        &mut self,
        claims: &AgentClaims,
        id: String,
        group: Option<GroupId>,
        key: &str,
        ctx: &mut WebsocketContext<Self>,
    ) {
        if !self.request_id(&id, ctx) {
            return;
        }
        let (ops, claims, origin, client) = (
            Arc::clone(&self.deps.ops),
            claims.clone(),
            self.origin.clone(),
            self.client.clone(),
        );
        let key = key.to_owned();
        let found: Pending<VisitorView> = Box::pin(async move {
            let caller = Caller {
                claims: &claims,
                origin: &origin,
                client: client.as_deref(),
            };
            FindSession {
                group: group.unwrap_or(claims.groupid),
                key: &key,
            }
            .apply(&ops, &caller)
            .await
        });
        self.in_flight(Some(id), Ok(found), answer_found, ctx);
    }

    /// Answers a lookup-style request with the visitor's document, or the
    /// error.
    fn answer_lookup(
        &mut self,
        id: &str,
        view: Result<VisitorView, DomainError>,
        ctx: &mut WebsocketContext<Self>,
    ) {
        let frame = view.and_then(|view| {
            serde_json::to_value(view).map_err(|e| DomainError::Internal(format!("lookup: {e}")))
        });
        match frame {
            Ok(visitor) => ctx.text(
                ServerFrame::Lookup {
                    id,
                    visitor: &visitor,
                }
                .to_text(),
            ),
            // A malformed request is the client's mistake; a visitor that
            // is not there is an answer.
            Err(e @ DomainError::BadRequest(_)) => reject(self, ctx, Some(id), &e),
            Err(e) => send_error(ctx, Some(id), &e),
        }
    }
}

/// Answers `find_session` with the visitor's document, as a lookup.
fn answer_found(ctx: &mut WebsocketContext<AgentSession>, id: Option<&str>, view: VisitorView) {
    let id = id.unwrap_or_default();
    match serde_json::to_value(view) {
        Ok(visitor) => ctx.text(
            ServerFrame::Lookup {
                id,
                visitor: &visitor,
            }
            .to_text(),
        ),
        Err(e) => send_error(
            ctx,
            Some(id),
            &DomainError::Internal(format!("lookup: {e}")),
        ),
    }
}

fn answer_invoke(
    ctx: &mut WebsocketContext<AgentSession>,
    id: Option<&str>,
    outcome: InvokeOutcome,
) {
    let id = id.unwrap_or_default();
    let frame = match &outcome {
        InvokeOutcome::Ok { value, .. } => ServerFrame::Result {
            id,
            ok: true,
            value: Some(value),
            error: None,
        },
        InvokeOutcome::Failed { error, .. } => ServerFrame::Result {
            id,
            ok: false,
            value: None,
            error: Some(error),
        },
    };
    ctx.text(frame.to_text());
}

fn answer_signal(ctx: &mut WebsocketContext<AgentSession>, id: Option<&str>, (): ()) {
    if let Some(id) = id {
        ctx.text(ServerFrame::SignalSent { id }.to_text());
    }
}

fn answer_confirm(
    ctx: &mut WebsocketContext<AgentSession>,
    id: Option<&str>,
    (visitorid, started): (String, crate::presence::confirmation::Started),
) {
    ctx.text(
        ServerFrame::ConfirmStarted {
            id: id.unwrap_or_default(),
            visitorid: &visitorid,
            confirmation: &started.confirmation,
            answer: &started.answer,
            choices: &started.choices,
            expires: started.expires,
        }
        .to_text(),
    );
}
