//! The webhook trees: the outbox of deliveries not yet made, and the dead
//! letters that gave up.
//!
//! - `webhook_outbox`: big-endian sequence (sled's `generate_id`, unique
//!   and increasing across restarts) → [`OutboxDelivery`]. A range scan
//!   walks deliveries in the order their events happened, so the delivery
//!   worker rebuilds each (receiver, visitor) lane in order after a
//!   restart.
//! - `webhook_dead_letters`: big-endian group + sequence → [`DeadLetter`],
//!   so one group's letters are one prefix scan, oldest first.
//!
//! Every write is flushed before the method returns: an event is on disk
//! before its first delivery attempt, and a delivery leaves the outbox only
//! after its receiver acknowledged it.

use serde::{Deserialize, Serialize};
use sled::transaction::{TransactionError, Transactional};

use super::{decode, encode, Store, StoreError, TREE_WEBHOOK_DEAD, TREE_WEBHOOK_OUTBOX};

/// One event for one receiver, as the outbox keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxDelivery {
    /// The outbox key (assigned by [`Store::enqueue_webhooks`]).
    pub seq: u64,
    /// The event's id, the same for every receiver and every attempt.
    pub event_id: String,
    pub event_type: String,
    pub groupid: u64,
    pub visitorid: String,
    /// The receiver.
    pub url: String,
    /// The JSON body, exactly as it is signed and sent.
    pub body: String,
    /// Unix ms it was queued; the retry horizon counts from here.
    pub created_ms: u64,
    pub attempts: u32,
    /// Unix ms of the next attempt.
    pub next_attempt_ms: u64,
    #[serde(default)]
    pub last_error: Option<String>,
}

/// A delivery that gave up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub delivery: OutboxDelivery,
    /// Unix ms it gave up.
    pub failed_ms: u64,
    /// `horizon`, `outbox_full` or `unsubscribed`.
    pub reason: String,
}

fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

fn dead_key(group: u64, seq: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&group.to_be_bytes());
    key[8..].copy_from_slice(&seq.to_be_bytes());
    key
}

fn unwrap_tx<T>(r: Result<T, TransactionError<StoreError>>) -> Result<T, StoreError> {
    r.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => StoreError::Sled(e),
    })
}

impl Store {
    /// Queues deliveries (their `seq` is assigned here, in the order
    /// given) and flushes; returns them as stored.
    pub fn enqueue_webhooks(
        &self,
        mut deliveries: Vec<OutboxDelivery>,
    ) -> Result<Vec<OutboxDelivery>, StoreError> {
        self.with(|t| {
            let mut batch = sled::Batch::default();
            for delivery in &mut deliveries {
                delivery.seq = t.db.generate_id()?;
                batch.insert(
                    &seq_key(delivery.seq),
                    encode(TREE_WEBHOOK_OUTBOX, &*delivery)?,
                );
            }
            t.webhook_outbox.apply_batch(batch)?;
            t.webhook_outbox.flush()?;
            Ok(deliveries)
        })
    }

    /// Every queued delivery, in sequence order.
    pub fn webhook_outbox(&self) -> Result<Vec<OutboxDelivery>, StoreError> {
        self.with(|t| {
            t.webhook_outbox
                .iter()
                .values()
                .map(|v| decode(TREE_WEBHOOK_OUTBOX, &v?))
                .collect()
        })
    }

    /// The queued delivery with this sequence.
    pub fn webhook_delivery(&self, seq: u64) -> Result<Option<OutboxDelivery>, StoreError> {
        self.with(|t| {
            t.webhook_outbox
                .get(seq_key(seq))?
                .map(|v| decode(TREE_WEBHOOK_OUTBOX, &v))
                .transpose()
        })
    }

    /// The receiver acknowledged it: out of the outbox, flushed.
    pub fn webhook_delivered(&self, seq: u64) -> Result<(), StoreError> {
        self.with(|t| {
            t.webhook_outbox.remove(seq_key(seq))?;
            t.webhook_outbox.flush()?;
            Ok(())
        })
    }

    /// Records a failed attempt (attempts, next time, error), flushed.
    pub fn webhook_retry_later(&self, delivery: &OutboxDelivery) -> Result<(), StoreError> {
        let bytes = encode(TREE_WEBHOOK_OUTBOX, delivery)?;
        self.with(|t| {
            t.webhook_outbox.insert(seq_key(delivery.seq), bytes)?;
            t.webhook_outbox.flush()?;
            Ok(())
        })
    }

    /// Moves a delivery (queued or never queued) to the dead letters in one
    /// transaction, then deletes the group's oldest letters beyond `keep`.
    pub fn webhook_dead_letter(&self, letter: &DeadLetter, keep: usize) -> Result<(), StoreError> {
        let bytes = encode(TREE_WEBHOOK_DEAD, letter)?;
        let d = &letter.delivery;
        self.with(|t| {
            let outcome = (&t.webhook_outbox, &t.webhook_dead).transaction(|(outbox, dead)| {
                outbox.remove(&seq_key(d.seq))?;
                dead.insert(&dead_key(d.groupid, d.seq), bytes.clone())?;
                Ok(())
            });
            unwrap_tx(outcome)?;
            let prefix = d.groupid.to_be_bytes();
            let count = t.webhook_dead.scan_prefix(prefix).keys().count();
            for key in t
                .webhook_dead
                .scan_prefix(prefix)
                .keys()
                .take(count.saturating_sub(keep))
            {
                t.webhook_dead.remove(key?)?;
            }
            t.db.flush()?;
            Ok(())
        })
    }

    /// The group's dead letters after sequence `after`, oldest first: at
    /// most `limit`, and whether more follow.
    pub fn webhook_dead_letters(
        &self,
        group: u64,
        after: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<DeadLetter>, bool), StoreError> {
        self.with(|t| {
            let start = dead_key(group, after.map_or(0, |a| a.saturating_add(1)));
            let end = dead_key(group, u64::MAX);
            let mut out = Vec::new();
            for item in t.webhook_dead.range(start..=end) {
                let (_, value) = item?;
                if out.len() == limit {
                    return Ok((out, true));
                }
                out.push(decode(TREE_WEBHOOK_DEAD, &value)?);
            }
            Ok((out, false))
        })
    }

    /// Moves the group's dead letters (those in `only`, or the oldest
    /// `limit` when `None`) back into the outbox with fresh sequences and
    /// `reset` applied, one transaction each, flushed. Returns the queued
    /// deliveries and whether more letters remain.
    pub fn replay_webhook_dead_letters(
        &self,
        group: u64,
        only: Option<&[u64]>,
        limit: usize,
        reset: impl Fn(&mut OutboxDelivery),
    ) -> Result<(Vec<OutboxDelivery>, bool), StoreError> {
        let (chosen, more) = match only {
            Some(seqs) => {
                let mut found = Vec::new();
                for &seq in seqs.iter().take(limit) {
                    if let Some(v) =
                        self.with(|t| Ok(t.webhook_dead.get(dead_key(group, seq))?))?
                    {
                        found.push(decode::<DeadLetter>(TREE_WEBHOOK_DEAD, &v)?);
                    }
                }
                (found, false)
            }
            None => self.webhook_dead_letters(group, None, limit)?,
        };
        self.with(|t| {
            let mut queued = Vec::with_capacity(chosen.len());
            for letter in chosen {
                let old = letter.delivery.seq;
                let mut delivery = letter.delivery;
                delivery.seq = t.db.generate_id()?;
                reset(&mut delivery);
                let bytes = encode(TREE_WEBHOOK_OUTBOX, &delivery)?;
                let outcome = (&t.webhook_outbox, &t.webhook_dead).transaction(|(outbox, dead)| {
                    if dead.remove(&dead_key(group, old))?.is_none() {
                        // Replayed by a racing call already.
                        return Ok(false);
                    }
                    outbox.insert(&seq_key(delivery.seq), bytes.clone())?;
                    Ok(true)
                });
                if unwrap_tx(outcome.map_err(|e| match e {
                    TransactionError::Abort(()) => TransactionError::Abort(StoreError::Closed),
                    TransactionError::Storage(s) => TransactionError::Storage(s),
                }))? {
                    queued.push(delivery);
                }
            }
            t.db.flush()?;
            Ok((queued, more))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(group: u64, visitor: &str) -> OutboxDelivery {
        OutboxDelivery {
            seq: 0,
            event_id: format!("evt_{visitor}"),
            event_type: "visitor_online".into(),
            groupid: group,
            visitorid: visitor.into(),
            url: "https://example.test/hook".into(),
            body: "{}".into(),
            created_ms: 1,
            attempts: 0,
            next_attempt_ms: 1,
            last_error: None,
        }
    }

    #[test]
    fn outbox_survives_a_reopen_in_order_and_dead_letters_replay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let queued = store
            .enqueue_webhooks(vec![delivery(1, "a"), delivery(1, "b"), delivery(2, "c")])
            .expect("enqueue");
        assert!(queued[0].seq < queued[1].seq && queued[1].seq < queued[2].seq);
        store.close().expect("close");
        let store = Store::open(dir.path()).expect("reopen");
        let outbox = store.webhook_outbox().expect("scan");
        assert_eq!(outbox, queued);

        let letter = DeadLetter {
            delivery: outbox[0].clone(),
            failed_ms: 5,
            reason: "horizon".into(),
        };
        store.webhook_dead_letter(&letter, 10).expect("dead");
        assert_eq!(store.webhook_outbox().expect("scan").len(), 2);
        let (letters, more) = store.webhook_dead_letters(1, None, 10).expect("list");
        assert_eq!((letters.len(), more), (1, false));
        assert!(store
            .webhook_dead_letters(2, None, 10)
            .expect("list")
            .0
            .is_empty());
        // Another group's replay finds nothing.
        let (none, _) = store
            .replay_webhook_dead_letters(2, Some(&[outbox[0].seq]), 10, |_| {})
            .expect("replay");
        assert!(none.is_empty());
        let (back, _) = store
            .replay_webhook_dead_letters(1, None, 10, |d| d.attempts = 0)
            .expect("replay");
        assert_eq!(back.len(), 1);
        assert!(back[0].seq > queued[2].seq, "a replay queues at the end");
        assert!(store
            .webhook_dead_letters(1, None, 10)
            .expect("list")
            .0
            .is_empty());
    }

    #[test]
    fn dead_letters_keep_the_newest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let queued = store
            .enqueue_webhooks((0..5).map(|i| delivery(1, &format!("v{i}"))).collect())
            .expect("enqueue");
        for d in &queued {
            let letter = DeadLetter {
                delivery: d.clone(),
                failed_ms: 5,
                reason: "horizon".into(),
            };
            store.webhook_dead_letter(&letter, 3).expect("dead");
        }
        let (letters, _) = store.webhook_dead_letters(1, None, 10).expect("list");
        let kept: Vec<&str> = letters
            .iter()
            .map(|l| l.delivery.visitorid.as_str())
            .collect();
        assert_eq!(kept, ["v2", "v3", "v4"]);
    }
}
