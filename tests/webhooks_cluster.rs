//! Presence webhooks in cluster mode: exactly one node emits each event,
//! wherever the visitor's tabs are and however it moves between nodes,
//! and when the node holding a visitor dies, the node that reaps it emits
//! the `visitor_offline`.

mod common;

use common::cluster::{node_toml, Cluster, ProcessNode, TEST_LEASE_MS};
use common::webhook_receiver::{verify, Receiver, Recorded};
use presence_server::config::{Config, WebhookEventType, WebhookSubscription};
use serde_json::json;

const SECRET: &str = "whsec_cluster_0123456789";

fn subscribe(config: &mut Config, url: &str) {
    config.groups[0].webhooks = vec![WebhookSubscription {
        url: url.to_owned(),
        events: vec![
            WebhookEventType::VisitorOnline,
            WebhookEventType::VisitorOffline,
        ],
        secret: SECRET.to_owned().into(),
    }];
    config.presence.reconnect_grace_ms = 500;
    config.webhooks.backoff_base_ms = 50;
    config.webhooks.backoff_max_ms = 200;
}

fn types_of(seen: &[Recorded], visitor: &str) -> Vec<String> {
    seen.iter()
        .filter(|r| r.json()["visitorid"] == visitor)
        .map(|r| r.json()["type"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[actix_web::test]
async fn one_node_emits_each_event_wherever_the_visitor_is() {
    let receiver = Receiver::start().await;
    let url = receiver.url.clone();
    let cluster = Cluster::start_with(3, move |_, c| subscribe(c, &url)).await;

    let on_0 = cluster.node(0).visitor("v-c", json!({"page": "/a"})).await;
    receiver
        .wait_for("online", |s| types_of(s, "v-c") == ["visitor_online"])
        .await;
    // A second tab on another node, the first closing, a navigation from
    // node 1 to node 2 within the grace: the visitor never goes offline.
    let on_1 = cluster.node(1).visitor("v-c", json!({"page": "/b"})).await;
    on_0.close().await;
    on_1.close().await;
    let on_2 = cluster.node(2).visitor("v-c", json!({"page": "/c"})).await;
    on_2.close().await;
    let seen = receiver
        .wait_for("offline", |s| types_of(s, "v-c").len() == 2)
        .await;
    assert_eq!(
        types_of(&seen, "v-c"),
        ["visitor_online", "visitor_offline"]
    );
    // Every node's grace for v-c has ended before the sentinel's does: a
    // second emitter would have shown by the time its offline arrives.
    let sentinel = cluster.node(1).visitor("v-sentinel", json!({})).await;
    sentinel.close().await;
    let seen = receiver
        .wait_for("the sentinel's offline", |s| {
            types_of(s, "v-sentinel").len() == 2
        })
        .await;
    assert_eq!(
        types_of(&seen, "v-c"),
        ["visitor_online", "visitor_offline"]
    );
    for r in &seen {
        assert!(verify(
            SECRET,
            &r.headers["presence-signature"],
            &r.body,
            300
        ));
    }
    for node in cluster.nodes {
        node.shutdown().await;
    }
}

#[actix_web::test]
async fn the_reaper_of_a_dead_node_emits_its_visitors_offline_once() {
    let receiver = Receiver::start().await;
    let url = receiver.url.clone();
    let cluster = Cluster::start_with(2, move |_, c| subscribe(c, &url)).await;
    let toml = node_toml(&cluster.redis.url(), TEST_LEASE_MS).replacen(
        "origins = [\"http://allowed.test\", \"http://localhost:8080\"]",
        &format!(
            "origins = [\"http://allowed.test\", \"http://localhost:8080\"]\nwebhooks = [{{url = \"{}\", events = [\"visitor_online\", \"visitor_offline\"], secret = \"{SECRET}\"}}]",
            receiver.url
        ),
        1,
    );
    assert!(toml.contains("webhooks = ["));
    let mut doomed = ProcessNode::start(&toml, &[]);
    common::cluster::wait_for_nodes(cluster.node(0), 3).await;
    let client = doomed.client();
    let _socket = client.visitor("v-doomed", json!({})).await;
    receiver
        .wait_for("online from the doomed node", |s| {
            s.iter()
                .any(|r| r.delivered() && r.json()["visitorid"] == "v-doomed")
        })
        .await;
    doomed.kill();
    let seen = receiver
        .wait_for("offline from the reaper", |s| {
            types_of(s, "v-doomed").len() == 2
        })
        .await;
    let offline = seen
        .iter()
        .find(|r| r.json()["type"] == "visitor_offline")
        .unwrap()
        .json();
    assert_eq!(offline["data"]["reason"], "node_died");
    // A sentinel after the reap: no second offline came meanwhile.
    let sentinel = cluster.node(1).visitor("v-sentinel", json!({})).await;
    sentinel.close().await;
    let seen = receiver
        .wait_for("the sentinel's offline", |s| {
            types_of(s, "v-sentinel").len() == 2
        })
        .await;
    assert_eq!(
        types_of(&seen, "v-doomed"),
        ["visitor_online", "visitor_offline"]
    );
    for node in cluster.nodes {
        node.shutdown().await;
    }
}

#[actix_web::test]
async fn a_stopped_nodes_visitors_go_offline_after_the_grace_unless_they_moved() {
    let receiver = Receiver::start().await;
    let url = receiver.url.clone();
    // A grace long enough for the reconnect below on a loaded machine.
    let mut cluster = Cluster::start_with(2, move |_, c| {
        subscribe(c, &url);
        c.presence.reconnect_grace_ms = 3000;
    })
    .await;
    let stays = cluster.node(1).visitor("v-stays", json!({})).await;
    let leaves = cluster.node(1).visitor("v-leaves", json!({})).await;
    receiver
        .wait_for("both online", |s| {
            s.len() == 2 && s.iter().all(Recorded::delivered)
        })
        .await;
    drop((stays, leaves));
    // SIGTERM's path: sockets close, the node withdraws and leaves.
    cluster.nodes.remove(1).shutdown().await;
    // v-stays's page reconnects to the other node within the grace.
    let _back = cluster.node(0).visitor("v-stays", json!({})).await;
    let seen = receiver
        .wait_for("v-leaves offline", |s| types_of(s, "v-leaves").len() == 2)
        .await;
    let offline = seen
        .iter()
        .find(|r| r.json()["type"] == "visitor_offline")
        .unwrap()
        .json();
    assert_eq!(offline["visitorid"], "v-leaves");
    assert_eq!(offline["data"]["reason"], "node_left");
    let sentinel = cluster.node(0).visitor("v-sentinel", json!({})).await;
    sentinel.close().await;
    let seen = receiver
        .wait_for("the sentinel's offline", |s| {
            types_of(s, "v-sentinel").len() == 2
        })
        .await;
    assert_eq!(
        types_of(&seen, "v-stays"),
        ["visitor_online"],
        "it moved: no offline, no second online"
    );
    assert_eq!(
        types_of(&seen, "v-leaves"),
        ["visitor_online", "visitor_offline"]
    );
    for node in cluster.nodes {
        node.shutdown().await;
    }
}

#[actix_web::test]
async fn any_node_lists_and_replays_every_nodes_dead_letters() {
    let receiver = Receiver::start().await;
    receiver.answer_by_default(common::webhook_receiver::Answer::Status(500));
    let url = receiver.url.clone();
    let cluster = Cluster::start_with(2, move |_, c| {
        subscribe(c, &url);
        c.webhooks.retry_horizon_secs = 1;
    })
    .await;
    let _visitor = cluster.node(1).visitor("v-letter", json!({})).await;
    let admin = cluster.node(0).admin_token("ada.admin", 72);
    let page = common::cluster::eventually(
        std::time::Duration::from_secs(10),
        "the dead letter, seen from the other node",
        || async {
            let (status, page) = cluster
                .node(0)
                .get("/admin/72/webhooks/failed", Some(&admin), None)
                .await;
            assert_eq!(status, 200, "{page}");
            (page["failed"].as_array()?.len() == 1).then_some(page)
        },
    )
    .await;
    assert_eq!(page["partial"], false);
    let id = page["failed"][0]["id"].as_str().unwrap().to_owned();
    assert!(id.contains('@'), "{id}: named with its node");
    // Paging: a cursor at the only letter ends the list.
    let (status, next) = cluster
        .node(0)
        .get(
            &format!("/admin/72/webhooks/failed?cursor={id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(
        (status, next["failed"].as_array().map(Vec::len)),
        (200, Some(0))
    );
    receiver.answer_by_default(common::webhook_receiver::Answer::Status(200));
    let (status, body) = cluster
        .node(0)
        .post(
            "/admin/72/webhooks/failed/replay",
            Some(&admin),
            None,
            &json!({"ids": [id]}),
        )
        .await;
    assert_eq!((status, &body["replayed"]), (200, &json!(1)), "{body}");
    let seen = receiver
        .wait_for("the replayed delivery", |s| {
            s.iter().any(Recorded::delivered)
        })
        .await;
    assert_eq!(
        seen.iter().find(|r| r.delivered()).unwrap().json()["visitorid"],
        "v-letter"
    );
    let (_, page) = cluster
        .node(1)
        .get("/admin/72/webhooks/failed", Some(&admin), None)
        .await;
    assert_eq!(page["failed"], json!([]));
    for node in cluster.nodes {
        node.shutdown().await;
    }
}
