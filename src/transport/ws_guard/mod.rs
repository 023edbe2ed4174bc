//! The inbound frame guard: a small stream adapter between a socket's
//! `web::Payload` and actix's WebSocket parser that reads each RFC 6455
//! frame header as its bytes arrive and enforces the socket limits before
//! any payload is buffered.
//!
//! actix-http's `ws::Parser` waits until a whole declared frame is buffered
//! before it compares the length with `max_size`, so a header declaring
//! 2^40 bytes made the server buffer whatever followed. The guard refuses,
//! at the header:
//!
//! - a frame declaring more than `presence.max_message_bytes`, a message
//!   whose fragments add up to more, or one of more than
//!   [`MAX_FRAGMENTS`] fragments (close 1009 `message_too_large`);
//! - a control frame over 125 bytes or fragmented (close 1002 `bad_frame`);
//! - a frame beyond the socket's token bucket of
//!   `presence.inbound_frames_per_sec` and `presence.inbound_frame_burst`
//!   (close 1008 `rate_limited`).
//!
//! It forwards bytes as they come and never holds a frame itself. After
//! the last byte of each frame it yields once, so the parser takes that
//! frame before it is handed more: the parser's buffer holds at most one
//! frame. When it refuses, it records why in the [`InboundHandle`] it
//! shares with the socket actor, yields one error item (which the actor
//! receives as a protocol error and answers from the handle's verdict),
//! and ends: nothing more is read from that socket.

mod buffers;
mod header;

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use actix::prelude::Stream;
use actix_web::error::PayloadError;
use actix_web::web::Bytes;

use crate::infra::config::PresenceConfig;
use crate::infra::metrics::Metrics;

use crate::infra::rate::TokenBucket;
pub use buffers::{InboundHandle, BUFFER_OVERHEAD_BYTES};
use header::{FrameHeader, HeaderReader};

/// The most fragments one message may have.
pub const MAX_FRAGMENTS: usize = 1024;
/// The longest control-frame payload (RFC 6455 §5.5).
const MAX_CONTROL_PAYLOAD: u64 = 125;

/// Why the guard stopped reading a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A frame or message over the size or fragment limit: close 1009.
    TooLarge(&'static str),
    /// A malformed control frame: close 1002.
    Protocol(&'static str),
    /// More frames than the token bucket allows: close 1008.
    RateLimited,
}

impl Refusal {
    fn message(self) -> &'static str {
        match self {
            Refusal::TooLarge(why) | Refusal::Protocol(why) => why,
            Refusal::RateLimited => "inbound frame rate limit exceeded",
        }
    }
}

/// The limits one socket's guard enforces.
#[derive(Debug, Clone, Copy)]
pub struct GuardLimits {
    pub max_message_bytes: usize,
    pub frames_per_sec: u32,
    pub frame_burst: u32,
}

impl GuardLimits {
    pub fn from_config(presence: &PresenceConfig) -> Self {
        Self {
            max_message_bytes: presence.max_message_bytes,
            frames_per_sec: presence.inbound_frames_per_sec,
            frame_burst: presence.inbound_frame_burst,
        }
    }
}

/// Fragments and bytes of the message being received.
#[derive(Debug, Default)]
struct MessageBudget {
    /// `Some((fragments, bytes))` while a fragmented message is open.
    open: Option<(usize, u64)>,
}

impl MessageBudget {
    /// Checks a data or continuation frame against the message limits. A
    /// continuation with no message open, or a new message while one is
    /// open, is refused at its header (the parser would only say so after
    /// buffering the frame, next to the open message's fragments).
    fn admit(&mut self, header: &FrameHeader, max_bytes: u64) -> Result<(), Refusal> {
        let (fragments, bytes) = match (header.is_continuation(), self.open) {
            (true, Some((fragments, bytes))) => {
                (fragments + 1, bytes.saturating_add(header.payload_len))
            }
            (false, None) => (1, header.payload_len),
            (true, None) => {
                return Err(Refusal::Protocol(
                    "a continuation frame without a message to continue",
                ))
            }
            (false, Some(_)) => {
                return Err(Refusal::Protocol(
                    "a new message began before the last one ended",
                ))
            }
        };
        self.open = (!header.fin).then_some((fragments, bytes));
        if bytes > max_bytes {
            return Err(Refusal::TooLarge(if fragments == 1 {
                "the frame exceeds presence.max_message_bytes"
            } else {
                "the message's fragments exceed presence.max_message_bytes"
            }));
        }
        if fragments > MAX_FRAGMENTS {
            return Err(Refusal::TooLarge(
                "the message has more than 1024 fragments",
            ));
        }
        Ok(())
    }
}

/// Where the guard is within the current frame.
#[derive(Debug)]
enum Position {
    Header(HeaderReader),
    Payload { left: u64 },
}

/// The outcome of scanning a chunk.
enum Scan {
    /// Forward the first `len` bytes; `frame_end` if they end a frame.
    Forward {
        len: usize,
        frame_end: bool,
    },
    Refuse(Refusal),
}

/// The guarded payload stream.
pub struct FrameGuard<S> {
    inner: S,
    limits: GuardLimits,
    position: Position,
    message: MessageBudget,
    /// The frame-rate bucket, on milliseconds since `started`.
    bucket: TokenBucket,
    started: Instant,
    /// Bytes read but not yet forwarded: the rest of a chunk after a frame.
    leftover: Option<Bytes>,
    /// A frame just ended: yield once so the parser takes it.
    yield_next: bool,
    /// Refused or ended: read nothing more.
    done: bool,
    handle: InboundHandle,
}

impl<S> FrameGuard<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    /// Wraps a socket's payload; the handle goes to the socket's actor.
    pub fn wrap(inner: S, limits: GuardLimits, metrics: Arc<Metrics>) -> (Self, InboundHandle) {
        let handle = InboundHandle::new(metrics);
        let guard = Self {
            inner,
            limits,
            position: Position::Header(HeaderReader::default()),
            message: MessageBudget::default(),
            bucket: TokenBucket::new(
                u64::from(limits.frames_per_sec),
                1000,
                u64::from(limits.frame_burst),
                0,
            ),
            started: Instant::now(),
            leftover: None,
            yield_next: false,
            done: false,
            handle: handle.clone(),
        };
        (guard, handle)
    }

    /// Checks a whole header against every limit.
    fn admit(&mut self, header: &FrameHeader) -> Result<(), Refusal> {
        let now_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        if self.bucket.take(now_ms).is_err() {
            return Err(Refusal::RateLimited);
        }
        if header.is_control() {
            if header.payload_len > MAX_CONTROL_PAYLOAD {
                return Err(Refusal::Protocol(
                    "a control frame's payload exceeds 125 bytes",
                ));
            }
            if !header.fin {
                return Err(Refusal::Protocol("a control frame must not be fragmented"));
            }
            return Ok(());
        }
        let max = u64::try_from(self.limits.max_message_bytes).unwrap_or(u64::MAX);
        self.message.admit(header, max)
    }

    /// Reads `chunk` up to the end of the current frame.
    fn scan(&mut self, chunk: &[u8]) -> Scan {
        let mut offset = 0;
        loop {
            match &mut self.position {
                Position::Header(reader) => {
                    let (taken, header) = reader.feed(&chunk[offset..]);
                    offset += taken;
                    let Some(header) = header else {
                        return Scan::Forward {
                            len: offset,
                            frame_end: false,
                        };
                    };
                    if let Err(refusal) = self.admit(&header) {
                        return Scan::Refuse(refusal);
                    }
                    if header.payload_len == 0 {
                        return Scan::Forward {
                            len: offset,
                            frame_end: true,
                        };
                    }
                    self.position = Position::Payload {
                        left: header.payload_len,
                    };
                }
                Position::Payload { left } => {
                    let available = (chunk.len() - offset) as u64;
                    let taken = available.min(*left);
                    *left -= taken;
                    // `taken` is at most `available`, a slice length.
                    offset += usize::try_from(taken).unwrap_or(usize::MAX);
                    if *left > 0 {
                        return Scan::Forward {
                            len: offset,
                            frame_end: false,
                        };
                    }
                    self.position = Position::Header(HeaderReader::default());
                    return Scan::Forward {
                        len: offset,
                        frame_end: true,
                    };
                }
            }
        }
    }
}

impl<S> Stream for FrameGuard<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if this.yield_next {
                // The parser reads until its input is pending, then parses
                // one frame: pausing here keeps it to the frame just ended.
                this.yield_next = false;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let mut chunk = match this.leftover.take() {
                Some(rest) => rest,
                None => match Pin::new(&mut this.inner).poll_next(cx) {
                    Poll::Ready(Some(Ok(chunk))) => chunk,
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                    Poll::Ready(None) => {
                        this.done = true;
                        return Poll::Ready(None);
                    }
                    Poll::Pending => return Poll::Pending,
                },
            };
            if chunk.is_empty() {
                continue;
            }
            match this.scan(&chunk) {
                Scan::Forward { len, frame_end } => {
                    let rest = chunk.split_off(len);
                    if !rest.is_empty() {
                        this.leftover = Some(rest);
                    }
                    this.yield_next = frame_end;
                    this.handle.forwarded(len, frame_end);
                    if chunk.is_empty() {
                        continue;
                    }
                    return Poll::Ready(Some(Ok(chunk)));
                }
                Scan::Refuse(refusal) => {
                    this.done = true;
                    this.leftover = None;
                    this.handle.refuse(refusal);
                    return Poll::Ready(Some(Err(PayloadError::Io(io::Error::new(
                        io::ErrorKind::InvalidData,
                        refusal.message(),
                    )))));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
