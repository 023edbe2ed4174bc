//! The VisitorSession actor: one per visitor browser socket.
//!
//! It waits for `hello`, registers with the registry, then carries invokes
//! and signals down to the browser and results back up. It owns the
//! invokes in flight on its socket, bounded by `max_pending_invokes`, and
//! fails them at once if the socket closes, since their results can no
//! longer arrive (invokes are delivered at most once). Its presence updates
//! reach the registry coalesced, at most one per
//! `presence.min_presence_interval_ms` (see [`crate::presence_coalescer`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix::{
    Actor, ActorContext, ActorFutureExt, AsyncContext, Handler, Message, SpawnHandle,
    StreamHandler, WrapFuture,
};
use actix_web::web;
use actix_web_actors::ws::{self, CloseCode, WebsocketContext};
use serde_json::Value;

use crate::capacity::{ConnectionPermit, GroupSlot};
use crate::config::GroupConfig;
use crate::confirmation::{ConfirmationStatus, Prompt, MAX_TICKETS_PER_HELLO};
use crate::error::ApiError;
use crate::ids::{random_id, VisitorId, VisitorKey};
use crate::invoke::{InvokeOutcome, InvokeRequest, InvokeResponder, SignalRequest};
use crate::origin::RequestOrigin;
use crate::presence_coalescer::{Offer, PresenceCoalescer};
use crate::presence_data::PresenceData;
use crate::protocol::{parse_frame, ServerFrame, VisitorInbound};
use crate::registry::{Connect, Disconnect, LiveConnection, PresenceUpdate};
use crate::session_keys::KeyHolder;
use crate::state::AppState;
use crate::visitor_identity::{self, IdentityError};
use crate::ws_guard::InboundHandle;
use crate::ws_support::{
    close_on_shutdown, dispatch, fail_and_close, reject, send_error, start_heartbeat, SocketLink,
    TextSocket,
};
use secrecy::ExposeSecret;

/// What the registry asks of a visitor connection.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub enum VisitorCommand {
    Invoke(InvokeRequest),
    Signal(SignalRequest),
    /// Show a confirmation prompt.
    Prompt(Arc<Prompt>),
    /// A confirmation prompt ended; close it.
    PromptClosed {
        id: String,
        status: ConfirmationStatus,
        /// (connection id, ticket) of the connection that confirmed it:
        /// that connection alone is sent the ticket, after the close.
        ticket: Option<Arc<(String, String)>>,
    },
}

impl VisitorCommand {
    /// Whether connection `id` may receive the command.
    pub fn accepts(&self, id: &str) -> bool {
        let only_to = match self {
            VisitorCommand::Invoke(request) => request.only_to.as_ref(),
            VisitorCommand::Signal(request) => request.only_to.as_ref(),
            VisitorCommand::Prompt(_) | VisitorCommand::PromptClosed { .. } => None,
        };
        only_to.is_none_or(|filter| filter.accepts(id))
    }

    /// Answers the command's waiter with `error`.
    pub fn fail(self, error: ApiError) {
        // A waiter that already gave up has dropped its receiver; nothing to do.
        match self {
            VisitorCommand::Invoke(request) => {
                let _ = request.responder.send(Err(error));
            }
            VisitorCommand::Signal(request) => {
                let _ = request.responder.send(Err(error));
            }
            VisitorCommand::Prompt(_) | VisitorCommand::PromptClosed { .. } => {}
        }
    }
}

enum Phase {
    AwaitingHello,
    /// Hello accepted; waiting for the registry to register us.
    Joining(VisitorKey),
    Live(VisitorKey),
    Left,
}

/// The group a socket was admitted to before its hello (from the upgrade
/// URL), and its slot under the group's `max_visitors`.
pub struct GroupAdmission {
    pub group: crate::ids::GroupId,
    pub slot: Option<GroupSlot>,
}

struct PendingInvoke {
    responder: InvokeResponder,
    timer: SpawnHandle,
}

/// One visitor socket.
pub struct VisitorSession {
    app: web::Data<AppState>,
    origin: RequestOrigin,
    connection_id: String,
    /// Shared with the registry's routing snapshots; cleared on leaving.
    open: Arc<AtomicBool>,
    phase: Phase,
    link: SocketLink,
    pending: HashMap<String, PendingInvoke>,
    next_invoke: u64,
    /// Confirmation prompts this socket is showing, so one that arrives
    /// both by broadcast and on joining is shown once.
    prompts: HashSet<String>,
    /// This socket's slot under the connection limit.
    permit: ConnectionPermit,
    /// The group it was admitted to, and its slot under `max_visitors`.
    group: Option<GroupAdmission>,
    /// Presence updates on their way to the registry.
    presence: PresenceCoalescer,
}

impl VisitorSession {
    pub fn new(
        app: web::Data<AppState>,
        origin: RequestOrigin,
        permit: ConnectionPermit,
        group: Option<GroupAdmission>,
        inbound: InboundHandle,
    ) -> Self {
        let limit = app.config.presence.max_message_bytes;
        let presence = PresenceCoalescer::new(app.config.presence.min_presence_interval());
        Self {
            app,
            origin,
            connection_id: random_id(12),
            open: Arc::new(AtomicBool::new(true)),
            phase: Phase::AwaitingHello,
            link: SocketLink::new(limit, inbound),
            pending: HashMap::new(),
            next_invoke: 0,
            prompts: HashSet::new(),
            permit,
            group,
            presence,
        }
    }

    /// Takes the group's visitor slot at hello, unless the upgrade already
    /// took it for the same group.
    fn admit_to_group(&mut self, group: &GroupConfig) -> Result<(), (&'static str, String)> {
        match &self.group {
            Some(admitted) if admitted.group == group.id => Ok(()),
            Some(admitted) => Err((
                "bad_hello",
                format!(
                    "the hello names group {}, the socket URL group {}",
                    group.id, admitted.group
                ),
            )),
            None => {
                let slot = self
                    .app
                    .gate
                    .admit_to_group(group.id, group.max_visitors)
                    .map_err(|e| (e.code(), e.to_string()))?;
                self.group = Some(GroupAdmission {
                    group: group.id,
                    slot,
                });
                Ok(())
            }
        }
    }

    /// Deregisters from the registry (once) and fails invokes in flight.
    fn leave(&mut self) {
        // First stop being a routing target, so nothing new is written to a
        // socket that is closing.
        self.open.store(false, Ordering::Release);
        self.permit.release();
        self.app.session_keys.connection_closed(&self.connection_id);
        if let Some(slot) = self.group.as_mut().and_then(|g| g.slot.as_mut()) {
            slot.release();
        }
        let phase = std::mem::replace(&mut self.phase, Phase::Left);
        if let Phase::Joining(key) | Phase::Live(key) = phase {
            // A held presence update still counts: it goes ahead of the
            // disconnect, through the same mailbox.
            if let Some(data) = self.presence.flush(std::time::Instant::now()) {
                self.app.registry.addr().do_send(PresenceUpdate {
                    key: key.clone(),
                    connection_id: self.connection_id.clone(),
                    data,
                });
            }
            self.app.registry.addr().do_send(Disconnect {
                key,
                connection_id: self.connection_id.clone(),
            });
        }
        self.app
            .confirmations
            .forget_connection(&self.connection_id);
        for (_, pending) in self.pending.drain() {
            let _ = pending.responder.send(Err(ApiError::VisitorNotPresent(
                "the visitor's connection closed before it answered".to_owned(),
            )));
        }
    }

    /// Checks the hello's identity token against the group's rules: a
    /// present token must verify (never a silent downgrade), and a group
    /// that requires one refuses hellos without.
    fn check_identity(
        &self,
        group: &GroupConfig,
        visitor: &str,
        token: Option<&str>,
    ) -> Result<Option<Value>, (&'static str, String)> {
        let Some(token) = token else {
            if group.require_visitor_identity {
                return Err((
                    "identity_required",
                    "this group requires a visitor identity token".into(),
                ));
            }
            return Ok(None);
        };
        let invalid = |e: IdentityError| ("identity_invalid", e.to_string());
        let (Some(secret), Some(issuer)) = (
            &group.visitor_identity_secret,
            &group.visitor_identity_issuer,
        ) else {
            return Err(invalid(IdentityError::NotConfigured));
        };
        let rules = visitor_identity::IdentityRules {
            secret: secret.expose_secret().as_bytes(),
            issuer,
            max_lifetime_secs: group.visitor_identity_max_secs,
        };
        visitor_identity::verify(token, &rules, visitor, self.app.clock.now_secs())
            .map(Some)
            .map_err(invalid)
    }

    fn hello(
        &mut self,
        groupid: u64,
        visitorid: &str,
        data: Option<Value>,
        identity: Option<&str>,
        tickets: &[String],
        ctx: &mut WebsocketContext<Self>,
    ) {
        if tickets.len() > MAX_TICKETS_PER_HELLO {
            return fail_and_close(
                ctx,
                CloseCode::Policy,
                "bad_frame",
                &format!("a hello carries at most {MAX_TICKETS_PER_HELLO} tickets"),
            );
        }
        let checked = (|| {
            let group = self
                .app
                .config
                .group(groupid)
                .ok_or(("unknown_group", format!("group {groupid} does not exist")))?;
            if !group.presence {
                return Err((
                    "presence_not_subscribed",
                    format!("group {groupid} does not subscribe to Presence"),
                ));
            }
            self.app
                .origins
                .check_group(groupid, &self.origin)
                .map_err(|e| (e.code(), e.to_string()))?;
            let visitor = VisitorId::parse(visitorid).map_err(|m| ("bad_visitor_id", m))?;
            let data = PresenceData::from_value(data.unwrap_or(Value::Object(Default::default())))
                .map_err(|m| ("bad_presence_data", m))?;
            let identity = self.check_identity(group, visitor.as_str(), identity)?;
            Ok((group, VisitorKey::new(groupid, visitor), data, identity))
        })();
        let (group, key, data, identity) = match checked {
            Ok(ok) => ok,
            Err((code, message)) => {
                return fail_and_close(ctx, CloseCode::Policy, code, &message);
            }
        };
        let group = group.clone();
        if let Err((code, message)) = self.admit_to_group(&group) {
            // A full group is a "try again later" (1013), which the SDK
            // retries with backoff; a mismatched hello is final.
            let close = if code == "too_many_connections" {
                CloseCode::Again
            } else {
                CloseCode::Policy
            };
            return fail_and_close(ctx, close, code, &message);
        }
        // Before the registry routes to it: a ticket holder may be the one
        // waiting invokes are for.
        self.app
            .confirmations
            .redeem(&key, tickets, &self.connection_id);
        self.phase = Phase::Joining(key.clone());
        let connect = Connect {
            key: key.clone(),
            connection: LiveConnection {
                id: self.connection_id.clone(),
                commands: ctx.address().recipient(),
                open: self.open.clone(),
                identity: identity.map(Arc::new),
            },
            data,
        };
        // `wait` holds other frames back until the registry has answered, so
        // nothing is handled half-registered.
        ctx.wait(self.app.registry.addr().send(connect).into_actor(self).map(
            move |reply, session, ctx| match reply {
                Ok(Ok(())) => {
                    session.phase = Phase::Live(key.clone());
                    ctx.text(
                        ServerFrame::Welcome {
                            visitorid: key.visitor.as_str(),
                            connection: &session.connection_id,
                        }
                        .to_text(),
                    );
                    // A prompt opened on the previous page shows again.
                    for prompt in session.app.confirmations.prompts_for(&key) {
                        session.show_prompt(&prompt, ctx);
                    }
                }
                Ok(Err(message)) => {
                    fail_and_close(ctx, CloseCode::Policy, "bad_presence_data", &message)
                }
                Err(_) => fail_and_close(
                    ctx,
                    CloseCode::Error,
                    "internal",
                    "the registry is unavailable",
                ),
            },
        ));
    }

    fn presence(&mut self, key: VisitorKey, data: Value, ctx: &mut WebsocketContext<Self>) {
        let offered = PresenceData::from_value(data)
            .and_then(|data| self.presence.offer(data, std::time::Instant::now()));
        match offered {
            Ok(Offer::SendNow(data)) => self.send_presence(key, data, ctx),
            Ok(Offer::HeldFlushIn(delay)) => {
                ctx.run_later(delay, |session, ctx| {
                    let Phase::Live(key) = &session.phase else {
                        return;
                    };
                    let key = key.clone();
                    if let Some(data) = session.presence.flush(std::time::Instant::now()) {
                        session.send_presence(key, data, ctx);
                    }
                });
            }
            Ok(Offer::Merged) => {}
            Err(message) => reject(self, ctx, None, "bad_presence_data", &message),
        }
    }

    /// Sends one (possibly coalesced) presence update to the registry.
    fn send_presence(
        &mut self,
        key: VisitorKey,
        data: PresenceData,
        ctx: &mut WebsocketContext<Self>,
    ) {
        let update = PresenceUpdate {
            key,
            connection_id: self.connection_id.clone(),
            data,
        };
        ctx.spawn(self.app.registry.addr().send(update).into_actor(self).map(
            |reply, session, ctx| match reply {
                Ok(Ok(())) => {}
                Ok(Err(message)) => reject(session, ctx, None, "bad_presence_data", &message),
                Err(_) => send_error(ctx, None, "internal", "the registry is unavailable"),
            },
        ));
    }

    fn result(
        &mut self,
        id: &str,
        ok: bool,
        value: Value,
        error: Option<String>,
        ctx: &mut WebsocketContext<Self>,
    ) {
        let Some(pending) = self.pending.remove(id) else {
            return reject(
                self,
                ctx,
                None,
                "unknown_invoke",
                &format!("no invoke with id {:?} is awaiting a result", truncate(id)),
            );
        };
        ctx.cancel_future(pending.timer);
        let outcome = if ok {
            InvokeOutcome::success(value)
        } else {
            InvokeOutcome::failure(error.unwrap_or_else(|| "the function failed".to_owned()))
        };
        // The waiter may have given up at its deadline; that is fine.
        let _ = pending.responder.send(Ok(outcome));
    }

    fn deliver_invoke(&mut self, request: InvokeRequest, ctx: &mut WebsocketContext<Self>) {
        if request.responder.is_closed() {
            return;
        }
        if !matches!(self.phase, Phase::Live(_)) {
            let _ = request.responder.send(Err(ApiError::not_present()));
            return;
        }
        let limit = self.app.config.presence.max_pending_invokes;
        if self.pending.len() >= limit {
            let _ = request.responder.send(Err(ApiError::TooManyPending(limit)));
            return;
        }
        let now = tokio::time::Instant::now();
        if request.deadline <= now {
            let _ = request
                .responder
                .send(Err(ApiError::InvokeTimeout(request.timeout_ms)));
            return;
        }
        self.next_invoke += 1;
        let id = self.next_invoke.to_string();
        ctx.text(
            ServerFrame::Invoke {
                id: &id,
                func: &request.func,
                args: &request.args,
            }
            .to_text(),
        );
        let timeout_ms = request.timeout_ms;
        let timer_id = id.clone();
        let timer = ctx.run_later(request.deadline - now, move |session, _| {
            if let Some(pending) = session.pending.remove(&timer_id) {
                let _ = pending
                    .responder
                    .send(Err(ApiError::InvokeTimeout(timeout_ms)));
            }
        });
        self.pending.insert(
            id,
            PendingInvoke {
                responder: request.responder,
                timer,
            },
        );
    }
}

impl VisitorSession {
    /// Answers `session_key`: this connection's live key, or a fresh one
    /// bound to the visitor's current online period.
    fn session_key(&mut self, key: VisitorKey, ctx: &mut WebsocketContext<Self>) {
        // Live, so the registry has published this visitor.
        let Some(online_since) = self.app.registry.lookup(&key).connected_at else {
            return send_error(
                ctx,
                None,
                "not_ready",
                "the connection is not registered yet",
            );
        };
        let holder = KeyHolder {
            visitor: key,
            online_since,
        };
        match self.app.session_keys.issue(&holder, &self.connection_id) {
            Ok(code) => ctx.text(
                ServerFrame::SessionKey {
                    key: &code.key,
                    expires: code.expires,
                }
                .to_text(),
            ),
            Err(e) => send_error(ctx, None, e.code(), &e.to_string()),
        }
    }

    fn show_prompt(&mut self, prompt: &Prompt, ctx: &mut WebsocketContext<Self>) {
        if matches!(self.phase, Phase::Live(_)) && self.prompts.insert(prompt.id.clone()) {
            ctx.text(
                ServerFrame::ConfirmPrompt {
                    id: &prompt.id,
                    choices: &prompt.choices,
                    agent: &prompt.card,
                    expires: prompt.expires,
                }
                .to_text(),
            );
        }
    }

    fn close_prompt(
        &mut self,
        id: &str,
        status: ConfirmationStatus,
        ctx: &mut WebsocketContext<Self>,
    ) {
        if self.prompts.remove(id) {
            ctx.text(
                ServerFrame::ConfirmClosed {
                    id,
                    status: status.as_str(),
                }
                .to_text(),
            );
        }
    }

    /// Settles a prompt with the visitor's button. The outcome reaches this
    /// socket (and the visitor's other tabs) as `confirm_closed`.
    fn confirm_answer(
        &mut self,
        key: VisitorKey,
        id: String,
        choice: Option<String>,
        ctx: &mut WebsocketContext<Self>,
    ) {
        if !self.prompts.contains(&id) {
            return reject(
                self,
                ctx,
                None,
                "confirmation_not_found",
                &format!("no confirmation prompt {:?} is open here", truncate(&id)),
            );
        }
        let confirmations = self.app.confirmations.clone();
        let connection = self.connection_id.clone();
        let fut = async move {
            confirmations
                .answer(key, id.clone(), choice, &connection)
                .await
                .map_err(|e| (id, e))
        };
        ctx.spawn(fut.into_actor(self).map(|outcome, _, ctx| {
            if let Err((id, e)) = outcome {
                send_error(ctx, Some(&id), e.code(), &e.to_string());
            }
        }));
    }
}

fn truncate(id: &str) -> String {
    id.chars().take(64).collect()
}

impl Actor for VisitorSession {
    type Context = WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let presence = &self.app.config.presence;
        // Commands queue here before they become pending invokes; bounding
        // the queue at the pending limit turns a stalled client into 429s
        // instead of unbounded memory.
        ctx.set_mailbox_capacity(presence.max_pending_invokes);
        start_heartbeat(ctx, presence.ping_interval(), presence.client_timeout());
        ctx.run_later(presence.hello_timeout(), |session, ctx| {
            if matches!(session.phase, Phase::AwaitingHello) {
                fail_and_close(
                    ctx,
                    CloseCode::Policy,
                    "hello_timeout",
                    "no hello within presence.hello_timeout_ms",
                );
            }
        });
        close_on_shutdown(ctx, self.app.shutdown.clone());
    }

    fn stopping(&mut self, _ctx: &mut Self::Context) -> actix::Running {
        self.leave();
        actix::Running::Stop
    }
}

impl Handler<VisitorCommand> for VisitorSession {
    type Result = ();

    fn handle(&mut self, command: VisitorCommand, ctx: &mut Self::Context) {
        match command {
            VisitorCommand::Invoke(request) => self.deliver_invoke(request, ctx),
            VisitorCommand::Signal(request) => {
                if matches!(self.phase, Phase::Live(_)) {
                    ctx.text(
                        ServerFrame::Signal {
                            data: &request.data,
                        }
                        .to_text(),
                    );
                    let _ = request.responder.send(Ok(()));
                } else {
                    let _ = request.responder.send(Err(ApiError::not_present()));
                }
            }
            VisitorCommand::Prompt(prompt) => self.show_prompt(&prompt, ctx),
            VisitorCommand::PromptClosed { id, status, ticket } => {
                self.close_prompt(&id, status, ctx);
                if let Some(ticket) = ticket.filter(|t| t.0 == self.connection_id) {
                    ctx.text(
                        ServerFrame::ConfirmTicket {
                            id: &id,
                            ticket: &ticket.1,
                        }
                        .to_text(),
                    );
                }
            }
        }
    }
}

impl TextSocket for VisitorSession {
    fn link(&mut self) -> &mut SocketLink {
        &mut self.link
    }

    fn on_text(&mut self, text: &str, ctx: &mut WebsocketContext<Self>) {
        let frame = parse_frame::<VisitorInbound>(text);
        match (&self.phase, frame) {
            (
                Phase::AwaitingHello,
                Ok(VisitorInbound::Hello {
                    groupid,
                    visitorid,
                    data,
                    identity,
                    tickets,
                }),
            ) => self.hello(
                groupid,
                &visitorid,
                data,
                identity.as_deref(),
                &tickets,
                ctx,
            ),
            (Phase::AwaitingHello, Ok(_)) => fail_and_close(
                ctx,
                CloseCode::Policy,
                "hello_required",
                "the first frame must be hello",
            ),
            (Phase::AwaitingHello, Err(e)) => {
                fail_and_close(ctx, CloseCode::Policy, e.code, &e.message)
            }
            (_, Err(e)) => reject(self, ctx, None, e.code, &e.message),
            (_, Ok(VisitorInbound::Hello { .. })) => reject(
                self,
                ctx,
                None,
                "already_joined",
                "hello was already received",
            ),
            (Phase::Live(key), Ok(VisitorInbound::Presence { data })) => {
                let key = key.clone();
                self.presence(key, data, ctx)
            }
            (
                Phase::Live(_),
                Ok(VisitorInbound::Result {
                    id,
                    ok,
                    value,
                    error,
                }),
            ) => self.result(&id, ok, value, error, ctx),
            (Phase::Live(key), Ok(VisitorInbound::SessionKey {})) => {
                let key = key.clone();
                self.session_key(key, ctx)
            }
            (Phase::Live(key), Ok(VisitorInbound::ConfirmAnswer { id, choice })) => {
                let key = key.clone();
                self.confirm_answer(key, id, choice, ctx)
            }
            (_, Ok(_)) => reject(
                self,
                ctx,
                None,
                "not_ready",
                "the connection is not registered yet",
            ),
        }
    }

    fn on_binary(&mut self, ctx: &mut WebsocketContext<Self>) {
        if matches!(self.phase, Phase::AwaitingHello) {
            fail_and_close(
                ctx,
                CloseCode::Policy,
                "hello_required",
                "the first frame must be a hello text frame",
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

    fn on_peer_close(&mut self) {
        // Deregister before the close is answered, so a client that has seen
        // the close knows the registry has too.
        self.leave();
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for VisitorSession {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        dispatch(self, msg, ctx)
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
