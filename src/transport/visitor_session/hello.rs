//! A visitor socket's hello: the group, Presence, Origin, id, data and
//! identity checks, admission under the group's `max_visitors`, ticket
//! redemption, and registration with the registry.

use super::*;
use crate::infra::ids::GroupId;

impl VisitorSession {
    /// Takes the group's visitor slot at hello, unless the upgrade already
    /// took it for the same group.
    /// A full group is a "try again later" (1013), which the SDK retries
    /// with backoff; a hello naming another group than the URL is final.
    pub(super) fn admit_to_group(
        &mut self,
        group: GroupId,
        max_visitors: Option<usize>,
    ) -> Result<(), DomainError> {
        match &self.group {
            Some(admitted) if admitted.group == group => Ok(()),
            Some(admitted) => Err(DomainError::BadHello(format!(
                "the hello names group {group}, the socket URL group {}",
                admitted.group
            ))),
            None => {
                let slot = self.deps.gate.admit_to_group(group, max_visitors)?;
                self.group = Some(GroupAdmission { group, slot });
                Ok(())
            }
        }
    }

    pub(super) fn hello(
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
                &DomainError::BadFrame(format!(
                    "a hello carries at most {MAX_TICKETS_PER_HELLO} tickets"
                )),
            );
        }
        let checked = (|| {
            let group = self.deps.groups.admit(groupid, &self.origin)?;
            let visitor = VisitorId::parse(visitorid).map_err(DomainError::BadVisitorId)?;
            let data = PresenceData::from_value(data.unwrap_or(Value::Object(Default::default())))
                .map_err(DomainError::BadPresenceData)?;
            let identity = self
                .deps
                .identity
                .check(&group, visitor.as_str(), identity)?;
            Ok((
                group.max_visitors,
                VisitorKey::new(groupid, visitor),
                data,
                identity,
            ))
        })();
        let (max_visitors, key, data, identity) = match checked {
            Ok(ok) => ok,
            Err(e) => return fail_and_close(ctx, &e),
        };
        if let Err(e) = self.admit_to_group(groupid, max_visitors) {
            return fail_and_close(ctx, &e);
        }
        let recorded = self.deps.sockets.add(
            &self.deps.groups,
            groupid,
            &self.origin,
            LiveSocketKind::Visitor,
            ctx.address().recipient(),
        );
        match recorded {
            Ok(id) => self.live_socket = Some(id),
            Err(e) => return fail_and_close(ctx, &e),
        }
        // Before the registry routes to it: a ticket holder may be the one
        // waiting invokes are for (in cluster mode, every node hears of
        // the holding before the connection's presence).
        let redeemed = self
            .deps
            .confirmations
            .redeem(&key, tickets, &self.connection_id);
        self.phase = Phase::Joining(key.clone());
        // `wait` holds other frames back until the registry has answered, so
        // nothing is handled half-registered.
        ctx.wait(redeemed.into_actor(self).then(move |(), session, ctx| {
            let connection = LiveConnection {
                id: session.connection_id.clone(),
                commands: ctx.address().recipient(),
                open: session.open.clone(),
                identity: identity.map(Arc::new),
            };
            let connect = session.deps.registry.connect(key.clone(), connection, data);
            connect
                .into_actor(session)
                .map(move |reply, session, ctx| match reply {
                    Ok(()) => {
                        session.phase = Phase::Live(key.clone());
                        ctx.text(
                            ServerFrame::Welcome {
                                visitorid: key.visitor.as_str(),
                                connection: &session.connection_id,
                            }
                            .to_text(),
                        );
                        // A prompt opened on the previous page shows again.
                        for prompt in session.deps.confirmations.prompts_for(&key) {
                            session.show_prompt(&prompt, ctx);
                        }
                    }
                    Err(e) => fail_and_close(ctx, &e),
                })
        }));
    }
}
