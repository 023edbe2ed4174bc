//! Faults in cluster mode: a node killed with SIGKILL, a node stopped with
//! SIGTERM, Redis restarted (with its data, and empty), and a Redis that
//! stops answering. Nodes that die run as real processes.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{
    eventually, health, join, lookup, node_toml, wait_for_nodes, Cluster, ProcessNode, RedisServer,
    TEST_LEASE_MS,
};
use common::TestServer;
use serde_json::json;

async fn until_online(node: &TestServer, visitor: &str, online: bool, within: Duration) {
    eventually(within, "the visitor's presence", || async {
        (lookup(node, visitor).await["online"] == online).then_some(())
    })
    .await;
}

async fn node_on(
    redis: &RedisServer,
    tune: impl FnOnce(&mut presence_server::config::Config),
) -> TestServer {
    let url = redis.url();
    TestServer::start_with(|c| {
        join(c, &url, TEST_LEASE_MS);
        tune(c);
    })
    .await
}

#[actix_web::test]
async fn a_killed_node_goes_offline_everywhere_within_the_lease_and_its_invokes_fail_at_once() {
    let redis = RedisServer::start();
    let survivor = node_on(&redis, |_| {}).await;
    let mut doomed = ProcessNode::start(&node_toml(&redis.url(), TEST_LEASE_MS), &[]);
    wait_for_nodes(&survivor, 2).await;
    let doomed_client = doomed.client();

    let token = survivor.token("fred.demo", 72);
    let mut agent = survivor.agent(&token).await;
    agent.send(json!({"type":"watch","visitorid":"v-k"})).await;
    assert_eq!(agent.recv().await["event"], "state");
    let _visitor = doomed_client.visitor("v-k", json!({"url": "/"})).await;
    assert_eq!(agent.recv().await["event"], "connected");

    // An invoke waiting on the doomed node (the page never answers).
    let waiting = survivor.invoke(&token, "v-k", json!({"func": "f", "timeout_ms": 30000}));
    let kill = async {
        eventually(
            Duration::from_secs(10),
            "the invoke to be in flight",
            || async {
                let text = common::scrape(&survivor).await;
                (common::sample(&text, "presence_pending_invokes") >= 1.0).then_some(())
            },
        )
        .await;
        doomed.kill();
        Instant::now()
    };
    let ((status, body), killed_at) = tokio::join!(waiting, kill);
    let lease = Duration::from_millis(TEST_LEASE_MS);
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("visitor_not_present")),
        "{body}"
    );
    assert!(
        killed_at.elapsed() < lease + Duration::from_secs(2),
        "failed {:?} after the kill, not at its 30 s deadline",
        killed_at.elapsed()
    );

    // Nobody is subscribed to the dead node's channel any more: a new
    // invoke fails at once, even before the lease runs out.
    let started = Instant::now();
    let (status, _) = survivor
        .invoke(&token, "v-k", json!({"func": "f", "timeout_ms": 30000}))
        .await;
    assert_eq!(status, 404);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    until_online(&survivor, "v-k", false, lease + Duration::from_secs(2)).await;
    let gone = agent.recv().await;
    assert_eq!(gone["event"], "disconnected", "{gone}");
    assert!(killed_at.elapsed() < lease + Duration::from_secs(2));

    // A replacement with the same config joins at once.
    let _replacement = ProcessNode::start(&node_toml(&redis.url(), TEST_LEASE_MS), &[]);
    wait_for_nodes(&survivor, 2).await;
    // The dead node's entries were reaped from Redis.
    eventually(
        Duration::from_secs(10),
        "the dead node's entries to go",
        || async {
            let reply = redis.command(&["HLEN", "presence:presence:72"])?;
            (reply.trim() == ":0").then_some(())
        },
    )
    .await;
}

#[actix_web::test]
async fn a_stopped_node_withdraws_its_visitors_after_the_grace_period_not_the_lease() {
    let redis = RedisServer::start();
    let long_lease = 30_000;
    let url = redis.url();
    let survivor = TestServer::start_with(|c| {
        join(c, &url, long_lease);
        c.presence.reconnect_grace_ms = 500;
    })
    .await;
    let mut stopping = ProcessNode::start(
        &node_toml(&redis.url(), long_lease),
        &[("PRESENCE__PRESENCE__RECONNECT_GRACE_MS", "500".to_owned())],
    );
    wait_for_nodes(&survivor, 2).await;
    let client = stopping.client();
    let token = survivor.token("fred.demo", 72);
    let mut agent = survivor.agent(&token).await;
    let _gone = client.visitor("v-t", json!({})).await;
    let mut moving = client.visitor("v-m", json!({"url": "/1"})).await;
    until_online(&survivor, "v-t", true, Duration::from_secs(10)).await;
    until_online(&survivor, "v-m", true, Duration::from_secs(10)).await;
    agent.send(json!({"type":"watch","visitorid":"v-m"})).await;
    assert_eq!(agent.recv().await["event"], "state");

    let stopped_at = Instant::now();
    stopping.send_term();
    // The socket of v-m closes with the node (1001); the page reopens on
    // the other node at once, as the SDK does.
    let _ = moving.closed().await;
    let _back = survivor.visitor("v-m", json!({"url": "/2"})).await;
    let exit = stopping.wait();
    assert!(exit.success(), "{exit:?}");
    // v-t did not come back: offline after the grace period, long before
    // the 30 s lease.
    until_online(&survivor, "v-t", false, Duration::from_secs(5)).await;
    assert!(stopped_at.elapsed() < Duration::from_secs(10));
    wait_for_nodes(&survivor, 1).await;
    // v-m moved without a disconnected.
    let event = agent.recv().await;
    assert_eq!(event["event"], "presence", "{event}");
    assert_eq!(lookup(&survivor, "v-m").await["online"], true);
}

async fn redis_comes_back(empty: bool) {
    let mut cluster = Cluster::start(2).await;
    let mut here = cluster.node(0).visitor("v-here", json!({})).await;
    let mut there = cluster.node(1).visitor("v-there", json!({})).await;
    until_online(cluster.node(0), "v-there", true, Duration::from_secs(10)).await;
    until_online(cluster.node(1), "v-here", true, Duration::from_secs(10)).await;
    let token = cluster.node(0).token("fred.demo", 72);

    cluster.redis.kill();
    for node in &cluster.nodes {
        eventually(Duration::from_secs(10), "degraded", || async {
            (health(node).await.0 == 503).then_some(())
        })
        .await;
    }
    // Local sockets stay, and local invokes work.
    let local = cluster
        .node(0)
        .invoke(&token, "v-here", json!({"func": "f"}));
    let ((status, _), _) = tokio::join!(local, here.answer(json!(1)));
    assert_eq!(status, 200);
    // What needs Redis fails fast.
    let started = Instant::now();
    let (status, body) = cluster
        .node(0)
        .invoke(&token, "v-there", json!({"func": "f"}))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("cluster_unavailable")),
        "{body}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));

    cluster.redis.restart(empty);
    let back = Instant::now();
    // Within 5 s every node re-published its visitors and resubscribed.
    eventually(
        Duration::from_secs(5),
        "the visitors to be re-published",
        || async {
            let reply = cluster.redis.command(&["HLEN", "presence:presence:72"])?;
            (reply.trim() == ":2").then_some(())
        },
    )
    .await;
    for node in &cluster.nodes {
        wait_for_nodes(node, 2).await;
    }
    assert!(
        back.elapsed() < Duration::from_secs(5),
        "{:?}",
        back.elapsed()
    );
    let remote = cluster
        .node(0)
        .invoke(&token, "v-there", json!({"func": "f"}));
    let ((status, body), _) = tokio::join!(remote, there.answer(json!(2)));
    assert_eq!((status, &body["value"]), (200, &json!(2)), "{body}");
    // A node that joins now sees both.
    let late = node_on(&cluster.redis, |_| {}).await;
    until_online(&late, "v-here", true, Duration::from_secs(5)).await;
    until_online(&late, "v-there", true, Duration::from_secs(5)).await;
}

#[actix_web::test]
async fn a_redis_restart_loses_no_visitor() {
    redis_comes_back(false).await;
}

#[actix_web::test]
async fn a_redis_that_comes_back_empty_loses_no_visitor() {
    redis_comes_back(true).await;
}

#[actix_web::test]
async fn a_redis_that_stops_answering_fails_requests_by_their_deadline() {
    let cluster = Cluster::start(2).await;
    let mut here = cluster.node(0).visitor("v-here", json!({})).await;
    let _there = cluster.node(1).visitor("v-there", json!({})).await;
    until_online(cluster.node(0), "v-there", true, Duration::from_secs(10)).await;
    let token = cluster.node(0).token("fred.demo", 72);

    cluster.redis.pause();
    // Many requests at once against a hung Redis: each answers by the
    // command deadline (1.5 s here), none hangs.
    let started = Instant::now();
    let mut waits = Vec::new();
    for _ in 0..50 {
        waits.push(
            cluster
                .node(0)
                .invoke(&token, "v-there", json!({"func": "f"})),
        );
    }
    for (status, body) in futures_util::future::join_all(waits).await {
        assert_eq!(
            (status, body["error"].as_str()),
            (503, Some("cluster_unavailable")),
            "{body}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // Local visitors still answer.
    let local = cluster
        .node(0)
        .invoke(&token, "v-here", json!({"func": "f"}));
    let ((status, _), _) = tokio::join!(local, here.answer(json!(1)));
    assert_eq!(status, 200);
    cluster.redis.resume();
    for node in &cluster.nodes {
        wait_for_nodes(node, 2).await;
    }
}

/// A Redis that hangs (SIGSTOP) for longer than a lease, then comes back:
/// no node is declared dead while nobody can hear anybody (no visitor
/// reads offline, no watcher hears `disconnected`), and every visitor is
/// back in Redis and on every node once it answers again.
#[actix_web::test]
async fn a_redis_that_hangs_past_a_lease_declares_nobody_dead() {
    let cluster = Cluster::start(2).await;
    let _here = cluster.node(0).visitor("v-here", json!({})).await;
    let _there = cluster.node(1).visitor("v-there", json!({})).await;
    until_online(cluster.node(0), "v-there", true, Duration::from_secs(10)).await;
    until_online(cluster.node(1), "v-here", true, Duration::from_secs(10)).await;
    let token = cluster.node(0).token("fred.demo", 72);
    let mut agent = cluster.node(0).agent(&token).await;
    agent
        .send(json!({"type":"watch","visitorid":"v-there"}))
        .await;
    assert_eq!(agent.recv().await["event"], "state");

    cluster.redis.pause();
    for node in &cluster.nodes {
        eventually(Duration::from_secs(10), "degraded", || async {
            (health(node).await.0 == 503).then_some(())
        })
        .await;
    }
    // Two leases of silence, watched the whole time.
    let paused = Instant::now();
    while paused.elapsed() < Duration::from_millis(2 * TEST_LEASE_MS) {
        let (status, seen) = cluster
            .node(0)
            .get("/presence/72/visitors/v-there", Some(&token), None)
            .await;
        assert_eq!(status, 200, "{seen}");
        assert_eq!(
            seen["online"], true,
            "declared dead while Redis hung: {seen}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.redis.resume();
    eventually(
        Duration::from_secs(5),
        "both visitors back in Redis",
        || async {
            let reply = cluster.redis.command(&["HLEN", "presence:presence:72"])?;
            (reply.trim() == ":2").then_some(())
        },
    )
    .await;
    for node in &cluster.nodes {
        wait_for_nodes(node, 2).await;
    }
    let (_, seen) = cluster
        .node(0)
        .get("/presence/72/visitors/v-there", Some(&token), None)
        .await;
    assert_eq!(seen["online"], true, "{seen}");
    // The watcher heard nothing: no disconnected, no connected.
    agent
        .send(json!({"type":"unwatch","visitorid":"v-there"}))
        .await;
    agent
        .send(json!({"type":"watch","visitorid":"v-there"}))
        .await;
    let next = agent.recv().await;
    assert_eq!(next["event"], "state", "{next}");
    assert_eq!(next["online"], true);
}
