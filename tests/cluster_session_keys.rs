//! Session keys across a Redis that came back empty: the node holding the
//! visitor writes its key back, so the key still resolves from every node
//! (not a miss that counts against the agent's limit).

mod common;

use std::time::Duration;

use common::cluster::{eventually, wait_for_nodes, Cluster};
use serde_json::json;

#[actix_web::test]
async fn a_session_key_survives_a_redis_that_comes_back_empty() {
    let mut cluster = Cluster::start(2).await;
    let mut visitor = cluster.node(0).visitor("v-key", json!({})).await;
    visitor.send(json!({"type": "session_key"})).await;
    let key = visitor.recv().await["key"]
        .as_str()
        .expect("session key")
        .to_owned();
    let path = format!("/presence/72/sessions/{key}");
    let token = cluster.node(1).token("fred.demo", 72);
    let (status, body) = cluster.node(1).get(&path, Some(&token), None).await;
    assert_eq!(
        (status, &body["visitorid"]),
        (200, &json!("v-key")),
        "{body}"
    );

    cluster.redis.restart(true);
    for node in &cluster.nodes {
        wait_for_nodes(node, 2).await;
    }
    let stored = format!("presence:session_key:72:{key}");
    eventually(Duration::from_secs(5), "the key written back", || async {
        let reply = cluster.redis.command(&["EXISTS", &stored])?;
        (reply.trim() == ":1").then_some(())
    })
    .await;
    // Every node reloads after the restart and hears the write-back.
    for node in &cluster.nodes {
        let token = node.token("fred.demo", 72);
        let body = eventually(Duration::from_secs(5), "the key resolves", || async {
            let (status, body) = node.get(&path, Some(&token), None).await;
            (status == 200).then_some(body)
        })
        .await;
        assert_eq!(body["visitorid"], "v-key", "{body}");
    }
    drop(visitor);
}
