//! Cluster mode's shared sign-in state, across nodes: lockout counters
//! (credentials and session-key misses), website sessions, single-use SSO
//! token ids, provisioned agents, and the audit log merged from every live
//! node (with `partial` when one does not answer); and 503
//! `cluster_unavailable`, fast, while Redis is down.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::cluster::{eventually, wait_for_nodes, Cluster, ProcessNode};
use common::{TestServer, API_KEY_72, ORIGIN_72, PASSWORD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use presence_server::config::{Config, SsoAlgorithm, SsoConfig};
use serde_json::{json, Value};

const SOON: Duration = Duration::from_secs(10);

fn password(user: &str, password: &str) -> Value {
    json!({"groupid": 72, "credentials": {"username": user, "password": password}})
}

async fn token_request(node: &TestServer, body: &Value) -> (u16, Value) {
    node.post("/auth/token", None, None, body).await
}

/// Five failures per account, the client limit out of the way.
fn five_per_account(config: &mut Config) {
    config.auth.lockout_failures = 5;
    config.auth.lockout_client_failures = 100_000;
}

#[actix_web::test]
async fn failures_spread_over_three_nodes_lock_the_account_at_the_limit() {
    let cluster = Cluster::start_with(3, |_, c| five_per_account(c)).await;
    for i in 0..5 {
        let (status, body) = token_request(cluster.node(i % 3), &password("fred.demo", "no")).await;
        assert_eq!(status, 401, "failure {i}: {body}");
    }
    for node in &cluster.nodes {
        let (status, body) = token_request(node, &password("fred.demo", PASSWORD)).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (429, Some("too_many_attempts")),
            "locked on every node: {body}"
        );
    }
    // Another account is not affected.
    let (status, _) = token_request(cluster.node(1), &password("ada.admin", PASSWORD)).await;
    assert_eq!(status, 200);
}

#[actix_web::test]
async fn racing_failures_on_every_node_get_exactly_the_limit_of_guesses() {
    let cluster = Cluster::start_with(3, |_, c| five_per_account(c)).await;
    let mut guesses = 0;
    let mut rounds = 0;
    loop {
        // Two at once per node (a node hashes at most two per client).
        let burst = cluster.nodes.iter().flat_map(|node| {
            (0..2).map(
                move |_| async move { token_request(node, &password("fred.demo", "no")).await },
            )
        });
        let answers = futures_util::future::join_all(burst).await;
        let refused = answers.iter().filter(|(s, _)| *s == 429).count();
        guesses += answers.iter().filter(|(s, _)| *s == 401).count();
        assert!(
            answers.iter().all(|(s, _)| *s == 401 || *s == 429),
            "{answers:?}"
        );
        rounds += 1;
        if refused == answers.len() || rounds == 10 {
            break;
        }
    }
    assert_eq!(guesses, 5, "the cluster allows the limit, not 3x");
}

/// `GET /presence/72/sessions/{key}` on `node`.
async fn find(node: &TestServer, token: &str, key: &str) -> (u16, Value) {
    node.get(&format!("/presence/72/sessions/{key}"), Some(token), None)
        .await
}

#[actix_web::test]
async fn session_key_misses_count_over_the_cluster() {
    let cluster = Cluster::start(3).await;
    // A visitor and its key on every node: a hit does not count, so
    // probing with it says whether the node refuses without adding misses.
    let mut visitors = Vec::new();
    let mut keys = Vec::new();
    for (i, node) in cluster.nodes.iter().enumerate() {
        let mut visitor = node.visitor(&format!("v-{i}"), json!({})).await;
        visitor.send(json!({"type": "session_key"})).await;
        let frame = visitor.recv().await;
        keys.push(frame["key"].as_str().expect("session key").to_owned());
        visitors.push(visitor);
    }
    // Per client (every request comes from 127.0.0.1) ten misses a
    // minute: four here, three there and three on the third node reach it
    // together, while no node alone is near it.
    for (i, misses) in [4, 3, 3].into_iter().enumerate() {
        let node = cluster.node(i);
        let token = node.token("fred.demo", 72);
        let miss = if keys[i] == "000000" {
            "000001"
        } else {
            "000000"
        };
        for _ in 0..misses {
            let (status, body) = find(node, &token, miss).await;
            assert_eq!(status, 404, "{body}");
        }
    }
    for (i, node) in cluster.nodes.iter().enumerate() {
        let token = node.token("fred.demo", 72);
        let body = eventually(SOON, "misses locked on every node", || async {
            let (status, body) = find(node, &token, &keys[i]).await;
            assert!(status == 200 || status == 429, "{body}");
            (status == 429).then_some(body)
        })
        .await;
        assert_eq!(body["error"], "too_many_attempts");
    }
    drop(visitors);
}

#[actix_web::test]
async fn a_website_session_started_on_one_node_works_on_another_and_ends_on_a_third() {
    let cluster = Cluster::start(3).await;
    let (a, b, c) = (cluster.node(0), cluster.node(1), cluster.node(2));
    let login = json!({"groupid": 72, "username": "fred.demo", "password": PASSWORD});
    let (status, body) = a.post("/auth/login", None, None, &login).await;
    assert_eq!(status, 200, "{body}");
    let gssnid = body["gssnid"].as_str().expect("gssnid").to_owned();

    // The cookie on B.
    let mut resp = b
        .http
        .post(b.url("/auth/token"))
        .insert_header(("Cookie", format!("gssnid={gssnid}")))
        .insert_header(("Origin", ORIGIN_72))
        .send_json(&json!({"groupid": 72, "credentials": {}}))
        .await
        .expect("response");
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(resp.status().as_u16(), 200, "{body}");
    assert_eq!(body["username"], "fred.demo");

    // Logout on C ends it on A.
    let (status, _) = c
        .post("/auth/logout", None, None, &json!({"gssnid": gssnid}))
        .await;
    assert_eq!(status, 204);
    let session = json!({"groupid": 72, "credentials": {"gssnid": gssnid}});
    let (status, body) = token_request(a, &session).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_credentials"))
    );
}

const ISSUER: &str = "acme-license-72";

fn with_sso(config: &mut Config) {
    common::without_lockout(config);
    let pem = |name: &str| {
        std::fs::read_to_string(format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR")))
            .expect("test key")
    };
    config.groups[0].sso = Some(SsoConfig {
        issuer: ISSUER.into(),
        audience: None,
        public_keys: vec![pem("group72-a.pub.pem")],
        algorithms: vec![SsoAlgorithm::RS256],
        allow_admin_role: false,
        auto_provision: true,
        require_jti: true,
        login_url: None,
    });
}

fn sso_token(sub: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("time")
        .as_secs();
    let claims = json!({"iss": ISSUER, "aud": "http://127.0.0.1:8080", "sub": sub,
        "iat": now, "exp": now + 600, "jti": presence_server::ids::random_id(12),
        "displayName": "Jane Doe"});
    let pem = std::fs::read(format!(
        "{}/tests/keys/group72-a.key.pem",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("test key");
    let key = EncodingKey::from_rsa_pem(&pem).expect("signing key");
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key).expect("sign")
}

#[actix_web::test]
async fn an_sso_token_signs_in_once_and_its_agent_is_listed_everywhere() {
    let cluster = Cluster::start_with(3, |_, c| with_sso(c)).await;
    let jwt = sso_token("jane@acme.test");
    let sso = json!({"groupid": 72, "credentials": {"jwt": jwt}});
    let (status, body) = token_request(cluster.node(0), &sso).await;
    assert_eq!(status, 200, "{body}");
    for node in &cluster.nodes {
        let (status, body) = token_request(node, &sso).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_credentials")),
            "a replay on any node"
        );
    }
    // Provisioned on A, listed on B and C.
    for node in &cluster.nodes[1..] {
        let admin = node.admin_token("ada.admin", 72);
        let (status, list) = node.get("/admin/72/agents", Some(&admin), None).await;
        assert_eq!(status, 200, "{list}");
        let jane = list["agents"]
            .as_array()
            .and_then(|a| a.iter().find(|a| a["username"] == "jane@acme.test"))
            .cloned()
            .unwrap_or(Value::Null);
        assert_eq!(jane["source"], "sso", "{list}");
        assert_eq!(jane["name"], "Jane Doe");
        assert!(jane["first_seen"].as_u64().is_some_and(|t| t > 0));
    }
}

/// The jtis of `GET /admin/72/audit` on `node`, page by page with the
/// cursor, checking the order; and how many pages it took.
async fn audit_pages(node: &TestServer, limit: usize) -> (Vec<String>, usize) {
    let admin = node.admin_token("ada.admin", 72);
    let (mut jtis, mut pages, mut cursor, mut last_at) = (Vec::new(), 0, None::<String>, u64::MAX);
    loop {
        let path = match &cursor {
            Some(c) => format!("/admin/72/audit?limit={limit}&cursor={c}"),
            None => format!("/admin/72/audit?limit={limit}"),
        };
        let (status, page) = node.get(&path, Some(&admin), None).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(
            (page["partial"].as_bool(), &page["missing"]),
            (Some(false), &json!([]))
        );
        pages += 1;
        for record in page["records"].as_array().expect("records") {
            let at = record["at"].as_u64().expect("at");
            assert!(at <= last_at, "newest first");
            last_at = at;
            jtis.extend(record["jti"].as_str().map(str::to_owned));
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return (jtis, pages),
        }
    }
}

#[actix_web::test]
async fn the_audit_log_merges_every_node_newest_first_and_pages_exactly() {
    let cluster = Cluster::start(3).await;
    let mut issued = HashSet::new();
    for round in 0..3 {
        for node in &cluster.nodes {
            let (status, body) = token_request(node, &password("fred.demo", PASSWORD)).await;
            assert_eq!(status, 200, "round {round}: {body}");
        }
    }
    let admin = cluster.node(0).admin_token("ada.admin", 72);
    let (status, all) = cluster
        .node(0)
        .get("/admin/72/audit", Some(&admin), None)
        .await;
    assert_eq!(status, 200, "{all}");
    for record in all["records"].as_array().expect("records") {
        if record["outcome"] == "issued" {
            issued.insert(record["jti"].as_str().expect("jti").to_owned());
        }
    }
    assert_eq!(issued.len(), 9, "every node's issued tokens: {all}");
    for node in &cluster.nodes {
        for limit in [1, 2, 4] {
            let (jtis, pages) = audit_pages(node, limit).await;
            let unique: HashSet<String> = jtis.iter().cloned().collect();
            assert_eq!(unique.len(), jtis.len(), "no record twice (limit {limit})");
            assert_eq!(unique, issued, "every record once (limit {limit})");
            assert_eq!(pages, 9usize.div_ceil(limit).max(1), "limit {limit}");
        }
    }
    // A single-node cursor is not a merged one.
    let (status, body) = cluster
        .node(0)
        .get(
            "/admin/72/audit?cursor=00112233445566778899aabbccddeeff",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 400, "{body}");
}

/// The lease of the survey test's nodes: long, so that no node is declared
/// dead for being starved of CPU on a loaded machine (the test stalls one
/// on purpose and needs it still counted as live).
const SURVEY_TEST_LEASE_MS: u64 = 20_000;

/// A node of the real binary on `redis_url`, for SIGSTOP.
fn process_node(redis_url: &str) -> ProcessNode {
    ProcessNode::start(
        &format!(
            r#"
[cluster]
mode = "redis"
redis_url = "{redis_url}"
node_lease_ms = {SURVEY_TEST_LEASE_MS}

[[groups]]
id = 72
name = "demo"
presence = true
api_key = "{API_KEY_72}"
origins = ["{ORIGIN_72}"]
"#
        ),
        &[],
    )
}

#[actix_web::test]
async fn a_node_that_does_not_answer_makes_the_page_partial_within_the_survey_timeout() {
    let cluster = Cluster::start_with(2, |_, c| {
        c.cluster.survey_timeout_ms = 300;
        c.cluster.node_lease_ms = SURVEY_TEST_LEASE_MS;
    })
    .await;
    let stalled = process_node(&cluster.redis.url());
    wait_for_nodes(cluster.node(0), 3).await;
    let mut resp = cluster
        .node(0)
        .http
        .get(stalled.url("/healthz"))
        .send()
        .await
        .expect("health");
    let health: Value = resp.json().await.expect("json");
    let stalled_id = health["node"].as_str().expect("node id").to_owned();
    let (status, _) = token_request(cluster.node(1), &password("fred.demo", PASSWORD)).await;
    assert_eq!(status, 200);
    let node = cluster.node(0);
    let admin = node.admin_token("ada.admin", 72);
    let (_, page) = node.get("/admin/72/audit", Some(&admin), None).await;
    assert_eq!(page["partial"], false, "{page}");

    // All three still live as the node that answers sees them.
    wait_for_nodes(node, 3).await;
    let pid = stalled.child.id().to_string();
    let stopped = std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .expect("kill -STOP");
    assert!(stopped.success());
    let started = Instant::now();
    let (status, page) = node.get("/admin/72/audit", Some(&admin), None).await;
    let took = started.elapsed();
    let _ = std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status();
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["partial"], true, "{page}");
    assert_eq!(page["missing"], json!([stalled_id]));
    assert_eq!(
        page["records"].as_array().map(Vec::len),
        Some(1),
        "B's record"
    );
    assert!(took < Duration::from_millis(1_500), "answered in {took:?}");
}

#[actix_web::test]
async fn with_redis_down_the_shared_endpoints_answer_503_fast() {
    let mut cluster = Cluster::start_with(2, |_, c| with_sso(c)).await;
    let node = cluster.node(0);
    let admin = node.admin_token("ada.admin", 72);
    let login = json!({"groupid": 72, "username": "fred.demo", "password": PASSWORD});
    let (status, body) = node.post("/auth/login", None, None, &login).await;
    assert_eq!(status, 200, "{body}");
    let session = json!({"groupid": 72, "credentials": {"gssnid": body["gssnid"]}});
    cluster.redis.kill();
    let node = cluster.node(0);
    let sso = json!({"groupid": 72, "credentials": {"jwt": sso_token("zoe@acme.test")}});
    let posts = [
        ("/auth/token", password("fred.demo", PASSWORD)),
        ("/auth/login", login.clone()),
        ("/auth/token", session),
        ("/auth/token", sso),
    ];
    for (path, body) in &posts {
        let started = Instant::now();
        let (status, answer) = node.post(path, None, None, body).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (503, Some("cluster_unavailable")),
            "{path} {body}: {answer}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{path} was slow"
        );
    }
    for path in ["/admin/72/audit", "/admin/72/agents"] {
        let started = Instant::now();
        let (status, answer) = node.get(path, Some(&admin), None).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (503, Some("cluster_unavailable")),
            "{path}: {answer}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{path} was slow"
        );
    }
}
