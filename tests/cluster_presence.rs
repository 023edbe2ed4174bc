//! Presence across a 3-node cluster: lookups, tab counts, invokes and
//! signals, watch events and page navigation, wherever the visitor, the
//! REST call and the agent socket are.

mod common;

use std::time::Duration;

use common::cluster::{eventually, lookup, Cluster};
use common::TestServer;
use serde_json::{json, Value};

/// Waits until `node` sees `visitor` with `tabs` connections.
async fn until_tabs(node: &TestServer, visitor: &str, tabs: u64) -> Value {
    eventually(
        Duration::from_secs(10),
        "the lookup to show the tabs",
        || async {
            let body = lookup(node, visitor).await;
            (body["connections"] == tabs && body["online"] == (tabs > 0 || body["online"] == true))
                .then_some(body)
        },
    )
    .await
}

#[actix_web::test]
async fn a_lookup_on_any_node_sums_the_tabs_and_shows_the_latest_page() {
    let cluster = Cluster::start(3).await;

    let offline = lookup(cluster.node(2), "v-1").await;
    assert_eq!(offline["online"], false);

    let _tab1 = cluster.node(0).visitor("v-1", json!({"url": "/a"})).await;
    let seen = until_tabs(cluster.node(2), "v-1", 1).await;
    assert_eq!(seen["online"], true);
    assert_eq!(seen["data"], json!({"url": "/a"}));

    let _tab2 = cluster.node(1).visitor("v-1", json!({"url": "/b"})).await;
    for node in &cluster.nodes {
        let seen = until_tabs(node, "v-1", 2).await;
        assert_eq!(seen["data"], json!({"url": "/b"}), "the newest tab's page");
    }
}

#[actix_web::test]
async fn invokes_and_signals_reach_a_visitor_on_another_node() {
    let cluster = Cluster::start(3).await;
    let mut visitor = cluster.node(0).visitor("v-2", json!({})).await;
    let token = cluster.node(1).token("fred.demo", 72);
    until_tabs(cluster.node(1), "v-2", 1).await;
    until_tabs(cluster.node(2), "v-2", 1).await;

    // REST on node 1.
    let rest = cluster
        .node(1)
        .invoke(&token, "v-2", json!({"func": "showTerms", "args": [1]}));
    let answer = async {
        let invoke = visitor.answer(json!("yes")).await;
        assert_eq!(invoke["args"], json!([1]));
    };
    let ((status, body), ()) = tokio::join!(rest, answer);
    assert_eq!((status, &body), (200, &json!({"ok": true, "value": "yes"})));

    // The agent socket on node 2.
    let token2 = cluster.node(2).token("fred.demo", 72);
    let mut agent = cluster.node(2).agent(&token2).await;
    agent
        .send(json!({"type":"invoke","id":"r1","visitorid":"v-2","func":"f","args":[]}))
        .await;
    let invoke = visitor.recv().await;
    visitor
        .send(json!({"type":"result","id":invoke["id"],"ok":false,"error":"no"}))
        .await;
    assert_eq!(
        agent.recv().await,
        json!({"type":"result","id":"r1","ok":false,"error":"no"})
    );

    // A signal from node 2's REST.
    let body = json!({"data": {"hello": 1}});
    let signal = cluster.node(2).post(
        "/presence/72/visitors/v-2/signal",
        Some(&token2),
        None,
        &body,
    );
    let received = async { visitor.recv().await };
    let ((status, _), frame) = tokio::join!(signal, received);
    assert!(status == 200 || status == 202, "{status}");
    assert_eq!(frame["type"], "signal", "{frame}");

    // Nobody there, from any node: 404.
    let (status, body) = cluster
        .node(1)
        .invoke(&token, "nobody", json!({"func": "f"}))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("visitor_not_present"))
    );
}

#[actix_web::test]
async fn the_most_recently_active_tab_wins_across_nodes() {
    let cluster = Cluster::start(3).await;
    let token = cluster.node(2).token("fred.demo", 72);
    let mut tab_a = cluster.node(0).visitor("v-3", json!({"tab": "a"})).await;
    until_tabs(cluster.node(2), "v-3", 1).await;
    let mut tab_b = cluster.node(1).visitor("v-3", json!({"tab": "b"})).await;
    until_tabs(cluster.node(2), "v-3", 2).await;

    let rest = cluster.node(2).invoke(&token, "v-3", json!({"func": "f"}));
    let (reply, invoke) = tokio::join!(rest, tab_b.answer(json!("b")));
    assert_eq!(reply.1["value"], "b", "{invoke}");

    // Tab a becomes the active one.
    tab_a
        .send(json!({"type":"presence","data":{"tab":"a2"}}))
        .await;
    eventually(Duration::from_secs(10), "tab a's update", || async {
        let body = lookup(cluster.node(2), "v-3").await;
        (body["data"]["tab"] == "a2").then_some(())
    })
    .await;
    let rest = cluster.node(2).invoke(&token, "v-3", json!({"func": "f"}));
    let (reply, _) = tokio::join!(rest, tab_a.answer(json!("a")));
    assert_eq!(reply.1["value"], "a");
}

#[actix_web::test]
async fn watch_events_cross_nodes_in_order() {
    let cluster = Cluster::start_with(3, |_, c| c.presence.reconnect_grace_ms = 200).await;
    let token = cluster.node(2).token("fred.demo", 72);
    let mut agent = cluster.node(2).agent(&token).await;
    agent.send(json!({"type":"watch","visitorid":"v-4"})).await;
    let state = agent.recv().await;
    assert_eq!(
        (state["event"].as_str(), &state["online"]),
        (Some("state"), &json!(false))
    );

    let mut visitor = cluster
        .node(0)
        .visitor("v-4", json!({"url": "/home"}))
        .await;
    let connected = agent.recv().await;
    assert_eq!(
        connected,
        json!({"type":"visitor","event":"connected","visitorid":"v-4","online":true,"connections":1,"data":{"url":"/home"},"verified":false,"confirmed":false})
    );
    visitor
        .send(json!({"type":"presence","data":{"url":"/cart"}}))
        .await;
    let presence = agent.recv().await;
    assert_eq!(
        (presence["event"].as_str(), &presence["data"]),
        (Some("presence"), &json!({"url": "/cart"}))
    );
    visitor.close().await;
    let gone = agent.recv().await;
    assert_eq!(
        (gone["event"].as_str(), &gone["online"]),
        (Some("disconnected"), &json!(false))
    );
}

#[actix_web::test]
async fn a_page_navigation_from_one_node_to_another_is_seamless() {
    let cluster = Cluster::start(3).await; // 10 s grace
    let token = cluster.node(0).token("fred.demo", 72);
    let mut agent = cluster.node(0).agent(&token).await;
    let page1 = cluster.node(1).visitor("v-5", json!({"url": "/1"})).await;
    until_tabs(cluster.node(0), "v-5", 1).await;
    agent.send(json!({"type":"watch","visitorid":"v-5"})).await;
    assert_eq!(agent.recv().await["event"], "state");

    page1.close().await;
    // Between pages everywhere: still online, no tab.
    let between = until_tabs(cluster.node(0), "v-5", 0).await;
    assert_eq!(between["online"], true);
    until_tabs(cluster.node(2), "v-5", 0).await;

    // An invoke sent in the gap, from node 0, waits for the next page.
    let rest = cluster.node(0).invoke(&token, "v-5", json!({"func": "f"}));
    let open_next = async {
        eventually(
            Duration::from_secs(10),
            "the invoke to be waiting",
            || async {
                let text = common::scrape(cluster.node(0)).await;
                (common::sample(&text, "presence_pending_invokes") >= 1.0).then_some(())
            },
        )
        .await;
        let mut page2 = cluster.node(2).visitor("v-5", json!({"url": "/2"})).await;
        page2.answer(json!("page 2")).await;
        page2
    };
    let ((status, body), _page2) = tokio::join!(rest, open_next);
    assert_eq!((status, &body["value"]), (200, &json!("page 2")), "{body}");

    // The watcher saw the page change only: no disconnected, no connected.
    let event = agent.recv().await;
    assert_eq!(event["event"], "presence", "{event}");
    assert_eq!(event["data"], json!({"url": "/2"}));
    assert_eq!(event["online"], true);
}

#[actix_web::test]
async fn the_administrators_visitor_list_pages_over_the_cluster() {
    let cluster = Cluster::start(3).await;
    let admin = cluster.node(1).admin_token("ada.admin", 72);
    let mut sockets = Vec::new();
    for (i, id) in ["v-a", "v-b", "v-c", "v-d", "v-e"].iter().enumerate() {
        sockets.push(cluster.node(i % 3).visitor(id, json!({"n": i})).await);
    }
    for node in &cluster.nodes {
        until_tabs(node, "v-a", 1).await;
        until_tabs(node, "v-e", 1).await;
    }
    let node = cluster.node(1);
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/presence/72/visitors?limit=2&cursor={c}"),
            None => "/presence/72/visitors?limit=2".to_owned(),
        };
        let (status, page) = node.get(&path, Some(&admin), None).await;
        assert_eq!(status, 200, "{page}");
        for v in page["visitors"].as_array().expect("visitors") {
            seen.push(v["visitorid"].as_str().expect("id").to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ["v-a", "v-b", "v-c", "v-d", "v-e"]);
}
