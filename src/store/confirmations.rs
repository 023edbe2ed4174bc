//! The confirmation trees: prompts by id, and the confirmed
//! (group, visitor, agent) grants the invoke gate reads.
//!
//! A prompt is settled exactly once: [`Store::settle_confirmation`] reads
//! the record, checks it is still pending and writes its outcome (and any
//! grant) in one sled transaction, the compare-and-swap that decides a race
//! between two answers. Everything is flushed before the caller is told.

use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use super::{decode, encode, Store, StoreError, TREE_CONFIRMATIONS, TREE_GRANTS};

/// Where a confirmation prompt stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConfirmationStatus {
    Pending,
    Confirmed,
    Rejected,
    Declined,
    Expired,
}

impl ConfirmationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConfirmationStatus::Pending => "pending",
            ConfirmationStatus::Confirmed => "confirmed",
            ConfirmationStatus::Rejected => "rejected",
            ConfirmationStatus::Declined => "declined",
            ConfirmationStatus::Expired => "expired",
        }
    }
}

/// Who the visitor is told is asking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentCard {
    /// 1 to 100 printable characters, not only spaces.
    #[schema(
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$",
        example = "Fred Agent"
    )]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        max_length = 254,
        pattern = r"^[!-?A-~]+@[!-~]+$",
        example = "fred@shop.example"
    )]
    pub email: Option<String>,
    /// Digits (at least 3), spaces and `-().`, with an optional leading `+`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        max_length = 32,
        pattern = r"^\+?[ ().\-]*([0-9][ ().\-]*){3,}$",
        example = "+1 555 0100"
    )]
    pub phone: Option<String>,
}

/// One confirmation prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfirmationRecord {
    pub id: String,
    pub groupid: u64,
    pub visitorid: String,
    /// The asking agent's username (`sub`); only it may use the outcome.
    pub agent: String,
    pub card: AgentCard,
    pub choices: Vec<String>,
    pub answer: String,
    pub created_ms: u64,
    /// When an unanswered prompt expires (Unix ms).
    pub deadline_ms: u64,
    pub status: ConfirmationStatus,
    /// Whether the visitor's failure counts toward its lock (wrong answer,
    /// decline, timeout), as opposed to the agent ending it.
    #[serde(default)]
    pub counts_as_failure: bool,
    /// Until when a confirmed pair lets the agent invoke (Unix seconds).
    #[serde(default)]
    pub confirmed_until: Option<u64>,
}

/// A live confirmed pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfirmationGrant {
    /// The confirmation that granted it.
    pub confirmation: String,
    /// Unix seconds.
    pub until: u64,
    /// SHA-256 (hex) of the ticket handed to the connection that answered;
    /// grants from before tickets have none, and no holder.
    #[serde(default)]
    pub ticket: Option<String>,
}

/// What [`Store::settle_confirmation`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// This call settled it; the record as written.
    Now(ConfirmationRecord),
    /// It was settled before; the record as it stands.
    Already(ConfirmationRecord),
    /// No such confirmation.
    Missing,
}

/// The key of a grant. Group ids are numbers and visitor ids cannot hold
/// `/`, so the key parses back unambiguously whatever the username holds.
pub fn grant_key(groupid: u64, visitorid: &str, agent: &str) -> String {
    format!("{groupid}/{visitorid}/{agent}")
}

impl Store {
    /// Stores a new prompt, flushed before the visitor or agent hears of it.
    pub fn put_confirmation(&self, record: &ConfirmationRecord) -> Result<(), StoreError> {
        let bytes = encode(TREE_CONFIRMATIONS, record)?;
        self.with(|t| {
            t.confirmations.insert(record.id.as_bytes(), bytes)?;
            t.confirmations.flush()?;
            Ok(())
        })
    }

    /// The prompt with this id.
    pub fn confirmation(&self, id: &str) -> Result<Option<ConfirmationRecord>, StoreError> {
        self.with(|t| {
            t.confirmations
                .get(id.as_bytes())?
                .map(|v| decode(TREE_CONFIRMATIONS, &v))
                .transpose()
        })
    }

    /// Every prompt still pending (to re-arm timers after a restart).
    pub fn pending_confirmations(&self) -> Result<Vec<ConfirmationRecord>, StoreError> {
        self.with(|t| {
            let mut out = Vec::new();
            for value in t.confirmations.iter().values() {
                let record: ConfirmationRecord = decode(TREE_CONFIRMATIONS, &value?)?;
                if record.status == ConfirmationStatus::Pending {
                    out.push(record);
                }
            }
            Ok(out)
        })
    }

    /// Settles a pending prompt: one transaction reads it, and only if it is
    /// still pending writes `decide`'s outcome and grant. Flushed before
    /// returning. Of two racing calls exactly one gets [`Settled::Now`].
    pub fn settle_confirmation(
        &self,
        id: &str,
        decide: impl Fn(&ConfirmationRecord) -> (ConfirmationRecord, Option<ConfirmationGrant>),
    ) -> Result<Settled, StoreError> {
        self.with(|t| {
            let outcome = (&t.confirmations, &t.grants).transaction(|(records, grants)| {
                let Some(bytes) = records.get(id.as_bytes())? else {
                    return Ok(Settled::Missing);
                };
                let current: ConfirmationRecord = decode(TREE_CONFIRMATIONS, &bytes)
                    .map_err(ConflictableTransactionError::Abort)?;
                if current.status != ConfirmationStatus::Pending {
                    return Ok(Settled::Already(current));
                }
                let (next, grant) = decide(&current);
                let encoded = encode(TREE_CONFIRMATIONS, &next)
                    .map_err(ConflictableTransactionError::Abort)?;
                records.insert(id.as_bytes(), encoded)?;
                if let Some(grant) = grant {
                    let key = grant_key(next.groupid, &next.visitorid, &next.agent);
                    let encoded =
                        encode(TREE_GRANTS, &grant).map_err(ConflictableTransactionError::Abort)?;
                    grants.insert(key.as_bytes(), encoded)?;
                }
                Ok(Settled::Now(next))
            });
            let outcome = outcome.map_err(|e| match e {
                TransactionError::Abort(e) => e,
                TransactionError::Storage(e) => StoreError::Sled(e),
            })?;
            if matches!(outcome, Settled::Now(_)) {
                t.db.flush()?;
            }
            Ok(outcome)
        })
    }

    /// The grant of a (group, visitor, agent) pair, live or not.
    pub fn confirmation_grant(&self, key: &str) -> Result<Option<ConfirmationGrant>, StoreError> {
        self.with(|t| {
            t.grants
                .get(key.as_bytes())?
                .map(|v| decode(TREE_GRANTS, &v))
                .transpose()
        })
    }

    /// Every grant of a visitor, by grant key (one per agent).
    pub fn confirmation_grants_of(
        &self,
        groupid: u64,
        visitorid: &str,
    ) -> Result<Vec<(String, ConfirmationGrant)>, StoreError> {
        let prefix = format!("{groupid}/{visitorid}/");
        self.with(|t| {
            t.grants
                .scan_prefix(prefix.as_bytes())
                .map(|item| {
                    let (key, value) = item?;
                    Ok((
                        String::from_utf8_lossy(&key).into_owned(),
                        decode(TREE_GRANTS, &value)?,
                    ))
                })
                .collect()
        })
    }

    /// Ends a grant, flushed; true if there was one.
    pub fn remove_confirmation_grant(&self, key: &str) -> Result<bool, StoreError> {
        self.with(|t| {
            let existed = t.grants.remove(key.as_bytes())?.is_some();
            t.grants.flush()?;
            Ok(existed)
        })
    }

    /// Deletes grants that ended before `now_secs` and settled prompts
    /// created before `settled_cutoff_ms`; returns how many.
    pub fn sweep_confirmations(
        &self,
        now_secs: u64,
        settled_cutoff_ms: u64,
    ) -> Result<usize, StoreError> {
        self.with(|t| {
            let mut removed = 0;
            for item in t.grants.iter() {
                let (key, value) = item?;
                let grant: ConfirmationGrant = decode(TREE_GRANTS, &value)?;
                if grant.until <= now_secs {
                    t.grants.remove(key)?;
                    removed += 1;
                }
            }
            for item in t.confirmations.iter() {
                let (key, value) = item?;
                let record: ConfirmationRecord = decode(TREE_CONFIRMATIONS, &value)?;
                if record.status != ConfirmationStatus::Pending
                    && record.created_ms < settled_cutoff_ms
                {
                    t.confirmations.remove(key)?;
                    removed += 1;
                }
            }
            t.db.flush()?;
            Ok(removed)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    fn pending(id: &str) -> ConfirmationRecord {
        ConfirmationRecord {
            id: id.into(),
            groupid: 72,
            visitorid: "v-1".into(),
            agent: "fred".into(),
            card: AgentCard {
                name: "Fred".into(),
                email: None,
                phone: None,
            },
            choices: vec!["12".into(), "47".into()],
            answer: "12".into(),
            created_ms: 1_000,
            deadline_ms: 2_000,
            status: ConfirmationStatus::Pending,
            counts_as_failure: false,
            confirmed_until: None,
        }
    }

    fn confirm(r: &ConfirmationRecord) -> (ConfirmationRecord, Option<ConfirmationGrant>) {
        let mut next = r.clone();
        next.status = ConfirmationStatus::Confirmed;
        next.confirmed_until = Some(99);
        let grant = ConfirmationGrant {
            confirmation: r.id.clone(),
            until: 99,
            ticket: None,
        };
        (next, Some(grant))
    }

    #[test]
    fn a_prompt_settles_once_and_its_grant_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            store.put_confirmation(&pending("c1")).expect("put");
            assert!(matches!(
                store.settle_confirmation("c1", confirm).expect("settle"),
                Settled::Now(_)
            ));
            let again = store.settle_confirmation("c1", confirm).expect("settle");
            assert!(
                matches!(&again, Settled::Already(r) if r.status == ConfirmationStatus::Confirmed)
            );
            assert_eq!(
                store.settle_confirmation("nope", confirm).expect("settle"),
                Settled::Missing
            );
            store.close().expect("close");
        }
        let store = Store::open(dir.path()).expect("reopen");
        let grant = store
            .confirmation_grant(&grant_key(72, "v-1", "fred"))
            .expect("read")
            .expect("grant");
        assert_eq!((grant.confirmation.as_str(), grant.until), ("c1", 99));
        assert!(store.pending_confirmations().expect("scan").is_empty());
        assert_eq!(store.sweep_confirmations(100, 1_001).expect("sweep"), 2);
    }

    #[test]
    fn racing_settlements_have_exactly_one_winner() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(dir.path()).expect("open"));
        for round in 0..20 {
            let id = format!("c{round}");
            store.put_confirmation(&pending(&id)).expect("put");
            let barrier = Arc::new(Barrier::new(4));
            let winners: usize = (0..4)
                .map(|_| {
                    let (store, barrier, id) = (store.clone(), barrier.clone(), id.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        matches!(
                            store.settle_confirmation(&id, confirm).expect("settle"),
                            Settled::Now(_)
                        )
                    })
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|h| usize::from(h.join().expect("thread")))
                .sum();
            assert_eq!(winners, 1, "round {round}");
        }
    }
}
