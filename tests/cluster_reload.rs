//! Live config reload in cluster mode: a reload applies on the node that
//! got it; `presence-server reload --all` publishes one to every node,
//! each re-reading its own file; `/healthz` shows every node's config hash,
//! so drift between nodes is visible.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use common::cluster::{eventually, health, wait_for_nodes, RedisServer, TEST_LEASE_MS};
use common::{TestServer, PASSWORD, WAIT};
use presence_server::config::ReloadOutcome;
use serde_json::{json, Value};

struct Node {
    server: TestServer,
    path: PathBuf,
}

async fn start_node(redis_url: &str) -> (Node, String) {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let path = dir.path().join("config.toml");
    let mut toml = common::config_toml(&dir.path().join("data"));
    toml.push_str(&format!(
        "\n[cluster]\nmode = \"redis\"\nredis_url = \"{redis_url}\"\nnode_lease_ms = {TEST_LEASE_MS}\nredis_timeout_ms = {}\n",
        common::cluster::TEST_REDIS_TIMEOUT_MS
    ));
    std::fs::write(&path, &toml).expect("write config");
    let server = TestServer::start_from_file(dir, &path).await;
    (Node { server, path }, toml)
}

/// `toml` with a user `username` added to group 72.
/// (One hash for every call: the same user reads the same on every node.)
fn with_user(toml: &str, username: &str) -> String {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let hash =
        HASH.get_or_init(|| presence_server::password::hash_password(PASSWORD).expect("hash"));
    let at = toml.find("[[groups.users]]").expect("users");
    format!(
        "{}[[groups.users]]\nusername = \"{username}\"\npassword_hash = \"{hash}\"\n\n{}",
        &toml[..at],
        &toml[at..]
    )
}

async fn sign_in(node: &TestServer, username: &str) -> u16 {
    node.post(
        "/auth/token",
        None,
        None,
        &json!({"groupid": 72, "credentials": {"username": username, "password": PASSWORD}}),
    )
    .await
    .0
}

/// Waits until `node`'s `/healthz` shows a hash for each of `nodes`.
async fn hashes_seen(node: &TestServer, nodes: usize, what: &str) -> Value {
    eventually(WAIT, what, || async {
        let (status, body) = health(node).await;
        let hashes = body["node_config_hashes"].as_object()?.clone();
        (status == 200 && hashes.len() == nodes && hashes.values().all(Value::is_string))
            .then_some(body)
    })
    .await
}

#[actix_web::test]
async fn reload_all_reaches_every_node_and_healthz_shows_each_hash() {
    let redis = RedisServer::start();
    let (a, toml_a) = start_node(&redis.url()).await;
    let (b, toml_b) = start_node(&redis.url()).await;
    wait_for_nodes(&a.server, 2).await;
    wait_for_nodes(&b.server, 2).await;
    let first = hashes_seen(&a.server, 2, "both nodes' hashes on node a").await;
    let hash = first["config_hash"].clone();
    let hashes = first["node_config_hashes"].as_object().expect("hashes");
    assert!(
        hashes.values().all(|h| *h == hash),
        "same files, same hash: {first}"
    );
    assert_eq!(sign_in(&b.server, "newbie").await, 401);

    std::fs::write(&a.path, with_user(&toml_a, "newbie")).expect("rewrite");
    std::fs::write(&b.path, with_user(&toml_b, "newbie")).expect("rewrite");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_presence-server"))
        .args(["reload", "--all", "--config"])
        .arg(&a.path)
        .output()
        .expect("run reload --all");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("published to 2 node(s)"), "{stdout}");

    let mut new_hashes = Vec::new();
    for node in [&a, &b] {
        let body = eventually(WAIT, "the broadcast reload", || async {
            let (_, body) = health(&node.server).await;
            (body["last_reload"]["outcome"] == "applied").then_some(body)
        })
        .await;
        assert_ne!(body["config_hash"], hash);
        new_hashes.push(body["config_hash"].clone());
        assert_eq!(sign_in(&node.server, "newbie").await, 200);
    }
    assert_eq!(new_hashes[0], new_hashes[1], "same files again");
    let new_hash = new_hashes[0].clone();
    eventually(WAIT, "node a to see both new hashes", || async {
        let (_, body) = health(&a.server).await;
        let hashes = body["node_config_hashes"].as_object()?.clone();
        (hashes.len() == 2 && hashes.values().all(|h| *h == new_hash)).then_some(())
    })
    .await;

    // A reload applies on the node that got it: node a alone changes, and
    // node b's /healthz shows the drift.
    std::fs::write(&a.path, with_user(&with_user(&toml_a, "newbie"), "solo")).expect("rewrite");
    let report = a.server.running().reload().await;
    assert_eq!(report.outcome, ReloadOutcome::Applied, "{report:?}");
    assert_ne!(Value::from(report.config_hash.clone()), new_hash);
    let a_id = health(&a.server).await.1["node"].clone();
    let a_id = a_id.as_str().expect("node id").to_owned();
    let drift = eventually(WAIT, "node b to see node a's new hash", || async {
        let (_, body) = health(&b.server).await;
        let hashes = body["node_config_hashes"].as_object()?.clone();
        (hashes.get(&a_id)? == &Value::from(report.config_hash.clone())).then_some(body)
    })
    .await;
    assert_eq!(
        drift["config_hash"], new_hash,
        "node b kept its own: {drift}"
    );
    assert_eq!(sign_in(&a.server, "solo").await, 200);
    assert_eq!(sign_in(&b.server, "solo").await, 401);

    // Without cluster mode, --all says what to do instead.
    let single_dir = tempfile::tempdir().expect("tempdir");
    let single = single_dir.path().join("config.toml");
    std::fs::write(&single, common::config_toml(single_dir.path())).expect("write");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_presence-server"))
        .args(["reload", "--all", "--config"])
        .arg(&single)
        .output()
        .expect("run reload --all");
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("needs [cluster] mode"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    a.server.shutdown().await;
    b.server.shutdown().await;
}
