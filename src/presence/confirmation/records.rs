//! Where prompts and grants are kept: the [`ConfirmationRecords`] seam,
//! and its single-node implementation, the store's `confirmations` and
//! `confirmation_grants` trees (see [`crate::store`]).

use crate::store::{ConfirmationGrant, ConfirmationRecord, Settled, Store, StoreError};

/// How a pending prompt settles: its next record, and the grant a correct
/// answer creates.
pub type Decide<'a> =
    &'a dyn Fn(&ConfirmationRecord) -> (ConfirmationRecord, Option<ConfirmationGrant>);

/// Confirmation prompts by id, and the live (group, visitor, agent) grants
/// the invoke gate reads. Every write is durable before it returns; the
/// calls may block, so the service runs them off the async workers.
///
/// A Redis implementation keeps `confirmation:{id}` → the record, expiring
/// `confirm_timeout_ms` + `confirmation_ttl_secs` after it was created, and
/// `confirmation_grant:{group}/{visitor}/{agent}` → the grant, expiring at
/// its `until`; `settle` is one script that checks the prompt is still
/// pending before it writes the outcome and the grant, so of two nodes
/// settling one prompt exactly one wins.
///
/// `grant` and `grants_of` are also read synchronously by the invoke gate
/// and at hello (sled reads, served from its cache). The Redis
/// implementation ([`super::RedisConfirmationRecords`]) serves those from a
/// node-local replica of the grants, kept current by broadcasts that are
/// awaited before a write returns, and re-read on every reconnection.
pub trait ConfirmationRecords: Send + Sync {
    /// Stores a new prompt.
    fn put_prompt(&self, record: &ConfirmationRecord) -> Result<(), StoreError>;

    /// The prompt with this id.
    fn prompt(&self, id: &str) -> Result<Option<ConfirmationRecord>, StoreError>;

    /// Every prompt still pending (to re-arm timers after a restart).
    fn pending_prompts(&self) -> Result<Vec<ConfirmationRecord>, StoreError>;

    /// Settles a pending prompt atomically: only if it is still pending is
    /// `decide`'s outcome (and grant) written. Of two racing calls exactly
    /// one gets [`Settled::Now`].
    fn settle(&self, id: &str, decide: Decide<'_>) -> Result<Settled, StoreError>;

    /// The grant under `key` ([`crate::store::grant_key`]), live or not.
    fn grant(&self, key: &str) -> Result<Option<ConfirmationGrant>, StoreError>;

    /// Every grant of a visitor, by grant key (one per agent).
    fn grants_of(
        &self,
        groupid: u64,
        visitorid: &str,
    ) -> Result<Vec<(String, ConfirmationGrant)>, StoreError>;

    /// Ends a grant; true if there was one.
    fn remove_grant(&self, key: &str) -> Result<bool, StoreError>;

    /// Deletes grants that ended before `now_secs` and settled prompts
    /// created before `settled_cutoff_ms`; returns how many.
    fn sweep(&self, now_secs: u64, settled_cutoff_ms: u64) -> Result<usize, StoreError>;

    /// Whether other nodes share these records (cluster mode): then every
    /// node also times out overdue prompts, so a prompt whose node died
    /// still ends.
    fn shared(&self) -> bool {
        false
    }
}

/// The single-node records: sled, settled by one transaction.
impl ConfirmationRecords for Store {
    fn put_prompt(&self, record: &ConfirmationRecord) -> Result<(), StoreError> {
        self.put_confirmation(record)
    }

    fn prompt(&self, id: &str) -> Result<Option<ConfirmationRecord>, StoreError> {
        self.confirmation(id)
    }

    fn pending_prompts(&self) -> Result<Vec<ConfirmationRecord>, StoreError> {
        self.pending_confirmations()
    }

    fn settle(&self, id: &str, decide: Decide<'_>) -> Result<Settled, StoreError> {
        self.settle_confirmation(id, decide)
    }

    fn grant(&self, key: &str) -> Result<Option<ConfirmationGrant>, StoreError> {
        self.confirmation_grant(key)
    }

    fn grants_of(
        &self,
        groupid: u64,
        visitorid: &str,
    ) -> Result<Vec<(String, ConfirmationGrant)>, StoreError> {
        self.confirmation_grants_of(groupid, visitorid)
    }

    fn remove_grant(&self, key: &str) -> Result<bool, StoreError> {
        self.remove_confirmation_grant(key)
    }

    fn sweep(&self, now_secs: u64, settled_cutoff_ms: u64) -> Result<usize, StoreError> {
        self.sweep_confirmations(now_secs, settled_cutoff_ms)
    }
}
