//! Tokens everywhere in cluster mode: a token issued by any node verifies
//! on every node; one node rotates the shared key per period and every node
//! knows a key before it signs; Redis killed, or back empty, loses no key
//! and no revocation. Revocations across nodes: `cluster_revocations.rs`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::cluster::{eventually, join, wait_for_nodes, Cluster, RedisServer, TEST_LEASE_MS};
use common::{TestServer, PASSWORD};
use presence_server::clock::{ManualClock, SharedClock, SystemClock};
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

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .expect("header")
        .kid
        .expect("kid")
}

async fn lookup_status(node: &TestServer, token: &str) -> (u16, Value) {
    node.get(LOOKUP, Some(token), None).await
}

/// The bulk strings of a RESP array reply (or of a single bulk string).
fn bulk_strings(reply: &str) -> Vec<String> {
    let mut lines = reply.split("\r\n");
    let mut out = Vec::new();
    while let Some(line) = lines.next() {
        if line.starts_with('$') && line != "$-1" {
            if let Some(value) = lines.next() {
                out.push(value.to_owned());
            }
        }
    }
    out
}

fn redis(cluster: &Cluster, args: &[&str]) -> String {
    cluster.redis.command(args).expect("redis answers")
}

/// `(kid, created_at_ms, active_at_ms)` of every key in Redis, by creation.
fn shared_keys(cluster: &Cluster) -> Vec<(String, u64, u64)> {
    let fields = bulk_strings(&redis(cluster, &["HGETALL", "presence:signing_keys"]));
    let mut keys: Vec<(String, u64, u64)> = fields
        .chunks(2)
        .map(|pair| {
            let key: Value = serde_json::from_str(&pair[1]).expect("key json");
            (
                pair[0].clone(),
                key["created_at_ms"].as_u64().expect("created"),
                key["active_at_ms"].as_u64().expect("active"),
            )
        })
        .collect();
    keys.sort_by_key(|k| k.1);
    keys
}

/// A node joining `cluster` later, on the system clock.
async fn new_node(cluster: &Cluster) -> TestServer {
    let url = cluster.redis.url();
    TestServer::start_with(|config| join(config, &url, TEST_LEASE_MS)).await
}

#[actix_web::test]
async fn a_token_issued_by_any_node_verifies_on_every_node() {
    let cluster = Cluster::start(3).await;
    let (over_http, _) = password_token(cluster.node(0), "fred.demo").await;
    let in_process = cluster.node(0).token("fred.demo", 72);
    for (i, node) in cluster.nodes.iter().enumerate() {
        for token in [&over_http, &in_process] {
            let (status, body) = lookup_status(node, token).await;
            assert_eq!(status, 200, "node {i}: {body}");
            assert!(node.running().tokens().verify(token).is_ok(), "node {i}");
        }
    }
    assert_eq!(shared_keys(&cluster).len(), 1, "one first key for all");
}

#[actix_web::test]
async fn one_node_rotates_per_period_and_every_node_verifies_the_new_key() {
    let cluster = Cluster::start_with(3, |_, config| config.auth.key_rotation_secs = 1).await;
    let first_token = cluster.node(0).token("fred.demo", 72);
    let first = kid_of(&first_token);
    // Every node's housekeeping tries each second; the ring grows by one.
    eventually(Duration::from_secs(15), "five shared keys", || async {
        (shared_keys(&cluster).len() >= 5).then_some(())
    })
    .await;
    let keys = shared_keys(&cluster);
    for pair in keys.windows(2) {
        let gap = pair[1].1 - pair[0].1;
        assert!(gap >= 1000, "two rotations {gap} ms apart: {keys:?}");
    }
    for (kid, created, active) in &keys[1..] {
        assert!(*active >= created + 3000, "{kid} signs too early");
    }
    // Wait until every node signs with a rotated key...
    for node in &cluster.nodes {
        eventually(Duration::from_secs(10), "a rotated signer", || async {
            (kid_of(&node.token("fred.demo", 72)) != first).then_some(())
        })
        .await;
    }
    // ...then its tokens verify everywhere at once, without waiting.
    for (i, issuer) in cluster.nodes.iter().enumerate() {
        let token = issuer.token("fred.demo", 72);
        for (j, node) in cluster.nodes.iter().enumerate() {
            let (status, body) = lookup_status(node, &token).await;
            assert_eq!(status, 200, "issued by {i}, checked on {j}: {body}");
        }
    }
    // A node that starts now verifies tokens of the first key too.
    let late = new_node(&cluster).await;
    let (status, body) = lookup_status(&late, &first_token).await;
    assert_eq!(status, 200, "{body}");
    // Still one rotation per period, with four nodes trying.
    let keys = shared_keys(&cluster);
    for pair in keys.windows(2) {
        assert!(pair[1].1 - pair[0].1 >= 1000, "{keys:?}");
    }
}

#[actix_web::test]
async fn a_token_with_a_kid_unknown_to_the_cluster_is_refused_everywhere() {
    let cluster = Cluster::start(3).await;
    let real = cluster.node(0).token("fred.demo", 72);
    let claims = cluster
        .node(0)
        .running()
        .tokens()
        .verify(&real)
        .expect("ok");
    let forge = |kid: &str| {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some(kid.to_owned());
        let key = jsonwebtoken::EncodingKey::from_secret(&[7u8; 32]);
        jsonwebtoken::encode(&header, &claims, &key).expect("encode")
    };
    let unknown = forge("no-such-kid");
    let wrong_secret = forge(&kid_of(&real));
    for (i, node) in cluster.nodes.iter().enumerate() {
        for token in [&unknown, &wrong_secret] {
            let (status, body) = lookup_status(node, token).await;
            assert_eq!(status, 401, "node {i}: {body}");
        }
    }
    assert_eq!(shared_keys(&cluster).len(), 1, "a miss adds no key");
}

/// A node that has not read the shared key ring for a key's activation
/// delay cannot tell a made-up `kid` from a key rotated in meanwhile: it
/// answers 503 `cluster_unavailable` (on REST and on the agent socket),
/// not a 401 that would send a console to sign in again. A known `kid`
/// with a bad signature is still a bad token.
#[actix_web::test]
async fn an_unknown_kid_is_503_while_the_key_ring_cannot_be_read() {
    let cluster = Cluster::start(1).await;
    let node = cluster.node(0);
    let real = node.token("fred.demo", 72);
    let claims = node.running().tokens().verify(&real).expect("ok");
    let forge = |kid: &str| {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some(kid.to_owned());
        let key = jsonwebtoken::EncodingKey::from_secret(&[7u8; 32]);
        jsonwebtoken::encode(&header, &claims, &key).expect("encode")
    };
    let (unknown, wrong_secret) = (forge("maybe-new"), forge(&kid_of(&real)));
    assert_eq!(lookup_status(node, &unknown).await.0, 401);

    cluster.redis.pause();
    let refused = eventually(
        Duration::from_secs(10),
        "503 for an unknown kid",
        || async {
            let (status, body) = lookup_status(node, &unknown).await;
            (status == 503).then_some(body)
        },
    )
    .await;
    assert_eq!(refused["error"], "cluster_unavailable", "{refused}");
    let (status, body) = lookup_status(node, &wrong_secret).await;
    assert_eq!(status, 401, "a known kid, a bad signature: {body}");
    let mut socket = node.socket("/agent/ws", None).await.expect("connect");
    socket.send(json!({"type":"auth","token":unknown})).await;
    common::assert_closed(
        &socket.closed().await,
        awc::ws::CloseCode::Again,
        "cluster_unavailable",
    );

    cluster.redis.resume();
    eventually(Duration::from_secs(10), "401 again", || async {
        (lookup_status(node, &unknown).await.0 == 401).then_some(())
    })
    .await;
}

#[actix_web::test]
async fn keys_and_revocations_survive_redis_going_away_and_coming_back_empty() {
    let mut cluster = Cluster::start(2).await;
    let token = cluster.node(0).token("fred.demo", 72);
    let (revoked, jti) = password_token(cluster.node(1), "fred.demo").await;
    let (status, _) = cluster
        .node(1)
        .post("/auth/revoke", Some(&revoked), None, &json!({"jti": jti}))
        .await;
    assert_eq!(status, 200);
    let kid = kid_of(&token);

    cluster.redis.kill();
    // Cached keys and denylist keep working; what needs Redis says so.
    for node in &cluster.nodes {
        let tokens = node.running().tokens();
        assert!(tokens.verify(&token).is_ok(), "verifies from the cache");
        assert!(tokens.verify(&revoked).is_err(), "still revoked");
    }
    let (status, body) = cluster
        .node(0)
        .post("/auth/revoke", Some(&token), None, &json!({"jti": "x"}))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("cluster_unavailable"))
    );

    let (status, body) = cluster
        .node(0)
        .post(
            "/auth/token",
            None,
            None,
            &json!({"groupid":72,"credentials":{"username":"fred.demo","password":PASSWORD}}),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("cluster_unavailable")),
        "no token that could not be recorded: {body}"
    );

    cluster.redis.restart(true);
    eventually(Duration::from_secs(10), "keys re-published", || async {
        let keys = cluster.redis.command(&["HKEYS", "presence:signing_keys"])?;
        bulk_strings(&keys).contains(&kid).then_some(())
    })
    .await;
    eventually(Duration::from_secs(10), "denylist re-published", || async {
        let listed = cluster
            .redis
            .command(&["ZRANGE", "presence:revoked", "0", "-1"])?;
        bulk_strings(&listed).contains(&jti).then_some(())
    })
    .await;
    // A node that never saw the old Redis verifies old tokens, and denies
    // the revoked one.
    let late = TestServer::start_in(
        Arc::new(tempfile::tempdir().expect("tempdir")),
        |config| join(config, &cluster.redis.url(), TEST_LEASE_MS),
        Arc::new(SystemClock),
    )
    .await;
    let (status, body) = lookup_status(&late, &token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(lookup_status(&late, &revoked).await.0, 401);
    assert_eq!(shared_keys(&cluster).len(), 1, "no second first key");
}

/// Two nodes on one Redis and one manual clock (key ages follow it).
async fn manual_pair(clock: &Arc<ManualClock>) -> (RedisServer, TestServer, TestServer) {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        let clock: SharedClock = clock.clone();
        nodes.push(TestServer::start_in(dir, |c| join(c, &url, TEST_LEASE_MS), clock).await);
    }
    for node in &nodes {
        wait_for_nodes(node, 2).await;
    }
    let b = nodes.pop().expect("b");
    let a = nodes.pop().expect("a");
    (redis, a, b)
}

fn hash_kids(redis: &RedisServer) -> Vec<String> {
    bulk_strings(
        &redis
            .command(&["HKEYS", "presence:signing_keys"])
            .expect("redis"),
    )
}

#[actix_web::test]
async fn a_rotated_key_signs_only_once_every_node_has_it_and_goes_when_no_token_needs_it() {
    let clock = Arc::new(ManualClock::starting_now());
    let (redis, a, b) = manual_pair(&clock).await;
    let old = a.token("fred.demo", 72);
    let old_kid = kid_of(&old);

    clock.advance(Duration::from_secs(7200));
    // Both nodes' housekeeping try; one rotation lands.
    eventually(Duration::from_secs(10), "a rotation", || async {
        let _ = a.running().housekeeping();
        let _ = b.running().housekeeping();
        (hash_kids(&redis).len() == 2).then_some(())
    })
    .await;
    let new_kid = hash_kids(&redis)
        .into_iter()
        .find(|k| *k != old_kid)
        .expect("new kid");
    // Not active yet: both still sign with the old key.
    for node in [&a, &b] {
        assert_eq!(kid_of(&node.token("fred.demo", 72)), old_kid);
    }
    clock.advance(Duration::from_millis(3_000));
    for node in [&a, &b] {
        // The manual clock jumped past the real-time delay the notice and
        // the poll have: wait for the node that did not rotate.
        let token = eventually(Duration::from_secs(5), "the new signer", || async {
            let token = node.token("fred.demo", 72);
            (kid_of(&token) == new_kid).then_some(token)
        })
        .await;
        for checker in [&a, &b] {
            assert_eq!(lookup_status(checker, &token).await.0, 200);
        }
    }
    assert_eq!(hash_kids(&redis).len(), 2, "one rotation for two nodes");

    // Once the new key has signed for token_max_secs + leeway, no live
    // token can need the old one: it leaves Redis and every node.
    clock.advance(Duration::from_secs(7200 + 6));
    let mut purged_on_b = Vec::new();
    eventually(Duration::from_secs(10), "the old key purged", || {
        let _ = a.running().housekeeping();
        if let Ok(done) = b.running().housekeeping() {
            purged_on_b.extend(done.keys.purged);
        }
        let gone = !hash_kids(&redis).contains(&old_kid) && purged_on_b.contains(&old_kid);
        async move { gone.then_some(()) }
    })
    .await;
    assert_eq!(
        b.running().tokens().verify(&old),
        Err(presence_server::token::TokenError::UnknownKey)
    );
}

#[actix_web::test]
async fn a_key_whose_notice_was_lost_is_known_everywhere_before_it_signs() {
    use base64::Engine;
    let cluster = Cluster::start(3).await;
    let real = cluster.node(0).token("fred.demo", 72);
    let claims = cluster
        .node(0)
        .running()
        .tokens()
        .verify(&real)
        .expect("ok");
    // A rotation whose `keys` notice nobody heard: only the poll finds it.
    let secret = [42u8; 32];
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_millis() as u64;
    let wire = json!({
        "secret": base64::engine::general_purpose::STANDARD.encode(secret),
        "created_at_ms": now_ms,
        "active_at_ms": now_ms + 3_000,
    })
    .to_string();
    redis(
        &cluster,
        &["HSET", "presence:signing_keys", "silent", &wire],
    );
    eventually(
        Duration::from_secs(10),
        "the silent key signing",
        || async { (kid_of(&cluster.node(0).token("fred.demo", 72)) == "silent").then_some(()) },
    )
    .await;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("silent".into());
    let key = jsonwebtoken::EncodingKey::from_secret(&secret);
    let token = jsonwebtoken::encode(&header, &claims, &key).expect("encode");
    for (i, node) in cluster.nodes.iter().enumerate() {
        let (status, body) = lookup_status(node, &token).await;
        assert_eq!(status, 200, "node {i} had not read the key: {body}");
    }
}
