//! Confirmation prompts: proof that the browser receiving an agent's
//! commands belongs to the person on the phone.
//!
//! An agent starts a prompt; the visitor's sockets show a few numbered
//! buttons and the agent reads out which one to press. A correct answer
//! grants that agent (and no other) the (group, visitor) pair for
//! `confirmation_ttl_secs`; a wrong answer, a decline or a timeout ends the
//! prompt and counts toward the visitor's failure lock.
//!
//! Prompts and grants live in sled (see [`crate::store`]), so a grant
//! survives page navigation and restarts. A prompt is settled by one atomic
//! compare-and-swap in the store, flushed before the agent or the visitor
//! hears the outcome, so of two racing answers exactly one counts.
//!
//! Both shared parts are seams chosen at start-up: prompts and grants
//! ([`ConfirmationRecords`]: the store, or Redis in cluster mode) and the
//! failure locks ([`PromptFailureLocks`]: memory, or Redis). In cluster
//! mode the ticket holders are shared too ([`Confirmations::join_cluster`]),
//! and every node times out overdue prompts, so a prompt whose node died
//! still ends (through the same atomic settle: exactly once).

mod card;
mod choices;
mod cluster_prompts;
mod cluster_tickets;
mod failures;
mod gate;
mod records;
mod redis_failures;
mod redis_records;
mod settle;
mod tickets;

use std::sync::Arc;

use dashmap::DashMap;
use serde::{Deserialize, Serialize};

pub use card::card_for;
pub use choices::{DEFAULT_CHOICES, MAX_CHOICES, MIN_CHOICES};
pub use failures::{InMemoryFailureLocks, PromptFailureLocks, FAILURE_LIMIT, LOCK_MS};
pub use records::ConfirmationRecords;
pub use redis_failures::RedisFailureLocks;
pub use redis_records::RedisConfirmationRecords;
pub use tickets::MAX_TICKETS_PER_HELLO;

use crate::infra::clock::SharedClock;
use crate::infra::config::PresenceConfig;
use crate::infra::error::{off_thread, DomainError};
use crate::infra::ids::{random_id, VisitorKey};
use crate::infra::metrics::Metrics;
use crate::presence::events::EventBus;
use crate::presence::registry::{PresenceDirectory, Prompt, VisitorCommand};
use crate::store::{grant_key, ConfirmationRecord, StoreError};
pub use crate::store::{AgentCard, ConfirmationStatus};
use tickets::TicketHolders;

/// Prompts one visitor may have open at once (one per agent).
pub const MAX_PROMPTS_PER_VISITOR: usize = 8;

/// What an agent asks for when it starts a prompt.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmOptions {
    /// Number of buttons, 2 to 9 (default 3).
    #[serde(
        default,
        deserialize_with = "crate::infra::json_integer::optional_usize"
    )]
    #[schema(minimum = 2, maximum = 9)]
    pub choices: Option<usize>,
    /// Who the visitor is told is asking; defaults to the agent's
    /// configured name.
    #[serde(default)]
    pub agent: Option<AgentCard>,
}

/// The agent's view of a started prompt: the answer to read out.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Started {
    pub confirmation: String,
    pub answer: String,
    pub choices: Vec<String>,
    /// Unix seconds.
    pub expires: u64,
}

/// A prompt as its agent may poll it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConfirmationView {
    pub confirmation: String,
    pub visitorid: String,
    #[schema(value_type = crate::store::ConfirmationStatus)]
    pub status: &'static str,
    /// When an unanswered prompt expires (Unix seconds).
    pub expires: u64,
    /// Until when a live confirmation lets the agent invoke.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirmed_until: Option<u64>,
}

/// The confirmation service.
pub struct Confirmations {
    records: Arc<dyn ConfirmationRecords>,
    clock: SharedClock,
    registry: Arc<dyn PresenceDirectory>,
    agents: Arc<dyn EventBus>,
    metrics: Arc<Metrics>,
    ttl_secs: u64,
    timeout_ms: u64,
    /// Open prompts by visitor, so a new socket (a page navigation) shows
    /// them again.
    open: DashMap<VisitorKey, Vec<Arc<Prompt>>>,
    failures: Arc<dyn PromptFailureLocks>,
    /// Which connections hold which grant's ticket.
    holders: Arc<TicketHolders>,
    /// Cluster mode: the link open prompts are shared through.
    cluster: std::sync::OnceLock<crate::store::cluster::ClusterLink>,
    /// Where settled prompts go as `confirmation` webhook events.
    webhooks: std::sync::OnceLock<Arc<crate::presence::webhooks::Outbox>>,
}

/// Runs a call of the records off the async workers (it may flush to disk).
async fn on_store<T: Send + 'static>(
    records: &Arc<dyn ConfirmationRecords>,
    call: impl FnOnce(&dyn ConfirmationRecords) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, DomainError> {
    let records = records.clone();
    off_thread("confirmation store", move || call(records.as_ref())).await
}

impl Confirmations {
    /// Prompts and grants are kept in `records`, failure locks in
    /// `failures`.
    pub fn new(
        records: Arc<dyn ConfirmationRecords>,
        failures: Arc<dyn PromptFailureLocks>,
        clock: SharedClock,
        registry: Arc<dyn PresenceDirectory>,
        agents: Arc<dyn EventBus>,
        metrics: Arc<Metrics>,
        presence: &PresenceConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            records,
            clock,
            registry,
            agents,
            metrics,
            ttl_secs: presence.confirmation_ttl_secs,
            timeout_ms: presence.confirm_timeout_ms,
            open: DashMap::new(),
            failures,
            holders: Arc::default(),
            cluster: std::sync::OnceLock::new(),
            webhooks: std::sync::OnceLock::new(),
        })
    }

    /// Re-arms the prompts left pending by the previous run; those whose
    /// deadline passed while the server was down expire now (without
    /// counting against the visitor, who could not answer).
    pub async fn resume(self: &Arc<Self>) -> Result<usize, StoreError> {
        let records = self.records.clone();
        let pending = crate::infra::error::on_blocking_pool("confirmation store", move || {
            records.pending_prompts()
        })
        .await
        .map_err(|e| StoreError::Corrupt {
            tree: "confirmations",
            reason: e.to_string(),
        })??;
        if self.records.shared() {
            self.time_out_overdue();
        }
        let now = self.clock.now_ms();
        let count = pending.len();
        for record in pending {
            if record.deadline_ms <= now {
                let this = self.clone();
                actix::spawn(async move { this.expire(record.id, false).await });
            } else {
                let Ok(key) = key_of(&record) else { continue };
                let prompt = Arc::new(prompt_of(&record));
                self.open.entry(key).or_default().push(prompt);
                self.arm_timer(record.id, record.deadline_ms - now);
            }
        }
        Ok(count)
    }

    /// The prompts a visitor's new socket should show.
    pub fn prompts_for(&self, key: &VisitorKey) -> Vec<Arc<Prompt>> {
        self.open.get(key).map(|p| p.clone()).unwrap_or_default()
    }

    /// Starts a prompt for `key` on behalf of `agent`, replacing that
    /// agent's open prompt for the visitor if it has one.
    pub async fn start(
        self: &Arc<Self>,
        key: VisitorKey,
        agent: &str,
        card: AgentCard,
        count: Option<usize>,
    ) -> Result<Started, DomainError> {
        let count = count.unwrap_or(DEFAULT_CHOICES);
        if !(MIN_CHOICES..=MAX_CHOICES).contains(&count) {
            return Err(DomainError::BadRequest(format!(
                "choices must be {MIN_CHOICES} to {MAX_CHOICES}"
            )));
        }
        let now = self.clock.now_ms();
        if let Some(ms) = self.failures.locked_for(&key, now).await? {
            return Err(DomainError::TooManyAttempts(ms.div_ceil(1000)));
        }
        if !self.registry.lookup(&key).online {
            return Err(DomainError::not_present());
        }
        let open = self.prompts_for(&key);
        let replaced: Vec<String> = open
            .iter()
            .filter(|p| p.agent == agent)
            .map(|p| p.id.clone())
            .collect();
        if replaced.is_empty() && open.len() >= MAX_PROMPTS_PER_VISITOR {
            return Err(DomainError::TooManyPrompts(MAX_PROMPTS_PER_VISITOR));
        }
        let (choices, answer) = choices::draw(count);
        let record = ConfirmationRecord {
            id: random_id(16),
            groupid: key.group,
            visitorid: key.visitor.as_str().to_owned(),
            agent: agent.to_owned(),
            card,
            answer: choices[answer].clone(),
            choices,
            created_ms: now,
            deadline_ms: now + self.timeout_ms,
            status: ConfirmationStatus::Pending,
            counts_as_failure: false,
            confirmed_until: None,
        };
        let stored = record.clone();
        on_store(&self.records, move |r| r.put_prompt(&stored)).await?;
        for id in replaced {
            let this = self.clone();
            actix::spawn(async move { this.expire(id, false).await });
        }
        let prompt = Arc::new(prompt_of(&record));
        self.open
            .entry(key.clone())
            .or_default()
            .push(prompt.clone());
        self.share_prompt(&record, true).await;
        self.arm_timer(record.id.clone(), self.timeout_ms);
        self.registry
            .broadcast(&key, &|| VisitorCommand::Prompt(prompt.clone()));
        tracing::info!(
            confirmation = %record.id, visitor = %key, agent,
            "confirmation prompt started"
        );
        Ok(Started {
            confirmation: record.id,
            answer: record.answer,
            choices: record.choices,
            expires: record.deadline_ms.div_ceil(1000),
        })
    }

    /// The prompt `id` as its agent sees it; any other agent, or another
    /// visitor's path, gets `confirmation_not_found`.
    pub async fn view(
        self: &Arc<Self>,
        key: VisitorKey,
        agent: &str,
        id: String,
    ) -> Result<ConfirmationView, DomainError> {
        let grant = grant_key(key.group, key.visitor.as_str(), agent);
        let (record, grant) = on_store(&self.records, move |r| {
            Ok((r.prompt(&id)?, r.grant(&grant)?))
        })
        .await?;
        let Some(record) = record.filter(|r| belongs_to(r, &key) && r.agent == agent) else {
            return Err(DomainError::ConfirmationNotFound);
        };
        let now_secs = self.clock.now_secs();
        let status = match record.status {
            ConfirmationStatus::Pending if self.clock.now_ms() > record.deadline_ms => {
                ConfirmationStatus::Expired
            }
            // A confirmation ends when its grant does (its lifetime, DELETE,
            // or a newer confirmation of the same pair).
            ConfirmationStatus::Confirmed
                if !grant.is_some_and(|g| g.confirmation == record.id && g.until > now_secs) =>
            {
                ConfirmationStatus::Expired
            }
            status => status,
        };
        Ok(ConfirmationView {
            confirmation: record.id,
            visitorid: record.visitorid,
            status: status.as_str(),
            expires: record.deadline_ms.div_ceil(1000),
            confirmed_until: record
                .confirmed_until
                .filter(|_| status == ConfirmationStatus::Confirmed),
        })
    }

    /// Cluster mode: every second, expires the prompts whose deadline
    /// passed, whichever node started them (their own timer may have died
    /// with that node). The settle is atomic, so a prompt ends once.
    fn time_out_overdue(self: &Arc<Self>) {
        let this = Arc::downgrade(self);
        actix::spawn(async move {
            loop {
                actix::clock::sleep(std::time::Duration::from_secs(1)).await;
                let Some(this) = this.upgrade() else { return };
                let now = this.clock.now_ms();
                let pending = on_store(&this.records, |r| r.pending_prompts()).await;
                let Ok(pending) = pending else { continue };
                for record in pending.into_iter().filter(|r| r.deadline_ms < now) {
                    if let Err(e) = this.expire(record.id, true).await {
                        tracing::warn!(error = %e, "cannot expire an overdue prompt");
                    }
                }
            }
        });
    }

    /// Drops ended grants, old settled prompts and stale failure counts.
    pub fn sweep(&self) -> Result<usize, StoreError> {
        let now_ms = self.clock.now_ms();
        let keep_ms = self.ttl_secs * 1000 + self.timeout_ms;
        let swept = self
            .records
            .sweep(now_ms / 1000, now_ms.saturating_sub(keep_ms))?;
        Ok(swept + self.failures.sweep(now_ms))
    }
}

fn key_of(record: &ConfirmationRecord) -> Result<VisitorKey, String> {
    Ok(VisitorKey::new(
        record.groupid,
        crate::infra::ids::VisitorId::parse(&record.visitorid)?,
    ))
}

fn belongs_to(record: &ConfirmationRecord, key: &VisitorKey) -> bool {
    record.groupid == key.group && record.visitorid == key.visitor.as_str()
}

fn prompt_of(record: &ConfirmationRecord) -> Prompt {
    Prompt {
        id: record.id.clone(),
        agent: record.agent.clone(),
        card: record.card.clone(),
        choices: record.choices.clone(),
        expires: record.deadline_ms.div_ceil(1000),
    }
}

#[cfg(test)]
mod tests;
