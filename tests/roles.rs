//! Split roles without Redis: one auth node and one presence node, as real
//! processes started with `serve --role` (and in-process on a shared
//! manual clock where key rotation and purge are driven by time).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::{eventually, ProcessNode};
use common::roles::{
    auth_role, first_token, internal_post, kid_of, password_token, presence_role, InternalPorts,
    INTERNAL_SECRET,
};
use common::{upgrade_request, TestServer, ORIGIN_72, WAIT};
use presence_server::clock::{Clock, ManualClock};
use serde_json::{json, Value};

const LOOKUP: &str = "/presence/72/visitors/v-nobody";

fn role_env(ports: &InternalPorts, own: u16) -> Vec<(&'static str, String)> {
    vec![
        (
            "PRESENCE__SERVER__INTERNAL_BIND",
            format!("127.0.0.1:{own}"),
        ),
        (
            "PRESENCE__SERVER__INTERNAL_SECRET",
            INTERNAL_SECRET.to_owned(),
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

async fn health(node: &TestServer) -> (u16, Value) {
    node.get("/healthz", None, None).await
}

/// Every endpoint of the other role answers 404 `not_served_here`.
async fn assert_foreign(node: &TestServer, role: &str) {
    type Routes<'a> = &'a [(&'a str, &'a str)];
    let (auth_only, presence_only): (Routes, Routes) = (
        &[
            ("POST", "/auth/token"),
            ("POST", "/auth/login"),
            ("POST", "/auth/logout"),
            ("POST", "/auth/revoke"),
            ("GET", "/auth/sso/72"),
            ("GET", "/admin/72/audit"),
            ("GET", "/admin/72/agents"),
            ("POST", "/admin/72/agents/fred.demo/revoke"),
        ],
        &[
            ("GET", LOOKUP),
            ("GET", "/presence/72/visitors"),
            ("POST", "/presence/72/visitors/v-1/invoke"),
            ("GET", "/sdk/presence-agent.js"),
            ("GET", "/sdk/presence-visitor.js"),
            ("GET", "/console"),
            ("GET", "/console/config.json"),
            ("GET", "/demo"),
        ],
    );
    let foreign = if role == "auth" {
        presence_only
    } else {
        auth_only
    };
    for (method, path) in foreign {
        let (status, body) = match *method {
            "POST" => node.post(path, None, Some(ORIGIN_72), &json!({})).await,
            _ => node.get(path, None, Some(ORIGIN_72)).await,
        };
        assert_eq!(
            (status, body["error"].as_str()),
            (404, Some("not_served_here")),
            "{role} {method} {path}: {body}"
        );
    }
    if role == "auth" {
        for path in ["/visitor/ws", "/agent/ws"] {
            let (status, _, body) =
                upgrade_request(&node.http, &node.url(path), &[("origin", ORIGIN_72)]).await;
            assert_eq!(
                (status, body["error"].as_str()),
                (404, Some("not_served_here")),
                "{path}: {body}"
            );
        }
    }
    // The public listener never serves the internal API.
    let (status, body) = node
        .post("/internal/keys", None, None, &json!({"keys": []}))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
}

#[actix_web::test]
async fn a_split_pair_of_processes_issues_verifies_revokes_and_refuses_foreign_routes() {
    let ports = InternalPorts::new();
    let toml = common::config_toml(std::path::Path::new("unused"));
    let auth_process =
        ProcessNode::start_as(&toml, &["--role", "auth"], &role_env(&ports, ports.auth));
    let auth = auth_process.client();
    // No presence node yet: no key, so no tokens (and /healthz says so).
    let (status, body) = password_token(&auth, "fred.demo").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("no_signing_key")),
        "{body}"
    );
    let (status, body) = health(&auth).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (503, Some("no_signing_key")),
        "{body}"
    );
    assert_eq!(body["signing_key"]["kid"], Value::Null);

    let presence_process = ProcessNode::start_as(
        &toml,
        &["--role", "presence"],
        &role_env(&ports, ports.presence),
    );
    let presence = presence_process.client();
    let token = first_token(&auth, "fred.demo").await;
    let (status, body) = health(&auth).await;
    assert_eq!(
        (status, body["role"].as_str()),
        (200, Some("auth")),
        "{body}"
    );
    assert_eq!(
        body["signing_key"]["kid"].as_str(),
        Some(kid_of(&token).as_str())
    );
    assert_eq!(body["signing_key"]["stale"], false);
    let (status, body) = health(&presence).await;
    assert_eq!(
        (status, body["role"].as_str()),
        (200, Some("presence")),
        "{body}"
    );
    eventually(WAIT, "the handover status", || async {
        let (_, body) = health(&presence).await;
        (body["handover"][0]["current"] == true).then_some(())
    })
    .await;

    // The auth node's token works on the presence node.
    let (status, body) = presence.get(LOOKUP, Some(&token), Some(ORIGIN_72)).await;
    assert_ne!(status, 401, "{body}");
    let mut agent = presence.agent(&token).await;

    assert_foreign(&auth, "auth").await;
    assert_foreign(&presence, "presence").await;

    // Revoking on the auth node closes the socket on the presence node
    // within a second.
    let jti = {
        use base64::Engine;
        let payload = token.split('.').nth(1).expect("payload");
        let claims: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .expect("b64"),
        )
        .expect("claims");
        claims["jti"].as_str().expect("jti").to_owned()
    };
    let revoked_at = Instant::now();
    let (status, body) = auth
        .post(
            "/auth/revoke",
            Some(&token),
            Some(ORIGIN_72),
            &json!({"jti": jti}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let closed = tokio::time::timeout(Duration::from_secs(1), agent.closed())
        .await
        .expect("the agent socket closes within 1 s of the revoke");
    assert!(closed.code.is_some(), "{closed:?}");
    assert!(revoked_at.elapsed() < Duration::from_secs(1));
    let (status, body) = presence.get(LOOKUP, Some(&token), Some(ORIGIN_72)).await;
    assert_eq!(status, 401, "{body}");
}

async fn start_pair_in_process(clock: Arc<ManualClock>) -> (TestServer, TestServer, InternalPorts) {
    {
        let ports = InternalPorts::new();
        let (a, p) = (ports.auth, ports.presence);
        let (auth_url, presence_url) = (ports.auth_url(), ports.presence_url());
        let presence = TestServer::start_in(
            Arc::new(tempfile::tempdir().expect("tempdir")),
            |c| presence_role(c, p, &[auth_url]),
            clock.clone(),
        )
        .await;
        let auth = TestServer::start_in(
            Arc::new(tempfile::tempdir().expect("tempdir")),
            |c| auth_role(c, a, &[presence_url]),
            clock,
        )
        .await;
        (auth, presence, ports)
    }
}

#[actix_web::test]
async fn rotation_hands_the_key_over_keeps_old_tokens_and_purges_exactly_on_time() {
    let clock = Arc::new(ManualClock::starting_now());
    let (auth, presence, _ports) = start_pair_in_process(clock.clone()).await;
    let old = first_token(&auth, "fred.demo").await;
    let old_kid = kid_of(&old);
    let config = common::config(std::path::Path::new("unused"));
    let (rotation, token_max) = (config.auth.key_rotation_secs, config.auth.token_max_secs);

    // Rotation is due: the presence node rotates, the auth node gets the
    // new key and signs with it; the old token still verifies.
    clock.advance(Duration::from_secs(rotation));
    let rotated_at = clock.now_ms();
    let done = presence.running().housekeeping().expect("housekeeping");
    let new_kid = done.keys.rotated_to.expect("rotated");
    let new = eventually(WAIT, "the auth node to sign with the new key", || async {
        let (_, body) = password_token(&auth, "fred.demo").await;
        let token = body["token"].as_str()?.to_owned();
        (kid_of(&token) == new_kid).then_some(token)
    })
    .await;
    assert!(presence.running().tokens().verify(&new).is_ok());
    let verified = presence.running().tokens().verify(&old);
    assert!(
        verified.is_ok() || verified == Err(presence_server::token::TokenError::Expired),
        "the old key still verifies: {verified:?}"
    );
    let old_key_known = |server: &TestServer| {
        server
            .running()
            .tokens()
            .keys()
            .verifying_key(&old_kid)
            .is_some()
    };

    // The old key goes exactly token_max + 5 s (leeway) after its successor
    // was handed over (here, at the rotation: the clock stood still).
    clock.advance(Duration::from_millis(
        (token_max + 5) * 1000 - (clock.now_ms() - rotated_at),
    ));
    presence.running().housekeeping().expect("housekeeping");
    auth.running().housekeeping().expect("housekeeping");
    assert!(old_key_known(&presence), "kept until the last millisecond");
    assert!(old_key_known(&auth), "kept until the last millisecond");
    clock.advance(Duration::from_millis(1));
    presence.running().housekeeping().expect("housekeeping");
    auth.running().housekeeping().expect("housekeeping");
    assert!(
        !old_key_known(&presence),
        "purged on time on the presence node"
    );
    assert!(!old_key_known(&auth), "purged on time on the auth node");
    assert!(old_key_known_new(&presence, &new_kid));
}

fn old_key_known_new(server: &TestServer, kid: &str) -> bool {
    server
        .running()
        .tokens()
        .keys()
        .verifying_key(kid)
        .is_some()
}

#[actix_web::test]
async fn a_retired_key_stays_while_no_auth_node_has_its_successor() {
    let clock = Arc::new(ManualClock::starting_now());
    let ports = InternalPorts::new();
    let auth_url = ports.auth_url();
    let p = ports.presence;
    // The auth node never starts: every handover fails.
    let presence = TestServer::start_in(
        Arc::new(tempfile::tempdir().expect("tempdir")),
        |c| presence_role(c, p, &[auth_url]),
        clock.clone(),
    )
    .await;
    let first = presence
        .running()
        .tokens()
        .keys()
        .signing_key()
        .expect("key")
        .kid
        .clone();
    let config = common::config(std::path::Path::new("unused"));
    clock.advance(Duration::from_secs(config.auth.key_rotation_secs));
    presence
        .running()
        .housekeeping()
        .expect("rotates")
        .keys
        .rotated_to
        .expect("rotated");
    clock.advance(Duration::from_secs(config.auth.token_max_secs * 3));
    presence.running().housekeeping().expect("housekeeping");
    assert!(
        presence
            .running()
            .tokens()
            .keys()
            .verifying_key(&first)
            .is_some(),
        "an auth node may still sign with the old key"
    );
    eventually(WAIT, "the failed handover in /healthz", || async {
        let (status, body) = health(&presence).await;
        (status == 200 && body["handover"][0]["error"].is_string()).then_some(())
    })
    .await;
}

#[actix_web::test]
async fn forged_replayed_and_stale_internal_calls_are_refused_and_audited() {
    use presence_server::internal_auth::{sign, MAX_SKEW_MS};
    let clock = Arc::new(ManualClock::starting_now());
    let (auth, presence, ports) = start_pair_in_process(clock.clone()).await;
    first_token(&auth, "fred.demo").await;
    let base = ports.auth_url();
    let body = br#"{"keys":[{"kid":"forged-key","secret":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","created_at_ms":1,"active_at_ms":1}]}"#;
    let now = clock.now_ms();

    let forged = sign(
        b"not-the-shared-secret-at-all-0123456789",
        "POST",
        "/internal/keys",
        body,
        now,
    );
    let (status, answer) = internal_post(&base, "/internal/keys", &forged, body).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (401, Some("bad_signature")),
        "{answer}"
    );

    let mut tampered = sign(
        INTERNAL_SECRET.as_bytes(),
        "POST",
        "/internal/keys",
        body,
        now,
    );
    tampered.signature.pop();
    let (status, answer) = internal_post(&base, "/internal/keys", &tampered, body).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (401, Some("bad_signature")),
        "{answer}"
    );

    let stale = sign(
        INTERNAL_SECRET.as_bytes(),
        "POST",
        "/internal/keys",
        body,
        now - MAX_SKEW_MS - 1,
    );
    let (status, answer) = internal_post(&base, "/internal/keys", &stale, body).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (401, Some("stale_request")),
        "{answer}"
    );

    let genuine = sign(
        INTERNAL_SECRET.as_bytes(),
        "POST",
        "/internal/keys",
        body,
        now,
    );
    let (status, answer) = internal_post(&base, "/internal/keys", &genuine, body).await;
    assert_eq!(status, 200, "a genuine call passes: {answer}");
    let (status, answer) = internal_post(&base, "/internal/keys", &genuine, body).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (401, Some("replayed_request")),
        "{answer}"
    );

    let reasons = auth.running().audit_reasons(0);
    for reason in ["bad_signature", "stale_request", "replayed_request"] {
        assert!(
            reasons
                .iter()
                .any(|r| r == &format!("internal call /internal/keys: {reason}")),
            "{reason} audited: {reasons:?}"
        );
    }
    assert_eq!(reasons.len(), 4, "one record per refusal: {reasons:?}");
    // The presence node's listener serves only its own call.
    let on_presence = sign(
        INTERNAL_SECRET.as_bytes(),
        "POST",
        "/internal/keys",
        body,
        now,
    );
    let (status, _) =
        internal_post(&ports.presence_url(), "/internal/keys", &on_presence, body).await;
    assert_eq!(status, 404);
    let revoke = br#"{"revoked":[{"jti":"x","exp":1}]}"#;
    let replay = sign(
        b"not-the-shared-secret-at-all-0123456789",
        "POST",
        "/internal/revoked",
        revoke,
        now,
    );
    let (status, answer) =
        internal_post(&ports.presence_url(), "/internal/revoked", &replay, revoke).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (401, Some("bad_signature")),
        "{answer}"
    );
    assert_eq!(
        presence.running().audit_reasons(0),
        vec!["internal call /internal/revoked: bad_signature".to_string()]
    );
}

#[actix_web::test]
async fn keys_and_tokens_survive_a_restart_of_either_role() {
    let clock = Arc::new(ManualClock::starting_now());
    let (auth, presence, ports) = start_pair_in_process(clock.clone()).await;
    let token = first_token(&auth, "fred.demo").await;
    let (auth_dir, presence_dir) = (auth.shutdown().await, presence.shutdown().await);
    let (a, p) = (ports.auth, ports.presence);
    let (auth_url, presence_url) = (ports.auth_url(), ports.presence_url());
    // The auth node restarts alone: it signs with the key it kept.
    let auth = TestServer::start_in(
        auth_dir,
        |c| auth_role(c, a, &[presence_url]),
        clock.clone(),
    )
    .await;
    let (status, body) = password_token(&auth, "fred.demo").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        kid_of(body["token"].as_str().expect("token")),
        kid_of(&token)
    );
    let presence =
        TestServer::start_in(presence_dir, |c| presence_role(c, p, &[auth_url]), clock).await;
    assert!(
        presence.running().tokens().verify(&token).is_ok(),
        "issued before both restarts"
    );
    let (status, body) = presence.get(LOOKUP, Some(&token), Some(ORIGIN_72)).await;
    assert_ne!(status, 401, "{body}");
}

#[actix_web::test]
async fn the_console_on_a_presence_node_signs_in_on_the_auth_url() {
    let clock = Arc::new(ManualClock::starting_now());
    let (auth, presence, _ports) = start_pair_in_process(clock).await;
    let (status, body) = presence.get("/console/config.json", None, None).await;
    assert_eq!(
        (status, body["auth_url"].as_str()),
        (200, Some("http://auth.test")),
        "{body}"
    );
    let page = presence.get_response("/console", None, None).await;
    let csp = page
        .headers()
        .get("content-security-policy")
        .expect("csp")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("connect-src 'self' http://auth.test;"),
        "{csp}"
    );
    // The auth node lets the console's origin send its session cookie.
    let preflight = auth
        .http
        .request(actix_web::http::Method::OPTIONS, auth.url("/auth/login"))
        .insert_header(("Origin", "http://console.test"))
        .insert_header(("Access-Control-Request-Method", "POST"))
        .send()
        .await
        .expect("preflight");
    assert_eq!(preflight.status().as_u16(), 204);
    assert_eq!(
        preflight
            .headers()
            .get("access-control-allow-origin")
            .unwrap(),
        "http://console.test"
    );
    assert_eq!(
        preflight
            .headers()
            .get("access-control-allow-credentials")
            .unwrap(),
        "true"
    );
    // A group's own origin never gets credentials.
    let (status, _) = auth
        .post("/auth/logout", None, Some(ORIGIN_72), &json!({}))
        .await;
    assert_ne!(status, 404);
    let plain = auth.get_response("/healthz", None, Some(ORIGIN_72)).await;
    assert!(plain
        .headers()
        .get("access-control-allow-credentials")
        .is_none());
}
