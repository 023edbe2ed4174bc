//! Plumbing shared by the visitor and agent socket actors: reassembling
//! fragmented messages under the size cap, answering the inbound frame
//! guard's refusals, and sending error frames and close frames the same way
//! on both sockets.

use actix::{Actor, ActorContext, AsyncContext};
use actix_http::ws::Item;
use actix_web::web::BytesMut;
use actix_web_actors::ws::{self, CloseCode, CloseReason, WebsocketContext};

use crate::infra::error::DomainError;
use crate::transport::close_codes::close_code;
use crate::transport::protocol::ServerFrame;
use crate::transport::ws_guard::{InboundHandle, Refusal};

/// A whole message put back together from continuation frames.
pub enum Assembled {
    /// More fragments are needed.
    Incomplete,
    Text(String),
    Binary,
    /// The message grew past the cap: close with 1009.
    TooLarge,
    /// Fragments out of order or invalid UTF-8: close with 1002/1007.
    Invalid(&'static str),
}

/// Collects continuation frames into one message of at most `limit` bytes.
pub struct MessageAssembler {
    limit: usize,
    buffer: Option<(bool, BytesMut)>,
}

impl MessageAssembler {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            buffer: None,
        }
    }

    /// Bytes of the unfinished message held.
    pub fn buffered(&self) -> usize {
        self.buffer.as_ref().map_or(0, |(_, buf)| buf.len())
    }

    /// Feeds one continuation item.
    pub fn push(&mut self, item: Item) -> Assembled {
        let (first, is_text, bytes, last) = match item {
            Item::FirstText(b) => (true, true, b, false),
            Item::FirstBinary(b) => (true, false, b, false),
            Item::Continue(b) => (false, false, b, false),
            Item::Last(b) => (false, false, b, true),
        };
        if first {
            if self.buffer.is_some() {
                self.buffer = None;
                return Assembled::Invalid("a new message began before the last one ended");
            }
            self.buffer = Some((is_text, BytesMut::new()));
        }
        let Some((is_text, buf)) = self.buffer.as_mut() else {
            return Assembled::Invalid("continuation frame without a first frame");
        };
        if buf.len() + bytes.len() > self.limit {
            self.buffer = None;
            return Assembled::TooLarge;
        }
        buf.extend_from_slice(&bytes);
        if !last {
            return Assembled::Incomplete;
        }
        let is_text = *is_text;
        let Some((_, whole)) = self.buffer.take() else {
            return Assembled::Invalid("continuation frame without a first frame");
        };
        if is_text {
            match String::from_utf8(whole.to_vec()) {
                Ok(text) => Assembled::Text(text),
                Err(_) => Assembled::Invalid("text message is not valid UTF-8"),
            }
        } else {
            Assembled::Binary
        }
    }
}

/// What every socket actor tracks about its link: when the peer was last
/// heard from (for the heartbeat), fragments being reassembled, and the
/// inbound frame guard's side of the socket.
pub struct SocketLink {
    last_heard: std::time::Instant,
    assembler: MessageAssembler,
    inbound: InboundHandle,
    /// Start of the current error-budget window, and errors sent in it.
    error_window: (std::time::Instant, u32),
}

/// Error frames a client may provoke per [`ERROR_WINDOW`] before it is
/// disconnected: answering garbage must not become an amplifier, nor fill
/// the send buffer of a client that does not read.
pub const ERROR_BUDGET: u32 = 20;
/// The error-budget window.
pub const ERROR_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

impl SocketLink {
    /// A link whose messages may be at most `max_message_bytes`, read
    /// through the guard `inbound` belongs to.
    pub fn new(max_message_bytes: usize, inbound: InboundHandle) -> Self {
        let now = std::time::Instant::now();
        Self {
            last_heard: now,
            assembler: MessageAssembler::new(max_message_bytes),
            inbound,
            error_window: (now, 0),
        }
    }

    /// Feeds a fragment to the assembler, keeping the guard's account of
    /// what it holds.
    fn assemble(&mut self, item: Item) -> Assembled {
        let assembled = self.assembler.push(item);
        self.inbound.set_assembling(self.assembler.buffered());
        assembled
    }

    /// Counts one client error; false once the budget is spent.
    fn spend_error(&mut self) -> bool {
        let now = std::time::Instant::now();
        if now.duration_since(self.error_window.0) >= ERROR_WINDOW {
            self.error_window = (now, 0);
        }
        self.error_window.1 += 1;
        self.error_window.1 <= ERROR_BUDGET
    }
}

/// Answers a client's mistake with an error frame, keeping the socket open
/// until the client has made more than [`ERROR_BUDGET`] mistakes in
/// [`ERROR_WINDOW`]; then closes with 1008 `too_many_errors`.
pub fn reject<A: TextSocket>(
    actor: &mut A,
    ctx: &mut WebsocketContext<A>,
    id: Option<&str>,
    error: &DomainError,
) {
    if actor.link().spend_error() {
        send_error(ctx, id, error);
    } else {
        fail_and_close(ctx, &DomainError::TooManyErrors);
    }
}

/// A JSON-text socket actor, as the shared frame dispatch sees it.
pub trait TextSocket: Actor<Context = WebsocketContext<Self>> {
    /// The actor's link state.
    fn link(&mut self) -> &mut SocketLink;
    /// A whole text message arrived.
    fn on_text(&mut self, text: &str, ctx: &mut WebsocketContext<Self>);
    /// A whole binary message arrived.
    fn on_binary(&mut self, ctx: &mut WebsocketContext<Self>);
    /// The peer closed; runs before the close is answered.
    fn on_peer_close(&mut self) {}
}

/// Handles one inbound WebSocket message the same way on every socket:
/// size and protocol errors close, pings are answered, fragments are
/// reassembled, and whole messages go to the actor.
pub fn dispatch<A: TextSocket>(
    actor: &mut A,
    msg: Result<ws::Message, ws::ProtocolError>,
    ctx: &mut WebsocketContext<A>,
) {
    let link = actor.link();
    link.last_heard = std::time::Instant::now();
    let msg = match msg {
        Ok(msg) => {
            link.inbound.frame_received();
            msg
        }
        Err(err) => {
            return match link.inbound.refusal() {
                Some(refusal) => close_for_refusal(ctx, refusal),
                None => close_for_protocol_error(ctx, &err),
            }
        }
    };
    match msg {
        ws::Message::Text(text) => actor.on_text(&text, ctx),
        ws::Message::Continuation(item) => match link.assemble(item) {
            Assembled::Incomplete => {}
            Assembled::Text(text) => actor.on_text(&text, ctx),
            Assembled::Binary => actor.on_binary(ctx),
            Assembled::TooLarge => {
                close_too_large(ctx, "the message exceeds presence.max_message_bytes")
            }
            Assembled::Invalid(why) => {
                fail_and_close(ctx, &DomainError::ProtocolViolation(why.to_owned()))
            }
        },
        ws::Message::Binary(_) => actor.on_binary(ctx),
        ws::Message::Ping(payload) => ctx.pong(&payload),
        ws::Message::Pong(_) | ws::Message::Nop => {}
        ws::Message::Close(reason) => {
            actor.on_peer_close();
            ctx.close(reason);
            ctx.stop();
        }
    }
}

/// Sends an error frame, keeping the socket open.
pub fn send_error<A>(ctx: &mut WebsocketContext<A>, id: Option<&str>, error: &DomainError)
where
    A: Actor<Context = WebsocketContext<A>>,
{
    let message = error.to_string();
    ctx.text(
        ServerFrame::Error {
            id,
            code: error.code(),
            message: &message,
        }
        .to_text(),
    );
}

/// Sends an error frame, then closes with the error's close code (see
/// [`close_code`]) and its code as the reason, and stops the actor.
pub fn fail_and_close<A>(ctx: &mut WebsocketContext<A>, error: &DomainError)
where
    A: Actor<Context = WebsocketContext<A>>,
{
    send_error(ctx, None, error);
    close(ctx, close_code(error), error.code());
}

/// Closes with a code and a short reason, and stops the actor.
pub fn close<A>(ctx: &mut WebsocketContext<A>, code: CloseCode, reason: &str)
where
    A: Actor<Context = WebsocketContext<A>>,
{
    // Close reasons must fit a control frame (125 bytes with the code).
    let description: String = reason.chars().take(100).collect();
    ctx.close(Some(CloseReason {
        code,
        description: Some(description),
    }));
    ctx.stop();
}

/// Closes with 1009 `message_too_large`.
fn close_too_large<A>(ctx: &mut WebsocketContext<A>, message: &str)
where
    A: Actor<Context = WebsocketContext<A>>,
{
    fail_and_close(ctx, &DomainError::MessageTooLarge(message.to_owned()));
}

/// Answers the inbound guard's refusal: it has stopped reading already.
fn close_for_refusal<A>(ctx: &mut WebsocketContext<A>, refusal: Refusal)
where
    A: Actor<Context = WebsocketContext<A>>,
{
    match refusal {
        Refusal::TooLarge(why) => close_too_large(ctx, why),
        Refusal::Protocol(why) => {
            fail_and_close(ctx, &DomainError::ProtocolViolation(why.to_owned()))
        }
        Refusal::RateLimited => fail_and_close(ctx, &DomainError::RateLimited),
    }
}

/// Maps a transport-level protocol error to its close code.
fn close_for_protocol_error<A>(ctx: &mut WebsocketContext<A>, err: &ws::ProtocolError)
where
    A: Actor<Context = WebsocketContext<A>>,
{
    match err {
        ws::ProtocolError::Overflow => {
            close_too_large(ctx, "the message exceeds presence.max_message_bytes")
        }
        other => close(
            ctx,
            close_code(&DomainError::ProtocolViolation(String::new())),
            &format!("protocol error: {other}"),
        ),
    }
}

/// Starts the shared heartbeat: ping every `interval`, and close with 1008
/// once nothing has been heard for `timeout`.
pub fn start_heartbeat<A: TextSocket>(
    ctx: &mut WebsocketContext<A>,
    interval: std::time::Duration,
    timeout: std::time::Duration,
) {
    ctx.run_interval(interval, move |actor, ctx| {
        if actor.link().last_heard.elapsed() >= timeout {
            fail_and_close(ctx, &DomainError::HeartbeatTimeout);
        } else {
            ctx.ping(b"");
        }
    });
}

/// Closes the socket with 1001 when the server begins shutting down.
pub fn close_on_shutdown<A>(
    ctx: &mut WebsocketContext<A>,
    shutdown: tokio_util::sync::CancellationToken,
) where
    A: Actor<Context = WebsocketContext<A>>,
{
    use actix::fut::wrap_future;
    use actix::ActorFutureExt;
    ctx.spawn(wrap_future::<_, A>(shutdown.cancelled_owned()).map(
        |_, _actor, ctx: &mut WebsocketContext<A>| {
            close(
                ctx,
                close_code(&DomainError::ShuttingDown),
                "server shutting down",
            )
        },
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::web::Bytes;

    #[test]
    fn reassembles_text_within_the_limit() {
        let mut a = MessageAssembler::new(10);
        assert!(matches!(
            a.push(Item::FirstText(Bytes::from_static(b"he"))),
            Assembled::Incomplete
        ));
        assert!(matches!(
            a.push(Item::Continue(Bytes::from_static(b"ll"))),
            Assembled::Incomplete
        ));
        match a.push(Item::Last(Bytes::from_static(b"o"))) {
            Assembled::Text(t) => assert_eq!(t, "hello"),
            _ => panic!("expected text"),
        }
    }

    #[test]
    fn refuses_oversize_and_orphan_fragments() {
        let mut a = MessageAssembler::new(4);
        assert!(matches!(
            a.push(Item::FirstText(Bytes::from_static(b"abc"))),
            Assembled::Incomplete
        ));
        assert!(matches!(
            a.push(Item::Last(Bytes::from_static(b"de"))),
            Assembled::TooLarge
        ));
        assert!(matches!(
            a.push(Item::Continue(Bytes::from_static(b"x"))),
            Assembled::Invalid(_)
        ));
        assert!(matches!(
            a.push(Item::FirstText(Bytes::from_static(b"a"))),
            Assembled::Incomplete
        ));
        assert!(matches!(
            a.push(Item::FirstText(Bytes::from_static(b"b"))),
            Assembled::Invalid(_)
        ));
    }
}
