//! What the guard shares with its socket's actor: why it refused, if it
//! did, and an account of the bytes the socket holds buffered.
//!
//! The account is kept from both sides rather than inferred: the guard adds
//! every byte it forwards to actix's frame parser and notes the wire size
//! of each whole frame; the actor takes a frame off as it receives it and
//! reports what its fragment assembler holds. The difference is what sits
//! in the parser's buffer, whatever the parser does. The largest total a
//! socket reaches goes to the server-wide `socket_buffer_peak_bytes` gauge.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;

use super::header::MAX_HEADER_LEN;
use super::Refusal;
use crate::infra::metrics::Metrics;

/// What a socket may hold beyond `presence.max_message_bytes`: the header
/// of the frame in the parser, or a control frame (at most 131 bytes on the
/// wire) arriving while a message at the limit is being reassembled.
pub const BUFFER_OVERHEAD_BYTES: usize = 256;

// The bound above covers the largest data-frame header.
const _: () = assert!(MAX_HEADER_LEN < BUFFER_OVERHEAD_BYTES);

/// The guard's side channel to one socket actor (both live on the same
/// worker thread).
#[derive(Clone)]
pub struct InboundHandle(Rc<Shared>);

struct Shared {
    refusal: Cell<Option<Refusal>>,
    /// Bytes forwarded to the parser and not yet received by the actor.
    in_parser: Cell<usize>,
    /// Bytes forwarded of the frame not yet whole.
    partial_frame: Cell<usize>,
    /// Wire sizes of whole frames forwarded and not yet received, oldest
    /// first.
    whole_frames: RefCell<VecDeque<usize>>,
    /// Bytes the actor's fragment assembler holds.
    assembling: Cell<usize>,
    /// The most this socket has held.
    peak: Cell<usize>,
    metrics: Arc<Metrics>,
}

impl InboundHandle {
    pub(super) fn new(metrics: Arc<Metrics>) -> Self {
        Self(Rc::new(Shared {
            refusal: Cell::new(None),
            in_parser: Cell::new(0),
            partial_frame: Cell::new(0),
            whole_frames: RefCell::new(VecDeque::new()),
            assembling: Cell::new(0),
            peak: Cell::new(0),
            metrics,
        }))
    }

    pub(super) fn refuse(&self, refusal: Refusal) {
        self.0.refusal.set(Some(refusal));
    }

    /// Why the guard stopped reading, if it did.
    pub fn refusal(&self) -> Option<Refusal> {
        self.0.refusal.get()
    }

    /// The guard forwarded `len` bytes; `frame_end` if they end a frame.
    pub(super) fn forwarded(&self, len: usize, frame_end: bool) {
        let shared = &self.0;
        shared.in_parser.set(shared.in_parser.get() + len);
        let frame = shared.partial_frame.get() + len;
        if frame_end {
            shared.whole_frames.borrow_mut().push_back(frame);
            shared.partial_frame.set(0);
        } else {
            shared.partial_frame.set(frame);
        }
        self.note_peak();
    }

    /// The actor received the oldest frame forwarded.
    pub fn frame_received(&self) {
        let shared = &self.0;
        let size = shared.whole_frames.borrow_mut().pop_front().unwrap_or(0);
        shared
            .in_parser
            .set(shared.in_parser.get().saturating_sub(size));
    }

    /// The actor's fragment assembler now holds `bytes`.
    pub fn set_assembling(&self, bytes: usize) {
        self.0.assembling.set(bytes);
        self.note_peak();
    }

    /// Bytes this socket holds now: in the parser and being reassembled.
    pub fn buffered(&self) -> usize {
        self.0.in_parser.get() + self.0.assembling.get()
    }

    /// The most this socket has held.
    #[cfg(test)]
    pub fn peak(&self) -> usize {
        self.0.peak.get()
    }

    fn note_peak(&self) {
        let now = self.buffered();
        if now > self.0.peak.get() {
            self.0.peak.set(now);
            self.0.metrics.socket_buffered(now);
        }
    }
}
