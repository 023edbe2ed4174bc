//! Cluster mode's revocations: the denylist and the issued-token index in
//! Redis, the denylist mirrored in every node's memory.
//!
//! Redis layout (`{prefix}:` omitted):
//! - `revoked`: ZSET `jti` → `exp`, the denylist (trimmed by housekeeping
//!   once `exp` + leeway has passed).
//! - `token:{jti}`: JSON `{"sub","groupid","exp"}`, who a token was issued
//!   to, expiring with the token (`EX`).
//! - `tokens:{groupid}:{sub}`: ZSET `jti` → `exp`, the tokens of one user,
//!   for revoking an agent; it expires after its newest token.
//!
//! A revocation is acknowledged only once Redis has it (durable with
//! `appendfsync always`), then once every live node answered the
//! `token.revoked` request (each adds the `jti` to its memory, then closes
//! its sockets through the [`RevokedHook`] and says how many), or failed
//! to within the command deadline. After the answers, a `token.revoked`
//! broadcast reaches nodes that subscribed but are not in this node's table
//! yet. A node that did not answer (cut off from Redis, or stalled) rereads
//! the whole denylist when its subscriber reconnects and every
//! [`RELOAD`]: until then it may still accept the token. A node that starts
//! reads the denylist after subscribing, so it misses nothing in between.
//! Entries are never dropped from memory because Redis lacks them: a Redis
//! that came back empty gets the denylist written back by the nodes. The
//! issued-token index is not written back (it is Redis's alone): after
//! such a loss, tokens issued before it can no longer be revoked by `jti`.

use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use dashmap::DashMap;
use serde_json::{json, Value};

use super::revocation::RevokedHook;
use super::LEEWAY_SECS;
use crate::infra::clock::SharedClock;
use crate::store::cluster::{ClusterLink, WireError};
use crate::store::{IssuedToken, StoreError};

/// How often every node rereads the whole denylist anyway.
pub const RELOAD: Duration = Duration::from_secs(2);
const KIND: &str = "token.revoked";

/// The shared denylist and index, through this node's link.
pub struct SharedRevocations {
    inner: Arc<Inner>,
}

struct Inner {
    link: ClusterLink,
    clock: SharedClock,
    denied: DashMap<String, u64>,
    hook: RwLock<Option<RevokedHook>>,
}

impl SharedRevocations {
    /// Loads the denylist and starts following it (requests, broadcasts,
    /// reconnections, the reload). Runs at start-up, before serving.
    pub async fn load(link: &ClusterLink, clock: SharedClock) -> Result<Self, StoreError> {
        let inner = Arc::new(Inner {
            link: link.clone(),
            clock,
            denied: DashMap::new(),
            hook: RwLock::new(None),
        });
        inner.reload().await?;
        follow(&inner);
        Ok(Self { inner })
    }

    pub(super) fn record_issued(&self, jti: &str, token: &IssuedToken) -> Result<(), StoreError> {
        let link = &self.inner.link;
        let now = self.inner.clock.now_secs();
        let ttl = token
            .exp
            .saturating_add(LEEWAY_SECS)
            .saturating_sub(now)
            .max(1);
        let (entry, user) = (
            link.key(&format!("token:{jti}")),
            link.key(&format!("tokens:{}:{}", token.groupid, token.sub)),
        );
        let (value, jti, exp) = (
            serde_json::to_string(token).map_err(|e| StoreError::Corrupt {
                tree: "issued_tokens",
                reason: e.to_string(),
            })?,
            jti.to_owned(),
            token.exp,
        );
        link.run_blocking("record issued token", move |mut conn| async move {
            redis::pipe()
                .atomic()
                .cmd("SET")
                .arg(&entry)
                .arg(value)
                .arg("EX")
                .arg(ttl)
                .ignore()
                .cmd("ZADD")
                .arg(&user)
                .arg(exp)
                .arg(jti)
                .ignore()
                .cmd("EXPIRE")
                .arg(&user)
                .arg(ttl)
                .arg("NX")
                .ignore()
                .cmd("EXPIRE")
                .arg(&user)
                .arg(ttl)
                .arg("GT")
                .ignore()
                .query_async::<()>(&mut conn)
                .await
        })?;
        Ok(())
    }

    pub(super) fn owner(&self, jti: &str) -> Result<Option<IssuedToken>, StoreError> {
        let entry = self.inner.link.key(&format!("token:{jti}"));
        let found: Option<String> = self
            .inner
            .link
            .run_blocking("token owner", move |mut conn| async move {
                redis::cmd("GET").arg(entry).query_async(&mut conn).await
            })?;
        Ok(found.and_then(|value| serde_json::from_str(&value).ok()))
    }

    pub(super) fn live_tokens_of(
        &self,
        groupid: u64,
        sub: &str,
        now: u64,
    ) -> Result<Vec<(String, IssuedToken)>, StoreError> {
        let user = self.inner.link.key(&format!("tokens:{groupid}:{sub}"));
        let cutoff = now.saturating_sub(LEEWAY_SECS);
        let live: Vec<(String, f64)> =
            self.inner
                .link
                .run_blocking("live tokens", move |mut conn| async move {
                    redis::cmd("ZRANGEBYSCORE")
                        .arg(user)
                        .arg(format!("({cutoff}"))
                        .arg("+inf")
                        .arg("WITHSCORES")
                        .query_async(&mut conn)
                        .await
                })?;
        Ok(live
            .into_iter()
            .map(|(jti, exp)| {
                let owner = IssuedToken {
                    sub: sub.to_owned(),
                    groupid,
                    exp: exp as u64,
                };
                (jti, owner)
            })
            .collect())
    }

    pub(super) fn revoke(&self, jti: &str, exp: u64) -> Result<usize, StoreError> {
        let link = self.inner.link.clone();
        let (denylist, member) = (link.key("revoked"), jti.to_owned());
        link.run_blocking("revoke token", move |mut conn| async move {
            redis::cmd("ZADD")
                .arg(denylist)
                .arg(exp)
                .arg(member)
                .query_async::<()>(&mut conn)
                .await
        })?;
        // This node's sockets are the caller's to close.
        self.inner.denied.insert(jti.to_owned(), exp);
        let body = json!({ "jti": jti, "exp": exp });
        let timeout = link.config().redis_timeout();
        let peers: Vec<String> = link
            .live_nodes()
            .into_iter()
            .filter(|node| node != link.node_id())
            .collect();
        let asks: Vec<_> = peers
            .iter()
            .map(|node| link.request(node, KIND, body.clone(), timeout))
            .collect();
        let telling = link.clone();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        link.runtime().spawn(async move {
            let answers = futures_util::future::join_all(asks).await;
            let mut closed = 0usize;
            for (node, answer) in peers.iter().zip(&answers) {
                match answer {
                    Ok(reply) => {
                        closed += reply["closed"].as_u64().map_or(0, |n| n as usize);
                    }
                    Err(e) => tracing::warn!(
                        %node, error = ?e,
                        "a node did not confirm a revocation; it rereads the denylist"
                    ),
                }
            }
            // Nodes that subscribed but are not in the table yet.
            let _ = telling.broadcast(KIND, body).await;
            let _ = tx.send(closed);
        });
        // Each request and the broadcast have their own deadlines; this one
        // only guards a runtime that stopped.
        Ok(rx
            .recv_timeout(timeout * 3 + Duration::from_millis(200))
            .unwrap_or(0))
    }

    pub(super) fn is_revoked(&self, jti: &str) -> bool {
        self.inner.denied.contains_key(jti)
    }

    /// Forgets, in memory at once and in Redis in the background, the
    /// entries of tokens that expired before `cutoff`.
    pub(super) fn purge(&self, cutoff: u64) -> usize {
        let before = self.inner.denied.len();
        self.inner.denied.retain(|_, exp| *exp >= cutoff);
        let forgotten = before.saturating_sub(self.inner.denied.len());
        let denylist = self.inner.link.key("revoked");
        let trim = self
            .inner
            .link
            .run("trim denylist", move |mut conn| async move {
                redis::cmd("ZREMRANGEBYSCORE")
                    .arg(denylist)
                    .arg("-inf")
                    .arg(format!("({cutoff}"))
                    .query_async::<()>(&mut conn)
                    .await
            });
        self.inner.link.runtime().spawn(async move {
            let _ = trim.await;
        });
        forgotten
    }

    pub(super) fn on_revoked(&self, hook: RevokedHook) {
        *self.inner.hook.write().unwrap_or_else(|p| p.into_inner()) = Some(hook);
    }
}

/// Answers `token.revoked` requests and broadcasts, rereads on every
/// reconnection and every [`RELOAD`]; all hold the state weakly.
fn follow(inner: &Arc<Inner>) {
    let link = inner.link.clone();
    let weak = Arc::downgrade(inner);
    link.serve(
        KIND,
        Arc::new(move |_from, body| {
            let reply = match (body["jti"].as_str(), body["exp"].as_u64()) {
                (Some(jti), Some(exp)) => {
                    let closed = weak.upgrade().map_or(0, |inner| inner.learn(jti, exp));
                    Ok(json!({ "closed": closed }))
                }
                _ => Err(WireError {
                    code: "bad_request".into(),
                    message: "token.revoked needs jti and exp".into(),
                }),
            };
            Box::pin(async move { reply })
        }),
    );
    let weak = Arc::downgrade(inner);
    link.on_control(
        KIND,
        Arc::new(move |_from, body: &Value| {
            if let (Some(inner), Some(jti), Some(exp)) =
                (weak.upgrade(), body["jti"].as_str(), body["exp"].as_u64())
            {
                inner.learn(jti, exp);
            }
        }),
    );
    let weak = Arc::downgrade(inner);
    link.on_connected(Arc::new(move |_first| reload_in_background(&weak)));
    let weak = Arc::downgrade(inner);
    link.runtime().spawn(async move {
        let mut ticks = tokio::time::interval(RELOAD);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(inner) = weak.upgrade() else { return };
            let _ = inner.reload().await;
        }
    });
}

fn reload_in_background(weak: &Weak<Inner>) {
    if let Some(inner) = weak.upgrade() {
        let runtime = inner.link.runtime().clone();
        runtime.spawn(async move {
            let _ = inner.reload().await;
        });
    }
}

impl Inner {
    /// Denies `jti`; if it is new to this node, closes its sockets.
    fn learn(&self, jti: &str, exp: u64) -> usize {
        if exp < self.clock.now_secs().saturating_sub(LEEWAY_SECS) {
            return 0;
        }
        let new = match self.denied.entry(jti.to_owned()) {
            dashmap::Entry::Occupied(_) => false,
            dashmap::Entry::Vacant(slot) => {
                slot.insert(exp);
                true
            }
        };
        if !new {
            return 0;
        }
        let hook = self.hook.read().unwrap_or_else(|p| p.into_inner()).clone();
        hook.map_or(0, |hook| hook(jti))
    }

    /// Reads the whole denylist, learns what is new, and writes back what
    /// Redis lacks.
    async fn reload(&self) -> Result<(), StoreError> {
        let cutoff = self.clock.now_secs().saturating_sub(LEEWAY_SECS);
        let denylist = self.link.key("revoked");
        let listed: Vec<(String, f64)> = self
            .link
            .run("read denylist", move |mut conn| async move {
                redis::cmd("ZRANGEBYSCORE")
                    .arg(denylist)
                    .arg(cutoff)
                    .arg("+inf")
                    .arg("WITHSCORES")
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        let mut in_redis = std::collections::HashSet::with_capacity(listed.len());
        for (jti, exp) in listed {
            self.learn(&jti, exp as u64);
            in_redis.insert(jti);
        }
        let missing: Vec<(String, u64)> = self
            .denied
            .iter()
            .filter(|e| *e.value() >= cutoff && !in_redis.contains(e.key()))
            .map(|e| (e.key().clone(), *e.value()))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        tracing::info!(
            revocations = missing.len(),
            "re-publishing revocations Redis lacks"
        );
        let denylist = self.link.key("revoked");
        self.link
            .run("write back denylist", move |mut conn| async move {
                let mut zadd = redis::cmd("ZADD");
                zadd.arg(&denylist).arg("NX");
                for (jti, exp) in missing {
                    zadd.arg(exp).arg(jti);
                }
                zadd.query_async::<()>(&mut conn).await
            })
            .await?;
        Ok(())
    }
}
