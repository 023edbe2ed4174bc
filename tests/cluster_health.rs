//! Cluster mode's `/healthz`: the node id, the live node count, and
//! `degraded` (503) while Redis is unreachable, back to `ok` when it
//! returns, even empty.

mod common;

use std::time::Duration;

use common::cluster::{eventually, health, wait_for_nodes, Cluster};

#[actix_web::test]
async fn healthz_names_the_node_and_counts_the_cluster() {
    let cluster = Cluster::start(3).await;
    let mut ids = Vec::new();
    for node in &cluster.nodes {
        let (status, body) = health(node).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], "ok");
        assert_eq!(body["mode"], "redis");
        assert_eq!(body["nodes"], 3);
        ids.push(body["node"].as_str().expect("node id").to_owned());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "every node has its own id");
}

#[actix_web::test]
async fn a_single_node_answers_as_before() {
    let server = common::TestServer::start().await;
    let (status, body) = server.get("/healthz", None, None).await;
    assert_eq!(status, 200);
    // As before, plus the config in force and the last reload (none yet).
    let hash = body["config_hash"]
        .as_str()
        .expect("config hash")
        .to_owned();
    assert!(hash.starts_with("sha256:"), "{body}");
    assert_eq!(
        body,
        serde_json::json!({"status": "ok", "config_hash": hash, "last_reload": null})
    );
}

#[actix_web::test]
async fn healthz_is_degraded_while_redis_is_down_and_recovers_even_empty() {
    let mut cluster = Cluster::start(2).await;
    cluster.redis.kill();
    for node in &cluster.nodes {
        let body = eventually(Duration::from_secs(10), "degraded health", || async {
            let (status, body) = health(node).await;
            (status == 503).then_some(body)
        })
        .await;
        assert_eq!(body["status"], "degraded");
        assert_eq!(body["mode"], "redis");
    }
    cluster.redis.restart(true);
    for node in &cluster.nodes {
        wait_for_nodes(node, 2).await;
    }
}

#[actix_web::test]
async fn a_restarted_node_is_a_new_node() {
    let mut cluster = Cluster::start(2).await;
    let (_, before) = health(cluster.node(1)).await;
    let old = cluster.nodes.remove(1);
    let dir = old.shutdown().await;
    wait_for_nodes(cluster.node(0), 1).await;
    let url = cluster.redis.url();
    let again = common::TestServer::start_in(
        dir,
        |config| common::cluster::join(config, &url, common::cluster::TEST_LEASE_MS),
        std::sync::Arc::new(presence_server::clock::SystemClock),
    )
    .await;
    wait_for_nodes(&again, 2).await;
    let (_, after) = health(&again).await;
    assert_ne!(before["node"], after["node"]);
}
