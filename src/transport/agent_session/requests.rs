//! The request frames of an agent socket after `auth`: watch, invoke,
//! signal, lookup, session-key search and confirmation prompts. Each
//! request with an `id` is answered by a frame carrying it, or by an error
//! frame echoing it.

use actix::{ActorFutureExt, AsyncContext, WrapFuture};
use actix_web_actors::ws::WebsocketContext;
use serde_json::Value;

use super::{AgentSession, MAX_IN_FLIGHT_PER_AGENT};
use crate::auth::token::AgentClaims;
use crate::infra::error::DomainError;
use crate::infra::ids::{VisitorId, VisitorKey};
use crate::presence::confirmation::{card_for, ConfirmOptions};
use crate::presence::invoke::{self, check_invoke};
use crate::presence::registry::InvokeOutcome;
use crate::server::state::VisitorView;
use crate::transport::protocol::{check_request_id, ServerFrame};
use crate::transport::ws_support::{reject, send_error};

impl AgentSession {
    /// Validates a visitor id from a frame, answering an error frame if bad.
    pub(super) fn visitor_key(
        &mut self,
        claims: &AgentClaims,
        id: Option<&str>,
        visitorid: &str,
        ctx: &mut WebsocketContext<Self>,
    ) -> Option<VisitorKey> {
        match VisitorId::parse(visitorid) {
            Ok(visitor) => Some(VisitorKey::new(claims.groupid, visitor)),
            Err(message) => {
                reject(self, ctx, id, "bad_request", &message);
                None
            }
        }
    }

    /// The visitor a request with an `id` is about: checks the id, then
    /// the visitor id, answering an error frame if either is bad.
    fn request_target(
        &mut self,
        claims: &AgentClaims,
        id: &str,
        visitorid: &str,
        ctx: &mut WebsocketContext<Self>,
    ) -> Option<VisitorKey> {
        if let Err(e) = check_request_id(id) {
            reject(self, ctx, None, "bad_request", &e.message);
            return None;
        }
        self.visitor_key(claims, Some(id), visitorid, ctx)
    }

    /// Reserves an in-flight slot, or answers `too_many_pending`.
    fn reserve(&mut self, id: Option<&str>, ctx: &mut WebsocketContext<Self>) -> bool {
        if self.in_flight >= MAX_IN_FLIGHT_PER_AGENT {
            let e = DomainError::TooManyPending(MAX_IN_FLIGHT_PER_AGENT);
            send_error(ctx, id, e.code(), &e.to_string());
            return false;
        }
        self.in_flight += 1;
        true
    }

    pub(super) fn watch(
        &mut self,
        claims: &AgentClaims,
        visitorid: &str,
        ctx: &mut WebsocketContext<Self>,
    ) {
        let Some(key) = self.visitor_key(claims, None, visitorid, ctx) else {
            return;
        };
        let limit = self.app.config.presence.max_watches_per_agent;
        if !self.watching.contains(&key.visitor) && self.watching.len() >= limit {
            return reject(
                self,
                ctx,
                None,
                "too_many_watches",
                &format!("at most {limit} visitors can be watched per socket"),
            );
        }
        self.watching.insert(key.visitor.clone());
        self.app
            .registry
            .watch(key, self.watcher_id, ctx.address().recipient());
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn invoke(
        &mut self,
        claims: &AgentClaims,
        id: String,
        visitorid: &str,
        func: String,
        args: Value,
        timeout_ms: Option<u64>,
        ctx: &mut WebsocketContext<Self>,
    ) {
        let Some(key) = self.request_target(claims, &id, visitorid, ctx) else {
            return;
        };
        let checked = self.app.group(claims.groupid).and_then(|group| {
            let timeout_ms = check_invoke(
                &func,
                timeout_ms,
                &self.app.config.presence,
                &group.invoke_allow,
            )?;
            self.app.check_scope(claims, &key, Some(&func))?;
            let only_to = self
                .app
                .confirmations
                .check_gate(group, &key, &claims.sub)?;
            Ok((timeout_ms, only_to))
        });
        let (timeout_ms, only_to) = match checked {
            Ok(t) => t,
            Err(e) => return reject(self, ctx, Some(&id), e.code(), &e.to_string()),
        };
        if !self.reserve(Some(&id), ctx) {
            return;
        }
        let registry = self.app.registry.clone();
        let metrics = self.app.metrics.clone();
        let fut = async move {
            invoke::invoke(&*registry, &metrics, key, func, args, timeout_ms, only_to).await
        };
        ctx.spawn(fut.into_actor(self).map(move |outcome, session, ctx| {
            session.in_flight -= 1;
            let frame = match &outcome {
                Ok(InvokeOutcome::Ok { value, .. }) => ServerFrame::Result {
                    id: &id,
                    ok: true,
                    value: Some(value),
                    error: None,
                },
                Ok(InvokeOutcome::Failed { error, .. }) => ServerFrame::Result {
                    id: &id,
                    ok: false,
                    value: None,
                    error: Some(error),
                },
                Err(e) => return send_error(ctx, Some(&id), e.code(), &e.to_string()),
            };
            ctx.text(frame.to_text());
        }));
    }

    pub(super) fn signal(
        &mut self,
        claims: &AgentClaims,
        id: Option<String>,
        visitorid: &str,
        data: Value,
        ctx: &mut WebsocketContext<Self>,
    ) {
        if let Some(id) = &id {
            if let Err(e) = check_request_id(id) {
                return reject(self, ctx, None, "bad_request", &e.message);
            }
        }
        let Some(key) = self.visitor_key(claims, id.as_deref(), visitorid, ctx) else {
            return;
        };
        let gate = self.app.group(claims.groupid).and_then(|group| {
            self.app.check_scope(claims, &key, None)?;
            self.app.confirmations.check_gate(group, &key, &claims.sub)
        });
        let only_to = match gate {
            Ok(only_to) => only_to,
            Err(e) => return reject(self, ctx, id.as_deref(), e.code(), &e.to_string()),
        };
        if !self.reserve(id.as_deref(), ctx) {
            return;
        }
        let registry = self.app.registry.clone();
        let config = self.app.config.clone();
        let fut =
            async move { invoke::signal(&*registry, key, data, &config.presence, only_to).await };
        ctx.spawn(fut.into_actor(self).map(move |result, session, ctx| {
            session.in_flight -= 1;
            match (result, id) {
                (Ok(()), Some(id)) => ctx.text(ServerFrame::SignalSent { id: &id }.to_text()),
                (Ok(()), None) => {}
                (Err(e), id) => send_error(ctx, id.as_deref(), e.code(), &e.to_string()),
            }
        }));
    }

    pub(super) fn lookup(
        &mut self,
        claims: &AgentClaims,
        id: String,
        visitorid: &str,
        ctx: &mut WebsocketContext<Self>,
    ) {
        let Some(key) = self.request_target(claims, &id, visitorid, ctx) else {
            return;
        };
        send_lookup(ctx, &id, self.app.visitor_view(&key, claims));
    }

    /// Starts a confirmation prompt; the answer to read out comes back as a
    /// `confirm` frame, the outcome later as a `confirmation` frame.
    pub(super) fn confirm(
        &mut self,
        claims: &AgentClaims,
        id: String,
        visitorid: &str,
        options: ConfirmOptions,
        ctx: &mut WebsocketContext<Self>,
    ) {
        let Some(key) = self.request_target(claims, &id, visitorid, ctx) else {
            return;
        };
        let card = self.app.group(claims.groupid).and_then(|group| {
            self.app.check_scope(claims, &key, None)?;
            card_for(group, &claims.sub, claims.name.as_deref(), options.agent)
        });
        let card = match card {
            Ok(card) => card,
            Err(e) => return reject(self, ctx, Some(&id), e.code(), &e.to_string()),
        };
        if !self.reserve(Some(&id), ctx) {
            return;
        }
        let confirmations = self.app.confirmations.clone();
        let agent = claims.sub.clone();
        let visitorid = visitorid.to_owned();
        let fut = async move {
            confirmations
                .start(key, &agent, card, options.choices)
                .await
        };
        ctx.spawn(fut.into_actor(self).map(move |started, session, ctx| {
            session.in_flight -= 1;
            match started {
                Ok(started) => ctx.text(
                    ServerFrame::ConfirmStarted {
                        id: &id,
                        visitorid: &visitorid,
                        confirmation: &started.confirmation,
                        answer: &started.answer,
                        choices: &started.choices,
                        expires: started.expires,
                    }
                    .to_text(),
                ),
                Err(e) => send_error(ctx, Some(&id), e.code(), &e.to_string()),
            }
        }));
    }

    /// Finds the visitor holding a session key; answered like a lookup.
    /// Misses count against the same per-token and per-client limit as
    /// `GET /presence/{groupid}/sessions/{key}`.
    pub(super) fn find_session(
        &mut self,
        claims: &AgentClaims,
        id: String,
        key: &str,
        ctx: &mut WebsocketContext<Self>,
    ) {
        if let Err(e) = check_request_id(&id) {
            return reject(self, ctx, None, "bad_request", &e.message);
        }
        let found = self.app.find_session(claims, key, self.client.as_deref());
        send_lookup(ctx, &id, found);
    }
}

/// Answers a lookup-style request with the visitor's document, or the error.
fn send_lookup(
    ctx: &mut WebsocketContext<AgentSession>,
    id: &str,
    view: Result<VisitorView, DomainError>,
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
        Err(e) => send_error(ctx, Some(id), e.code(), &e.to_string()),
    }
}
