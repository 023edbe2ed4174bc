//! A node that stalls past its lease (SIGSTOP, as in a long pause of its
//! VM) while Redis and the other nodes go on: it is declared dead and
//! reaped like a crashed one, and when it resumes it re-publishes what it
//! still holds, so its visitors are back everywhere and reachable again.

mod common;

use std::time::Duration;

use common::cluster::{
    eventually, join, lookup, node_toml, wait_for_nodes, ProcessNode, RedisServer, TEST_LEASE_MS,
};
use common::TestServer;
use serde_json::json;

#[actix_web::test]
async fn a_node_frozen_past_its_lease_is_reaped_then_comes_back_whole() {
    let redis = RedisServer::start();
    let url = redis.url();
    let survivor = TestServer::start_with(|c| join(c, &url, TEST_LEASE_MS)).await;
    let frozen = ProcessNode::start(&node_toml(&redis.url(), TEST_LEASE_MS), &[]);
    wait_for_nodes(&survivor, 2).await;
    let mut visitor = frozen.client().visitor("v-f", json!({"url": "/"})).await;
    let online = |want: bool| {
        let survivor = &survivor;
        move || async move { (lookup(survivor, "v-f").await["online"] == want).then_some(()) }
    };
    eventually(
        Duration::from_secs(5),
        "online on the survivor",
        online(true),
    )
    .await;

    frozen.freeze();
    let lease = Duration::from_millis(TEST_LEASE_MS);
    eventually(
        lease + Duration::from_secs(2),
        "offline once the lease ran out",
        online(false),
    )
    .await;
    let fields = |want: &'static str| {
        let redis = &redis;
        move || async move {
            let reply = redis.command(&["HLEN", "presence:presence:72"])?;
            (reply.trim() == want).then_some(())
        }
    };
    eventually(
        Duration::from_secs(10),
        "the frozen node reaped",
        fields(":0"),
    )
    .await;

    frozen.thaw();
    eventually(
        Duration::from_secs(10),
        "re-published in Redis",
        fields(":1"),
    )
    .await;
    wait_for_nodes(&survivor, 2).await;
    eventually(Duration::from_secs(5), "online again", online(true)).await;
    let token = survivor.token("fred.demo", 72);
    let call = survivor.invoke(&token, "v-f", json!({"func": "f", "timeout_ms": 8000}));
    let answer = tokio::time::timeout(Duration::from_secs(10), visitor.answer(json!("back")));
    let ((status, body), answered) = tokio::join!(call, answer);
    let log = std::fs::read_to_string(&frozen.log).unwrap_or_default();
    assert!(
        answered.is_ok(),
        "the invoke never reached the visitor: {status} {body}; the frozen node's log:\n{log}"
    );
    assert_eq!((status, &body["value"]), (200, &json!("back")), "{body}");
}
