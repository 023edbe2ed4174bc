//! Live config reload: the server re-reads its config file (and
//! environment) on `POST /internal/reload` or its own call, applies groups,
//! users and origins without dropping a socket, closes what the new rules
//! no longer admit, and refuses a bad file or a restart-only change with
//! the old config still serving. (SIGHUP, the command line and the
//! internal listener's own checks: `reload_process.rs`.)

mod common;

use awc::ws::CloseCode;
use common::reload::{with_user, without_group, without_user, Reloadable, LOCAL_ORIGIN};
use common::{assert_closed, sample, scrape, ORIGIN_72};
use presence_server::config::ReloadOutcome;
use serde_json::{json, Value};

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
    // A broken line that holds a secret: the error gives its place, and
    // neither the log nor the public /healthz ever shows the secret.
    let key_line = format!("api_key = \"{}\"", common::API_KEY_72);
    let broken = node
        .toml
        .replacen(&key_line, &key_line[..key_line.len() - 1], 1);
    assert_ne!(broken, node.toml);
    node.rewrite(&broken);
    let report = node.server.running().reload().await;
    assert_eq!(report.outcome, ReloadOutcome::Failed, "{report:?}");
    let health = node.health().await;
    assert!(!health.to_string().contains(common::API_KEY_72), "{health}");
    let error = health["last_reload"]["error"].as_str().expect("error");
    assert!(error.contains("line"), "{error}");
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
        4.0
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
