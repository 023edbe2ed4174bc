//! The AgentSession actor: one per agent console socket.
//!
//! The first frame must be `auth` with a valid agent token; after that the
//! agent can watch visitors of its group, look them up, invoke functions and
//! send signals. The session closes itself with `token_expired` the moment
//! its token expires.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, ActorContext, AsyncContext, Handler, StreamHandler};
use actix_web_actors::ws::{self, WebsocketContext};
use tokio_util::sync::CancellationToken;

use crate::auth::token::{AgentClaims, TokenService};
use crate::infra::capacity::{ConnectionGate, ConnectionPermit};
use crate::infra::config::PresenceConfig;
use crate::infra::error::DomainError;
use crate::infra::metrics::Metrics;
use crate::presence::agent_ops::{AgentOps, Caller, Watches};
use crate::presence::confirmation::ConfirmOptions;
use crate::presence::events::{AgentEvent, EventBus};
use crate::presence::live_sockets::{AdmissionWithdrawn, LiveSocketKind, LiveSockets};
use crate::presence::origin::RequestOrigin;
use crate::presence::visitor::VisitorEvent;
use crate::transport::protocol::{parse_frame, AgentInbound, ServerFrame};
use crate::transport::ws_guard::InboundHandle;
use crate::transport::ws_support::{
    close_on_shutdown, dispatch, fail_and_close, reject, start_heartbeat, SocketLink, TextSocket,
};

mod requests;

/// Invokes, signals and lookups one agent socket may have in flight.
pub const MAX_IN_FLIGHT_PER_AGENT: usize = 1024;

/// Event mailbox room beyond two events per watch.
const EVENT_MAILBOX_SLACK: usize = 256;

static NEXT_WATCHER_ID: AtomicU64 = AtomicU64::new(1);

/// What an agent socket uses, and nothing more; built once at start-up.
pub struct AgentSocketDeps {
    /// The agent verbs.
    pub ops: Arc<AgentOps>,
    /// Verifies the `auth` frame's token.
    pub tokens: Arc<TokenService>,
    /// Delivers revocations, confirmation outcomes and watch events.
    pub events: Arc<dyn EventBus>,
    /// Agent sockets under the connection limits.
    pub gate: Arc<ConnectionGate>,
    pub limits: Arc<PresenceConfig>,
    pub metrics: Arc<Metrics>,
    /// This node's admitted sockets, rechecked by a config reload.
    pub sockets: Arc<LiveSockets>,
    /// Cancelled when shutdown begins; the socket then closes with 1001.
    pub shutdown: CancellationToken,
}

/// One agent socket.
pub struct AgentSession {
    deps: Arc<AgentSocketDeps>,
    origin: RequestOrigin,
    /// The peer's IP address, for per-client limits.
    client: Option<String>,
    claims: Option<AgentClaims>,
    link: SocketLink,
    watches: Watches,
    in_flight: usize,
    /// This socket's slot under the connection limit.
    permit: ConnectionPermit,
    /// Its entry among the live sockets, once authenticated.
    live_socket: Option<u64>,
}

impl AgentSession {
    pub fn new(
        deps: Arc<AgentSocketDeps>,
        origin: RequestOrigin,
        client: Option<String>,
        permit: ConnectionPermit,
        inbound: InboundHandle,
    ) -> Self {
        let limit = deps.limits.max_message_bytes;
        Self {
            deps,
            origin,
            client,
            claims: None,
            link: SocketLink::new(limit, inbound),
            watches: Watches::new(NEXT_WATCHER_ID.fetch_add(1, Ordering::Relaxed)),
            in_flight: 0,
            permit,
            live_socket: None,
        }
    }

    /// The `auth` frame: the token must verify, and the agent operations
    /// must admit it to its own group, as they would a REST request.
    fn auth(&mut self, token: &str, ctx: &mut WebsocketContext<Self>) {
        let deps = &self.deps;
        let checked = deps
            .tokens
            .verify(token)
            .map_err(|e| {
                deps.metrics.auth_failed(e.reason());
                e.to_domain()
            })
            .and_then(|claims| {
                let caller = Caller {
                    claims: &claims,
                    origin: &self.origin,
                    client: self.client.as_deref(),
                };
                deps.ops.admit(&caller, claims.groupid)?;
                Ok(claims)
            });
        let claims = match checked {
            Ok(claims) => claims,
            Err(e) => return fail_and_close(ctx, &e),
        };
        let watcher = self.watches.watcher();
        deps.events.subscribe(
            &claims.jti,
            claims.groupid,
            &claims.sub,
            watcher,
            ctx.address().recipient(),
        );
        // A revocation that raced this auth has already swept the index:
        // check the denylist once more now that we are findable.
        if deps.tokens.revocations().is_revoked(&claims.jti) {
            deps.events
                .unsubscribe(&claims.jti, claims.groupid, &claims.sub, watcher);
            return fail_and_close(ctx, &DomainError::TokenRevoked);
        }
        let recorded = deps.sockets.add(
            deps.ops.groups(),
            claims.groupid,
            &self.origin,
            LiveSocketKind::Agent,
            ctx.address().recipient(),
        );
        match recorded {
            Ok(id) => self.live_socket = Some(id),
            Err(e) => {
                deps.events
                    .unsubscribe(&claims.jti, claims.groupid, &claims.sub, watcher);
                return fail_and_close(ctx, &e);
            }
        }
        ctx.text(
            ServerFrame::Ready {
                groupid: claims.groupid,
                username: &claims.sub,
                role: claims.role.as_str(),
                expires: claims.exp,
                functions: &deps.ops.usable_functions(&claims),
            }
            .to_text(),
        );
        let left = Duration::from_secs(deps.tokens.seconds_left(&claims));
        ctx.run_later(left, |_, ctx| {
            fail_and_close(ctx, &DomainError::TokenExpired);
        });
        self.claims = Some(claims);
    }
}

impl Actor for AgentSession {
    type Context = WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let presence = &self.deps.limits;
        // Room for a state event per watch plus bursts; an agent that stops
        // reading fills it and the event bus drops its watches.
        ctx.set_mailbox_capacity(EVENT_MAILBOX_SLACK + 2 * presence.max_watches_per_agent);
        start_heartbeat(ctx, presence.ping_interval(), presence.client_timeout());
        ctx.run_later(presence.hello_timeout(), |session, ctx| {
            if session.claims.is_none() {
                fail_and_close(ctx, &DomainError::AuthTimeout);
            }
        });
        close_on_shutdown(ctx, self.deps.shutdown.clone());
    }

    fn stopping(&mut self, _ctx: &mut Self::Context) -> actix::Running {
        self.permit.release();
        if let Some(id) = self.live_socket.take() {
            self.deps.sockets.remove(id);
        }
        if let Some(claims) = &self.claims {
            self.deps.events.unsubscribe(
                &claims.jti,
                claims.groupid,
                &claims.sub,
                self.watches.watcher(),
            );
        }
        self.watches.clear(&self.deps.ops);
        actix::Running::Stop
    }
}

impl Handler<AdmissionWithdrawn> for AgentSession {
    type Result = ();

    /// A reload's rules no longer admit this socket.
    fn handle(&mut self, withdrawn: AdmissionWithdrawn, ctx: &mut Self::Context) {
        fail_and_close(ctx, &withdrawn.0);
    }
}

impl Handler<AgentEvent> for AgentSession {
    type Result = ();

    fn handle(&mut self, event: AgentEvent, ctx: &mut Self::Context) {
        match event {
            AgentEvent::Visitor(event) => self.visitor_event(event, ctx),
            AgentEvent::TokenRevoked => fail_and_close(ctx, &DomainError::TokenRevoked),
            AgentEvent::ConfirmationSettled {
                visitorid,
                id,
                status,
            } => ctx.text(
                ServerFrame::Confirmation {
                    visitorid: &visitorid,
                    id: &id,
                    status: status.as_str(),
                }
                .to_text(),
            ),
        }
    }
}

impl AgentSession {
    /// Shows a watch event, as the token's policy lets the agent see it.
    fn visitor_event(&mut self, event: VisitorEvent, ctx: &mut WebsocketContext<Self>) {
        // Events still queued for a visitor just unwatched are dropped.
        if !self.watches.contains(event.state.visitorid.as_str()) {
            return;
        }
        let Some(claims) = &self.claims else {
            return;
        };
        let view = self.deps.ops.event_view(claims, event.state);
        let state = &view.state;
        ctx.text(
            ServerFrame::Visitor {
                event: event.kind.as_str(),
                visitorid: &state.visitorid,
                online: state.online,
                connections: state.connections,
                data: &state.data,
                verified: state.verified,
                identity: state.identity.as_ref(),
                confirmed: view.confirmed,
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
                    &DomainError::AuthRequired("the first frame must be auth"),
                ),
                Err(e) => fail_and_close(ctx, &e.error),
            };
        };
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => {
                // The agent socket speaks REST's codes: a frame it cannot
                // read is a bad request.
                let error = match e.error {
                    unknown @ DomainError::UnknownType(_) => unknown,
                    other => DomainError::BadRequest(other.to_string()),
                };
                return reject(self, ctx, e.id.as_deref(), &error);
            }
        };
        match frame {
            AgentInbound::Auth { .. } => {
                reject(self, ctx, None, &DomainError::AlreadyAuthenticated)
            }
            AgentInbound::Watch { groupid, visitorid } => {
                self.watch(&claims, groupid, &visitorid, ctx)
            }
            AgentInbound::Unwatch { groupid, visitorid } => {
                self.unwatch(&claims, groupid, &visitorid, ctx)
            }
            AgentInbound::Invoke {
                groupid,
                id,
                visitorid,
                func,
                args,
                timeout_ms,
            } => self.invoke(
                &claims, id, groupid, &visitorid, func, args, timeout_ms, ctx,
            ),
            AgentInbound::Signal {
                groupid,
                id,
                visitorid,
                data,
            } => self.signal(&claims, id, groupid, &visitorid, data, ctx),
            AgentInbound::Lookup {
                groupid,
                id,
                visitorid,
            } => self.lookup(&claims, id, groupid, &visitorid, ctx),
            AgentInbound::Confirm {
                groupid,
                id,
                visitorid,
                choices,
                agent,
            } => self.confirm(
                &claims,
                id,
                groupid,
                &visitorid,
                ConfirmOptions { choices, agent },
                ctx,
            ),
            AgentInbound::FindSession { groupid, id, key } => {
                self.find_session(&claims, id, groupid, &key, ctx)
            }
        }
    }

    fn on_peer_close(&mut self) {
        // Give the slot back before the close is answered, so a client
        // that saw the close can connect again at once.
        self.permit.release();
    }

    fn on_binary(&mut self, ctx: &mut WebsocketContext<Self>) {
        if self.claims.is_none() {
            fail_and_close(
                ctx,
                &DomainError::AuthRequired("the first frame must be an auth text frame"),
            );
        } else {
            reject(self, ctx, None, &DomainError::BinaryNotSupported);
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
