//! [`RedisSessionKeys`]: cluster mode's session keys, unique per group
//! across every node.
//!
//! Layout (under `{prefix}:`):
//! - `session_key:{group}:{code}` → the holder (JSON: visitor id, online
//!   period, expiry), claimed with `SET NX EX session_key_ttl_secs`, so a
//!   code is unique in its group whichever node mints it, and expires by
//!   itself;
//! - `session_key_mints:{group}` → the group's mint budget, a token bucket
//!   (hash `credit`, `at`) spent by one script, shared by every node.
//!
//! `issue` runs on the blocking pool and talks to Redis. `find` and
//! `not_current` run on request workers and actors, so lookups are served
//! from a **node-local replica** of the live keys: a node that mints a key
//! broadcasts it (`session_key`) and awaits the broadcast before the
//! visitor sees the code, so every node's subscriber has it queued before
//! anyone can read it out to an agent; the replica is re-read from Redis
//! after every (re)connection of the subscriber, once this node has
//! written back its own connections' keys that Redis lacks (a Redis that
//! came back empty). Drops (`not_current`,
//! sweeps) are written and broadcast in the background. A connection's
//! claim on its key is local: a connection lives on one node.

use std::sync::{Arc, LazyLock};

use dashmap::DashMap;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{draw, IssueError, KeyHolder, OnlinePeriod, SessionKey, SessionKeys};
use crate::infra::clock::SharedClock;
use crate::infra::error::SharedStateUnavailable;
use crate::infra::ids::{GroupId, VisitorId, VisitorKey};
use crate::store::cluster::{scan_values, ClusterLink, ReplicaMap};

/// Draws before giving up on finding an unused code.
const MAX_DRAWS: usize = 32;
/// Control broadcast kind of key changes.
const KIND: &str = "session_key";
/// Keys written back per pipeline after a Redis lost them.
const WRITE_BACK_BATCH: usize = 200;

/// KEYS bucket; ARGV per minute, now (ms). 0, or ms until a mint refills.
static MINT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local p = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
local w = 60000
local cap = p * w
local credit = tonumber(redis.call('HGET', KEYS[1], 'credit') or cap)
local at = tonumber(redis.call('HGET', KEYS[1], 'at') or now)
if now > at then
  credit = math.min(cap, credit + (now - at) * p)
  at = now
end
local wait = 0
if credit < w then
  wait = math.ceil((w - credit) / p)
else
  credit = credit - w
end
redis.call('HSET', KEYS[1], 'credit', string.format('%d', credit), 'at', string.format('%d', at))
redis.call('PEXPIRE', KEYS[1], w * 2)
return wait
",
    )
});

/// A key's holder as stored.
#[derive(Serialize, Deserialize)]
struct Stored {
    v: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    b: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    f: Option<u64>,
    e: u64,
}

impl Stored {
    fn of(holder: &KeyHolder, expires: u64) -> Self {
        let (b, f) = match holder.period {
            OnlinePeriod::Began(at) => (Some(at), None),
            OnlinePeriod::FirstBy(by) => (None, Some(by)),
        };
        Self {
            v: holder.visitor.visitor.as_str().to_owned(),
            b,
            f,
            e: expires,
        }
    }

    fn entry(&self, group: GroupId) -> Option<Entry> {
        let visitor = VisitorId::parse(&self.v).ok()?;
        let period = match (self.b, self.f) {
            (Some(at), _) => OnlinePeriod::Began(at),
            (None, Some(by)) => OnlinePeriod::FirstBy(by),
            (None, None) => return None,
        };
        Some(Entry {
            holder: KeyHolder {
                visitor: VisitorKey::new(group, visitor),
                period,
            },
            expires: self.e,
        })
    }
}

struct Entry {
    holder: KeyHolder,
    expires: u64,
}

/// Session keys in Redis, looked up in a node-local replica.
pub struct RedisSessionKeys {
    link: ClusterLink,
    clock: SharedClock,
    ttl_secs: u64,
    mints_per_minute: u64,
    by_code: ReplicaMap<(GroupId, String), Entry>,
    /// This node's connections' keys (and their groups).
    by_connection: DashMap<String, (GroupId, SessionKey)>,
}

impl RedisSessionKeys {
    /// Keys through `link`: they live `ttl_secs`; each group mints at most
    /// `mints_per_minute` a minute over the whole cluster. Registers the
    /// replica's handlers (before the link starts).
    pub fn new(
        link: ClusterLink,
        clock: SharedClock,
        ttl_secs: u64,
        mints_per_minute: u64,
    ) -> Arc<Self> {
        let this = Arc::new(Self {
            link: link.clone(),
            clock,
            ttl_secs,
            mints_per_minute: mints_per_minute.max(1),
            by_code: ReplicaMap::default(),
            by_connection: DashMap::new(),
        });
        let weak = Arc::downgrade(&this);
        let me = link.node_id().to_owned();
        link.on_control(
            KIND,
            Arc::new(move |from, body| {
                if let Some(this) = weak.upgrade() {
                    if from != me {
                        this.apply(body);
                    }
                }
            }),
        );
        let weak = Arc::downgrade(&this);
        link.on_connected(Arc::new(move |_first| {
            let Some(this) = weak.upgrade() else { return };
            let runtime = this.link.runtime().clone();
            runtime.spawn(async move {
                if let Err(e) = this.reload().await {
                    tracing::warn!(error = %e.0, "cannot reload the session keys");
                }
            });
        }));
        this
    }

    fn code_key(&self, group: GroupId, code: &str) -> String {
        self.link.key(&format!("session_key:{group}:{code}"))
    }

    fn apply(&self, body: &Value) {
        let (Some(group), Some(code)) = (
            body.get("g").and_then(Value::as_u64),
            body.get("c").and_then(Value::as_str),
        ) else {
            return;
        };
        let stored = body
            .get("h")
            .cloned()
            .and_then(|h| serde_json::from_value::<Stored>(h).ok());
        match stored.and_then(|s| s.entry(group)) {
            Some(entry) => {
                self.by_code.insert((group, code.to_owned()), entry);
            }
            None => {
                self.by_code.remove(&(group, code.to_owned()));
            }
        }
    }

    /// Writes back this node's live keys that Redis lacks (a Redis that
    /// came back empty), telling the other nodes; then replaces the replica
    /// with every key in Redis (changes that arrive meanwhile win).
    async fn reload(&self) -> Result<(), SharedStateUnavailable> {
        if let Err(e) = self.write_back().await {
            // The re-read goes on: the other nodes' keys matter as much.
            tracing::warn!(error = %e.0, "cannot write this node's session keys back");
        }
        let pattern = self.link.key("session_key:*");
        let prefix = self.link.key("session_key:");
        let read = async {
            let found = scan_values(&self.link, "session keys reload", pattern).await?;
            Ok(found
                .into_iter()
                .filter_map(|(key, value)| {
                    let (group, code) = key.strip_prefix(&prefix)?.split_once(':')?;
                    let group = group.parse::<GroupId>().ok()?;
                    let entry = serde_json::from_str::<Stored>(&value).ok()?.entry(group)?;
                    Some(((group, code.to_owned()), entry))
                })
                .collect())
        };
        self.by_code.reload(read).await
    }

    /// Writes this node's live keys back with `SET NX` (a Redis that lost
    /// them), a pipeline per [`WRITE_BACK_BATCH`], and tells the other
    /// nodes of those it restored. A key dropped meanwhile (no longer in
    /// the replica when its batch is built) is not restored.
    async fn write_back(&self) -> Result<(), SharedStateUnavailable> {
        let mine: Vec<(GroupId, String)> = self
            .by_connection
            .iter()
            .map(|e| (e.value().0, e.value().1.key.clone()))
            .collect();
        for chunk in mine.chunks(WRITE_BACK_BATCH) {
            let now = self.clock.now_secs();
            let batch: Vec<(GroupId, String, String, u64)> = chunk
                .iter()
                .filter_map(|(group, code)| {
                    let entry = self.by_code.entries().get(&(*group, code.clone()))?;
                    let stored = serde_json::to_string(&Stored::of(&entry.holder, entry.expires));
                    let ttl = entry.expires.checked_sub(now).filter(|t| *t > 0)?;
                    Some((*group, code.clone(), stored.ok()?, ttl))
                })
                .collect();
            if batch.is_empty() {
                continue;
            }
            let writes: Vec<(String, String, u64)> = batch
                .iter()
                .map(|(g, c, v, ttl)| (self.code_key(*g, c), v.clone(), *ttl))
                .collect();
            let restored: Vec<Option<String>> = self
                .link
                .run("session key write-back", move |mut conn| async move {
                    let mut pipe = redis::pipe();
                    for (key, value, ttl) in writes {
                        pipe.cmd("SET")
                            .arg(key)
                            .arg(value)
                            .arg("NX")
                            .arg("EX")
                            .arg(ttl);
                    }
                    pipe.query_async(&mut conn).await
                })
                .await?;
            for ((group, code, stored, _), restored) in batch.into_iter().zip(restored) {
                if restored.is_some() {
                    let h: Value = serde_json::from_str(&stored).unwrap_or_default();
                    self.link
                        .broadcast(KIND, json!({ "g": group, "c": code, "h": h }))
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Deletes a key everywhere, in the background.
    fn drop_shared(&self, group: GroupId, code: &str) {
        let key = self.code_key(group, code);
        let delete = self
            .link
            .run("session key drop", move |mut conn| async move {
                conn.del::<_, ()>(key).await
            });
        let tell = self.link.broadcast(KIND, json!({ "g": group, "c": code }));
        self.link.runtime().spawn(async move {
            if let Err(e) = async {
                delete.await?;
                tell.await.map(|_| ())
            }
            .await
            {
                tracing::warn!(error = %e.0, "cannot drop a session key");
            }
        });
    }
}

/// Waits, on the blocking pool, for a future run on the link's runtime.
fn wait_on<T: Send + 'static>(
    link: &ClusterLink,
    fut: impl std::future::Future<Output = Result<T, SharedStateUnavailable>> + Send + 'static,
) -> Result<T, SharedStateUnavailable> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    link.runtime().spawn(async move {
        let _ = tx.send(fut.await);
    });
    let limit =
        std::time::Duration::from_millis(link.config().redis_timeout_ms.saturating_mul(2) + 100);
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| Err(SharedStateUnavailable("the Redis runtime stopped".into())))
}

fn unavailable(e: SharedStateUnavailable) -> IssueError {
    IssueError::Unavailable(e.0)
}

impl SessionKeys for RedisSessionKeys {
    fn issue(&self, holder: &KeyHolder, connection: &str) -> Result<SessionKey, IssueError> {
        let now_ms = self.clock.now_ms();
        let now = now_ms / 1000;
        if let Some(live) = self.by_connection.get(connection) {
            if live.1.expires > now {
                return Ok(live.1.clone());
            }
        }
        let group = holder.visitor.group;
        let bucket = self.link.key(&format!("session_key_mints:{group}"));
        let per_minute = self.mints_per_minute;
        let wait: u64 = self
            .link
            .run_blocking("session key mint", move |mut conn| async move {
                MINT.key(bucket)
                    .arg(per_minute)
                    .arg(now_ms)
                    .invoke_async(&mut conn)
                    .await
            })
            .map_err(unavailable)?;
        if wait > 0 {
            return Err(IssueError::RateLimited {
                retry_after_secs: wait.div_ceil(1000).max(1),
            });
        }
        let expires = now + self.ttl_secs;
        let stored = Stored::of(holder, expires);
        let value = serde_json::to_string(&stored).map_err(|e| IssueError::Store(e.to_string()))?;
        let ttl = self.ttl_secs.max(1);
        for _ in 0..MAX_DRAWS {
            let code = draw();
            let key = self.code_key(group, &code);
            let value = value.clone();
            let claimed: Option<String> = self
                .link
                .run_blocking("session key claim", move |mut conn| async move {
                    redis::cmd("SET")
                        .arg(key)
                        .arg(value)
                        .arg("NX")
                        .arg("EX")
                        .arg(ttl)
                        .query_async(&mut conn)
                        .await
                })
                .map_err(unavailable)?;
            if claimed.is_none() {
                continue;
            }
            self.by_code.insert(
                (group, code.clone()),
                Entry {
                    holder: holder.clone(),
                    expires,
                },
            );
            let body = json!({ "g": group, "c": code, "h": stored });
            wait_on(&self.link, self.link.broadcast(KIND, body)).map_err(unavailable)?;
            let key = SessionKey { key: code, expires };
            self.by_connection
                .insert(connection.to_owned(), (group, key.clone()));
            return Ok(key);
        }
        Err(IssueError::Exhausted)
    }

    fn connection_closed(&self, connection: &str) {
        self.by_connection.remove(connection);
    }

    fn find(&self, group: GroupId, key: &str) -> Option<KeyHolder> {
        let now = self.clock.now_secs();
        let entry = self.by_code.entries().get(&(group, key.to_owned()))?;
        (entry.expires > now).then(|| entry.holder.clone())
    }

    fn not_current(&self, group: GroupId, key: &str) {
        let now_ms = self.clock.now_ms();
        let removed = self
            .by_code
            .remove_if(&(group, key.to_owned()), |_, e| !awaited(e, now_ms));
        if removed.is_some() {
            self.drop_shared(group, key);
        }
    }

    /// Drops expired keys from the replica (Redis expires them by
    /// itself). Keys of ended periods are dropped by `find`'s caller
    /// through [`SessionKeys::not_current`]; a sweep does not judge
    /// periods here, since a node may not yet see a visitor that just
    /// connected elsewhere.
    fn sweep(&self, _in_period: &dyn Fn(&KeyHolder) -> bool) -> usize {
        let now = self.clock.now_secs();
        let codes = self.by_code.entries();
        let before = codes.len();
        codes.retain(|_, e| e.expires > now);
        self.by_connection.retain(|_, (_, key)| key.expires > now);
        before - codes.len()
    }
}

/// A key restored after a restart whose visitor may still come back.
fn awaited(e: &Entry, now_ms: u64) -> bool {
    matches!(e.holder.period, OnlinePeriod::FirstBy(by) if now_ms <= by)
}
