//! Cluster mode's shared confirmation state, session keys and group caps:
//! each operation on one node, checked on another (real Redis, three
//! in-process nodes). Visitor and agent share a node where routing between
//! nodes is not what is tested.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::cluster::{eventually, Cluster};
use common::confirm::{confirm_path, gated, invoke_status, press, prompt, start, ticket};
use common::{TestServer, WsClient};
use serde_json::{json, Value};

const SOON: Duration = Duration::from_secs(10);

/// Confirms `visitor` (socket `tab`, on `node`) for `agent`; the ticket.
async fn confirm(node: &TestServer, agent: &str, visitor: &str, tab: &mut WsClient) -> String {
    let started = start(node, agent, visitor, json!({})).await;
    let cid = started["confirmation"].clone();
    prompt(tab, &cid).await;
    press(tab, &cid, started["answer"].clone()).await;
    assert_eq!(tab.recv().await["type"], "confirm_closed");
    ticket(tab, &cid).await
}

fn redis_get(cluster: &Cluster, key: &str) -> String {
    cluster.redis.command(&["GET", key]).unwrap_or_default()
}

#[actix_web::test]
async fn a_confirmation_settled_on_one_node_reads_the_same_on_another() {
    let cluster = Cluster::start_with(3, |_, c| gated(c)).await;
    let (b, a) = (cluster.node(1), cluster.node(0));
    let mut tab = b.visitor("v-1", json!({})).await;
    let fred_b = b.token("fred.demo", 72);
    let started = start(b, &fred_b, "v-1", json!({})).await;
    let cid = started["confirmation"].as_str().expect("cid").to_owned();
    prompt(&mut tab, &json!(cid)).await;
    press(&mut tab, &json!(cid), started["answer"].clone()).await;
    assert_eq!(tab.recv().await["status"], "confirmed");

    // The record and the grant are in Redis, and node A reads them.
    let record = redis_get(&cluster, &format!("presence:confirmation:{cid}"));
    assert!(record.contains("\"status\":\"confirmed\""), "{record}");
    let grant = redis_get(&cluster, "presence:confirmation_grant:72/v-1/fred.demo");
    assert!(grant.contains(&cid), "{grant}");
    let fred_a = a.token("fred.demo", 72);
    let (status, view) = a
        .get(
            &format!("{}/{cid}", confirm_path("v-1")),
            Some(&fred_a),
            None,
        )
        .await;
    assert_eq!(
        (status, view["status"].as_str()),
        (200, Some("confirmed")),
        "{view}"
    );
    assert!(view["confirmed_until"].as_u64().is_some(), "{view}");
}

/// Reads `tab` until its ticket or an error frame; which it was.
async fn ticket_or_error(tab: &mut WsClient) -> Value {
    for _ in 0..4 {
        let frame = tab.recv().await;
        if frame["type"] == "confirm_ticket" || frame["type"] == "error" {
            return frame;
        }
    }
    panic!("neither a ticket nor an error");
}

#[actix_web::test]
async fn two_nodes_racing_to_settle_one_prompt_settle_it_once() {
    let cluster = Cluster::start_with(3, |_, c| gated(c)).await;
    let (b, c) = (cluster.node(1), cluster.node(2));
    let fred = b.token("fred.demo", 72);
    for round in 0..5 {
        let visitor = format!("v-race-{round}");
        let mut on_b = b.visitor(&visitor, json!({})).await;
        let started = start(b, &fred, &visitor, json!({})).await;
        let cid = started["confirmation"].clone();
        prompt(&mut on_b, &cid).await;
        // A tab opening on node C shows the prompt started on node B.
        let mut on_c = eventually(SOON, "the prompt shown on node C", || async {
            let mut tab = c.visitor(&visitor, json!({})).await;
            tab.send(json!({"type":"session_key"})).await;
            let first = tab.recv().await;
            (first["type"] == "confirm" && first["id"] == cid).then_some(tab)
        })
        .await;
        let answer = started["answer"].clone();
        tokio::join!(
            press(&mut on_b, &cid, answer.clone()),
            press(&mut on_c, &cid, answer)
        );
        let (x, y) = tokio::join!(ticket_or_error(&mut on_b), ticket_or_error(&mut on_c));
        let tickets = [&x, &y]
            .iter()
            .filter(|f| f["type"] == "confirm_ticket")
            .count();
        // The loser hears it lost: the prompt was settled, or (when the
        // winner's close reached its tab first) is no longer open there.
        let lost = [&x, &y]
            .iter()
            .filter(|f| {
                f["code"] == "confirmation_settled" || f["code"] == "confirmation_not_found"
            })
            .count();
        assert_eq!((tickets, lost), (1, 1), "round {round}: {x} {y}");
    }
}

#[actix_web::test]
async fn a_ticket_confirmed_on_node_b_is_honoured_by_a_hello_on_node_c() {
    let cluster = Cluster::start_with(3, |_, c| gated(c)).await;
    let (a, b, c) = (cluster.node(0), cluster.node(1), cluster.node(2));
    let mut tab = b.visitor("v-1", json!({})).await;
    let ticket = confirm(b, &b.token("fred.demo", 72), "v-1", &mut tab).await;

    // The gate on node A sees the holder on node B.
    let fred_a = a.token("fred.demo", 72);
    eventually(SOON, "confirmed seen from node A", || async {
        let (_, doc) = a
            .get("/presence/72/visitors/v-1", Some(&fred_a), None)
            .await;
        (doc["confirmed"] == true).then_some(())
    })
    .await;

    // The tab navigates to node C; an impostor there holds nothing.
    tab.close().await;
    let fred_c = c.token("fred.demo", 72);
    let mut impostor = c.visitor("v-1", json!({})).await;
    eventually(SOON, "the holder gone from node C's view", || async {
        let (status, body) = invoke_status(c, &fred_c, "v-1").await;
        (status == 403 && body["error"] == "confirmation_required").then_some(())
    })
    .await;
    let mut back = c.visitor_with_tickets("v-1", json!({}), &[&ticket]).await;
    let call = invoke_status(c, &fred_c, "v-1");
    let ((status, result), frame) = tokio::join!(call, back.answer(json!("accepted")));
    assert_eq!((status, result["value"].as_str()), (200, Some("accepted")));
    assert_eq!(frame["func"], "showTerms", "the ticket holder ran it");
    let (_, doc) = c
        .get("/presence/72/visitors/v-1", Some(&fred_c), None)
        .await;
    assert_eq!(doc["confirmed"], true);
    // The impostor got no invoke: its next frame answers its own request.
    impostor.send(json!({"type":"session_key"})).await;
    assert_eq!(impostor.recv().await["type"], "session_key");
}

#[actix_web::test]
async fn a_failure_lock_set_on_node_a_applies_on_node_b() {
    let cluster = Cluster::start(3).await;
    let (a, b) = (cluster.node(0), cluster.node(1));
    let fred_a = a.token("fred.demo", 72);
    let mut tab = a.visitor("v-1", json!({})).await;
    for _ in 0..3 {
        let started = start(a, &fred_a, "v-1", json!({})).await;
        let cid = started["confirmation"].clone();
        prompt(&mut tab, &cid).await;
        press(&mut tab, &cid, Value::Null).await;
        assert_eq!(tab.recv().await["status"], "declined");
    }
    let fred_b = b.token("fred.demo", 72);
    let (status, body) = b
        .post(&confirm_path("v-1"), Some(&fred_b), None, &json!({}))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (429, Some("too_many_attempts")),
        "{body}"
    );
}

#[actix_web::test]
async fn a_prompt_whose_node_is_gone_is_timed_out_by_another() {
    let mut cluster = Cluster::start_with(3, |_, c| c.presence.confirm_timeout_ms = 1_500).await;
    let b = cluster.nodes.remove(1);
    let _tab = b.visitor("v-1", json!({})).await;
    let started = start(&b, &b.token("fred.demo", 72), "v-1", json!({})).await;
    let cid = started["confirmation"].as_str().expect("cid").to_owned();
    b.shutdown().await;
    let key = format!("presence:confirmation:{cid}");
    eventually(SOON, "the prompt expired by another node", || async {
        redis_get(&cluster, &key)
            .contains("\"status\":\"expired\"")
            .then_some(())
    })
    .await;
    let pending = cluster
        .redis
        .command(&["ZSCORE", "presence:confirmations:pending", &cid])
        .unwrap_or_default();
    assert!(
        pending.starts_with("$-1") || pending.starts_with("_"),
        "{pending}"
    );
    // The settling node counts the failure just after writing the outcome.
    eventually(SOON, "the timeout counted as a failure", || async {
        let failures = cluster
            .redis
            .command(&["ZCARD", "presence:confirm_failures:72/v-1"])
            .unwrap_or_default();
        (failures.trim() == ":1").then_some(())
    })
    .await;
}

async fn ask_key(visitor: &mut WsClient) -> Value {
    visitor.send(json!({"type":"session_key"})).await;
    visitor.recv().await
}

#[actix_web::test]
async fn session_keys_are_unique_across_nodes_minting_at_once() {
    let cluster = Cluster::start(3).await;
    let mut tabs = Vec::new();
    for (i, node) in cluster.nodes.iter().enumerate() {
        for j in 0..8 {
            tabs.push(node.visitor(&format!("v-{i}-{j}"), json!({})).await);
        }
    }
    let frames = futures_util::future::join_all(tabs.iter_mut().map(ask_key)).await;
    let codes: Vec<String> = frames
        .iter()
        .map(|f| {
            assert_eq!(f["type"], "session_key", "{f}");
            f["key"].as_str().expect("key").to_owned()
        })
        .collect();
    let distinct: HashSet<&String> = codes.iter().collect();
    assert_eq!(distinct.len(), codes.len(), "{codes:?}");
    for code in &codes {
        let stored = redis_get(&cluster, &format!("presence:session_key:72:{code}"));
        assert!(stored.contains("\"v\":\"v-"), "{code}: {stored}");
    }
    // A key resolves on the node its visitor is on.
    let a = cluster.node(0);
    let (status, doc) = a
        .get(
            &format!("/presence/72/sessions/{}", codes[0]),
            Some(&a.token("fred.demo", 72)),
            None,
        )
        .await;
    assert_eq!((status, doc["visitorid"].as_str()), (200, Some("v-0-0")));
}

#[actix_web::test]
async fn a_session_key_minted_on_node_a_resolves_on_node_b() {
    let cluster = Cluster::start(3).await;
    let mut tab = cluster.node(0).visitor("v-1", json!({})).await;
    let code = ask_key(&mut tab).await["key"]
        .as_str()
        .expect("key")
        .to_owned();
    let b = cluster.node(1);
    let (status, doc) = b
        .get(
            &format!("/presence/72/sessions/{code}"),
            Some(&b.token("fred.demo", 72)),
            None,
        )
        .await;
    assert_eq!(
        (status, doc["visitorid"].as_str()),
        (200, Some("v-1")),
        "{doc}"
    );
}

#[actix_web::test]
async fn the_mint_budget_is_shared_by_the_nodes() {
    let cluster = Cluster::start_with(3, |_, c| c.presence.session_key_mints_per_minute = 3).await;
    for (i, node) in cluster.nodes.iter().enumerate() {
        let mut tab = node.visitor(&format!("v-{i}"), json!({})).await;
        assert_eq!(ask_key(&mut tab).await["type"], "session_key");
    }
    let mut fourth = cluster.node(0).visitor("v-9", json!({})).await;
    let refused = ask_key(&mut fourth).await;
    assert_eq!(
        (refused["type"].as_str(), refused["code"].as_str()),
        (Some("error"), Some("rate_limited")),
        "{refused}"
    );
}

/// Whether `node` admits one more visitor socket of group 72 now (the
/// socket is closed again at once).
async fn admits(node: &TestServer) -> bool {
    match node.socket("/visitor/ws?groupid=72", None).await {
        Ok(ws) => {
            ws.close().await;
            true
        }
        Err(_) => false,
    }
}

#[actix_web::test]
async fn max_visitors_counts_over_the_cluster_within_one_refresh() {
    let cluster = Cluster::start_with(3, |_, c| c.groups[0].max_visitors = Some(3)).await;
    let mut held = Vec::new();
    for (node, id) in [(0, "v-1"), (0, "v-2"), (1, "v-3")] {
        held.push(cluster.node(node).visitor(id, json!({})).await);
    }
    // Within one refresh interval (lease / 4) every node knows the group
    // is full; the slack is only what others admitted meanwhile.
    for node in &cluster.nodes {
        eventually(SOON, "the group full everywhere", || async {
            (!admits(node).await).then_some(())
        })
        .await;
    }
    let (status, _, body) = common::upgrade_request(
        &awc::Client::default(),
        &cluster.node(2).url("/visitor/ws?groupid=72"),
        &[],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (429, Some("too_many_connections"))
    );
    // A slot freed on node A is free on node C.
    held.remove(0).close().await;
    eventually(SOON, "room again on node C", || async {
        admits(cluster.node(2)).await.then_some(())
    })
    .await;
}

#[actix_web::test]
async fn without_redis_shared_state_fails_fast_with_cluster_unavailable() {
    let mut cluster = Cluster::start_with(2, |_, c| c.groups[1].max_visitors = Some(5)).await;
    let nodes = std::mem::take(&mut cluster.nodes);
    let a = &nodes[0];
    let fred = a.token("fred.demo", 72);
    let mut tab = a.visitor("v-1", json!({})).await;
    cluster.redis.kill();

    let began = Instant::now();
    let (status, body) = a
        .post(&confirm_path("v-1"), Some(&fred), None, &json!({}))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("cluster_unavailable")),
        "{body}"
    );
    assert!(
        began.elapsed() < Duration::from_secs(3),
        "{:?}",
        began.elapsed()
    );

    let began = Instant::now();
    let refused = ask_key(&mut tab).await;
    assert_eq!(
        (refused["type"].as_str(), refused["code"].as_str()),
        (Some("error"), Some("cluster_unavailable")),
        "{refused}"
    );
    assert!(
        began.elapsed() < Duration::from_secs(3),
        "{:?}",
        began.elapsed()
    );

    // A capped group admits nobody on counts it cannot refresh.
    let client = awc::Client::default();
    eventually(SOON, "a capped group refusing without Redis", || async {
        let (status, _, body) =
            common::upgrade_request(&client, &a.url("/visitor/ws?groupid=73"), &[]).await;
        (status == 503 && body["error"] == "cluster_unavailable").then_some(())
    })
    .await;
}

#[actix_web::test]
async fn a_node_that_leaves_takes_its_holdings_with_it() {
    let mut cluster = Cluster::start_with(3, |_, c| gated(c)).await;
    let b = cluster.nodes.remove(1);
    let mut tab = b.visitor("v-1", json!({})).await;
    confirm(&b, &b.token("fred.demo", 72), "v-1", &mut tab).await;
    let a = cluster.node(0);
    let fred_a = a.token("fred.demo", 72);
    let confirmed = || async {
        let (_, doc) = a
            .get("/presence/72/visitors/v-1", Some(&fred_a), None)
            .await;
        doc["confirmed"].as_bool()
    };
    eventually(SOON, "the holder on node B seen from node A", || async {
        (confirmed().await == Some(true)).then_some(())
    })
    .await;
    b.shutdown().await;
    eventually(SOON, "the holding gone with node B", || async {
        (confirmed().await == Some(false)).then_some(())
    })
    .await;
    let holdings = cluster
        .redis
        .command(&["KEYS", "presence:tickets:*"])
        .unwrap_or_default();
    assert!(!holdings.contains("tickets"), "{holdings}");
}

#[actix_web::test]
async fn grants_and_holdings_outlive_a_redis_restart() {
    let mut cluster = Cluster::start_with(2, |_, c| gated(c)).await;
    let nodes = std::mem::take(&mut cluster.nodes);
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut tab = b.visitor("v-1", json!({})).await;
    let fred_b = b.token("fred.demo", 72);
    confirm(b, &fred_b, "v-1", &mut tab).await;
    let (_, health) = common::cluster::health(b).await;
    let holdings = format!("presence:tickets:{}", health["node"].as_str().expect("id"));

    let fred_a = a.token("fred.demo", 72);
    let grant = "presence:confirmation_grant:72/v-1/fred.demo";

    // Redis comes back from its append-only file: the grant is there, the
    // gate on node B lets the agent through, node A still sees it.
    cluster.redis.restart(false);
    for node in [a, b] {
        common::cluster::wait_for_nodes(node, 2).await;
    }
    assert!(redis_get(&cluster, grant).contains("\"until\""));
    let call = invoke_status(b, &fred_b, "v-1");
    let ((status, _), frame) = tokio::join!(call, tab.answer(json!("ok")));
    assert_eq!((status, frame["func"].as_str()), (200, Some("showTerms")));
    let (_, doc) = a
        .get("/presence/72/visitors/v-1", Some(&fred_a), None)
        .await;
    assert_eq!(doc["confirmed"], true);

    // Redis comes back empty: node B re-writes its holdings within 5 s.
    cluster.redis.restart(true);
    let began = Instant::now();
    eventually(SOON, "node B's holdings re-written", || async {
        let n = cluster.redis.command(&["HLEN", &holdings])?;
        (n.trim() == ":1").then_some(())
    })
    .await;
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
}
