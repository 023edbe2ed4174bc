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
    ) -> Result<(), (CloseCode, &'static str, String)> {
        match &self.group {
            Some(admitted) if admitted.group == group => Ok(()),
            Some(admitted) => Err((
                CloseCode::Policy,
                "bad_hello",
                format!(
                    "the hello names group {group}, the socket URL group {}",
                    admitted.group
                ),
            )),
            None => {
                let slot = self
                    .app
                    .gate
                    .admit_to_group(group, max_visitors)
                    .map_err(|e| (CloseCode::Again, e.code(), e.to_string()))?;
                self.group = Some(GroupAdmission { group, slot });
                Ok(())
            }
        }
    }

    /// Checks the hello's identity token against the group's rules: a
    /// present token must verify (never a silent downgrade), and a group
    /// that requires one refuses hellos without.
    pub(super) fn check_identity(
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
            Ok((
                group.max_visitors,
                VisitorKey::new(groupid, visitor),
                data,
                identity,
            ))
        })();
        let (max_visitors, key, data, identity) = match checked {
            Ok(ok) => ok,
            Err((code, message)) => {
                return fail_and_close(ctx, CloseCode::Policy, code, &message);
            }
        };
        if let Err((close, code, message)) = self.admit_to_group(groupid, max_visitors) {
            return fail_and_close(ctx, close, code, &message);
        }
        // Before the registry routes to it: a ticket holder may be the one
        // waiting invokes are for.
        self.app
            .confirmations
            .redeem(&key, tickets, &self.connection_id);
        self.phase = Phase::Joining(key.clone());
        let connection = LiveConnection {
            id: self.connection_id.clone(),
            commands: ctx.address().recipient(),
            open: self.open.clone(),
            identity: identity.map(Arc::new),
        };
        let connect = self.app.registry.connect(key.clone(), connection, data);
        // `wait` holds other frames back until the registry has answered, so
        // nothing is handled half-registered.
        ctx.wait(
            connect
                .into_actor(self)
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
                        for prompt in session.app.confirmations.prompts_for(&key) {
                            session.show_prompt(&prompt, ctx);
                        }
                    }
                    Err(e) => {
                        let (clients_fault, message) = refusal(&e);
                        let close = if clients_fault {
                            CloseCode::Policy
                        } else {
                            CloseCode::Error
                        };
                        fail_and_close(ctx, close, e.code(), &message)
                    }
                }),
        );
    }
}
