//! The token tools on a split pair without Redis: tokens are generated on
//! the auth node's data dir, with the key the presence node handed over,
//! so the presence node accepts them and the auth node revokes them.

mod common;

use std::sync::Arc;

use common::cluster::eventually;
use common::roles::{auth_role, first_token, presence_role, InternalPorts, INTERNAL_SECRET};
use common::tools::{kid, tool_with_env, ConfigFile};
use common::{TestServer, WAIT};
use presence_server::clock::{SharedClock, SystemClock};
use serde_json::json;

const LOOKUP: &str = "/presence/72/visitors/v-nobody";

/// What `auth_role` and `presence_role` set, as the binary reads it.
fn split_env(ports: &InternalPorts) -> Vec<(&'static str, String)> {
    vec![
        (
            "PRESENCE__SERVER__INTERNAL_BIND",
            format!("127.0.0.1:{}", ports.auth),
        ),
        (
            "PRESENCE__SERVER__INTERNAL_SECRET",
            INTERNAL_SECRET.to_owned(),
        ),
        (
            "PRESENCE__SERVER__CONSOLE_URL",
            "http://console.test".to_owned(),
        ),
        ("PRESENCE__SERVER__AUTH_URL", "http://auth.test".to_owned()),
        (
            "PRESENCE__SERVER__AUTH_INTERNAL_URLS",
            format!("[\"{}\"]", ports.auth_url()),
        ),
        (
            "PRESENCE__SERVER__PRESENCE_INTERNAL_URLS",
            format!("[\"{}\"]", ports.presence_url()),
        ),
    ]
}

#[actix_web::test]
async fn split_roles_generate_on_the_auth_data_dir_and_revoke_through_the_auth_node() {
    let clock: SharedClock = Arc::new(SystemClock);
    let ports = InternalPorts::new();
    let (a, p) = (ports.auth, ports.presence);
    let (auth_url, presence_url) = (ports.auth_url(), ports.presence_url());
    let presence = TestServer::start_in(
        Arc::new(tempfile::tempdir().expect("tempdir")),
        |c| presence_role(c, p, &[auth_url]),
        clock.clone(),
    )
    .await;
    let auth_dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let auth = TestServer::start_in(
        auth_dir.clone(),
        |c| auth_role(c, a, std::slice::from_ref(&presence_url)),
        clock.clone(),
    )
    .await;
    let handed = kid(&first_token(&auth, "fred.demo").await);
    auth.shutdown().await;

    let env = split_env(&ports);
    let config = ConfigFile::new(auth_dir.path(), "");
    let c = config.path();
    let gen = [
        "gen-token",
        "--config",
        c,
        "--role",
        "auth",
        "--group",
        "72",
        "--user",
        "fred.demo",
    ];
    let ran = tool_with_env(&gen, None, &env).await;
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let token = ran.stdout.trim().to_owned();
    assert_eq!(kid(&token), handed, "signed with the handed-over key");
    assert_eq!(presence.status(LOOKUP, &token).await, 200);

    // The presence side's data dir is not where tokens are issued.
    let other = tempfile::tempdir().expect("tempdir");
    let presence_config = ConfigFile::new(other.path(), "");
    let mut args = gen;
    args[2] = presence_config.path();
    args[4] = "presence";
    let ran = tool_with_env(&args, None, &env).await;
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("split roles without Redis"),
        "{}",
        ran.stderr
    );
    assert!(ran.stdout.is_empty());

    // The auth node, restarted, revokes it from its own index, and tells
    // the presence node.
    let auth = TestServer::start_in(
        auth_dir.clone(),
        |c| auth_role(c, a, &[presence_url]),
        clock.clone(),
    )
    .await;
    let jti = {
        let ran = tool_with_env(
            &["check-token", "--config", c, "--role", "auth", "x"],
            None,
            &env,
        )
        .await;
        assert_eq!(ran.code, Some(2), "held by the auth node: {}", ran.stderr);
        let claims = token.split('.').nth(1).expect("claims");
        let claims: serde_json::Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, claims)
                .expect("base64"),
        )
        .expect("json");
        claims["jti"].as_str().expect("jti").to_owned()
    };
    let (status, body) = auth
        .post("/auth/revoke", Some(&token), None, &json!({"jti": jti}))
        .await;
    assert_eq!(status, 200, "{body}");
    eventually(
        WAIT,
        "the presence node to refuse the revoked token",
        || async { (presence.status(LOOKUP, &token).await == 401).then_some(()) },
    )
    .await;
    auth.shutdown().await;

    let ran = tool_with_env(
        &["keys", "rotate", "--config", c, "--role", "auth"],
        None,
        &env,
    )
    .await;
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(ran.stderr.contains("auth-role data dir"), "{}", ran.stderr);
    let ran = tool_with_env(
        &["keys", "list", "--json", "--config", c, "--role", "auth"],
        None,
        &env,
    )
    .await;
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(ran.stdout.contains(&handed), "{}", ran.stdout);
    let ran = tool_with_env(
        &["check-token", "--config", c, "--role", "auth", &token],
        None,
        &env,
    )
    .await;
    assert_eq!(ran.code, Some(1), "{}", ran.stdout);
    assert!(
        ran.stdout.starts_with("invalid: token_revoked"),
        "{}",
        ran.stdout
    );
    presence.shutdown().await;
}
