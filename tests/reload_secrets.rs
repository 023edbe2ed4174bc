//! Live config reload of secrets, keys and policy settings: SSO public
//! keys (a rotated-out key stops signing agents in, a new one starts, a key
//! that does not load fails the reload naming it), visitor identity
//! secrets, the allow-list and a group's visitor cap, each taking effect
//! without a restart.

mod common;

use common::reload::Reloadable;
use common::{IDENTITY_ISSUER_72, IDENTITY_SECRET_72};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use presence_server::clock::{Clock, SystemClock};
use presence_server::config::ReloadOutcome;
use serde_json::{json, Value};

const SSO_ISSUER: &str = "acme-license-72";
/// The test config's default `server.public_url`, the SSO audience.
const AUDIENCE: &str = "http://127.0.0.1:8080";

fn key_path(name: &str) -> String {
    format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// `toml` with group 72 accepting SSO tokens signed by the key `public`.
fn with_sso_key(toml: &str, public: &str) -> String {
    let at = toml.find("[[groups.users]]").expect("group 72's users");
    format!(
        "{}[groups.sso]\nissuer = \"{SSO_ISSUER}\"\npublic_keys = [\"{}\"]\nalgorithms = [\"RS256\"]\n\n{}",
        &toml[..at],
        key_path(public),
        &toml[at..]
    )
}

fn sso_jwt(private: &str, sub: &str) -> String {
    let now = SystemClock.now_secs();
    let claims = json!({"iss": SSO_ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now,
                        "exp": now + 600, "jti": presence_server::ids::random_id(12)});
    let pem = std::fs::read(key_path(private)).expect("key");
    let key = EncodingKey::from_rsa_pem(&pem).expect("rsa key");
    encode(&Header::new(Algorithm::RS256), &claims, &key).expect("sign")
}

async fn sso_sign_in(node: &Reloadable, jwt: &str) -> (u16, Value) {
    node.server
        .post(
            "/auth/token",
            None,
            None,
            &json!({"groupid": 72, "credentials": {"jwt": jwt}}),
        )
        .await
}

fn identity(secret: &str, visitor: &str) -> String {
    let now = SystemClock.now_secs();
    let claims = json!({"iss": IDENTITY_ISSUER_72, "aud": visitor, "iat": now, "exp": now + 600,
                        "email": "fred@example.com"});
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

/// A hello with `identity`: the first frame the server answers with.
async fn hello_with(node: &Reloadable, visitor: &str, identity: &str) -> Value {
    let mut ws = node
        .server
        .socket("/visitor/ws", None)
        .await
        .expect("connect");
    ws.send(json!({"type": "hello", "groupid": 72, "visitorid": visitor, "identity": identity}))
        .await;
    ws.recv().await
}

#[actix_web::test]
async fn sso_keys_rotate_on_reload_and_a_bad_key_fails_it() {
    let node = Reloadable::start().await;
    let key_a = with_sso_key(&node.toml, "group72-a.pub.pem");
    node.rewrite(&key_a);
    let report = node.server.running().reload().await;
    assert_eq!(report.outcome, ReloadOutcome::Applied, "{report:?}");
    let (status, body) = sso_sign_in(&node, &sso_jwt("group72-a.key.pem", "jane@acme.test")).await;
    assert_eq!(status, 200, "SSO configured by a reload: {body}");

    // Key a rotated out for key b.
    node.rewrite(&with_sso_key(&node.toml, "group72-b.pub.pem"));
    let report = node.server.running().reload().await;
    assert_eq!(report.outcome, ReloadOutcome::Applied, "{report:?}");
    let (status, body) = sso_sign_in(&node, &sso_jwt("group72-a.key.pem", "jane@acme.test")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_credentials")),
        "{body}"
    );
    let (status, body) = sso_sign_in(&node, &sso_jwt("group72-b.key.pem", "jane@acme.test")).await;
    assert_eq!(status, 200, "{body}");

    // A key that does not load: the reload fails naming the key, and key b
    // keeps working.
    let broken = with_sso_key(&node.toml, "group72-b.pub.pem")
        .replace(&key_path("group72-b.pub.pem"), &key_path("no-such-key.pem"));
    node.rewrite(&broken);
    let report = node.server.running().reload().await;
    assert_eq!(report.outcome, ReloadOutcome::Failed, "{report:?}");
    assert!(
        report
            .error
            .as_deref()
            .unwrap_or("")
            .contains("groups[0].sso.public_keys[0]"),
        "{report:?}"
    );
    let (status, body) = sso_sign_in(&node, &sso_jwt("group72-b.key.pem", "ann@acme.test")).await;
    assert_eq!(status, 200, "the old keys still serve: {body}");
    node.server.shutdown().await;
}

#[actix_web::test]
async fn a_new_identity_secret_verifies_new_hellos_and_the_old_one_stops() {
    let node = Reloadable::start().await;
    let welcome = hello_with(&node, "v-1", &identity(IDENTITY_SECRET_72, "v-1")).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    let rotated = "rotated-identity-secret-of-group-72-0123";
    node.rewrite(&node.toml.replace(IDENTITY_SECRET_72, rotated));
    let report = node.server.running().reload().await;
    assert_eq!(report.outcome, ReloadOutcome::Applied, "{report:?}");

    let refused = hello_with(&node, "v-2", &identity(IDENTITY_SECRET_72, "v-2")).await;
    assert_eq!(refused["code"], "identity_invalid", "{refused}");
    let welcome = hello_with(&node, "v-3", &identity(rotated, "v-3")).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    node.server.shutdown().await;
}

#[actix_web::test]
async fn a_narrowed_allow_list_applies_to_the_next_invoke() {
    let node = Reloadable::start().await;
    let token = node.token(72, "fred.demo").await;
    let (status, body) = node
        .server
        .invoke(&token, "v-1", json!({"func": "showTerms"}))
        .await;
    assert_ne!(status, 403, "allowed by the default list: {body}");
    let narrowed = node.toml.replacen(
        "presence = true\n",
        "presence = true\ninvoke_allow = [\"cart.*\"]\n",
        1,
    );
    node.rewrite(&narrowed);
    let report = node.server.running().reload().await;
    assert_eq!(report.outcome, ReloadOutcome::Applied, "{report:?}");
    let (status, body) = node
        .server
        .invoke(&token, "v-1", json!({"func": "showTerms"}))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("function_not_allowed")),
        "{body}"
    );
    node.server.shutdown().await;
}

#[actix_web::test]
async fn a_visitor_cap_added_by_a_reload_holds_new_sockets_to_it() {
    let node = Reloadable::start().await;
    let _first = node.server.visitor("v-1", json!({})).await;
    node.rewrite(&node.toml.replacen(
        "presence = true\n",
        "presence = true\nmax_visitors = 2\n",
        1,
    ));
    let report = node.server.running().reload().await;
    assert_eq!(report.outcome, ReloadOutcome::Applied, "{report:?}");
    let _second = node.server.visitor("v-2", json!({})).await;
    let mut third = node
        .server
        .socket("/visitor/ws", None)
        .await
        .expect("connect");
    third
        .send(json!({"type": "hello", "groupid": 72, "visitorid": "v-3"}))
        .await;
    common::assert_closed(
        &third.closed().await,
        awc::ws::CloseCode::Again,
        "too_many_connections",
    );
    node.server.shutdown().await;
}

/// `toml` with group 72 sending `visitor_online` to `url`, signed with
/// `secret`.
fn with_webhook(toml: &str, url: &str, secret: &str) -> String {
    let at = toml.find("[[groups.users]]").expect("group 72's users");
    format!(
        "{}webhooks = [{{url = \"{url}\", events = [\"visitor_online\"], secret = \"{secret}\"}}]\n\n{}",
        &toml[..at],
        &toml[at..]
    )
}

#[actix_web::test]
async fn webhook_receivers_and_their_secrets_follow_a_reload() {
    let node = Reloadable::start().await;
    let receiver = common::webhook_receiver::Receiver::start().await;
    let before = node.health().await["config_hash"].clone();

    node.rewrite(&with_webhook(
        &node.toml,
        &receiver.url,
        "first-secret-0123456789",
    ));
    let report = node.server.running().reload().await;
    assert_eq!(report.outcome, ReloadOutcome::Applied, "{report:?}");
    let first = node.health().await["config_hash"].clone();
    assert_ne!(first, before, "a new receiver changes the hash");
    let _visitor = node.server.visitor("v-hooked", json!({})).await;
    let seen = receiver
        .wait_for("the new receiver's first event", |s| {
            s.iter().any(|r| r.json()["visitorid"] == "v-hooked")
        })
        .await;
    assert_eq!(seen[0].json()["type"], "visitor_online");

    // Only the secret changes: the hash does (secrets count, never shown).
    node.rewrite(&with_webhook(
        &node.toml,
        &receiver.url,
        "second-secret-0123456789",
    ));
    let report = node.server.running().reload().await;
    assert_eq!(report.outcome, ReloadOutcome::Applied, "{report:?}");
    let second = node.health().await;
    assert_ne!(
        second["config_hash"], first,
        "a new secret changes the hash"
    );
    assert!(!second.to_string().contains("second-secret"));

    // Delivery tuning is read at start-up: a reload that changes it is refused.
    let tuned = format!("{}\n[webhooks]\ntimeout_ms = 1234\n", node.toml);
    node.rewrite(&tuned);
    let report = node.server.running().reload().await;
    assert_eq!(report.outcome, ReloadOutcome::Refused, "{report:?}");
    assert!(
        report
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("webhooks.timeout_ms"),
        "{report:?}"
    );
    node.server.shutdown().await;
}
