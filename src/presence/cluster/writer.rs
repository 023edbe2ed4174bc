//! Publishes this node's portions: the registry marks a visitor dirty
//! after each change, and one task writes the dirty visitors' current
//! portions to Redis and announces them on the presence channel, in
//! batches, in one pipeline each. Marks coalesce, so a visitor changing
//! faster than Redis answers costs one write per batch, and memory is
//! bounded by the number of local visitors whatever Redis does.
//!
//! Layout (`{p}` is the key prefix):
//! - `{p}:presence:{group}`: hash, `{visitor}\n{node}` → the portion (JSON);
//! - `{p}:node_visitors:{node}`: set of `{group}\n{visitor}`, what a
//!   reaper deletes when the node dies (one script, `REAP`);
//! - channel `{p}:presence`: `{"node":id,"updates":[{"g","v","seq","p"}]}`,
//!   `p` null for a removal.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, Notify};

use crate::infra::ids::{GroupId, VisitorKey};
use crate::presence::registry::{Portion, RegistryHandle};
use crate::store::cluster::ClusterLink;

/// Visitors written per pipeline.
const BATCH: usize = 512;

/// Deletes every presence field of a node and its index, atomically; the
/// fields are per node, so what the visitor holds on other nodes stays.
/// KEYS[1]: the node's index; ARGV[1]: the key prefix; ARGV[2]: the node.
pub(super) static REAP: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local members = redis.call('SMEMBERS', KEYS[1])
for _, member in ipairs(members) do
  local cut = string.find(member, '\n', 1, true)
  if cut then
    local group = string.sub(member, 1, cut - 1)
    local visitor = string.sub(member, cut + 1)
    redis.call('HDEL', ARGV[1] .. ':presence:' .. group, visitor .. '\n' .. ARGV[2])
  end
end
redis.call('DEL', KEYS[1])
return #members
",
    )
});

/// One portion change on the presence channel.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Update {
    pub g: GroupId,
    pub v: String,
    pub seq: u64,
    pub p: Option<Portion>,
}

/// A batch of one node's changes.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Announcement {
    pub node: String,
    pub updates: Vec<Update>,
}

pub(super) fn field(visitor: &str, node: &str) -> String {
    format!("{visitor}\n{node}")
}

/// Told once a visitor's portion, as it was when they asked, is written.
type Waiters = Vec<oneshot::Sender<()>>;

pub(super) struct Writer {
    /// Visitors to write, with who waits for each write.
    dirty: Mutex<HashMap<VisitorKey, Waiters>>,
    wake: Notify,
    seq: AtomicU64,
    idle: Notify,
    /// Set when the node withdraws: nothing is written after its reap.
    stopped: std::sync::atomic::AtomicBool,
    /// Held while a batch is being written.
    writing: tokio::sync::Mutex<()>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Writer {
    pub(super) fn new() -> Self {
        Self {
            dirty: Mutex::default(),
            wake: Notify::new(),
            seq: AtomicU64::new(1),
            idle: Notify::new(),
            stopped: std::sync::atomic::AtomicBool::new(false),
            writing: tokio::sync::Mutex::new(()),
        }
    }

    pub(super) fn mark(&self, key: &VisitorKey) {
        let mut dirty = lock(&self.dirty);
        if !dirty.contains_key(key) {
            dirty.insert(key.clone(), Vec::new());
            self.wake.notify_one();
        }
    }

    pub(super) fn mark_all(&self, keys: Vec<VisitorKey>) {
        let mut dirty = lock(&self.dirty);
        for key in keys {
            dirty.entry(key).or_default();
        }
        self.wake.notify_one();
    }

    /// Waits (at most `within`) until a write of `key` that began after
    /// this call is in Redis and announced: then every node can see what
    /// the registry holds for it now.
    pub(super) async fn written(&self, key: &VisitorKey, within: Duration) {
        let (told, wait) = oneshot::channel();
        lock(&self.dirty).entry(key.clone()).or_default().push(told);
        self.wake.notify_one();
        let _ = tokio::time::timeout(within, wait).await;
    }

    fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Starts the writing task on the link's runtime.
    pub(super) fn start(self: &Arc<Self>, link: ClusterLink, local: RegistryHandle) {
        let writer = self.clone();
        link.runtime().clone().spawn(async move {
            loop {
                let (batch, waiters): (Vec<VisitorKey>, Vec<Waiters>) = {
                    let mut dirty = lock(&writer.dirty);
                    let keys: Vec<VisitorKey> = dirty.keys().take(BATCH).cloned().collect();
                    keys.into_iter()
                        .filter_map(|key| dirty.remove_entry(&key))
                        .unzip()
                };
                let _writing = writer.writing.lock().await;
                if writer.stopped.load(Ordering::Acquire) {
                    return;
                }
                if batch.is_empty() {
                    writer.idle.notify_waiters();
                    writer.wake.notified().await;
                    continue;
                }
                let updates = batch
                    .iter()
                    .map(|key| {
                        let seq = writer.next_seq();
                        Update {
                            g: key.group,
                            v: key.visitor.as_str().to_owned(),
                            seq,
                            p: local.portion(key, link.node_id(), seq),
                        }
                    })
                    .collect();
                if write(&link, updates).await.is_ok() {
                    for told in waiters.into_iter().flatten() {
                        let _ = told.send(());
                    }
                } else {
                    // Redis is away: keep them (newer marks merge in) and
                    // try again; a reconnection re-marks everything anyway.
                    {
                        let mut dirty = lock(&writer.dirty);
                        for (key, waiting) in batch.into_iter().zip(waiters) {
                            // Waiters that gave up go: bounded while Redis fails.
                            let waiting = waiting.into_iter().filter(|t| !t.is_closed());
                            dirty.entry(key).or_default().extend(waiting);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        });
    }

    /// Waits until every mark so far is written (or `within` passes).
    pub(super) async fn drained(&self, within: Duration) {
        let wait = async {
            while !lock(&self.dirty).is_empty() {
                self.idle.notified().await;
            }
        };
        let _ = tokio::time::timeout(within, wait).await;
    }

    /// The node is stopping: every local visitor is announced as between
    /// sockets, in grace until `now_ms + grace_ms` (the other nodes keep
    /// them present that long, so a reconnect elsewhere is seamless), and
    /// this node's fields are deleted.
    pub(super) async fn withdraw(
        &self,
        link: &ClusterLink,
        local: &RegistryHandle,
        now_ms: u64,
        grace_ms: u64,
    ) {
        self.stopped.store(true, Ordering::Release);
        self.wake.notify_one();
        // A batch in flight finishes before the reap below.
        let _writing = self.writing.lock().await;
        let updates: Vec<Update> = local
            .keys()
            .into_iter()
            .filter_map(|key| {
                let seq = self.next_seq();
                let mut portion = local.portion(&key, link.node_id(), seq)?;
                portion.connections.clear();
                portion.grace_until_ms = Some(now_ms + grace_ms);
                Some(Update {
                    g: key.group,
                    v: key.visitor.as_str().to_owned(),
                    seq,
                    p: Some(portion),
                })
            })
            .collect();
        for chunk in updates.chunks(BATCH) {
            let message = Announcement {
                node: link.node_id().to_owned(),
                updates: chunk
                    .iter()
                    .map(|u| Update {
                        g: u.g,
                        v: u.v.clone(),
                        seq: u.seq,
                        p: u.p.clone(),
                    })
                    .collect(),
            };
            let payload = serde_json::to_vec(&message).unwrap_or_default();
            let _ = link.publish("presence", payload).await;
        }
        let _ = reap(link, link.node_id().to_owned()).await;
    }
}

/// Writes one batch: the fields, the node's index, then the announcement,
/// in one pipeline (so in this order).
async fn write(link: &ClusterLink, updates: Vec<Update>) -> Result<(), ()> {
    let node = link.node_id().to_owned();
    let index = link.key(&format!("node_visitors:{node}"));
    let channel = link.key("presence");
    let mut pipe = redis::pipe();
    for update in &updates {
        let hash = link.key(&format!("presence:{}", update.g));
        let member = format!("{}\n{}", update.g, update.v);
        match &update.p {
            Some(portion) => {
                let json = serde_json::to_vec(portion).map_err(|_| ())?;
                pipe.cmd("HSET")
                    .arg(&hash)
                    .arg(field(&update.v, &node))
                    .arg(json)
                    .ignore();
                pipe.cmd("SADD").arg(&index).arg(member).ignore();
            }
            None => {
                pipe.cmd("HDEL")
                    .arg(&hash)
                    .arg(field(&update.v, &node))
                    .ignore();
                pipe.cmd("SREM").arg(&index).arg(member).ignore();
            }
        }
    }
    let message = Announcement { node, updates };
    let payload = serde_json::to_vec(&message).map_err(|_| ())?;
    pipe.cmd("PUBLISH").arg(channel).arg(payload).ignore();
    link.run("presence write", move |mut conn| async move {
        pipe.query_async::<()>(&mut conn).await
    })
    .await
    .map_err(|_| ())
}

/// Deletes `node`'s presence fields (the reaper of a dead node, or a node
/// withdrawing itself).
pub(super) fn reap(
    link: &ClusterLink,
    node: String,
) -> impl std::future::Future<Output = Result<(), crate::infra::error::SharedStateUnavailable>>
       + Send
       + 'static {
    let index = link.key(&format!("node_visitors:{node}"));
    let prefix = link.key("");
    let prefix = prefix.trim_end_matches(':').to_owned();
    link.run("reap presence", move |mut conn| async move {
        REAP.key(index)
            .arg(prefix)
            .arg(node)
            .invoke_async::<i64>(&mut conn)
            .await
            .map(|_| ())
    })
}
