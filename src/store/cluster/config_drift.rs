//! Each node's config hash, carried by its beats, so `/healthz` shows
//! drift between nodes; and the `reload` broadcast that `presence-server
//! reload --all` publishes on the control channel (each node then reloads
//! its own file).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use super::nodes::lock;
use super::ClusterLink;
use crate::infra::config::ClusterConfig;

/// Kind of the control broadcast asking every node to reload its config.
pub const RELOAD_BROADCAST: &str = "reload";

/// Longest accepted config hash from a peer.
const MAX_HASH_CHARS: usize = 128;

impl ClusterLink {
    /// Sets this node's config hash and tells the others at once (the next
    /// beats carry it too).
    pub fn set_config_hash(&self, hash: String) {
        *lock(&self.inner.nodes.config_hash) = hash;
        let beat = self.broadcast("beat", self.beat_body());
        self.runtime().spawn(async move {
            let _ = beat.await;
        });
    }

    /// What a beat says: this node's config hash.
    pub(super) fn beat_body(&self) -> Value {
        json!({ "config_hash": lock(&self.inner.nodes.config_hash).clone() })
    }

    /// Notes a peer's config hash from its beat.
    pub(super) fn heard_config_hash(&self, from: &str, body: &Value) {
        if from == self.node_id() || !self.is_live(from) {
            return;
        }
        if let Some(hash) = body.get("config_hash").and_then(Value::as_str) {
            if hash.len() <= MAX_HASH_CHARS {
                lock(&self.inner.nodes.config_hashes).insert(from.to_owned(), hash.to_owned());
            }
        }
    }

    /// Every live node's config hash, this one's included (`None`: no beat
    /// with one heard yet).
    pub fn node_config_hashes(&self) -> BTreeMap<String, Option<String>> {
        let hashes = lock(&self.inner.nodes.config_hashes).clone();
        let own = lock(&self.inner.nodes.config_hash).clone();
        self.live_nodes()
            .into_iter()
            .map(|node| {
                let hash = if node == self.node_id() {
                    Some(own.clone())
                } else {
                    hashes.get(&node).cloned()
                };
                (node, hash)
            })
            .collect()
    }
}

/// Publishes a `reload` broadcast on the cluster's control channel and
/// returns how many nodes' subscribers received it (the command line's
/// `reload --all`; it is not a node and holds no link).
pub async fn publish_reload(config: &ClusterConfig) -> Result<u64, String> {
    let deadline = config.redis_timeout().max(Duration::from_secs(2));
    let client = redis::Client::open(config.redis_url()).map_err(|e| format!("redis_url: {e}"))?;
    let channel = format!("{}:ctl", config.key_prefix);
    let payload = json!({"t": RELOAD_BROADCAST, "from": "cli", "body": {}}).to_string();
    let publish = async move {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async::<u64>(&mut conn)
            .await
    };
    match tokio::time::timeout(deadline, publish).await {
        Ok(Ok(received)) => Ok(received),
        Ok(Err(e)) => Err(format!("redis: {e}")),
        Err(_) => Err(format!("redis did not answer within {deadline:?}")),
    }
}
