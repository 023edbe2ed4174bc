//! The invoke rules hold across nodes: at-most-once with receipts (an
//! unacknowledged invoke follows the page to another node, an
//! acknowledged one is never re-sent), `max_pending_invokes`, the invoke
//! timeout, and the cluster metrics that count them.

mod common;

use std::time::Duration;

use common::cluster::{eventually, Cluster};
use common::{sample, scrape, TestServer, WsClient};
use serde_json::{json, Value};

async fn next_invoke(ws: &mut WsClient) -> Value {
    let invoke = ws.recv().await;
    assert_eq!(invoke["type"], "invoke", "{invoke}");
    invoke
}

async fn until_tabs(node: &TestServer, visitor: &str, tabs: u64) {
    let token = node.token("fred.demo", 72);
    eventually(Duration::from_secs(10), "the visitor's tabs", || async {
        let (_, body) = node
            .get(
                &format!("/presence/72/visitors/{visitor}"),
                Some(&token),
                None,
            )
            .await;
        (body["connections"] == tabs && body["online"] == true).then_some(())
    })
    .await;
}

#[actix_web::test]
async fn an_unacknowledged_invoke_follows_the_page_to_another_node() {
    let cluster = Cluster::start(3).await;
    let token = cluster.node(0).token("fred.demo", 72);
    let mut page1 = cluster.node(1).receipts_visitor("v-r").await;
    until_tabs(cluster.node(0), "v-r", 1).await;
    let call = cluster.node(0).invoke(
        &token,
        "v-r",
        json!({"func": "f", "args": 7, "timeout_ms": 10000}),
    );
    let navigate = async {
        let first = next_invoke(&mut page1).await;
        // Taken by the socket, never acknowledged: the page went away.
        page1.close().await;
        let mut page2 = cluster.node(2).receipts_visitor("v-r").await;
        let again = next_invoke(&mut page2).await;
        assert_eq!(again["args"], first["args"]);
        page2
            .send(json!({"type":"received","id":again["id"]}))
            .await;
        page2
            .send(json!({"type":"result","id":again["id"],"ok":true,"value":"page 2"}))
            .await;
        page2
    };
    let ((status, body), _page2) = tokio::join!(call, navigate);
    assert_eq!((status, &body["value"]), (200, &json!("page 2")), "{body}");
}

#[actix_web::test]
async fn an_acknowledged_invoke_is_never_sent_again() {
    let cluster = Cluster::start(3).await;
    let token = cluster.node(0).token("fred.demo", 72);
    let mut page1 = cluster.node(1).receipts_visitor("v-a").await;
    until_tabs(cluster.node(0), "v-a", 1).await;
    let call = cluster
        .node(0)
        .invoke(&token, "v-a", json!({"func": "f", "timeout_ms": 10000}));
    let navigate = async {
        let first = next_invoke(&mut page1).await;
        page1
            .send(json!({"type":"received","id":first["id"]}))
            .await;
        page1.close().await;
    };
    let ((status, body), ()) = tokio::join!(call, navigate);
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("visitor_not_present")),
        "{body}"
    );
    // The next page on another node gets the next invoke, not that one.
    let mut page2 = cluster.node(2).receipts_visitor("v-a").await;
    let call = cluster.node(0).invoke(
        &token,
        "v-a",
        json!({"func": "second", "timeout_ms": 10000}),
    );
    let answer = async {
        let invoke = next_invoke(&mut page2).await;
        assert_eq!(invoke["func"], "second", "the acknowledged one came back");
        page2
            .send(json!({"type":"result","id":invoke["id"],"ok":true,"value":2}))
            .await;
    };
    let ((status, _), ()) = tokio::join!(call, answer);
    assert_eq!(status, 200);
}

#[actix_web::test]
async fn pending_limits_timeouts_and_metrics_hold_across_nodes() {
    let cluster = Cluster::start_with(2, |_, c| c.presence.max_pending_invokes = 2).await;
    let token = cluster.node(0).token("fred.demo", 72);
    let mut visitor = cluster.node(1).visitor("v-p", json!({})).await;
    until_tabs(cluster.node(0), "v-p", 1).await;

    // The page never answers: two wait, the third is refused.
    let slow = json!({"func": "f", "timeout_ms": 1500});
    let first = cluster.node(0).invoke(&token, "v-p", slow.clone());
    let second = cluster.node(0).invoke(&token, "v-p", slow.clone());
    let third = async {
        eventually(Duration::from_secs(10), "two invokes waiting", || async {
            let text = scrape(cluster.node(0)).await;
            (sample(&text, "presence_pending_invokes") >= 2.0).then_some(())
        })
        .await;
        cluster.node(0).invoke(&token, "v-p", slow.clone()).await
    };
    let ((s1, b1), (s2, _), (s3, b3)) = tokio::join!(first, second, third);
    assert_eq!(
        (s3, b3["error"].as_str()),
        (429, Some("too_many_pending")),
        "{b3}"
    );
    assert_eq!(
        (s1, b1["error"].as_str()),
        (504, Some("invoke_timeout")),
        "{b1}"
    );
    assert_eq!(s2, 504);
    // Drain what the page was sent.
    for _ in 0..2 {
        next_invoke(&mut visitor).await;
    }

    let text = scrape(cluster.node(0)).await;
    assert_eq!(sample(&text, "presence_cluster_nodes"), 2.0, "{text}");
    assert!(text.contains("presence_cluster_invokes_total"), "{text}");
    assert!(
        text.contains("presence_redis_command_duration_seconds"),
        "{text}"
    );
}
