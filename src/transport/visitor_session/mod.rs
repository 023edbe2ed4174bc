//! The VisitorSession actor: one per visitor browser socket.
//!
//! It waits for `hello`, registers with the registry, then carries invokes
//! and signals down to the browser and results back up. It owns the
//! invokes in flight on its socket, bounded by `max_pending_invokes`. When
//! the socket closes it fails them at once, since their results can no
//! longer arrive; a receipts client's invokes that got no `received` did
//! not run, so they go back to the registry to be routed again (see
//! `receipts.rs`). Its presence updates
//! reach the registry coalesced, at most one per
//! `presence.min_presence_interval_ms` (see [`crate::presence::coalescer`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix::{
    Actor, ActorContext, ActorFutureExt, AsyncContext, Handler, SpawnHandle, StreamHandler,
    WrapFuture,
};
use actix_web_actors::ws::{self, CloseCode, WebsocketContext};
use serde_json::Value;

use crate::auth::identity_verifier::IdentityVerifier;
use crate::infra::capacity::ConnectionGate;
use crate::infra::capacity::{ConnectionPermit, GroupSlot};
use crate::infra::config::PresenceConfig;
use crate::infra::error::{on_blocking_pool, DomainError};
use crate::infra::ids::{random_id, VisitorId, VisitorKey};
use crate::infra::metrics::Metrics;
use crate::presence::admission::GroupAccess;
use crate::presence::coalescer::{Offer, PresenceCoalescer};
use crate::presence::confirmation::Confirmations;
use crate::presence::confirmation::{ConfirmationStatus, MAX_TICKETS_PER_HELLO};
use crate::presence::data::PresenceData;
use crate::presence::live_sockets::{AdmissionWithdrawn, LiveSocketKind, LiveSockets};
use crate::presence::origin::RequestOrigin;
use crate::presence::registry::{
    InvokeOutcome, InvokeRequest, LiveConnection, PresenceDirectory, Prompt, VisitorCommand,
};
use crate::presence::session_keys::{KeyHolder, OnlinePeriod, SessionKeys};
use crate::transport::protocol::{parse_frame, ServerFrame, VisitorInbound};
use crate::transport::ws_guard::InboundHandle;
use crate::transport::ws_support::{
    close, close_on_shutdown, dispatch, fail_and_close, reject, send_error, start_heartbeat,
    SocketLink, TextSocket,
};

mod hello;
mod live;
mod receipts;

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
    pub group: crate::infra::ids::GroupId,
    pub slot: Option<GroupSlot>,
}

struct PendingInvoke {
    /// Kept whole, so an invoke that got no receipt can be routed again
    /// with its responder and deadline.
    request: InvokeRequest,
    timer: SpawnHandle,
    /// A receipts client said `received`: the function may have run.
    received: bool,
}

/// What a visitor socket uses, and nothing more; built once at start-up.
pub struct VisitorSocketDeps {
    /// Group, Presence and Origin checks of the hello.
    pub groups: Arc<GroupAccess>,
    /// Checks signed visitor identities.
    pub identity: IdentityVerifier,
    pub registry: Arc<dyn PresenceDirectory>,
    /// Group slots under `max_visitors`.
    pub gate: Arc<ConnectionGate>,
    pub session_keys: Arc<dyn SessionKeys>,
    pub confirmations: Arc<Confirmations>,
    pub limits: Arc<PresenceConfig>,
    pub metrics: Arc<Metrics>,
    /// This node's admitted sockets, rechecked by a config reload.
    pub sockets: Arc<LiveSockets>,
    /// Cancelled when shutdown begins; the socket then closes with 1001.
    pub shutdown: tokio_util::sync::CancellationToken,
}

/// One visitor socket.
pub struct VisitorSession {
    deps: Arc<VisitorSocketDeps>,
    origin: RequestOrigin,
    connection_id: String,
    /// Shared with the registry's routing snapshots; cleared on leaving.
    open: Arc<AtomicBool>,
    phase: Phase,
    link: SocketLink,
    pending: HashMap<String, PendingInvoke>,
    next_invoke: u64,
    /// The hello said `receipts: true`.
    receipts: bool,
    /// The peer ended the stream (a close frame, or end of input): every
    /// frame it sent has been read, so an invoke without a receipt
    /// provably did not run. False when the server closed first.
    peer_done: bool,
    /// A `session_key` mint is on the blocking pool; this many more
    /// requests wait for the same answer.
    minting: Option<u32>,
    /// The client said `leaving`: no new commands are written here, and
    /// the registry no longer counts the connection.
    leaving: bool,
    /// Confirmation prompts this socket is showing, so one that arrives
    /// both by broadcast and on joining is shown once.
    prompts: HashSet<String>,
    /// This socket's slot under the connection limit.
    permit: ConnectionPermit,
    /// The group it was admitted to, and its slot under `max_visitors`.
    group: Option<GroupAdmission>,
    /// Presence updates on their way to the registry.
    presence: PresenceCoalescer,
    /// Its entry among the live sockets, once admitted at hello.
    live_socket: Option<u64>,
}

impl VisitorSession {
    pub fn new(
        deps: Arc<VisitorSocketDeps>,
        origin: RequestOrigin,
        permit: ConnectionPermit,
        group: Option<GroupAdmission>,
        inbound: InboundHandle,
    ) -> Self {
        let limit = deps.limits.max_message_bytes;
        let presence = PresenceCoalescer::new(deps.limits.min_presence_interval());
        Self {
            deps,
            origin,
            connection_id: random_id(12),
            open: Arc::new(AtomicBool::new(true)),
            phase: Phase::AwaitingHello,
            link: SocketLink::new(limit, inbound),
            pending: HashMap::new(),
            next_invoke: 0,
            receipts: false,
            leaving: false,
            peer_done: false,
            minting: None,
            prompts: HashSet::new(),
            permit,
            group,
            presence,
            live_socket: None,
        }
    }

    /// Deregisters from the registry (once) and fails invokes in flight.
    fn leave(&mut self) {
        // First stop being a routing target, so nothing new is written to a
        // socket that is closing.
        self.open.store(false, Ordering::Release);
        self.permit.release();
        if let Some(id) = self.live_socket.take() {
            self.deps.sockets.remove(id);
        }
        self.deps
            .session_keys
            .connection_closed(&self.connection_id);
        if let Some(slot) = self.group.as_mut().and_then(|g| g.slot.as_mut()) {
            slot.release();
        }
        let phase = std::mem::replace(&mut self.phase, Phase::Left);
        if let Phase::Joining(key) | Phase::Live(key) = phase {
            self.deps.metrics.visitor_closed(self.leaving);
            if !self.leaving {
                // A held presence update still counts: it goes ahead of the
                // disconnect. (A leaving socket disconnected when it said so.)
                let held = self.presence.flush(std::time::Instant::now());
                self.deps
                    .registry
                    .disconnect(key.clone(), &self.connection_id, held);
            }
            self.settle_pending(key);
        }
        self.deps
            .confirmations
            .forget_connection(&self.connection_id);
        // Only a socket that never registered gets here with invokes left
        // (none): fail whatever remains.
        for (_, pending) in self.pending.drain() {
            let _ = pending.request.responder.send(Err(closed_before_answer()));
        }
    }
}

fn closed_before_answer() -> DomainError {
    DomainError::VisitorNotPresent("the visitor's connection closed before it answered".to_owned())
}

fn truncate(id: &str) -> String {
    id.chars().take(64).collect()
}

impl Actor for VisitorSession {
    type Context = WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let presence = &self.deps.limits;
        // Commands queue here before they become pending invokes; bounding
        // the queue at the pending limit turns a stalled client into 429s
        // instead of unbounded memory.
        ctx.set_mailbox_capacity(presence.max_pending_invokes);
        start_heartbeat(ctx, presence.ping_interval(), presence.client_timeout());
        ctx.run_later(presence.hello_timeout(), |session, ctx| {
            if matches!(session.phase, Phase::AwaitingHello) {
                fail_and_close(ctx, &DomainError::HelloTimeout);
            }
        });
        close_on_shutdown(ctx, self.deps.shutdown.clone());
    }

    fn stopping(&mut self, _ctx: &mut Self::Context) -> actix::Running {
        self.leave();
        actix::Running::Stop
    }
}

impl Handler<AdmissionWithdrawn> for VisitorSession {
    type Result = ();

    /// A reload's rules no longer admit this socket.
    fn handle(&mut self, withdrawn: AdmissionWithdrawn, ctx: &mut Self::Context) {
        fail_and_close(ctx, &withdrawn.0);
    }
}

impl Handler<VisitorCommand> for VisitorSession {
    type Result = ();

    fn handle(&mut self, command: VisitorCommand, ctx: &mut Self::Context) {
        match command {
            VisitorCommand::Invoke(request) => self.deliver_invoke(request, ctx),
            VisitorCommand::Signal(request) => {
                if let (Phase::Live(key), true) = (&self.phase, self.leaving) {
                    // Queued before `leaving`: it goes where new commands go.
                    let key = key.clone();
                    self.deps
                        .registry
                        .route(key, VisitorCommand::Signal(request));
                } else if matches!(self.phase, Phase::Live(_)) {
                    ctx.text(
                        ServerFrame::Signal {
                            data: &request.data,
                        }
                        .to_text(),
                    );
                    let _ = request.responder.send(Ok(()));
                } else {
                    let _ = request.responder.send(Err(DomainError::not_present()));
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
                    receipts,
                }),
            ) => {
                self.receipts = receipts.unwrap_or(false);
                self.hello(
                    groupid,
                    &visitorid,
                    data,
                    identity.as_deref(),
                    &tickets,
                    ctx,
                )
            }
            (Phase::AwaitingHello, Ok(_)) => fail_and_close(
                ctx,
                &DomainError::HelloRequired("the first frame must be hello"),
            ),
            (Phase::AwaitingHello, Err(e)) => fail_and_close(ctx, &e.error),
            (_, Err(e)) => reject(self, ctx, None, &e.error),
            (_, Ok(VisitorInbound::Hello { .. })) => {
                reject(self, ctx, None, &DomainError::AlreadyJoined)
            }
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
            (Phase::Live(_), Ok(VisitorInbound::Received { .. } | VisitorInbound::Leaving {}))
                if !self.receipts =>
            {
                // Not part of this client's protocol: as any unknown type.
                let e = DomainError::UnknownType(
                    "received and leaving are for clients whose hello said receipts: true"
                        .to_owned(),
                );
                reject(self, ctx, None, &e)
            }
            (Phase::Live(_), Ok(VisitorInbound::Received { id })) => self.received(&id, ctx),
            (Phase::Live(key), Ok(VisitorInbound::Leaving {})) => {
                let key = key.clone();
                self.leaving(key, ctx)
            }
            (Phase::Live(key), Ok(VisitorInbound::SessionKey {})) => {
                let key = key.clone();
                self.session_key(key, ctx)
            }
            (Phase::Live(key), Ok(VisitorInbound::ConfirmAnswer { id, choice })) => {
                let key = key.clone();
                self.confirm_answer(key, id, choice, ctx)
            }
            (_, Ok(_)) => reject(self, ctx, None, &DomainError::NotReady),
        }
    }

    fn on_binary(&mut self, ctx: &mut WebsocketContext<Self>) {
        if matches!(self.phase, Phase::AwaitingHello) {
            fail_and_close(
                ctx,
                &DomainError::HelloRequired("the first frame must be a hello text frame"),
            );
        } else {
            reject(self, ctx, None, &DomainError::BinaryNotSupported);
        }
    }

    fn on_peer_close(&mut self) {
        // Deregister before the close is answered, so a client that has seen
        // the close knows the registry has too.
        self.peer_done = true;
        self.leave();
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for VisitorSession {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        dispatch(self, msg, ctx)
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        // The input ended cleanly: everything the peer sent was read.
        self.peer_done = true;
        ctx.stop();
    }
}
