//! The AgentSession actor: one per agent console socket.
//!
//! The first frame must be `auth` with a valid agent token; after that the
//! agent can watch visitors of its group, look them up, invoke functions and
//! send signals. The session closes itself with `token_expired` the moment
//! its token expires.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix::{Actor, ActorContext, AsyncContext, Handler, StreamHandler};
use actix_web::web;
use actix_web_actors::ws::{self, CloseCode, WebsocketContext};

use crate::auth::token::AgentClaims;
use crate::infra::capacity::ConnectionPermit;
use crate::infra::error::DomainError;
use crate::infra::ids::{VisitorId, VisitorKey};
use crate::presence::confirmation::ConfirmOptions;
use crate::presence::events::{AgentEvent, AgentSocketId};
use crate::presence::origin::RequestOrigin;
use crate::presence::visitor::{VisitorEvent, VisitorState};
use crate::server::state::{in_scope, AppState};
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

/// One agent socket.
pub struct AgentSession {
    app: web::Data<AppState>,
    origin: RequestOrigin,
    /// The peer's IP address, for per-client limits.
    client: Option<String>,
    watcher_id: AgentSocketId,
    claims: Option<AgentClaims>,
    link: SocketLink,
    watching: HashSet<VisitorId>,
    in_flight: usize,
    /// This socket's slot under the connection limit.
    permit: ConnectionPermit,
}

impl AgentSession {
    pub fn new(
        app: web::Data<AppState>,
        origin: RequestOrigin,
        client: Option<String>,
        permit: ConnectionPermit,
        inbound: InboundHandle,
    ) -> Self {
        let limit = app.config.presence.max_message_bytes;
        Self {
            app,
            origin,
            client,
            watcher_id: NEXT_WATCHER_ID.fetch_add(1, Ordering::Relaxed),
            claims: None,
            link: SocketLink::new(limit, inbound),
            watching: HashSet::new(),
            in_flight: 0,
            permit,
        }
    }

    fn auth(&mut self, token: &str, ctx: &mut WebsocketContext<Self>) {
        let checked = (|| {
            let claims = self.app.tokens.verify(token).map_err(|e| {
                self.app.metrics.auth_failed(e.reason());
                DomainError::unauthorized(e.to_string())
            })?;
            let group =
                self.app.config.group(claims.groupid).ok_or_else(|| {
                    DomainError::unauthorized("the token's group no longer exists")
                })?;
            if !group.presence {
                return Err(DomainError::PresenceNotSubscribed(group.id));
            }
            self.app.origins.check_group(group.id, &self.origin)?;
            Ok(claims)
        })();
        let claims = match checked {
            Ok(claims) => claims,
            Err(e) => return fail_and_close(ctx, CloseCode::Policy, e.code(), &e.to_string()),
        };
        self.app.live_agents.subscribe(
            &claims.jti,
            claims.groupid,
            &claims.sub,
            self.watcher_id,
            ctx.address().recipient(),
        );
        // A revocation that raced this auth has already swept the index:
        // check the denylist once more now that we are findable.
        if self.app.tokens.revocations().is_revoked(&claims.jti) {
            self.app.live_agents.unsubscribe(
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
                role: claims.role.as_str(),
                expires: claims.exp,
                functions: &self.app.usable_functions(&claims),
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
}

impl Actor for AgentSession {
    type Context = WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let presence = &self.app.config.presence;
        // Room for a state event per watch plus bursts; an agent that stops
        // reading fills it and the event bus drops its watches.
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
        self.permit.release();
        if let Some(claims) = &self.claims {
            self.app.live_agents.unsubscribe(
                &claims.jti,
                claims.groupid,
                &claims.sub,
                self.watcher_id,
            );
        }
        if !self.watching.is_empty() {
            self.app.registry.unwatch_all(self.watcher_id);
            self.watching.clear();
        }
        actix::Running::Stop
    }
}

impl Handler<AgentEvent> for AgentSession {
    type Result = ();

    fn handle(&mut self, event: AgentEvent, ctx: &mut Self::Context) {
        match event {
            AgentEvent::Visitor(event) => self.visitor_event(event, ctx),
            AgentEvent::TokenRevoked => fail_and_close(
                ctx,
                CloseCode::Policy,
                "token_revoked",
                "the agent token was revoked",
            ),
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
                        self.app.registry.unwatch(key, self.watcher_id);
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
            AgentInbound::FindSession { id, key } => self.find_session(&claims, id, &key, ctx),
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
