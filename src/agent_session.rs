//! The AgentSession actor: one per agent console socket.
//!
//! The first frame must be `auth` with a valid agent token; after that the
//! agent can watch visitors of its group, look them up, invoke functions and
//! send signals. The session closes itself with `token_expired` the moment
//! its token expires.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix::{
    Actor, ActorContext, ActorFutureExt, AsyncContext, Handler, Message, StreamHandler, WrapFuture,
};
use actix_web::web;
use actix_web_actors::ws::{self, CloseCode, WebsocketContext};
use serde_json::Value;

use crate::confirmation::{card_for, ConfirmOptions, ConfirmationStatus};
use crate::error::ApiError;
use crate::ids::{VisitorId, VisitorKey};
use crate::invoke::{self, check_invoke, InvokeOutcome};
use crate::origin::RequestOrigin;
use crate::protocol::{check_request_id, parse_frame, AgentInbound, ServerFrame};
use crate::registry::{Unwatch, UnwatchAll, VisitorEvent, VisitorState, Watch, WatcherId};
use crate::state::{in_scope, AppState};
use crate::token::AgentClaims;
use crate::ws_support::{
    close_on_shutdown, dispatch, fail_and_close, reject, send_error, start_heartbeat, SocketLink,
    TextSocket,
};

/// Invokes, signals and lookups one agent socket may have in flight.
pub const MAX_IN_FLIGHT_PER_AGENT: usize = 1024;

/// Tells a session its token was revoked.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct TokenRevoked;

/// Tells a session how a confirmation prompt its agent started ended.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ConfirmationSettled {
    pub visitorid: String,
    /// The confirmation id.
    pub id: String,
    pub status: ConfirmationStatus,
}

/// Event mailbox room beyond two events per watch.
const EVENT_MAILBOX_SLACK: usize = 256;

static NEXT_WATCHER_ID: AtomicU64 = AtomicU64::new(1);

/// One agent socket.
pub struct AgentSession {
    app: web::Data<AppState>,
    origin: RequestOrigin,
    watcher_id: WatcherId,
    claims: Option<AgentClaims>,
    link: SocketLink,
    watching: HashSet<VisitorId>,
    in_flight: usize,
}

impl AgentSession {
    pub fn new(app: web::Data<AppState>, origin: RequestOrigin) -> Self {
        let limit = app.config.presence.max_message_bytes;
        Self {
            app,
            origin,
            watcher_id: NEXT_WATCHER_ID.fetch_add(1, Ordering::Relaxed),
            claims: None,
            link: SocketLink::new(limit),
            watching: HashSet::new(),
            in_flight: 0,
        }
    }

    fn auth(&mut self, token: &str, ctx: &mut WebsocketContext<Self>) {
        let checked = (|| {
            let claims = self
                .app
                .tokens
                .verify(token)
                .map_err(|e| ApiError::unauthorized(e.to_string()))?;
            let group = self
                .app
                .config
                .group(claims.groupid)
                .ok_or_else(|| ApiError::unauthorized("the token's group no longer exists"))?;
            if !group.presence {
                return Err(ApiError::PresenceNotSubscribed(group.id));
            }
            self.app.origins.check_group(group.id, &self.origin)?;
            Ok(claims)
        })();
        let claims = match checked {
            Ok(claims) => claims,
            Err(e) => return fail_and_close(ctx, CloseCode::Policy, e.code(), &e.to_string()),
        };
        self.app.live_agents.register(
            &claims.jti,
            claims.groupid,
            &claims.sub,
            self.watcher_id,
            ctx.address(),
        );
        // A revocation that raced this auth has already swept the index:
        // check the denylist once more now that we are findable.
        if self.app.tokens.revocations().is_revoked(&claims.jti) {
            self.app.live_agents.unregister(
                &claims.jti,
                claims.groupid,
                &claims.sub,
                self.watcher_id,
            );
            return fail_and_close(
                ctx,
                CloseCode::Policy,
                "token_revoked",
                "the agent token was revoked",
            );
        }
        ctx.text(
            ServerFrame::Ready {
                groupid: claims.groupid,
                username: &claims.sub,
                expires: claims.exp,
            }
            .to_text(),
        );
        let left = Duration::from_secs(self.app.tokens.seconds_left(&claims));
        ctx.run_later(left, |_, ctx| {
            fail_and_close(
                ctx,
                CloseCode::Policy,
                "token_expired",
                "the agent token has expired",
            );
        });
        self.claims = Some(claims);
    }

    /// Validates a visitor id from a frame, answering an error frame if bad.
    fn visitor_key(
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

    /// Reserves an in-flight slot, or answers `too_many_pending`.
    fn reserve(&mut self, id: Option<&str>, ctx: &mut WebsocketContext<Self>) -> bool {
        if self.in_flight >= MAX_IN_FLIGHT_PER_AGENT {
            let e = ApiError::TooManyPending(MAX_IN_FLIGHT_PER_AGENT);
            send_error(ctx, id, e.code(), &e.to_string());
            return false;
        }
        self.in_flight += 1;
        true
    }

    fn watch(&mut self, claims: &AgentClaims, visitorid: &str, ctx: &mut WebsocketContext<Self>) {
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
        self.app.registry.addr().do_send(Watch {
            key,
            watcher: self.watcher_id,
            events: ctx.address().recipient(),
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn invoke(
        &mut self,
        claims: &AgentClaims,
        id: String,
        visitorid: &str,
        func: String,
        args: Value,
        timeout_ms: Option<u64>,
        ctx: &mut WebsocketContext<Self>,
    ) {
        if let Err(e) = check_request_id(&id) {
            return reject(self, ctx, None, "bad_request", &e.message);
        }
        let Some(key) = self.visitor_key(claims, Some(&id), visitorid, ctx) else {
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
            self.app
                .confirmations
                .check_gate(group, &key, &claims.sub)?;
            Ok(timeout_ms)
        });
        let timeout_ms = match checked {
            Ok(t) => t,
            Err(e) => return reject(self, ctx, Some(&id), e.code(), &e.to_string()),
        };
        if !self.reserve(Some(&id), ctx) {
            return;
        }
        let registry = self.app.registry.clone();
        let fut = async move { invoke::invoke(&registry, key, func, args, timeout_ms).await };
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

    fn signal(
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
        if let Err(e) = gate {
            return reject(self, ctx, id.as_deref(), e.code(), &e.to_string());
        }
        if !self.reserve(id.as_deref(), ctx) {
            return;
        }
        let registry = self.app.registry.clone();
        let config = self.app.config.clone();
        let fut = async move { invoke::signal(&registry, key, data, &config.presence).await };
        ctx.spawn(fut.into_actor(self).map(move |result, session, ctx| {
            session.in_flight -= 1;
            match (result, id) {
                (Ok(()), Some(id)) => ctx.text(ServerFrame::SignalSent { id: &id }.to_text()),
                (Ok(()), None) => {}
                (Err(e), id) => send_error(ctx, id.as_deref(), e.code(), &e.to_string()),
            }
        }));
    }

    fn lookup(
        &mut self,
        claims: &AgentClaims,
        id: String,
        visitorid: &str,
        ctx: &mut WebsocketContext<Self>,
    ) {
        if let Err(e) = check_request_id(&id) {
            return reject(self, ctx, None, "bad_request", &e.message);
        }
        let Some(key) = self.visitor_key(claims, Some(&id), visitorid, ctx) else {
            return;
        };
        let view = match self.app.visitor_view(&key, claims) {
            Ok(view) => view,
            Err(e) => return send_error(ctx, Some(&id), e.code(), &e.to_string()),
        };
        match serde_json::to_value(view) {
            Ok(visitor) => ctx.text(
                ServerFrame::Lookup {
                    id: &id,
                    visitor: &visitor,
                }
                .to_text(),
            ),
            Err(_) => send_error(ctx, Some(&id), "internal", "lookup failed"),
        }
    }
}

impl AgentSession {
    /// Starts a confirmation prompt; the answer to read out comes back as a
    /// `confirm` frame, the outcome later as a `confirmation` frame.
    fn confirm(
        &mut self,
        claims: &AgentClaims,
        id: String,
        visitorid: &str,
        options: ConfirmOptions,
        ctx: &mut WebsocketContext<Self>,
    ) {
        if let Err(e) = check_request_id(&id) {
            return reject(self, ctx, None, "bad_request", &e.message);
        }
        let Some(key) = self.visitor_key(claims, Some(&id), visitorid, ctx) else {
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
}

impl Actor for AgentSession {
    type Context = WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let presence = &self.app.config.presence;
        // Room for a state event per watch plus bursts; an agent that stops
        // reading fills it and the registry drops its watches.
        ctx.set_mailbox_capacity(EVENT_MAILBOX_SLACK + 2 * presence.max_watches_per_agent);
        start_heartbeat(ctx, presence.ping_interval(), presence.client_timeout());
        ctx.run_later(presence.hello_timeout(), |session, ctx| {
            if session.claims.is_none() {
                fail_and_close(
                    ctx,
                    CloseCode::Policy,
                    "auth_timeout",
                    "no auth within presence.hello_timeout_ms",
                );
            }
        });
        close_on_shutdown(ctx, self.app.shutdown.clone());
    }

    fn stopping(&mut self, _ctx: &mut Self::Context) -> actix::Running {
        if let Some(claims) = &self.claims {
            self.app.live_agents.unregister(
                &claims.jti,
                claims.groupid,
                &claims.sub,
                self.watcher_id,
            );
        }
        if !self.watching.is_empty() {
            self.app.registry.addr().do_send(UnwatchAll {
                watcher: self.watcher_id,
            });
            self.watching.clear();
        }
        actix::Running::Stop
    }
}

impl Handler<TokenRevoked> for AgentSession {
    type Result = ();

    fn handle(&mut self, _: TokenRevoked, ctx: &mut Self::Context) {
        fail_and_close(
            ctx,
            CloseCode::Policy,
            "token_revoked",
            "the agent token was revoked",
        );
    }
}

impl Handler<ConfirmationSettled> for AgentSession {
    type Result = ();

    fn handle(&mut self, settled: ConfirmationSettled, ctx: &mut Self::Context) {
        ctx.text(
            ServerFrame::Confirmation {
                visitorid: &settled.visitorid,
                id: &settled.id,
                status: settled.status.as_str(),
            }
            .to_text(),
        );
    }
}

impl Handler<VisitorEvent> for AgentSession {
    type Result = ();

    fn handle(&mut self, event: VisitorEvent, ctx: &mut Self::Context) {
        // Events still queued for a visitor just unwatched are dropped.
        let Some(visitor) = self.watching.get(event.state.visitorid.as_str()) else {
            return;
        };
        let Some(claims) = &self.claims else {
            return;
        };
        let key = VisitorKey::new(event.state.groupid, visitor.clone());
        // A visitor outside the token's policy always looks offline.
        let visible = in_scope(claims, &event.state);
        let state = if visible {
            event.state
        } else {
            VisitorState::offline(&key)
        };
        let confirmed = visible && self.app.confirmations.shows_confirmed(&key, &claims.sub);
        ctx.text(
            ServerFrame::Visitor {
                event: event.kind.as_str(),
                visitorid: &state.visitorid,
                online: state.online,
                connections: state.connections,
                data: &state.data,
                verified: state.verified,
                identity: state.identity.as_ref(),
                confirmed,
            }
            .to_text(),
        );
    }
}

impl TextSocket for AgentSession {
    fn link(&mut self) -> &mut SocketLink {
        &mut self.link
    }

    fn on_text(&mut self, text: &str, ctx: &mut WebsocketContext<Self>) {
        let frame = parse_frame::<AgentInbound>(text);
        let Some(claims) = self.claims.clone() else {
            return match frame {
                Ok(AgentInbound::Auth { token }) => self.auth(&token, ctx),
                Ok(_) => fail_and_close(
                    ctx,
                    CloseCode::Policy,
                    "auth_required",
                    "the first frame must be auth",
                ),
                Err(e) => fail_and_close(ctx, CloseCode::Policy, e.code, &e.message),
            };
        };
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => {
                // The agent socket speaks REST's codes: a frame it cannot
                // read is a bad request.
                let code = if e.code == "unknown_type" {
                    e.code
                } else {
                    "bad_request"
                };
                return reject(self, ctx, e.id.as_deref(), code, &e.message);
            }
        };
        match frame {
            AgentInbound::Auth { .. } => reject(
                self,
                ctx,
                None,
                "already_authenticated",
                "auth was already received",
            ),
            AgentInbound::Watch { visitorid } => self.watch(&claims, &visitorid, ctx),
            AgentInbound::Unwatch { visitorid } => {
                // Unwatching a visitor not watched is a no-op, like a
                // repeated DELETE.
                if let Some(key) = self.visitor_key(&claims, None, &visitorid, ctx) {
                    if self.watching.remove(&key.visitor) {
                        self.app.registry.addr().do_send(Unwatch {
                            key,
                            watcher: self.watcher_id,
                        });
                    }
                }
            }
            AgentInbound::Invoke {
                id,
                visitorid,
                func,
                args,
                timeout_ms,
            } => self.invoke(&claims, id, &visitorid, func, args, timeout_ms, ctx),
            AgentInbound::Signal {
                id,
                visitorid,
                data,
            } => self.signal(&claims, id, &visitorid, data, ctx),
            AgentInbound::Lookup { id, visitorid } => self.lookup(&claims, id, &visitorid, ctx),
            AgentInbound::Confirm {
                id,
                visitorid,
                choices,
                agent,
            } => self.confirm(
                &claims,
                id,
                &visitorid,
                ConfirmOptions { choices, agent },
                ctx,
            ),
        }
    }

    fn on_binary(&mut self, ctx: &mut WebsocketContext<Self>) {
        if self.claims.is_none() {
            fail_and_close(
                ctx,
                CloseCode::Policy,
                "auth_required",
                "the first frame must be an auth text frame",
            );
        } else {
            reject(
                self,
                ctx,
                None,
                "binary_not_supported",
                "frames must be JSON text",
            );
        }
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for AgentSession {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        dispatch(self, msg, ctx)
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
