//! Live config reload: the server re-reads its config file (and
//! environment) on `POST /internal/reload`, on SIGHUP and from the running
//! server's own call, applies groups, users and origins without dropping a
//! socket, closes what the new rules no longer admit, and refuses a bad
//! file or a restart-only change with the old config still serving.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use awc::ws::CloseCode;
use common::roles::{internal_post, INTERNAL_SECRET};
use common::{assert_closed, sample, scrape, TestServer, ORIGIN_72, PASSWORD};
use presence_server::clock::{Clock, SystemClock};
use presence_server::config::ReloadOutcome;
use serde_json::{json, Value};

const LOCAL_ORIGIN: &str = "http://localhost:8080";

/// The base test config with an internal listener for `/internal/reload`.
fn base_toml(dir: &Path) -> String {
    common::config_toml(&dir.join("data")).replacen(
        "[server]\n",
        &format!(
            "[server]\ninternal_bind = \"127.0.0.1:0\"\ninternal_secret = \"{INTERNAL_SECRET}\"\n"
        ),
        1,
    )
}

fn user_block(username: &str) -> String {
    let hash = presence_server::password::hash_password(PASSWORD).expect("hash");
    format!("[[groups.users]]\nusername = \"{username}\"\npassword_hash = \"{hash}\"\n\n")
}

/// `toml` with `username` added to group 72 (before its first user).
fn with_user(toml: &str, username: &str) -> String {
    let at = toml
        .find("[[groups.users]]\nusername = \"fred.demo\"")
        .expect("fred");
    format!("{}{}{}", &toml[..at], user_block(username), &toml[at..])
}

/// `toml` without the `[[groups.users]]` block of `username` (the first).
fn without_user(toml: &str, username: &str) -> String {
    let start = toml
        .find(&format!("[[groups.users]]\nusername = \"{username}\""))
        .expect("user");
    let end = toml[start + 1..]
        .find("[[groups")
        .map_or(toml.len(), |i| start + 1 + i);
    format!("{}{}", &toml[..start], &toml[end..])
}

/// `toml` without the group `id` (its table and users).
fn without_group(toml: &str, id: u64) -> String {
    let start = toml
        .find(&format!("[[groups]]\nid = {id}\n"))
        .expect("group");
    let end = toml[start + 1..]
        .find("[[groups]]")
        .map_or(toml.len(), |i| start + 1 + i);
    format!("{}{}", &toml[..start], &toml[end..])
}

struct Reloadable {
    server: TestServer,
    path: PathBuf,
    /// The config it started with.
    toml: String,
}

impl Reloadable {
    /// A server started from [`base_toml`] in a file of its own.
    async fn start() -> Self {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        let path = dir.path().join("config.toml");
        let toml = base_toml(dir.path());
        std::fs::write(&path, &toml).expect("write config");
        let server = TestServer::start_from_file(dir, &path).await;
        Self { server, path, toml }
    }

    fn rewrite(&self, toml: &str) {
        std::fs::write(&self.path, toml).expect("rewrite config");
    }

    fn internal_url(&self) -> String {
        let addr = self
            .server
            .running()
            .internal_addr()
            .expect("internal listener");
        format!("http://{addr}")
    }

    /// A signed `POST /internal/reload`.
    async fn reload_over_http(&self) -> (u16, Value) {
        let body = b"{}";
        let headers = presence_server::internal_auth::sign(
            INTERNAL_SECRET.as_bytes(),
            "POST",
            "/internal/reload",
            body,
            SystemClock.now_ms(),
        );
        internal_post(&self.internal_url(), "/internal/reload", &headers, body).await
    }

    async fn sign_in(&self, group: u64, username: &str) -> (u16, Value) {
        self.server
            .post(
                "/auth/token",
                None,
                None,
                &json!({"groupid": group, "credentials": {"username": username, "password": PASSWORD}}),
            )
            .await
    }

    async fn token(&self, group: u64, username: &str) -> String {
        let (status, body) = self.sign_in(group, username).await;
        assert_eq!(status, 200, "{body}");
        body["token"].as_str().expect("token").to_owned()
    }

    async fn health(&self) -> Value {
        let (status, body) = self.server.get("/healthz", None, None).await;
        assert_eq!(status, 200, "{body}");
        body
    }
}

#[actix_web::test]
async fn a_user_added_to_the_file_signs_in_without_a_restart() {
    let node = Reloadable::start().await;
    let toml = node.toml.clone();
    let (status, body) = node.sign_in(72, "newbie").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_credentials"))
    );
    let before = node.health().await["config_hash"].clone();
    // A socket open before the reload stays open through it.
    let mut visitor = node.server.visitor("v-stays", json!({})).await;

    node.rewrite(&with_user(&toml, "newbie"));
    let (status, report) = node.reload_over_http().await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["outcome"], "applied");
    assert_eq!(report["changes"]["users_added"], json!(["72/newbie"]));
    assert_ne!(report["config_hash"], before);

    let token = node.token(72, "newbie").await;
    let (status, body) = node
        .server
        .get("/presence/72/visitors/v-stays", Some(&token), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["online"], true, "the socket survived the reload");
    visitor
        .send(json!({"type": "presence", "data": {"page": "/after"}}))
        .await;
    let health = node.health().await;
    assert_eq!(health["config_hash"], report["config_hash"]);
    assert_eq!(health["last_reload"]["outcome"], "applied");
    assert_eq!(health["last_reload"]["error"], Value::Null);
    let metrics = scrape(&node.server).await;
    assert_eq!(
        sample(
            &metrics,
            "presence_config_reloads_total{outcome=\"applied\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(&metrics, "presence_config_last_reload{outcome=\"applied\"}"),
        1.0
    );
    assert!(sample(&metrics, "presence_config_last_reload_timestamp_seconds") > 0.0);
    node.server.shutdown().await;
}

#[actix_web::test]
async fn a_removed_user_s_socket_closes_as_revoked_and_the_token_stops_verifying() {
    let node = Reloadable::start().await;
    let toml = node.toml.clone();
    let fred = node.token(72, "fred.demo").await;
    let ada = node.token(72, "ada.admin").await;
    let mut fred_socket = node.server.agent(&fred).await;
    let mut ada_socket = node.server.agent(&ada).await;

    node.rewrite(&without_user(&toml, "fred.demo"));
    let (status, report) = node.reload_over_http().await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["changes"]["users_removed"], json!(["72/fred.demo"]));
    assert_eq!(report["changes"]["tokens_revoked"], 1, "{report}");

    let closed = fred_socket.closed().await;
    assert_closed(&closed, CloseCode::Policy, "token_revoked");
    let (status, body) = node
        .server
        .get("/presence/72/visitors/v1", Some(&fred), None)
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized")),
        "{body}"
    );
    let (status, _) = node.sign_in(72, "fred.demo").await;
    assert_eq!(status, 401, "a removed user cannot sign in again");
    let reasons = node.server.running().audit_reasons(72);
    assert!(
        reasons.iter().any(|r| r.contains("config reload")),
        "the revocation is audited: {reasons:?}"
    );
    // Others are untouched: ada's socket still answers and her token works.
    assert_eq!(
        node.server.status("/presence/72/visitors/v1", &ada).await,
        200
    );
    ada_socket
        .send(json!({"type": "lookup", "id": "a", "visitorid": "v1"}))
        .await;
    let answer = ada_socket.recv().await;
    assert_ne!(answer["type"], "error", "{answer}");
    node.server.shutdown().await;
}

#[actix_web::test]
async fn a_removed_group_closes_its_agents_as_revoked_and_its_visitors_with_1008() {
    let node = Reloadable::start().await;
    let toml = node.toml.clone();
    let olga = node.token(73, "olga").await;
    let mut agent = node
        .server
        .socket("/agent/ws", Some(common::ORIGIN_73))
        .await
        .expect("connect");
    agent.send(json!({"type": "auth", "token": olga})).await;
    assert_eq!(agent.recv().await["type"], "ready");
    let mut visitor = node
        .server
        .socket("/visitor/ws", Some(common::ORIGIN_73))
        .await
        .expect("connect");
    visitor
        .send(json!({"type": "hello", "groupid": 73, "visitorid": "v73"}))
        .await;
    assert_eq!(visitor.recv().await["type"], "welcome");

    node.rewrite(&without_group(&toml, 73));
    let report = node.server.running().reload().await;
    assert_eq!(report.outcome, ReloadOutcome::Applied, "{report:?}");
    let changes = report.changes.expect("changes");
    assert_eq!(changes.groups_removed, vec![73]);

    assert_closed(&agent.closed().await, CloseCode::Policy, "token_revoked");
    assert_closed(&visitor.closed().await, CloseCode::Policy, "unknown_group");
    let (status, body) = node
        .server
        .get("/presence/73/visitors/v73", Some(&olga), None)
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized")),
        "{body}"
    );
    // `multi` kept its group-72 record and signs in there.
    node.token(72, "multi").await;
    node.server.shutdown().await;
}

#[actix_web::test]
async fn a_bad_file_is_refused_naming_the_key_and_the_old_config_keeps_serving() {
    let node = Reloadable::start().await;
    let toml = node.toml.clone();
    let hash = node.health().await["config_hash"].clone();

    // A bad value: the error names its key, as at start-up.
    let bad = with_user(&toml, "newbie").replace(
        &format!("origins = [\"{ORIGIN_72}\", \"{LOCAL_ORIGIN}\"]"),
        &format!("origins = [\"{ORIGIN_72}\", \"not an origin\"]"),
    );
    node.rewrite(&bad);
    let (status, body) = node.reload_over_http().await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"], "config_invalid");
    let message = body["message"].as_str().expect("message");
    assert!(message.contains("groups[0].origins[1]"), "{message}");

    // The old config serves: its users sign in, the new one does not, its
    // origins still admit.
    node.token(72, "fred.demo").await;
    assert_eq!(node.sign_in(72, "newbie").await.0, 401);
    let mut visitor = node
        .server
        .socket("/visitor/ws", Some(LOCAL_ORIGIN))
        .await
        .expect("connect");
    visitor
        .send(json!({"type": "hello", "groupid": 72, "visitorid": "v1"}))
        .await;
    assert_eq!(visitor.recv().await["type"], "welcome");

    let health = node.health().await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["config_hash"], hash, "unchanged");
    assert_eq!(health["last_reload"]["outcome"], "failed");
    let error = health["last_reload"]["error"].as_str().expect("error");
    assert!(error.contains("groups[0].origins[1]"), "{error}");
    let metrics = scrape(&node.server).await;
    assert_eq!(
        sample(
            &metrics,
            "presence_config_reloads_total{outcome=\"failed\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(&metrics, "presence_config_last_reload{outcome=\"failed\"}"),
        1.0
    );
    assert_eq!(
        sample(&metrics, "presence_config_last_reload{outcome=\"applied\"}"),
        0.0
    );

    // A file that is not TOML, and a missing file, fail the same way.
    node.rewrite("[[groups]\nid = ");
    let report = node.server.running().reload().await;
    assert_eq!(report.outcome, ReloadOutcome::Failed, "{report:?}");
    std::fs::remove_file(&node.path).expect("remove");
    let report = node.server.running().reload().await;
    assert_eq!(report.outcome, ReloadOutcome::Failed);
    assert!(
        report.error.as_deref().unwrap_or("").contains("not found"),
        "{report:?}"
    );
    assert_eq!(report.config_hash, hash.as_str().expect("hash"));
    node.token(72, "ada.admin").await;
    let metrics = scrape(&node.server).await;
    assert_eq!(
        sample(
            &metrics,
            "presence_config_reloads_total{outcome=\"failed\"}"
        ),
        3.0
    );
    node.server.shutdown().await;
}

#[actix_web::test]
async fn an_origin_removed_closes_its_live_sockets_with_1008_and_refuses_new_ones() {
    let node = Reloadable::start().await;
    let toml = node.toml.clone();
    let token = node.token(72, "fred.demo").await;
    let hello = |id: &str| json!({"type": "hello", "groupid": 72, "visitorid": id});
    let mut leaving = node
        .server
        .socket("/visitor/ws", Some(LOCAL_ORIGIN))
        .await
        .expect("connect");
    leaving.send(hello("v-local")).await;
    assert_eq!(leaving.recv().await["type"], "welcome");
    let mut staying = node
        .server
        .socket("/visitor/ws", Some(ORIGIN_72))
        .await
        .expect("connect");
    staying.send(hello("v-kept")).await;
    assert_eq!(staying.recv().await["type"], "welcome");
    let mut agent = node
        .server
        .socket("/agent/ws", Some(LOCAL_ORIGIN))
        .await
        .expect("connect");
    agent.send(json!({"type": "auth", "token": token})).await;
    assert_eq!(agent.recv().await["type"], "ready");

    node.rewrite(&toml.replace(
        &format!("origins = [\"{ORIGIN_72}\", \"{LOCAL_ORIGIN}\"]"),
        &format!("origins = [\"{ORIGIN_72}\"]"),
    ));
    let (status, report) = node.reload_over_http().await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["changes"]["visitor_sockets_closed"], 1, "{report}");
    assert_eq!(report["changes"]["agent_sockets_closed"], 1, "{report}");

    assert_closed(
        &leaving.closed().await,
        CloseCode::Policy,
        "origin_not_allowed",
    );
    assert_closed(
        &agent.closed().await,
        CloseCode::Policy,
        "origin_not_allowed",
    );
    // The visitor from an origin still listed stays online.
    let (status, body) = node
        .server
        .get("/presence/72/visitors/v-kept", Some(&token), None)
        .await;
    assert_eq!(
        (status, body["online"].as_bool()),
        (200, Some(true)),
        "{body}"
    );
    staying
        .send(json!({"type": "presence", "data": {"still": true}}))
        .await;

    // New requests and sockets from the removed origin are refused.
    let (status, body) = node
        .server
        .get(
            "/presence/72/visitors/v-kept",
            Some(&token),
            Some(LOCAL_ORIGIN),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("origin_not_allowed")),
        "{body}"
    );
    match node.server.socket("/visitor/ws", Some(LOCAL_ORIGIN)).await {
        // Refused at the upgrade (no group lists the origin any more) ...
        Err(_) => {}
        // ... or at the hello.
        Ok(mut socket) => {
            socket.send(hello("v-again")).await;
            assert_closed(
                &socket.closed().await,
                CloseCode::Policy,
                "origin_not_allowed",
            );
        }
    }
    node.server.shutdown().await;
}

#[actix_web::test]
async fn a_restart_only_change_is_refused_naming_each_key() {
    let node = Reloadable::start().await;
    let toml = node.toml.clone();
    let hash = node.health().await["config_hash"].clone();
    let changed = with_user(&toml, "newbie")
        .replace("workers = 2", "workers = 3")
        .replace("reconnect_grace_ms = 10000", "reconnect_grace_ms = 9000");
    node.rewrite(&changed);
    let (status, body) = node.reload_over_http().await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "restart_required");
    let message = body["message"].as_str().expect("message");
    assert!(
        message.contains("server.workers") && message.contains("presence.reconnect_grace_ms"),
        "{message}"
    );
    // Nothing of the file applies, not even the reloadable part.
    assert_eq!(node.sign_in(72, "newbie").await.0, 401);
    let health = node.health().await;
    assert_eq!(health["config_hash"], hash);
    assert_eq!(health["last_reload"]["outcome"], "refused");
    let metrics = scrape(&node.server).await;
    assert_eq!(
        sample(
            &metrics,
            "presence_config_reloads_total{outcome=\"refused\"}"
        ),
        1.0
    );

    // The data directory and bind address are restart-only too.
    node.rewrite(&toml.replace("[server]\n", "[server]\nbacklog = 1024\n"));
    let report = node.server.running().reload().await;
    assert_eq!(report.outcome, ReloadOutcome::Refused);
    assert!(
        report
            .error
            .as_deref()
            .unwrap_or("")
            .contains("server.backlog"),
        "{report:?}"
    );
    node.server.shutdown().await;
}

#[actix_web::test]
async fn internal_reload_refuses_unsigned_and_forged_calls() {
    let node = Reloadable::start().await;
    let toml = node.toml.clone();
    node.rewrite(&with_user(&toml, "newbie"));
    let client = common::http_client();
    let mut unsigned = client
        .post(format!("{}/internal/reload", node.internal_url()))
        .send_body("{}")
        .await
        .expect("response");
    assert_eq!(unsigned.status().as_u16(), 401);
    let body: Value = unsigned.json().await.expect("json");
    assert_eq!(body["error"], "bad_signature", "{body}");
    let forged = presence_server::internal_auth::sign(
        b"not-the-secret-not-the-secret-not-the-secret",
        "POST",
        "/internal/reload",
        b"{}",
        SystemClock.now_ms(),
    );
    let (status, body) =
        internal_post(&node.internal_url(), "/internal/reload", &forged, b"{}").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("bad_signature"))
    );
    // Signed for another path: refused too.
    let elsewhere = presence_server::internal_auth::sign(
        INTERNAL_SECRET.as_bytes(),
        "POST",
        "/internal/revoked",
        b"{}",
        SystemClock.now_ms(),
    );
    let (status, _) =
        internal_post(&node.internal_url(), "/internal/reload", &elsewhere, b"{}").await;
    assert_eq!(status, 401);
    // Nothing was reloaded.
    assert_eq!(node.health().await["last_reload"], Value::Null);
    assert_eq!(node.sign_in(72, "newbie").await.0, 401);
    // The public listener never serves it.
    let (status, _) = node
        .server
        .post("/internal/reload", None, None, &json!({}))
        .await;
    assert_eq!(status, 404);
    node.server.shutdown().await;
}

#[actix_web::test]
async fn sighup_reloads_a_server_process_and_the_cli_asks_it_over_the_internal_listener() {
    let dir = tempfile::tempdir().expect("t");
    let port = common::cluster::free_port();
    let toml = base_toml(dir.path()).replace(
        "internal_bind = \"127.0.0.1:0\"",
        &format!("internal_bind = \"127.0.0.1:{port}\""),
    );
    let node = common::cluster::ProcessNode::start(&toml, &[]);
    let client = node.client();
    let path = node.dir.path().join("config.toml");
    let health = || async { client.get("/healthz", None, None).await.1 };
    let before = health().await["config_hash"].clone();

    std::fs::write(&path, with_user(&toml, "newbie")).expect("rewrite");
    let status = std::process::Command::new("kill")
        .args(["-HUP", &node.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let after = common::cluster::eventually(common::WAIT, "the SIGHUP reload", || async {
        let body = health().await;
        (body["last_reload"]["outcome"] == "applied").then_some(body)
    })
    .await;
    assert_ne!(after["config_hash"], before);
    let (status, body) = client
        .post(
            "/auth/token",
            None,
            None,
            &json!({"groupid": 72, "credentials": {"username": "newbie", "password": PASSWORD}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // `presence-server reload` signs a POST to the internal listener.
    std::fs::write(&path, without_user(&toml, "fred.demo")).expect("rewrite");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_presence-server"))
        .args(["reload", "--config"])
        .arg(&path)
        .output()
        .expect("run reload");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_str(&stdout).expect("report");
    assert_eq!(report["outcome"], "applied");
    // The file is the base without fred: newbie, added by the SIGHUP, goes
    // too.
    assert_eq!(
        report["changes"]["users_removed"],
        json!(["72/fred.demo", "72/newbie"])
    );
    assert_eq!(report["changes"]["users_added"], Value::Array(vec![]));
    assert_eq!(health().await["config_hash"], report["config_hash"]);

    // A restart-only change: the command fails, naming the key; the
    // process serves on.
    std::fs::write(&path, toml.replace("workers = 2", "workers = 0")).expect("rewrite");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_presence-server"))
        .args(["reload", "--config"])
        .arg(&path)
        .output()
        .expect("run reload");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("restart_required") && stderr.contains("server.workers"),
        "{stderr}"
    );
    let log = std::fs::read_to_string(&node.log).expect("log");
    assert!(log.contains("config reload refused"), "{log}");
    assert_eq!(health().await["last_reload"]["outcome"], "refused");
}
