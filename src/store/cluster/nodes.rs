//! Node liveness. Each node holds a lease, `{prefix}:node:{id}` (`SET PX
//! node_lease_ms`), renews it four times per lease, records itself in the
//! sorted set `{prefix}:nodes` (id → last beat, Unix ms) and says `beat` on
//! the control channel. Every node keeps its own table of peers and
//! declares a peer dead when it has not heard it for a lease, with no
//! leader to wait for (a stale leader made every request of Sockudo time
//! out, sockudo #418). While this node's own subscriber is down it hears
//! nobody, so it declares nobody dead: when it is back every peer starts a
//! fresh lease.
//!
//! A dead node's shared entries are removed by one node: whoever wins
//! `SET {prefix}:reap:{id} NX` runs the reapers the layers above
//! registered (compare-and-delete scripts that keep what moved elsewhere),
//! unless the node's lease is back (it was stalled, not dead), then drops
//! the claim. A node that finds its own lease lapsed re-publishes its
//! entries only once no reap of it is in progress, so a reap never deletes
//! a re-publication.
//! Nodes found in `{prefix}:nodes` without a lease at start-up, or whose
//! last beat is two leases old, are reaped too, so the entries of a node
//! that died while nobody was watching do not live on.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_core::future::BoxFuture;
use serde_json::json;

use super::{reaping, ClusterLink};
use crate::infra::error::SharedStateUnavailable;

/// How often peers' leases are checked, at most.
const EXPIRY_TICK: std::time::Duration = std::time::Duration::from_millis(200);

/// What a node listener hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    /// A node was heard from for the first time.
    Joined(String),
    /// A node said it is leaving (SIGTERM): it removed its own entries.
    Left(String),
    /// A node's lease ran out: it crashed or was cut off.
    Died(String),
}

/// Hears nodes come and go; must not wait.
pub type NodeListener = Arc<dyn Fn(&NodeEvent) + Send + Sync>;

/// Removes the shared entries of a dead node.
pub type Reaper =
    Arc<dyn Fn(String) -> BoxFuture<'static, Result<(), SharedStateUnavailable>> + Send + Sync>;

pub(super) struct NodeTable {
    me: String,
    peers: Mutex<HashMap<String, Instant>>,
    listeners: Mutex<Vec<NodeListener>>,
    pub(super) reapers: Mutex<Vec<Reaper>>,
    /// Dead nodes whose entries are still to be reaped.
    pub(super) to_reap: Mutex<HashSet<String>>,
    /// Every node known to have died or left (their entries in Redis are
    /// ignored until reaped).
    dead: Mutex<HashSet<String>>,
    /// When this node last heard its own beat (the subscriber works).
    own_beat: Mutex<Instant>,
    /// When the oldest of this node's beats sent since it last heard one
    /// was sent (None: every beat sent has been heard back).
    unheard_since: Mutex<Option<Instant>>,
    /// This node's config hash, carried by its beats.
    pub(super) config_hash: Mutex<String>,
    /// The live peers' config hashes, from their beats.
    pub(super) config_hashes: Mutex<HashMap<String, String>>,
}

impl NodeTable {
    pub(super) fn new(me: String) -> Self {
        Self {
            me,
            peers: Mutex::default(),
            listeners: Mutex::default(),
            reapers: Mutex::default(),
            to_reap: Mutex::default(),
            dead: Mutex::default(),
            own_beat: Mutex::new(Instant::now()),
            unheard_since: Mutex::new(None),
            config_hash: Mutex::default(),
            config_hashes: Mutex::default(),
        }
    }
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl ClusterLink {
    /// Live nodes, this one included, sorted.
    pub fn live_nodes(&self) -> Vec<String> {
        let table = &self.inner.nodes;
        let mut nodes: Vec<String> = lock(&table.peers).keys().cloned().collect();
        nodes.push(table.me.clone());
        nodes.sort();
        nodes
    }

    /// Whether `node` is this one or a live peer.
    pub fn is_live(&self, node: &str) -> bool {
        node == self.inner.nodes.me || lock(&self.inner.nodes.peers).contains_key(node)
    }

    /// Whether `node` is known to have died or left.
    pub fn is_dead(&self, node: &str) -> bool {
        lock(&self.inner.nodes.dead).contains(node)
    }

    /// Hears nodes join, leave and die. Register before `start`.
    pub fn on_node_event(&self, listener: NodeListener) {
        lock(&self.inner.nodes.listeners).push(listener);
    }

    /// Removes a dead node's shared entries when this node reaps it.
    pub fn on_reap(&self, reaper: Reaper) {
        lock(&self.inner.nodes.reapers).push(reaper);
    }

    fn node_event(&self, event: NodeEvent) {
        let listeners = lock(&self.inner.nodes.listeners).clone();
        for listener in listeners {
            listener(&event);
        }
        self.inner
            .metrics
            .cluster
            .set_live_nodes(lock(&self.inner.nodes.peers).len() + 1);
    }

    /// Something `node` just published (an announcement) says it is alive:
    /// a node not heard yet counts as live from now (its first beat may
    /// still be on the way). A node known dead stays dead until it beats.
    pub fn heard_from(&self, node: &str) {
        if !self.is_live(node) && !self.is_dead(node) {
            self.heard(node);
        }
    }

    fn heard(&self, node: &str) {
        let table = &self.inner.nodes;
        if node == table.me {
            *lock(&table.own_beat) = Instant::now();
            *lock(&table.unheard_since) = None;
            return;
        }
        let new = lock(&table.peers)
            .insert(node.to_owned(), Instant::now())
            .is_none();
        if new {
            // A pending reap stays pending: it finds the lease back and
            // only drops its claim (one that failed half-way must not
            // leave `reap:{id}` holding back the node's re-publication).
            lock(&table.dead).remove(node);
            self.node_event(NodeEvent::Joined(node.to_owned()));
        }
    }

    fn gone(&self, node: &str, event: NodeEvent) {
        lock(&self.inner.nodes.dead).insert(node.to_owned());
        lock(&self.inner.nodes.config_hashes).remove(node);
        if lock(&self.inner.nodes.peers).remove(node).is_some() {
            self.node_event(event);
        }
    }

    /// A node found dead without ever being heard: its entries are
    /// ignored, dropped from replicas and reaped.
    fn found_dead(&self, node: String) {
        if node == self.inner.nodes.me || self.is_live(&node) {
            return;
        }
        let new = lock(&self.inner.nodes.dead).insert(node.clone());
        lock(&self.inner.nodes.to_reap).insert(node.clone());
        if new {
            self.node_event(NodeEvent::Died(node));
        }
    }
}

pub(super) fn start(link: &ClusterLink) {
    let beats = link.clone();
    link.on_control(
        "beat",
        Arc::new(move |from, body| {
            beats.heard(from);
            beats.heard_config_hash(from, body);
        }),
    );
    let leaves = link.clone();
    link.on_control(
        "leave",
        Arc::new(move |from, _body| leaves.gone(from, NodeEvent::Left(from.to_owned()))),
    );
    // A reconnected subscriber missed beats: every peer gets a fresh lease.
    let fresh = link.clone();
    link.on_connected(Arc::new(move |_first| {
        let now = Instant::now();
        for heard in lock(&fresh.inner.nodes.peers).values_mut() {
            *heard = now;
        }
        *lock(&fresh.inner.nodes.own_beat) = now;
        *lock(&fresh.inner.nodes.unheard_since) = None;
    }));
    // Expiry on a tick of its own, so a death is declared within
    // EXPIRY_TICK of the lease running out, whatever the heartbeat.
    let expiring = link.clone();
    link.inner.handle.clone().spawn(async move {
        let mut ticks = tokio::time::interval(expiring.config().heartbeat().min(EXPIRY_TICK));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            expire(&expiring);
        }
    });
    let link = link.clone();
    link.inner.handle.clone().spawn(async move {
        let beat = link.config().heartbeat();
        let mut ticks = tokio::time::interval(beat);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut round = 0u64;
        loop {
            ticks.tick().await;
            round += 1;
            renew(&link, round == 1).await;
            if round.is_multiple_of(4) {
                find_stale(&link).await;
            }
            reaping::reap_due(&link).await;
        }
    });
}

/// Reads the nodes Redis knows: those with a lease are live, the rest are
/// dead and reaped. Runs once, before anything reads shared entries.
pub(super) async fn seed(link: &ClusterLink) {
    let nodes_key = link.key("nodes");
    let listed: Result<Vec<String>, _> = link
        .run("list nodes", move |mut conn| async move {
            redis::cmd("ZRANGE")
                .arg(nodes_key)
                .arg(0)
                .arg(-1)
                .query_async(&mut conn)
                .await
        })
        .await;
    for node in listed.unwrap_or_default() {
        if node == link.node_id() {
            continue;
        }
        let lease = link.key(&format!("node:{node}"));
        let alive: Result<bool, _> = link
            .run("node lease", move |mut conn| async move {
                redis::cmd("EXISTS").arg(lease).query_async(&mut conn).await
            })
            .await;
        match alive {
            Ok(true) => link.heard(&node),
            Ok(false) => link.found_dead(node),
            Err(_) => {}
        }
    }
}

async fn renew(link: &ClusterLink, first: bool) {
    let lease = link.key(&format!("node:{}", link.node_id()));
    let nodes_key = link.key("nodes");
    let me = link.node_id().to_owned();
    let lease_ms = link.config().node_lease_ms;
    let now_ms = unix_ms();
    let renewed: Result<(Option<String>,), _> = link
        .run("renew lease", move |mut conn| async move {
            redis::pipe()
                .cmd("SET")
                .arg(lease)
                .arg(1)
                .arg("PX")
                .arg(lease_ms)
                .arg("GET")
                .cmd("ZADD")
                .arg(nodes_key)
                .arg(now_ms)
                .arg(me)
                .ignore()
                .query_async(&mut conn)
                .await
        })
        .await;
    let Ok((previous,)) = renewed else {
        return;
    };
    if previous.is_none() && !first {
        // The lease had run out (Redis hung or lost its data): the others
        // may have declared this node dead and reaped its entries.
        tracing::warn!("this node's lease had expired; re-publishing");
        let link = link.clone();
        link.inner.handle.clone().spawn(async move {
            reaping::republish_after_reaps(&link).await;
        });
    }
    // Noted before it is sent: hearing it back clears it.
    let oldest_unheard = *lock(&link.inner.nodes.unheard_since).get_or_insert_with(Instant::now);
    match link.broadcast("beat", link.beat_body()).await {
        // Not even this node's subscriber got it: the subscription is gone.
        Ok(0) => link.inner.channels.force_reconnect(),
        // Resubscribe only if a beat sent three heartbeats ago has still
        // not come back (not merely because none was heard for a while:
        // after a stall the beats are still on their way).
        Ok(_) => {
            let heard_since = lock(&link.inner.nodes.unheard_since).is_none();
            if !heard_since
                && link.subscriber_connected()
                && oldest_unheard.elapsed() > link.config().heartbeat() * 3
            {
                tracing::warn!("this node's beats stopped arriving; resubscribing");
                *lock(&link.inner.nodes.unheard_since) = None;
                link.inner.channels.force_reconnect();
            }
        }
        Err(_) => {}
    }
}

/// Declares dead the peers unheard for a lease (not while this node hears
/// nobody).
fn expire(link: &ClusterLink) {
    // Not hearing its own beats (a hung Redis keeps the connection open)
    // is this node's problem, not its peers'.
    let own = *lock(&link.inner.nodes.own_beat);
    if !link.is_reachable() || own.elapsed() > link.config().heartbeat() * 2 {
        return;
    }
    let lease = link.config().node_lease();
    let dead: Vec<String> = lock(&link.inner.nodes.peers)
        .iter()
        .filter(|(_, heard)| heard.elapsed() > lease)
        .map(|(node, _)| node.clone())
        .collect();
    for node in dead {
        tracing::warn!(node = %node, "node lease ran out; declaring it dead");
        link.gone(&node, NodeEvent::Died(node.clone()));
        lock(&link.inner.nodes.to_reap).insert(node);
    }
}

/// Nodes whose last recorded beat is two leases old are dead, heard or not.
async fn find_stale(link: &ClusterLink) {
    let nodes_key = link.key("nodes");
    let cutoff = unix_ms().saturating_sub(2 * link.config().node_lease_ms);
    let stale: Result<Vec<String>, _> = link
        .run("stale nodes", move |mut conn| async move {
            redis::cmd("ZRANGEBYSCORE")
                .arg(nodes_key)
                .arg("-inf")
                .arg(cutoff)
                .query_async(&mut conn)
                .await
        })
        .await;
    for node in stale.unwrap_or_default() {
        link.found_dead(node);
    }
}

pub(super) async fn leave(link: &ClusterLink) {
    let _ = link.broadcast("leave", json!({})).await;
    let lease = link.key(&format!("node:{}", link.node_id()));
    let nodes_key = link.key("nodes");
    let me = link.node_id().to_owned();
    let _ = link
        .run("leave", move |mut conn| async move {
            redis::pipe()
                .cmd("DEL")
                .arg(lease)
                .ignore()
                .cmd("ZREM")
                .arg(nodes_key)
                .arg(me)
                .ignore()
                .query_async::<()>(&mut conn)
                .await
        })
        .await;
}

pub(super) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
