//! Cluster mode's [`SigningKeySource`]: one key ring shared by every node
//! through Redis, cached whole in each node's memory.
//!
//! Redis layout (`{prefix}:` omitted):
//! - `signing_keys`: HASH `kid` → JSON `{"secret": base64, "created_at_ms",
//!   "active_at_ms"}`. Every node signs with the newest key whose
//!   activation time has passed, and verifies with any key of the hash.
//! - `signing_keys:rotating`: the rotation lock, `SET NX PX` one
//!   housekeeping interval, holding the rotating node's id.
//!
//! A rotation writes its key with `active_at_ms` = now +
//! [`ACTIVATION_DELAY_MS`] (three poll intervals), with a Lua script that
//! writes only if the newest key is still a whole period old (so even two
//! lock holders, after a lock expired, rotate once), then says `keys` on the
//! control channel. Every node rereads the hash on that notice, every
//! [`POLL`], after every reconnection, and (rate-limited) on an unknown
//! `kid`, so each node holds the key well before anyone signs with it.
//!
//! Requests never wait on Redis: signing and verifying read memory. A key
//! leaves memory, and the hash, only once its successor has been active for
//! `token_max_secs` + leeway (it can verify no live token); a key missing
//! from Redis is never dropped from memory, and is written back (`HSETNX`),
//! so a Redis that comes back empty gets the ring from the nodes again.
//! While Redis is unreachable nothing rotates (the lock and the script need
//! it): every node keeps signing and verifying with the ring it holds, and
//! a node that starts then cannot start. Clocks must agree to well within
//! the activation delay (a node whose clock runs ahead could sign with a
//! key before a peer polled it; the peer's reread on the unknown `kid`
//! then accepts the retry).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use dashmap::DashMap;
use serde_json::json;

use super::keyring::{retired_from, HandoverLedger, KeyMaintenance, SigningKey, SigningKeySource};
use super::redis_key_wire::{generate, Entry, WireKey, BOOTSTRAP, ROTATE};
use super::LEEWAY_SECS;
use crate::infra::clock::SharedClock;
use crate::store::cluster::ClusterLink;
use crate::store::StoreError;

/// How often every node rereads the ring anyway.
pub const POLL: Duration = Duration::from_secs(1);
/// How long after its creation a rotated key starts signing.
pub const ACTIVATION_DELAY_MS: u64 = 3_000;
/// Least time between two rereads caused by unknown `kid`s.
const MISS_REFRESH_MS: u64 = 250;

/// The shared ring, as this node caches it.
#[derive(Clone)]
pub struct RedisKeys {
    inner: Arc<Ring>,
}

struct Ring {
    link: ClusterLink,
    clock: SharedClock,
    rotation_ms: u64,
    keep_ms: u64,
    lock_ms: u64,
    by_kid: DashMap<String, Arc<Entry>>,
    /// Every cached key, by activation time (then creation time, `kid`).
    order: RwLock<Vec<Arc<Entry>>>,
    /// Whether a maintenance pass is running in the background.
    busy: AtomicBool,
    /// What background passes did since housekeeping last asked.
    done: Mutex<KeyMaintenance>,
    last_miss_refresh_ms: AtomicU64,
    /// When the last whole read of the hash that succeeded was sent (ms
    /// after `created`, real time): a node that read within
    /// [`ACTIVATION_DELAY_MS`] knows every key anyone may sign with.
    last_read_ms: AtomicU64,
    created: std::time::Instant,
    /// Split roles: handover confirmations that hold retired keys.
    ledger: std::sync::OnceLock<HandoverLedger>,
}

impl RedisKeys {
    /// Loads the shared ring (creating its first key in an empty Redis),
    /// and starts following it: the `keys` notice, the poll, reconnections.
    /// Runs at start-up, before the node serves.
    pub async fn load(
        link: &ClusterLink,
        clock: SharedClock,
        rotation_secs: u64,
        token_max_secs: u64,
        housekeeping_every: Duration,
    ) -> Result<Self, StoreError> {
        let ring = Arc::new(Ring {
            link: link.clone(),
            clock,
            rotation_ms: rotation_secs.saturating_mul(1000),
            keep_ms: (token_max_secs + LEEWAY_SECS) * 1000,
            lock_ms: u64::try_from(housekeeping_every.as_millis()).unwrap_or(u64::MAX),
            by_kid: DashMap::new(),
            order: RwLock::new(Vec::new()),
            busy: AtomicBool::new(false),
            done: Mutex::new(KeyMaintenance::default()),
            last_miss_refresh_ms: AtomicU64::new(0),
            last_read_ms: AtomicU64::new(0),
            created: std::time::Instant::now(),
            ledger: std::sync::OnceLock::new(),
        });
        // With peers already live (a Redis that came back empty), the
        // first key waits out the activation delay like any rotation, so
        // they read it before it signs; peers write their keys back
        // meanwhile, and the newest active one signs.
        let delay = if link.live_nodes().len() > 1 {
            ACTIVATION_DELAY_MS
        } else {
            0
        };
        let first = generate(ring.clock.now_ms(), delay);
        let (hash, kid, value) = (ring.hash(), first.key.kid.clone(), first.wire());
        ring.link
            .run("create first signing key", move |mut conn| async move {
                BOOTSTRAP
                    .key(hash)
                    .arg(kid)
                    .arg(value)
                    .invoke_async::<i64>(&mut conn)
                    .await
            })
            .await?;
        ring.refresh().await?;
        if ring.order().is_empty() {
            return Err(StoreError::Corrupt {
                tree: "signing_keys",
                reason: "no usable key in Redis".into(),
            });
        }
        follow(&ring);
        Ok(Self { inner: ring })
    }
}

/// Subscribes to the notice and reconnections, and starts the poll; all
/// hold the ring weakly, so they stop mattering once the node is gone.
fn follow(ring: &Arc<Ring>) {
    let link = ring.link.clone();
    let weak = Arc::downgrade(ring);
    link.on_control(
        "keys",
        Arc::new(move |_from, _body| refresh_in_background(&weak)),
    );
    let weak = Arc::downgrade(ring);
    link.on_connected(Arc::new(move |_first| refresh_in_background(&weak)));
    let weak = Arc::downgrade(ring);
    link.runtime().spawn(async move {
        let mut ticks = tokio::time::interval(POLL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(ring) = weak.upgrade() else { return };
            // A failure is logged by the link; the next tick retries.
            let _ = ring.refresh().await;
        }
    });
}

fn refresh_in_background(weak: &Weak<Ring>) {
    if let Some(ring) = weak.upgrade() {
        let runtime = ring.link.runtime().clone();
        runtime.spawn(async move {
            let _ = ring.refresh().await;
        });
    }
}

impl Ring {
    fn hash(&self) -> String {
        self.link.key("signing_keys")
    }

    fn order(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<Entry>>> {
        self.order.read().unwrap_or_else(|p| p.into_inner())
    }

    fn insert(&self, entry: Entry) {
        let entry = Arc::new(entry);
        match self.by_kid.entry(entry.key.kid.clone()) {
            dashmap::Entry::Occupied(_) => return,
            dashmap::Entry::Vacant(slot) => {
                slot.insert(entry.clone());
            }
        }
        let mut order = self.order.write().unwrap_or_else(|p| p.into_inner());
        order.push(entry);
        order.sort_by(|a, b| {
            (a.active_at_ms, a.key.created_at_ms, &a.key.kid).cmp(&(
                b.active_at_ms,
                b.key.created_at_ms,
                &b.key.kid,
            ))
        });
    }

    /// Merges the hash into memory, writes back what Redis lacks, and
    /// purges what can verify no live token.
    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.created.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    async fn refresh(&self) -> Result<(), StoreError> {
        let hash = self.hash();
        let sent_at = self.elapsed_ms();
        let stored: Vec<(String, String)> = self
            .link
            .run("read signing keys", move |mut conn| async move {
                redis::cmd("HGETALL").arg(hash).query_async(&mut conn).await
            })
            .await?;
        self.last_read_ms.fetch_max(sent_at, Ordering::Relaxed);
        let mut in_redis = std::collections::HashSet::new();
        for (kid, value) in &stored {
            in_redis.insert(kid.clone());
            if self.by_kid.contains_key(kid) {
                continue;
            }
            match serde_json::from_str::<WireKey>(value)
                .ok()
                .and_then(|wire| Entry::from_wire(kid, &wire))
            {
                Some(entry) => self.insert(entry),
                None => tracing::warn!(%kid, "unreadable signing key in Redis; ignored"),
            }
        }
        let purged = self.purge_memory();
        let missing: Vec<(String, String)> = self
            .order()
            .iter()
            .filter(|e| !in_redis.contains(&e.key.kid))
            .map(|e| (e.key.kid.clone(), e.wire()))
            .collect();
        let gone: Vec<String> = purged
            .iter()
            .filter(|kid| in_redis.contains(*kid))
            .cloned()
            .collect();
        if !missing.is_empty() || !gone.is_empty() {
            if !missing.is_empty() {
                tracing::info!(
                    keys = missing.len(),
                    "re-publishing signing keys Redis lacks"
                );
            }
            let hash = self.hash();
            self.link
                .run("write back signing keys", move |mut conn| async move {
                    let mut pipe = redis::pipe();
                    for (kid, value) in missing {
                        pipe.cmd("HSETNX").arg(&hash).arg(kid).arg(value).ignore();
                    }
                    for kid in gone {
                        pipe.cmd("HDEL").arg(&hash).arg(kid).ignore();
                    }
                    pipe.query_async::<()>(&mut conn).await
                })
                .await?;
        }
        if !purged.is_empty() {
            lock(&self.done).purged.extend(purged);
        }
        Ok(())
    }

    /// Drops from memory the keys whose successor has been active for
    /// longer than a token lives; never the newest.
    fn purge_memory(&self) -> Vec<String> {
        let now = self.clock.now_ms();
        let mut order = self.order.write().unwrap_or_else(|p| p.into_inner());
        let mut purged = Vec::new();
        while order.len() > 1 {
            let Some(since) =
                retired_from(self.ledger.get(), &order[1].key.kid, order[1].active_at_ms)
            else {
                break;
            };
            if since.saturating_add(self.keep_ms) >= now {
                break;
            }
            let old = order.remove(0);
            self.by_kid.remove(&old.key.kid);
            purged.push(old.key.kid.clone());
        }
        purged
    }

    /// Rotates if the newest key is a whole period old and this node wins
    /// the lock; then tells every node.
    async fn rotate_if_due(&self) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let newest = self.order().iter().map(|e| e.key.created_at_ms).max();
        if newest.is_some_and(|c| c.saturating_add(self.rotation_ms) > now) {
            return Ok(());
        }
        let (lock_key, me, hold) = (
            self.link.key("signing_keys:rotating"),
            self.link.node_id().to_owned(),
            self.lock_ms.max(1),
        );
        let won: Option<String> = self
            .link
            .run("signing key lock", move |mut conn| async move {
                redis::cmd("SET")
                    .arg(lock_key)
                    .arg(me)
                    .arg("NX")
                    .arg("PX")
                    .arg(hold)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        if won.is_none() {
            return Ok(());
        }
        if let Some(kid) = self.write_rotation(now, self.rotation_ms).await? {
            lock(&self.done).rotated_to = Some(kid);
        }
        Ok(())
    }

    /// Writes a fresh key, signing [`ACTIVATION_DELAY_MS`] from `now`, if
    /// no key was created within `period_ms` before `now` (the script
    /// decides, atomically), then tells every node. Its `kid`, if written.
    async fn write_rotation(&self, now: u64, period_ms: u64) -> Result<Option<String>, StoreError> {
        let entry = generate(now, ACTIVATION_DELAY_MS);
        let (hash, kid, value) = (self.hash(), entry.key.kid.clone(), entry.wire());
        let written: i64 = self
            .link
            .run("rotate signing key", move |mut conn| async move {
                ROTATE
                    .key(hash)
                    .arg(now)
                    .arg(period_ms)
                    .arg(kid)
                    .arg(value)
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        if written != 1 {
            return Ok(None);
        }
        let kid = entry.key.kid.clone();
        self.insert(entry);
        // The poll catches a node that misses this.
        let _ = self.link.broadcast("keys", json!({ "kid": kid })).await;
        Ok(Some(kid))
    }
}

impl RedisKeys {
    /// Rotates now, whatever the newest key's age (`presence-server keys
    /// rotate`): the rotation a due pass makes, without the rotation lock
    /// (a pass rotating at the same moment adds a second key; both
    /// verify). Every node reads the key on the `keys` notice or its next
    /// poll; it signs [`ACTIVATION_DELAY_MS`] later. Returns its `kid` and
    /// activation time.
    pub async fn rotate_now(&self) -> Result<(String, u64), StoreError> {
        self.inner.refresh().await?;
        let now = self.inner.clock.now_ms();
        match self.inner.write_rotation(now, 0).await? {
            Some(kid) => Ok((kid, now.saturating_add(ACTIVATION_DELAY_MS))),
            None => Err(StoreError::Corrupt {
                tree: "signing_keys",
                reason: "a key in Redis was created after this machine's clock: check the clocks"
                    .into(),
            }),
        }
    }
}

impl SigningKeySource for RedisKeys {
    fn signing_key(&self) -> Option<Arc<SigningKey>> {
        let now = self.inner.clock.now_ms();
        let order = self.inner.order();
        let active = order.iter().rev().find(|e| e.active_at_ms <= now);
        // `load` refused an empty ring, and purging keeps the newest.
        active.or_else(|| order.first()).map(|e| e.key.clone())
    }

    fn handover_keys(&self) -> Vec<(Arc<SigningKey>, u64)> {
        self.inner
            .order()
            .iter()
            .map(|e| (e.key.clone(), e.active_at_ms))
            .collect()
    }

    fn hold_retired_until_handed_over(&self, ledger: HandoverLedger) {
        let _ = self.inner.ledger.set(ledger);
    }

    fn verifying_key(&self, kid: &str) -> Option<Arc<SigningKey>> {
        let found = self.inner.by_kid.get(kid).map(|e| e.key.clone());
        if found.is_none() {
            // Maybe a key this node has not read yet: reread, at most every
            // MISS_REFRESH_MS whatever the flood of made-up `kid`s.
            let now = self.inner.clock.now_ms();
            let last = self.inner.last_miss_refresh_ms.load(Ordering::Relaxed);
            if now.saturating_sub(last) >= MISS_REFRESH_MS
                && self
                    .inner
                    .last_miss_refresh_ms
                    .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                refresh_in_background(&Arc::downgrade(&self.inner));
            }
        }
        found
    }

    fn keys_current(&self) -> bool {
        let read = self.inner.last_read_ms.load(Ordering::Relaxed);
        self.inner.elapsed_ms().saturating_sub(read) < ACTIVATION_DELAY_MS
    }

    /// Starts a pass in the background (never waits on Redis: housekeeping
    /// may run on an actix thread) and reports what earlier passes did.
    fn maintain(&self) -> Result<KeyMaintenance, StoreError> {
        if !self.inner.busy.swap(true, Ordering::AcqRel) {
            let ring = self.inner.clone();
            self.inner.link.runtime().spawn(async move {
                // Write back what an emptied Redis lost before deciding to
                // rotate, so the ring's age is read from the whole ring.
                let outcome = match ring.refresh().await {
                    Ok(()) => ring.rotate_if_due().await,
                    Err(e) => Err(e),
                };
                if let Err(e) = outcome {
                    tracing::warn!(error = %e, "signing key maintenance failed; retrying next pass");
                }
                ring.busy.store(false, Ordering::Release);
            });
        }
        Ok(std::mem::take(&mut *lock(&self.inner.done)))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
