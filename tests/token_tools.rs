//! The token tools of the real binary: `gen-token`, `check-token` and
//! `keys list|rotate`, against data dirs and a Redis that real servers
//! use before, during and after.

mod common;

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use common::cluster::{eventually, join, RedisServer, TEST_LEASE_MS, TEST_REDIS_TIMEOUT_MS};
use common::roles::INTERNAL_SECRET;
use common::tools::{check_token, gen_token, kid, list_keys, tool, ConfigFile};
use common::TestServer;
use presence_server::clock::{Clock, ManualClock, SystemClock};
use presence_server::config::Role;
use serde_json::json;

const LOOKUP: &str = "/presence/72/visitors/v-nobody";

#[actix_web::test]
async fn a_generated_token_works_on_a_server_started_after_and_is_revocable_and_audited() {
    let data = Arc::new(tempfile::tempdir().expect("tempdir"));
    let config = ConfigFile::new(data.path(), "");
    let fred = gen_token(&config, "fred.demo", "600").await;
    let ada = gen_token(&config, "ada.admin", "60").await;

    let server = TestServer::start_in(data.clone(), |_| {}, Arc::new(SystemClock)).await;
    assert_eq!(server.status(LOOKUP, &fred).await, 200);
    let claims = server.running().tokens().verify(&fred).expect("valid");
    assert_eq!((claims.sub.as_str(), claims.groupid), ("fred.demo", 72));
    assert_eq!(claims.role, Role::Agent);
    assert_eq!(
        claims.name.as_deref(),
        Some("Fred Agent"),
        "as /auth/token gives it"
    );
    assert_eq!(claims.exp - claims.iat, 600);
    let admin = server.running().tokens().verify(&ada).expect("valid");
    assert_eq!(admin.role, Role::Administrator, "the configured role");

    // Audited as issued by the command line, before it was printed.
    let (status, body) = server
        .get("/admin/72/audit?username=fred.demo", Some(&ada), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let records = body["records"].as_array().expect("records");
    let record = records
        .iter()
        .find(|r| r["jti"] == claims.jti.as_str())
        .unwrap_or_else(|| panic!("no audit record: {body}"));
    assert_eq!(record["outcome"], "issued");
    assert_eq!(record["credential"], "cli");
    assert_eq!(record["user_agent"], "presence-server gen-token");
    let reason = record["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("issued by the command line (OS user "),
        "{record}"
    );
    assert_eq!(record["exp"], claims.exp);

    // Seen: the agent list says when it was last issued a token.
    let (status, body) = server.get("/admin/72/agents", Some(&ada), None).await;
    assert_eq!(status, 200, "{body}");
    let agents = body["agents"].as_array().expect("agents");
    let listed = agents.iter().find(|a| a["username"] == "fred.demo");
    assert!(
        listed.is_some_and(|a| a["last_seen"].as_u64() >= Some(claims.iat)),
        "{body}"
    );

    // Indexed: its user revokes it like any other token.
    let (status, body) = server
        .post(
            "/auth/revoke",
            Some(&fred),
            None,
            &json!({"jti": claims.jti}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.status(LOOKUP, &fred).await, 401);
    server.shutdown().await;
    let (code, first, report) = check_token(&config, &fred).await;
    assert_eq!(code, Some(1));
    assert!(first.starts_with("invalid: token_revoked"), "{first}");
    assert_eq!(report["error"], "token_revoked");
}

#[actix_web::test]
async fn every_tool_refuses_a_data_dir_that_a_running_server_holds() {
    let data = Arc::new(tempfile::tempdir().expect("tempdir"));
    let config = ConfigFile::new(data.path(), "");
    let server = TestServer::start_in(data.clone(), |_| {}, Arc::new(SystemClock)).await;
    let token = server.token("fred.demo", 72);
    let c = config.path();
    for (args, expected) in [
        (
            vec![
                "gen-token",
                "--config",
                c,
                "--group",
                "72",
                "--user",
                "fred.demo",
            ],
            1,
        ),
        (vec!["keys", "rotate", "--config", c], 1),
        (vec!["keys", "list", "--config", c], 1),
        (vec!["check-token", "--config", c, &token], 2),
    ] {
        let ran = tool(&args, None).await;
        assert_eq!(ran.code, Some(expected), "{args:?}: {}", ran.stderr);
        assert!(
            ran.stderr.contains("a server holds the data dir")
                && ran.stderr.contains("stop it, or use cluster mode"),
            "{args:?}: {}",
            ran.stderr
        );
        assert!(ran.stdout.is_empty(), "{args:?} printed {}", ran.stdout);
        assert!(!ran.stderr.contains("panicked"), "{}", ran.stderr);
    }
    // The refusal is the lock's: once the server stops, the tools work.
    server.shutdown().await;
    let fresh = gen_token(&config, "fred.demo", "600").await;
    assert_eq!(check_token(&config, &token).await.0, Some(0));
    assert_eq!(check_token(&config, &fresh).await.0, Some(0));
}

#[actix_web::test]
async fn check_token_gives_the_servers_codes_and_the_claims() {
    let data = Arc::new(tempfile::tempdir().expect("tempdir"));
    let config = ConfigFile::new(data.path(), "");
    // Three hours ago, a token for one hour: expired now.
    let clock = Arc::new(ManualClock::new(SystemClock.now_ms() - 3 * 3_600_000));
    let server = TestServer::start_in(data.clone(), |_| {}, clock.clone()).await;
    let expired = server.token("fred.demo", 72);
    clock.advance(Duration::from_secs(3 * 3600));
    let valid = server.token("fred.demo", 72);
    let revoked = server.token("fred.demo", 72);
    let jti = server
        .running()
        .tokens()
        .verify(&revoked)
        .expect("valid")
        .jti;
    let (status, body) = server
        .post("/auth/revoke", Some(&revoked), None, &json!({"jti": jti}))
        .await;
    assert_eq!(status, 200, "{body}");
    server.shutdown().await;

    let (code, first, report) = check_token(&config, &valid).await;
    assert_eq!((code, first.as_str()), (Some(0), "valid"));
    assert_eq!(report["valid"], true);
    assert_eq!(report["claims"]["sub"], "fred.demo");
    assert_eq!(report["claims"]["groupid"], 72);
    assert_eq!(report["header"]["kid"], kid(&valid).as_str());
    assert!(report.get("error").is_none(), "{report}");
    // From stdin, out of `ps`.
    let ran = tool(
        &["check-token", "--config", config.path(), "-"],
        Some(&valid),
    )
    .await;
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);

    let (code, first, report) = check_token(&config, &expired).await;
    assert_eq!(code, Some(1));
    assert!(first.starts_with("invalid: token_expired"), "{first}");
    assert_eq!(report["error"], "token_expired");
    assert_eq!(
        report["signature_verified"], true,
        "expiry is checked after the signature"
    );
    assert_eq!(report["claims"]["sub"], "fred.demo");
    assert!(report["expires_in_secs"].as_i64().expect("secs") < -3000);

    let (code, _, report) = check_token(&config, &revoked).await;
    assert_eq!(
        (code, report["error"].as_str()),
        (Some(1), Some("token_revoked"))
    );

    // Valid claims under another token's signature.
    let parts: Vec<&str> = valid.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        expired.split('.').nth(2).expect("sig")
    );
    let (code, first, report) = check_token(&config, &forged).await;
    assert_eq!(code, Some(1));
    assert!(
        first.starts_with("invalid: unauthorized (token_bad_signature)"),
        "{first}"
    );
    assert_eq!(report["error"], "unauthorized", "what a REST request gets");
    assert_eq!(report["signature_verified"], false);
    assert!(
        report.get("claims").is_none(),
        "never shown as verified: {report}"
    );
    assert_eq!(report["unverified_claims"]["sub"], "fred.demo");

    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT","kid":"no-such-key"}"#);
    let unknown = format!("{header}.{}.{}", parts[1], parts[2]);
    let (code, _, report) = check_token(&config, &unknown).await;
    assert_eq!(
        (code, report["reason"].as_str()),
        (Some(1), Some("token_unknown_key"))
    );
    assert_eq!(report["unverified_header"]["kid"], "no-such-key");

    let (code, _, report) = check_token(&config, "not.a.token").await;
    assert_eq!(
        (code, report["reason"].as_str()),
        (Some(1), Some("token_malformed"))
    );
}

/// Every way the secret could be spelled in output.
fn spellings(secret: &[u8]) -> Vec<String> {
    vec![
        secret.iter().map(|b| format!("{b:02x}")).collect(),
        STANDARD.encode(secret),
        URL_SAFE_NO_PAD.encode(secret),
        format!("{secret:?}").replace(' ', ""),
        format!("{secret:?}"),
        String::from_utf8_lossy(secret).into_owned(),
    ]
}

#[actix_web::test]
async fn keys_list_shows_no_secret_and_rotate_changes_the_signer_keeping_old_tokens() {
    let data = Arc::new(tempfile::tempdir().expect("tempdir"));
    let config = ConfigFile::new(data.path(), "");
    let old = gen_token(&config, "fred.demo", "600").await;
    let listed = list_keys(&config).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["kid"], kid(&old).as_str());
    assert_eq!(listed[0]["state"], "current");

    let rotated = tool(&["keys", "rotate", "--config", config.path()], None).await;
    assert_eq!(rotated.code, Some(0), "{}", rotated.stderr);
    let new_kid = rotated.stdout.trim().to_owned();
    assert_ne!(new_kid, kid(&old));
    let listed = list_keys(&config).await;
    let state = |kid: &str| {
        listed
            .iter()
            .find(|k| k["kid"] == kid)
            .map(|k| k["state"].clone())
    };
    assert_eq!(state(&new_kid), Some(json!("current")), "{listed:?}");
    assert_eq!(state(&kid(&old)), Some(json!("verify-only")), "{listed:?}");
    assert!(listed
        .iter()
        .any(|k| k["kid"] == kid(&old).as_str() && k["retired_at_ms"].is_u64()));
    let table = tool(&["keys", "list", "--config", config.path()], None).await;
    assert!(
        table.stdout.contains(&new_kid) && table.stdout.contains("verify-only"),
        "{}",
        table.stdout
    );

    assert_eq!(
        check_token(&config, &old).await.0,
        Some(0),
        "the old key still verifies"
    );
    let new = gen_token(&config, "fred.demo", "600").await;
    assert_eq!(kid(&new), new_kid);

    // No output ever carried a secret byte.
    let shown = [
        &rotated.stdout,
        &rotated.stderr,
        &table.stdout,
        &serde_json::to_string(&listed).expect("json"),
    ]
    .map(|s| s.to_string())
    .join("\n");
    let store = presence_server::Store::open(data.path()).expect("open");
    let secrets: Vec<Vec<u8>> = store
        .signing_keys()
        .expect("keys")
        .into_iter()
        .map(|k| k.secret)
        .collect();
    drop(store);
    assert_eq!(secrets.len(), 2);
    for secret in &secrets {
        for spelled in spellings(secret) {
            assert!(!shown.contains(&spelled), "secret shown as {spelled}");
        }
    }

    // A server started afterwards signs with the new key and takes both.
    let server = TestServer::start_in(data.clone(), |_| {}, Arc::new(SystemClock)).await;
    assert_eq!(server.status(LOOKUP, &old).await, 200);
    assert_eq!(server.status(LOOKUP, &new).await, 200);
    assert_eq!(kid(&server.token("fred.demo", 72)), new_kid);
    server.shutdown().await;
}

#[actix_web::test]
async fn in_cluster_mode_the_tools_work_while_a_node_runs_on_the_same_data_dir() {
    let redis = RedisServer::start();
    let url = redis.url();
    let node = TestServer::start_with(|c| {
        join(c, &url, TEST_LEASE_MS);
        c.server.internal_bind = "127.0.0.1:0".into();
        c.server.internal_secret = INTERNAL_SECRET.to_owned().into();
    })
    .await;
    let cluster = format!(
        "\n[cluster]\nmode = \"redis\"\nredis_url = \"{url}\"\nnode_lease_ms = {TEST_LEASE_MS}\nredis_timeout_ms = {TEST_REDIS_TIMEOUT_MS}\n"
    );
    // Without the node's internal listener, the token has nowhere to be
    // audited: it is not printed.
    let unlisted = ConfigFile::new(node.dir.path(), &cluster);
    let refused = tool(
        &[
            "gen-token",
            "--config",
            unlisted.path(),
            "--group",
            "72",
            "--user",
            "fred.demo",
            "--ttl",
            "600",
        ],
        None,
    )
    .await;
    assert_eq!(refused.code, Some(1), "{}", refused.stderr);
    assert!(refused.stdout.trim().is_empty(), "{}", refused.stdout);
    assert!(
        refused.stderr.contains("the token was not printed"),
        "{}",
        refused.stderr
    );
    let internal = node.running().internal_addr().expect("internal listener");
    let config = ConfigFile::with_server(
        node.dir.path(),
        &format!("internal_bind = \"{internal}\"\ninternal_secret = \"{INTERNAL_SECRET}\"\n"),
        &cluster,
    );

    let ran = tool(
        &[
            "gen-token",
            "--config",
            config.path(),
            "--group",
            "72",
            "--user",
            "fred.demo",
            "--ttl",
            "600",
        ],
        None,
    )
    .await;
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let token = ran.stdout.trim().to_owned();
    // The node recorded the issue in its own audit log, before the print.
    let ada = node.admin_token("ada.admin", 72);
    let (status, body) = node
        .get("/admin/72/audit?username=fred.demo", Some(&ada), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let payload = token.split('.').nth(1).expect("payload");
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64")).expect("json");
    let jti = claims["jti"].as_str().expect("jti").to_owned();
    assert!(
        body["records"]
            .as_array()
            .expect("records")
            .iter()
            .any(|r| {
                r["jti"] == jti.as_str() && r["credential"] == "cli" && r["outcome"] == "issued"
            }),
        "{body}"
    );
    assert_eq!(
        node.status(LOOKUP, &token).await,
        200,
        "the node accepts it"
    );
    let (code, _, report) = check_token(&config, &token).await;
    assert_eq!(
        (code, report["claims"]["sub"].as_str()),
        (Some(0), Some("fred.demo"))
    );
    let listed = list_keys(&config).await;
    assert!(
        listed
            .iter()
            .any(|k| k["kid"] == kid(&token).as_str() && k["state"] == "current"),
        "{listed:?}"
    );

    // Rotated in Redis: the running node picks the key up and signs with it.
    let rotated = tool(&["keys", "rotate", "--config", config.path()], None).await;
    assert_eq!(rotated.code, Some(0), "{}", rotated.stderr);
    let new_kid = rotated.stdout.trim().to_owned();
    assert_ne!(new_kid, kid(&token));
    eventually(
        Duration::from_secs(15),
        "the node signs with the rotated key",
        || {
            let signed = kid(&node.token("fred.demo", 72));
            let new_kid = new_kid.clone();
            async move { (signed == new_kid).then_some(()) }
        },
    )
    .await;
    assert_eq!(
        node.status(LOOKUP, &token).await,
        200,
        "the old key verifies"
    );

    // Indexed in Redis: the node revokes it, and check-token sees that.
    let jti = report["claims"]["jti"].as_str().expect("jti").to_owned();
    let (status, body) = node
        .post("/auth/revoke", Some(&token), None, &json!({"jti": jti}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (code, _, report) = check_token(&config, &token).await;
    assert_eq!(
        (code, report["error"].as_str()),
        (Some(1), Some("token_revoked"))
    );
    node.shutdown().await;
}
