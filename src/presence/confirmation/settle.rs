//! How a prompt ends: the visitor's answer, the agent's cancel, or its
//! timer; each settles through the records' compare-and-swap, and only the
//! call that settled it tells the agent, the visitor's sockets and the
//! failure lock.

use std::sync::Arc;
use std::time::Duration;

use super::{
    belongs_to, key_of, on_store, tickets, ConfirmationStatus, Confirmations, FAILURE_LIMIT,
    LOCK_MS,
};
use crate::infra::error::DomainError;
use crate::infra::ids::VisitorKey;
use crate::presence::registry::VisitorCommand;
use crate::presence::webhooks::{Outbox, WebhookEvent};
use crate::store::{grant_key, ConfirmationGrant, ConfirmationRecord, Settled};

impl Confirmations {
    /// Sends every settled prompt to `outbox` as a `confirmation` event
    /// (set once, at start-up).
    pub fn emit_webhooks(&self, outbox: Arc<Outbox>) {
        let _ = self.webhooks.set(outbox);
    }

    /// Settles a prompt with the visitor's answer (`None` declines), given
    /// on `connection`. A correct answer makes `connection` the grant's only
    /// holder, and `connection` alone gets its ticket, after its
    /// `confirm_closed`.
    /// Answers `confirmation_not_found` for a prompt of another visitor.
    pub async fn answer(
        self: &Arc<Self>,
        key: VisitorKey,
        id: String,
        choice: Option<String>,
        connection: &str,
    ) -> Result<ConfirmationStatus, DomainError> {
        let lookup = id.clone();
        let record = on_store(&self.records, move |r| r.prompt(&lookup)).await?;
        if !record.is_some_and(|r| belongs_to(&r, &key)) {
            return Err(DomainError::ConfirmationNotFound);
        }
        let now_ms = self.clock.now_ms();
        let until = now_ms / 1000 + self.ttl_secs;
        let (ticket, ticket_digest) = tickets::new_ticket();
        let decide = move |current: &ConfirmationRecord| {
            let mut next = current.clone();
            next.status = if now_ms > current.deadline_ms {
                ConfirmationStatus::Expired
            } else {
                match &choice {
                    None => ConfirmationStatus::Declined,
                    Some(c) if *c == current.answer => ConfirmationStatus::Confirmed,
                    Some(_) => ConfirmationStatus::Rejected,
                }
            };
            if next.status != ConfirmationStatus::Confirmed {
                next.counts_as_failure = true;
                return (next, None);
            }
            next.confirmed_until = Some(until);
            let grant = ConfirmationGrant {
                confirmation: current.id.clone(),
                until,
                ticket: Some(ticket_digest.clone()),
            };
            (next, Some(grant))
        };
        let settled = on_store(&self.records, move |r| r.settle(&id, &decide)).await?;
        match settled {
            Settled::Now(record) => {
                let confirmed = record.status == ConfirmationStatus::Confirmed;
                if confirmed {
                    // Before anyone hears of it: the agent may invoke at once.
                    let grant = grant_key(key.group, key.visitor.as_str(), &record.agent);
                    self.holders.replace(&grant, connection).await;
                }
                let ticket = confirmed.then(|| Arc::new((connection.to_owned(), ticket)));
                self.announce(&record, ticket).await;
                Ok(record.status)
            }
            Settled::Already(record) => Err(DomainError::ConfirmationSettled(
                record.status.as_str().to_owned(),
            )),
            Settled::Missing => Err(DomainError::ConfirmationNotFound),
        }
    }

    /// Ends `agent`'s confirmation of `key`: its open prompt expires and its
    /// grant ends. True if there was either.
    pub async fn cancel(
        self: &Arc<Self>,
        key: VisitorKey,
        agent: &str,
    ) -> Result<bool, DomainError> {
        let open: Vec<String> = self
            .prompts_for(&key)
            .iter()
            .filter(|p| p.agent == agent)
            .map(|p| p.id.clone())
            .collect();
        let mut ended = false;
        for id in open {
            ended |= matches!(self.expire(id, false).await?, Settled::Now(_));
        }
        let grant = grant_key(key.group, key.visitor.as_str(), agent);
        self.holders.drop_grant(&grant).await;
        ended |= on_store(&self.records, move |r| r.remove_grant(&grant)).await?;
        Ok(ended)
    }

    pub(super) fn arm_timer(self: &Arc<Self>, id: String, after_ms: u64) {
        let this = self.clone();
        actix::spawn(async move {
            actix::clock::sleep(Duration::from_millis(after_ms)).await;
            if let Err(e) = this.expire(id, true).await {
                tracing::error!(error = %e, "cannot expire a confirmation prompt");
            }
        });
    }

    /// Expires a prompt if it is still pending.
    pub(super) async fn expire(
        self: &Arc<Self>,
        id: String,
        counts: bool,
    ) -> Result<Settled, DomainError> {
        self.settle(id, move |current| {
            let mut next = current.clone();
            next.status = ConfirmationStatus::Expired;
            next.counts_as_failure = counts;
            (next, None)
        })
        .await
    }

    /// Settles through the store's compare-and-swap, then tells everyone.
    async fn settle(
        self: &Arc<Self>,
        id: String,
        decide: impl Fn(&ConfirmationRecord) -> (ConfirmationRecord, Option<ConfirmationGrant>)
            + Send
            + 'static,
    ) -> Result<Settled, DomainError> {
        let settled = on_store(&self.records, move |r| r.settle(&id, &decide)).await?;
        if let Settled::Now(record) = &settled {
            self.announce(record, None).await;
        }
        Ok(settled)
    }

    /// Tells the asking agent and the visitor's sockets how a prompt ended;
    /// `ticket` is (connection, ticket) for the one that confirmed it.
    async fn announce(&self, record: &ConfirmationRecord, ticket: Option<Arc<(String, String)>>) {
        let Ok(key) = key_of(record) else { return };
        self.open.remove_if_mut(&key, |_, prompts| {
            prompts.retain(|p| p.id != record.id);
            prompts.is_empty()
        });
        self.share_prompt(record, false).await;
        let locked = match record.counts_as_failure {
            true => self
                .failures
                .record(&key, self.clock.now_ms())
                .await
                .unwrap_or_else(|e| {
                    tracing::error!(error = %e, "cannot count a failed confirmation");
                    false
                }),
            false => false,
        };
        if locked {
            tracing::warn!(
                visitor = %key,
                "{FAILURE_LIMIT} failed confirmations: prompts refused for {} min",
                LOCK_MS / 60_000
            );
        }
        tracing::info!(
            confirmation = %record.id, visitor = %key, status = record.status.as_str(),
            "confirmation settled"
        );
        self.metrics.confirmation_settled(record.status.as_str());
        if let Some(outbox) = self.webhooks.get() {
            // In the outbox before the agent hears of it.
            let event = WebhookEvent::confirmation(record, self.clock.now_ms());
            outbox.emit_durable(event).await;
        }
        self.agents.confirmation_settled(record);
        let (id, status) = (record.id.clone(), record.status);
        self.registry
            .broadcast(&key, &|| VisitorCommand::PromptClosed {
                id: id.clone(),
                status,
                ticket: ticket.clone(),
            });
    }
}
