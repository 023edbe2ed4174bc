//! Reaping dead nodes' shared entries (see [`super::nodes`]): one node
//! wins `{prefix}:reap:{id}`, checks the lease is still gone, runs the
//! reapers the layers above registered, forgets the node and drops the
//! claim. A node whose own lease lapsed re-publishes only once no reap of
//! it is in progress.

use super::nodes::lock;
use super::ClusterLink;
use crate::infra::error::SharedStateUnavailable;

/// KEYS: a reap claim. ARGV: its holder. Deletes the claim if it is still
/// the holder's.
static RELEASE_CLAIM: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

pub(super) async fn reap_due(link: &ClusterLink) {
    let due: Vec<String> = lock(&link.inner.nodes.to_reap).iter().cloned().collect();
    for node in due {
        if reap(link, &node).await.is_ok() {
            lock(&link.inner.nodes.to_reap).remove(&node);
        }
    }
}

/// Reaps `node` if this node wins the claim; Ok when nothing is left to do.
async fn reap(link: &ClusterLink, node: &str) -> Result<(), SharedStateUnavailable> {
    let claim = link.key(&format!("reap:{node}"));
    let me = link.node_id().to_owned();
    let hold_ms = 3 * link.config().node_lease_ms;
    let won: Option<String> = link
        .run("claim reap", move |mut conn| async move {
            redis::cmd("SET")
                .arg(claim)
                .arg(me)
                .arg("NX")
                .arg("PX")
                .arg(hold_ms)
                .query_async(&mut conn)
                .await
        })
        .await?;
    if won.is_none() {
        let claim = link.key(&format!("reap:{node}"));
        let holder: Option<String> = link
            .run("reap claim", move |mut conn| async move {
                redis::cmd("GET").arg(claim).query_async(&mut conn).await
            })
            .await?;
        if holder.as_deref() != Some(link.node_id()) {
            // Another node reaps it.
            return Ok(());
        }
        // Ours, from an attempt that failed half-way: go on.
    }
    // Its lease is back (it was stalled, not dead): it keeps its entries,
    // and this node hears it again at its next beat.
    let lease = link.key(&format!("node:{node}"));
    let back: bool = link
        .run("node lease", move |mut conn| async move {
            redis::cmd("EXISTS").arg(lease).query_async(&mut conn).await
        })
        .await?;
    if !back {
        let reapers = lock(&link.inner.nodes.reapers).clone();
        for reaper in reapers {
            reaper(node.to_owned()).await?;
        }
        let nodes_key = link.key("nodes");
        let forgotten = node.to_owned();
        link.run("forget node", move |mut conn| async move {
            redis::cmd("ZREM")
                .arg(nodes_key)
                .arg(forgotten)
                .query_async::<()>(&mut conn)
                .await
        })
        .await?;
    }
    let (claim, me) = (link.key(&format!("reap:{node}")), link.node_id().to_owned());
    link.run("release reap claim", move |mut conn| async move {
        RELEASE_CLAIM
            .key(claim)
            .arg(me)
            .invoke_async::<()>(&mut conn)
            .await
    })
    .await
}

/// Re-publishes this node's entries once no other node is reaping them:
/// a reap that began before the lease came back holds `reap:{me}` and
/// finishes first; one that begins after sees the lease and stops.
pub(super) async fn republish_after_reaps(link: &ClusterLink) {
    let claim = link.key(&format!("reap:{}", link.node_id()));
    loop {
        let claim = claim.clone();
        let holder: Result<Option<String>, _> = link
            .run("reap claim", move |mut conn| async move {
                redis::cmd("GET").arg(claim).query_async(&mut conn).await
            })
            .await;
        match holder {
            Ok(None) => break,
            Ok(Some(holder)) if holder == link.node_id() => break,
            // Being reaped (or Redis is away): wait a beat, then look again.
            _ => tokio::time::sleep(link.config().heartbeat()).await,
        }
    }
    link.inner.channels.run_hooks(false);
}
