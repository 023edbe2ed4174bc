//! Revocations in cluster mode: a token revoked on one node is a 401 on
//! every node as soon as the revocation is acknowledged, its agent sockets
//! close on every node within a second, a node that starts later denies it,
//! and a node killed with SIGKILL does not hold the revocation up.

mod common;

use std::time::{Duration, Instant};

use awc::ws::CloseCode;
use common::cluster::{join, wait_for_nodes, Cluster, ProcessNode, TEST_LEASE_MS};
use common::{assert_closed, TestServer, PASSWORD};
use serde_json::{json, Value};

const LOOKUP: &str = "/presence/72/visitors/v-nobody";

/// A token for `user` of group 72 over `POST /auth/token`, and its `jti`.
async fn password_token(node: &TestServer, user: &str) -> (String, String) {
    let (status, body) = node
        .post(
            "/auth/token",
            None,
            None,
            &json!({"groupid":72,"credentials":{"username":user,"password":PASSWORD}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().expect("token").to_owned();
    let jti = node.running().tokens().verify(&token).expect("valid").jti;
    (token, jti)
}

async fn lookup_status(node: &TestServer, token: &str) -> (u16, Value) {
    node.get(LOOKUP, Some(token), None).await
}

fn integer(reply: &str) -> i64 {
    reply
        .trim()
        .trim_start_matches(':')
        .parse()
        .unwrap_or_else(|_| panic!("not an integer reply: {reply:?}"))
}

fn redis(cluster: &Cluster, args: &[&str]) -> String {
    cluster.redis.command(args).expect("redis answers")
}

/// A node joining `cluster` later, on the system clock.
async fn new_node(cluster: &Cluster) -> TestServer {
    let url = cluster.redis.url();
    TestServer::start_with(|config| join(config, &url, TEST_LEASE_MS)).await
}

#[actix_web::test]
async fn a_revocation_on_one_node_is_a_401_on_every_node_and_closes_sockets_there() {
    let cluster = Cluster::start(3).await;
    let (fred, jti) = password_token(cluster.node(0), "fred.demo").await;
    let mut on_c = cluster.node(2).agent(&fred).await;
    let mut on_b = cluster.node(1).agent(&fred).await;
    let (status, body) = cluster
        .node(0)
        .post("/auth/revoke", Some(&fred), None, &json!({"jti": jti}))
        .await;
    let revoked_at = Instant::now();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sockets_closed"], 2, "counted on every node: {body}");
    // No polling: acknowledged means denied everywhere.
    for (i, node) in cluster.nodes.iter().enumerate() {
        let (status, body) = lookup_status(node, &fred).await;
        assert_eq!(status, 401, "node {i}: {body}");
    }
    for socket in [&mut on_c, &mut on_b] {
        let within = Duration::from_secs(1).saturating_sub(revoked_at.elapsed());
        let closed = tokio::time::timeout(within, socket.closed())
            .await
            .expect("closed within 1 s of the revocation");
        assert_closed(&closed, CloseCode::Policy, "token_revoked");
    }
    // Durable in Redis, where a later node reads it.
    assert_eq!(integer(&redis(&cluster, &["ZCARD", "presence:revoked"])), 1);
    let late = new_node(&cluster).await;
    let (status, _) = lookup_status(&late, &fred).await;
    assert_eq!(status, 401, "revoked on a node that started after");
    let mut socket = late.socket("/agent/ws", None).await.expect("connect");
    socket.send(json!({"type":"auth","token":fred})).await;
    assert_closed(&socket.closed().await, CloseCode::Policy, "unauthorized");
}

#[actix_web::test]
async fn an_administrator_on_one_node_revokes_tokens_issued_on_others() {
    let cluster = Cluster::start(3).await;
    let (on_a, _) = password_token(cluster.node(0), "fred.demo").await;
    let (on_b, jti_b) = password_token(cluster.node(1), "fred.demo").await;
    let mut socket = cluster.node(0).agent(&on_b).await;
    let (admin, _) = password_token(cluster.node(2), "ada.admin").await;
    // The owner index is shared: the token's own user may revoke from C.
    let (status, body) = cluster
        .node(2)
        .post("/auth/revoke", Some(&on_a), None, &json!({"jti": jti_b}))
        .await;
    assert_eq!(
        status, 200,
        "the same user revokes from another node: {body}"
    );
    assert_closed(&socket.closed().await, CloseCode::Policy, "token_revoked");
    let (status, body) = cluster
        .node(2)
        .post(
            "/admin/72/agents/fred.demo/revoke",
            Some(&admin),
            None,
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // Both live tokens, the one already revoked included (as on one node).
    assert_eq!(body["tokens_revoked"], 2, "{body}");
    for (i, node) in cluster.nodes.iter().enumerate() {
        for token in [&on_a, &on_b] {
            assert_eq!(lookup_status(node, token).await.0, 401, "node {i}");
        }
    }
}

/// A node of the real binary on `redis_url`, with fred.demo in group 72.
fn process_node(redis_url: &str) -> ProcessNode {
    let hash = presence_server::password::hash_password(PASSWORD).expect("hash");
    ProcessNode::start(
        &format!(
            r#"
[cluster]
mode = "redis"
redis_url = "{redis_url}"
node_lease_ms = {TEST_LEASE_MS}
redis_timeout_ms = 1500

[[groups]]
id = 72
name = "demo"
presence = true
origins = ["http://allowed.test"]

[[groups.users]]
username = "fred.demo"
password_hash = "{hash}"
"#
        ),
        &[],
    )
}

#[actix_web::test]
async fn a_revocation_does_not_wait_for_a_node_killed_with_sigkill() {
    let cluster = Cluster::start(1).await;
    let a = cluster.node(0);
    let mut other = process_node(&cluster.redis.url());
    wait_for_nodes(a, 2).await;
    let mut response = a
        .http
        .post(other.url("/auth/token"))
        .send_json(
            &json!({"groupid":72,"credentials":{"username":"fred.demo","password":PASSWORD}}),
        )
        .await
        .expect("token request");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    let token = body["token"].as_str().expect("token").to_owned();
    // Issued by another process: verifies here.
    let (status, body) = lookup_status(a, &token).await;
    assert_eq!(status, 200, "{body}");
    let jti = a.running().tokens().verify(&token).expect("valid").jti;

    // Dead, but not yet declared dead (its lease runs): the request to it
    // fails at once, not at its deadline.
    other.kill();
    let started = Instant::now();
    let (status, body) = a
        .post("/auth/revoke", Some(&token), None, &json!({"jti": jti}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "waited {:?} for a dead node",
        started.elapsed()
    );
    assert_eq!(lookup_status(a, &token).await.0, 401);
}
