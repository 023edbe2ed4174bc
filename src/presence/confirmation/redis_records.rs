//! Cluster mode's [`ConfirmationRecords`]: prompts and grants in Redis,
//! shared by every node.
//!
//! Layout (every key under `{prefix}:`):
//! - `confirmation:{id}` → the record (JSON), expiring `confirm_timeout_ms`
//!   + `confirmation_ttl_secs` after it was written;
//! - `confirmations:pending` → sorted set of pending prompt ids by
//!   deadline (Unix ms), so any node can time out the prompts of a node
//!   that died;
//! - `confirmation_grant:{group}/{visitor}/{agent}` → the grant (JSON),
//!   expiring at its `until`.
//!
//! `settle` reads the pending record, lets `decide` compute the outcome,
//! and writes it with one script that compares the stored record with the
//! one read (compare-and-swap) before writing the outcome, the grant and
//! dropping the id from the pending set: of two nodes settling one prompt
//! exactly one wins, the other sees [`Settled::Already`].
//!
//! `grant` and `grants_of` are read synchronously by the invoke gate, by
//! views and at hello, so they are served from a **node-local replica** of
//! the grants: every grant write or removal updates the replica of the
//! writing node, then is broadcast (`confirm_grant`) and the broadcast is
//! awaited before the call returns, so every node's subscriber has the
//! change queued before the agent or the visitor hears of the outcome. The
//! replica is re-read from Redis after every (re)connection of the
//! subscriber. The other methods run on the blocking pool (`run_blocking`).

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::AsyncCommands;
use serde_json::{json, Value};

use super::records::{ConfirmationRecords, Decide};
use crate::infra::error::SharedStateUnavailable;
use crate::store::cluster::{scan_values, ClusterLink, ReplicaMap};
use crate::store::{
    ConfirmationGrant, ConfirmationRecord, ConfirmationStatus, Settled, StoreError,
};

/// Control broadcast kind of grant changes.
const GRANT_KIND: &str = "confirm_grant";

/// Compare-and-swap of a prompt: KEYS record, pending set, grant; ARGV
/// expected record, next record, grant ('' for none), id, grant TTL (s).
static SETTLE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local cur = redis.call('GET', KEYS[1])
if not cur then return {0, ''} end
if cur ~= ARGV[1] then return {2, cur} end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
redis.call('ZREM', KEYS[2], ARGV[4])
if ARGV[3] ~= '' then
  redis.call('SET', KEYS[3], ARGV[3], 'EX', tonumber(ARGV[5]))
end
return {1, ''}
",
    )
});

/// Prompts and grants in Redis; grants also in a node-local replica.
pub struct RedisConfirmationRecords {
    link: ClusterLink,
    clock: crate::infra::clock::SharedClock,
    /// How long a prompt record lives (ms).
    record_ttl_ms: u64,
    grants: ReplicaMap<String, ConfirmationGrant>,
}

fn corrupt(reason: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        tree: "confirmations",
        reason: reason.to_string(),
    }
}

/// Waits, on the blocking pool, for a future run on the link's runtime.
pub(super) fn wait_on<T: Send + 'static>(
    link: &ClusterLink,
    fut: impl std::future::Future<Output = Result<T, SharedStateUnavailable>> + Send + 'static,
) -> Result<T, SharedStateUnavailable> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    link.runtime().spawn(async move {
        let _ = tx.send(fut.await);
    });
    let limit = Duration::from_millis(link.config().redis_timeout_ms.saturating_mul(2) + 100);
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| Err(SharedStateUnavailable("the Redis runtime stopped".into())))
}

impl RedisConfirmationRecords {
    /// Records through `link`; prompts live `record_ttl_ms` in Redis.
    /// Registers the replica's broadcast handler and reload hook (before
    /// the link starts).
    pub fn new(
        link: ClusterLink,
        clock: crate::infra::clock::SharedClock,
        record_ttl_ms: u64,
    ) -> Arc<Self> {
        let this = Arc::new(Self {
            link: link.clone(),
            clock,
            record_ttl_ms,
            grants: ReplicaMap::default(),
        });
        let weak = Arc::downgrade(&this);
        let me = link.node_id().to_owned();
        link.on_control(
            GRANT_KIND,
            Arc::new(move |from, body| {
                let Some(this) = weak.upgrade() else { return };
                if from != me {
                    this.apply(body);
                }
            }),
        );
        let weak = Arc::downgrade(&this);
        link.on_connected(Arc::new(move |_first| {
            let Some(this) = weak.upgrade() else { return };
            let runtime = this.link.runtime().clone();
            runtime.spawn(async move {
                if let Err(e) = this.reload().await {
                    tracing::warn!(error = %e.0, "cannot reload the confirmation grants");
                }
            });
        }));
        this
    }

    fn apply(&self, body: &Value) {
        let Some(key) = body.get("key").and_then(Value::as_str) else {
            return;
        };
        match body.get("grant").cloned().map(serde_json::from_value) {
            Some(Ok(grant)) => {
                self.grants.insert(key.to_owned(), grant);
            }
            _ => {
                self.grants.remove(&key.to_owned());
            }
        }
    }

    /// Replaces the replica with every grant in Redis (changes that
    /// arrive meanwhile win: [`ReplicaMap::reload`]).
    async fn reload(&self) -> Result<(), SharedStateUnavailable> {
        let pattern = self.link.key("confirmation_grant:*");
        let prefix = self.link.key("confirmation_grant:");
        let read = async {
            let found = scan_values(&self.link, "confirmation grants", pattern).await?;
            Ok(found
                .into_iter()
                .filter_map(|(k, v)| {
                    let key = k.strip_prefix(&prefix)?.to_owned();
                    Some((key, serde_json::from_str(&v).ok()?))
                })
                .collect())
        };
        self.grants.reload(read).await
    }

    /// Tells every other node about a grant change, waiting for Redis.
    /// The change itself is already in Redis: if the broadcast fails, the
    /// other nodes learn it when their subscriber reconnects and reloads.
    fn tell(&self, key: &str, grant: Option<&ConfirmationGrant>) {
        let body = json!({ "key": key, "grant": grant });
        if let Err(e) = wait_on(&self.link, self.link.broadcast(GRANT_KIND, body)) {
            tracing::warn!(error = %e.0, "cannot broadcast a confirmation grant change");
        }
    }

    fn record_key(&self, id: &str) -> String {
        self.link.key(&format!("confirmation:{id}"))
    }

    fn get_raw(&self, id: &str) -> Result<Option<String>, StoreError> {
        let key = self.record_key(id);
        Ok(self
            .link
            .run_blocking("confirmation", move |mut conn| async move {
                conn.get::<_, Option<String>>(key).await
            })?)
    }
}

fn parse(raw: &str) -> Result<ConfirmationRecord, StoreError> {
    serde_json::from_str(raw).map_err(corrupt)
}

impl ConfirmationRecords for RedisConfirmationRecords {
    fn put_prompt(&self, record: &ConfirmationRecord) -> Result<(), StoreError> {
        let bytes = serde_json::to_string(record).map_err(corrupt)?;
        let (key, pending) = (
            self.record_key(&record.id),
            self.link.key("confirmations:pending"),
        );
        let (id, deadline, ttl) = (record.id.clone(), record.deadline_ms, self.record_ttl_ms);
        self.link
            .run_blocking("confirmation put", move |mut conn| async move {
                redis::pipe()
                    .atomic()
                    .cmd("SET")
                    .arg(&key)
                    .arg(bytes)
                    .arg("PX")
                    .arg(ttl.max(1))
                    .ignore()
                    .cmd("ZADD")
                    .arg(&pending)
                    .arg(deadline)
                    .arg(id)
                    .ignore()
                    .query_async::<()>(&mut conn)
                    .await
            })?;
        Ok(())
    }

    fn prompt(&self, id: &str) -> Result<Option<ConfirmationRecord>, StoreError> {
        self.get_raw(id)?.as_deref().map(parse).transpose()
    }

    fn pending_prompts(&self) -> Result<Vec<ConfirmationRecord>, StoreError> {
        let pending = self.link.key("confirmations:pending");
        let prefix = self.link.key("confirmation:");
        let raws: Vec<Option<String>> =
            self.link
                .run_blocking("confirmations pending", move |mut conn| async move {
                    let ids: Vec<String> = conn.zrange(&pending, 0, -1).await?;
                    if ids.is_empty() {
                        return Ok(Vec::new());
                    }
                    let keys: Vec<String> = ids.iter().map(|id| format!("{prefix}{id}")).collect();
                    redis::cmd("MGET").arg(keys).query_async(&mut conn).await
                })?;
        Ok(raws
            .into_iter()
            .flatten()
            .filter_map(|raw| parse(&raw).ok())
            .filter(|r| r.status == ConfirmationStatus::Pending)
            .collect())
    }

    fn settle(&self, id: &str, decide: Decide<'_>) -> Result<Settled, StoreError> {
        let mut raw = self.get_raw(id)?;
        for _ in 0..4 {
            let Some(current_raw) = raw.take() else {
                return Ok(Settled::Missing);
            };
            let current = parse(&current_raw)?;
            if current.status != ConfirmationStatus::Pending {
                return Ok(Settled::Already(current));
            }
            let (next, grant) = decide(&current);
            let next_raw = serde_json::to_string(&next).map_err(corrupt)?;
            let grant_key = crate::store::grant_key(next.groupid, &next.visitorid, &next.agent);
            let grant_raw = match &grant {
                Some(g) => serde_json::to_string(g).map_err(corrupt)?,
                None => String::new(),
            };
            let grant_ttl = grant
                .as_ref()
                .map_or(1, |g| g.until.saturating_sub(self.clock.now_secs()).max(1));
            let keys = (
                self.record_key(id),
                self.link.key("confirmations:pending"),
                self.link.key(&format!("confirmation_grant:{grant_key}")),
            );
            let id = id.to_owned();
            let (won, seen): (u8, String) =
                self.link
                    .run_blocking("confirmation settle", move |mut conn| async move {
                        SETTLE
                            .key(keys.0)
                            .key(keys.1)
                            .key(keys.2)
                            .arg(current_raw)
                            .arg(next_raw)
                            .arg(grant_raw)
                            .arg(id)
                            .arg(grant_ttl)
                            .invoke_async(&mut conn)
                            .await
                    })?;
            match won {
                0 => return Ok(Settled::Missing),
                1 => {
                    if let Some(grant) = &grant {
                        self.grants.insert(grant_key.clone(), grant.clone());
                        self.tell(&grant_key, Some(grant));
                    }
                    return Ok(Settled::Now(next));
                }
                _ => raw = Some(seen),
            }
        }
        Err(corrupt("a prompt kept changing while it was settled"))
    }

    fn grant(&self, key: &str) -> Result<Option<ConfirmationGrant>, StoreError> {
        Ok(self.grants.entries().get(key).map(|g| g.clone()))
    }

    fn grants_of(
        &self,
        groupid: u64,
        visitorid: &str,
    ) -> Result<Vec<(String, ConfirmationGrant)>, StoreError> {
        let prefix = format!("{groupid}/{visitorid}/");
        Ok(self
            .grants
            .entries()
            .iter()
            .filter(|e| e.key().starts_with(&prefix))
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect())
    }

    fn remove_grant(&self, key: &str) -> Result<bool, StoreError> {
        let redis_key = self.link.key(&format!("confirmation_grant:{key}"));
        let removed: u64 = self
            .link
            .run_blocking("confirmation grant remove", move |mut conn| async move {
                conn.del(redis_key).await
            })?;
        let had = self.grants.remove(&key.to_owned()).is_some();
        self.tell(key, None);
        Ok(removed > 0 || had)
    }

    fn sweep(&self, now_secs: u64, settled_cutoff_ms: u64) -> Result<usize, StoreError> {
        let before = self.grants.entries().len();
        self.grants.entries().retain(|_, g| g.until > now_secs);
        // Pending ids whose record expired (its node never settled it).
        let pending = self.link.key("confirmations:pending");
        let cutoff = settled_cutoff_ms;
        let dropped: usize = self
            .link
            .run_blocking("confirmations sweep", move |mut conn| async move {
                conn.zrembyscore(pending, 0, cutoff).await
            })?;
        Ok(before - self.grants.entries().len() + dropped)
    }

    fn shared(&self) -> bool {
        true
    }
}
