//! Receipts and `leaving`, for clients whose hello said `receipts: true`.
//!
//! Such a client sends `received` for an invoke the moment it takes it,
//! before it runs the function. When the peer closes the socket (a close
//! frame or the end of its stream, so every frame it sent has been read),
//! an invoke with a receipt and no result may have run, so it fails
//! `visitor_not_present` as for any client (at most once); one without a
//! receipt provably did not run, so it goes back to the registry with its
//! responder and deadline, to be routed again (parked for the visitor's
//! next socket during its grace period). When the server closes first
//! (heartbeat timeout, an error close, a leaving socket's grace end,
//! shutdown), a receipt may still be on its way, so every unanswered
//! invoke fails as for any client. An invoke whose deadline has passed is
//! never sent again.
//!
//! `leaving` (the page's `pagehide`) clears the connection's shared `open`
//! flag: routing skips it from then on and commands still queued for it go
//! back to routing, while results of invokes already written still arrive.
//! The registry hears of it as a disconnect, so the socket stops counting
//! toward the visitor being online, and if it was the visitor's last, the
//! reconnect grace period starts. A page in the back/forward cache said
//! `leaving` but keeps its socket open with nobody behind it: the session
//! closes it itself once `reconnect_grace_ms` have passed; being the
//! server's close, its unanswered invokes fail.

use super::*;

impl VisitorSession {
    /// A receipts client took invoke `id`.
    pub(super) fn received(&mut self, id: &str, ctx: &mut WebsocketContext<Self>) {
        if let Some(pending) = self.pending.get_mut(id) {
            // A repeated receipt changes nothing.
            pending.received = true;
        } else if !self.issued(id) {
            // (An invoke of this socket that already timed out is let be:
            // the client is slow, not wrong, and its late result says so.)
            let e = DomainError::UnknownInvoke(format!(
                "no invoke with id {:?} is awaiting a receipt",
                truncate(id)
            ));
            reject(self, ctx, None, &e);
        }
    }

    /// The page is going away: stop being a routing target and stop
    /// counting as a connection; stay open for results until the grace
    /// period ends.
    pub(super) fn leaving(&mut self, key: VisitorKey, ctx: &mut WebsocketContext<Self>) {
        if self.leaving {
            // A repeated leaving changes nothing.
            return;
        }
        self.leaving = true;
        self.open.store(false, Ordering::Release);
        let held = self.presence.flush(std::time::Instant::now());
        self.deps
            .registry
            .disconnect(key, &self.connection_id, held);
        // Nor does it hold confirmation tickets: `confirmed` describes the
        // visitor's connections.
        self.deps
            .confirmations
            .forget_connection(&self.connection_id);
        ctx.run_later(self.deps.limits.reconnect_grace(), |_, ctx| {
            close(ctx, CloseCode::Normal, "left");
        });
    }

    /// Whether `id` names an invoke this socket was written.
    fn issued(&self, id: &str) -> bool {
        id.parse::<u64>()
            .is_ok_and(|n| n >= 1 && n <= self.next_invoke && id == n.to_string())
    }

    /// The socket closed after `disconnect`: fails the invokes in flight,
    /// except, when the peer closed it, a receipts client's unreceipted
    /// ones within their deadline, which go back to the registry.
    pub(super) fn settle_pending(&mut self, key: VisitorKey) {
        let now = tokio::time::Instant::now();
        let mut again = Vec::new();
        for (_, pending) in self.pending.drain() {
            let request = pending.request;
            let unreceipted = self.receipts && self.peer_done && !pending.received;
            if unreceipted && request.deadline > now && !request.responder.is_closed() {
                again.push(VisitorCommand::Invoke(request));
            } else {
                let _ = request.responder.send(Err(closed_before_answer()));
            }
        }
        if !again.is_empty() {
            self.deps.metrics.invokes_reparked(again.len());
            self.deps.registry.repark(key, again);
        }
    }
}
