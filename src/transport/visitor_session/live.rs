//! What a registered visitor socket does: presence (coalesced), invoke
//! delivery and results, session keys, and confirmation prompts.

use super::*;

impl VisitorSession {
    pub(super) fn presence(
        &mut self,
        key: VisitorKey,
        data: Value,
        ctx: &mut WebsocketContext<Self>,
    ) {
        if self.leaving {
            // The connection is no longer registered as a routing target.
            return;
        }
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
            Err(message) => reject(self, ctx, None, &DomainError::BadPresenceData(message)),
        }
    }

    /// Sends one (possibly coalesced) presence update to the registry.
    pub(super) fn send_presence(
        &mut self,
        key: VisitorKey,
        data: PresenceData,
        ctx: &mut WebsocketContext<Self>,
    ) {
        let update = self
            .deps
            .registry
            .presence_update(key, &self.connection_id, data);
        ctx.spawn(update.into_actor(self).map(|reply, session, ctx| {
            let Err(e) = reply else { return };
            // The client's mistake counts against its error budget; the
            // server's own failure does not.
            match e {
                DomainError::BadPresenceData(_) | DomainError::NotRegistered => {
                    reject(session, ctx, None, &e)
                }
                _ => send_error(ctx, None, &e),
            }
        }));
    }

    pub(super) fn result(
        &mut self,
        id: &str,
        ok: bool,
        value: Value,
        error: Option<String>,
        ctx: &mut WebsocketContext<Self>,
    ) {
        let Some(pending) = self.take_pending(id) else {
            return reject(
                self,
                ctx,
                None,
                &DomainError::UnknownInvoke(format!(
                    "no invoke with id {:?} is awaiting a result",
                    truncate(id)
                )),
            );
        };
        ctx.cancel_future(pending.timer);
        let outcome = if ok {
            InvokeOutcome::success(value)
        } else {
            InvokeOutcome::failure(error.unwrap_or_else(|| "the function failed".to_owned()))
        };
        // The waiter may have given up at its deadline; that is fine.
        let _ = pending.request.responder.send(Ok(outcome));
    }

    /// Removes invoke `id` from those in flight. The map's table is freed
    /// once the last one is answered: most sockets are idle most of the
    /// time, and a table kept after a first invoke was 0.6 KiB per visitor
    /// (heaptrack, `INVOKE_RATE=1000 bash loadtest/heap-profile.sh`).
    fn take_pending(&mut self, id: &str) -> Option<PendingInvoke> {
        let pending = self.pending.remove(id);
        if self.pending.is_empty() && self.pending.capacity() > 0 {
            self.pending = HashMap::new();
        }
        pending
    }

    pub(super) fn deliver_invoke(
        &mut self,
        request: InvokeRequest,
        ctx: &mut WebsocketContext<Self>,
    ) {
        if request.responder.is_closed() {
            return;
        }
        let Phase::Live(key) = &self.phase else {
            let _ = request.responder.send(Err(DomainError::not_present()));
            return;
        };
        if self.leaving {
            // Queued before the client said `leaving`; never written, so
            // it goes where new commands go.
            let key = key.clone();
            return self
                .deps
                .registry
                .route(key, VisitorCommand::Invoke(request));
        }
        let limit = self.deps.limits.max_pending_invokes;
        if self.pending.len() >= limit {
            let _ = request
                .responder
                .send(Err(DomainError::TooManyPending(limit)));
            return;
        }
        let now = tokio::time::Instant::now();
        if request.deadline <= now {
            let _ = request
                .responder
                .send(Err(DomainError::InvokeTimeout(request.timeout_ms)));
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
            if let Some(pending) = session.take_pending(&timer_id) {
                let _ = pending
                    .request
                    .responder
                    .send(Err(DomainError::InvokeTimeout(timeout_ms)));
            }
        });
        self.pending.insert(
            id,
            PendingInvoke {
                request,
                timer,
                received: false,
            },
        );
    }

    /// Answers `session_key`: this connection's live key, or a fresh one
    /// bound to the visitor's current online period. Minting writes the
    /// key durably, so it runs on the blocking pool, one mint per socket
    /// at a time: requests that come meanwhile get the same answer.
    pub(super) fn session_key(&mut self, key: VisitorKey, ctx: &mut WebsocketContext<Self>) {
        if let Some(waiting) = self.minting.as_mut() {
            *waiting += 1;
            return;
        }
        // Live, so the registry has published this visitor.
        let Some(online_since) = self.deps.registry.lookup(&key).connected_at else {
            return send_error(ctx, None, &DomainError::NotReady);
        };
        let holder = KeyHolder {
            visitor: key,
            period: OnlinePeriod::Began(online_since),
        };
        let keys = self.deps.session_keys.clone();
        let connection = self.connection_id.clone();
        self.minting = Some(0);
        let fut = on_blocking_pool("session keys", move || keys.issue(&holder, &connection));
        ctx.spawn(fut.into_actor(self).map(|issued, session, ctx| {
            let answers = 1 + session.minting.take().unwrap_or(0);
            let issued = issued.and_then(|issued| issued.map_err(DomainError::from));
            for _ in 0..answers {
                match &issued {
                    Ok(code) => ctx.text(
                        ServerFrame::SessionKey {
                            key: &code.key,
                            expires: code.expires,
                        }
                        .to_text(),
                    ),
                    Err(e) => send_error(ctx, None, e),
                }
            }
        }));
    }

    pub(super) fn show_prompt(&mut self, prompt: &Prompt, ctx: &mut WebsocketContext<Self>) {
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

    pub(super) fn close_prompt(
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
    pub(super) fn confirm_answer(
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
                &DomainError::PromptNotOpen(format!(
                    "no confirmation prompt {:?} is open here",
                    truncate(&id)
                )),
            );
        }
        let confirmations = self.deps.confirmations.clone();
        let connection = self.connection_id.clone();
        let fut = async move {
            confirmations
                .answer(key, id.clone(), choice, &connection)
                .await
                .map_err(|e| (id, e))
        };
        ctx.spawn(fut.into_actor(self).map(|outcome, _, ctx| {
            if let Err((id, e)) = outcome {
                send_error(ctx, Some(&id), &e);
            }
        }));
    }
}
