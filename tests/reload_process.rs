//! Live config reload through its triggers: SIGHUP to a server process,
//! `presence-server reload` signing `POST /internal/reload`, and the
//! internal listener refusing unsigned and forged calls.

mod common;

use common::reload::{base_toml, with_user, without_user, Reloadable};
use common::roles::{internal_post, INTERNAL_SECRET};
use common::PASSWORD;
use presence_server::clock::{Clock, SystemClock};
use serde_json::{json, Value};

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
    // None of those reloaded anything.
    assert_eq!(node.health().await["last_reload"], Value::Null);
    // A signed call replayed: the first reloads, the copy is refused.
    let signed = presence_server::internal_auth::sign(
        INTERNAL_SECRET.as_bytes(),
        "POST",
        "/internal/reload",
        b"{}",
        SystemClock.now_ms(),
    );
    node.rewrite(&node.toml);
    let (status, body) =
        internal_post(&node.internal_url(), "/internal/reload", &signed, b"{}").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) =
        internal_post(&node.internal_url(), "/internal/reload", &signed, b"{}").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("replayed_request"))
    );
    node.rewrite(&with_user(&node.toml, "newbie"));
    // Only the one signed call reloaded (the unchanged file).
    assert_eq!(node.health().await["last_reload"]["outcome"], "applied");
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

#[actix_web::test]
async fn internal_audit_takes_only_signed_command_line_issue_records() {
    let node = Reloadable::start().await;
    let sign = |body: &[u8]| {
        presence_server::internal_auth::sign(
            INTERNAL_SECRET.as_bytes(),
            "POST",
            "/internal/audit",
            body,
            SystemClock.now_ms(),
        )
    };
    let record = |credential: &str| {
        json!({"at": SystemClock.now_ms(), "outcome": "issued", "groupid": 72,
               "username": "fred.demo", "credential": credential, "role": "agent",
               "jti": format!("cli-{credential}"), "iat": 1, "exp": 2, "remote": null,
               "user_agent": "presence-server gen-token", "reason": "test"})
        .to_string()
        .into_bytes()
    };
    // Unsigned, or signed with another secret: refused.
    let cli = record("cli");
    let client = common::http_client();
    let unsigned = client
        .post(format!("{}/internal/audit", node.internal_url()))
        .send_body(cli.clone())
        .await
        .expect("response");
    assert_eq!(unsigned.status().as_u16(), 401);
    let forged = presence_server::internal_auth::sign(
        b"not-the-secret-not-the-secret-not-the-secret",
        "POST",
        "/internal/audit",
        &cli,
        SystemClock.now_ms(),
    );
    let (status, _) = internal_post(&node.internal_url(), "/internal/audit", &forged, &cli).await;
    assert_eq!(status, 401);
    // Signed, but not a command-line issue (a forged sign-in): refused.
    let password = record("password");
    let (status, body) = internal_post(
        &node.internal_url(),
        "/internal/audit",
        &sign(&password),
        &password,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("bad_request")),
        "{body}"
    );
    let (status, _) = internal_post(
        &node.internal_url(),
        "/internal/audit",
        &sign(b"[1]"),
        b"[1]",
    )
    .await;
    assert_eq!(status, 400);
    // The real thing is recorded, and only it.
    let (status, body) =
        internal_post(&node.internal_url(), "/internal/audit", &sign(&cli), &cli).await;
    assert_eq!(status, 200, "{body}");
    let admin = node.server.admin_token("ada.admin", 72);
    let (status, body) = node
        .server
        .get("/admin/72/audit?username=fred.demo", Some(&admin), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let jtis: Vec<&str> = body["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter_map(|r| r["jti"].as_str())
        .collect();
    assert!(jtis.contains(&"cli-cli"), "{body}");
    assert!(!jtis.contains(&"cli-password"), "{body}");
    node.server.shutdown().await;
}
