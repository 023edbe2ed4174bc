//! Signed visitor identity tokens in hello.

mod common;

use awc::ws::CloseCode;
use common::{
    assert_closed, TestServer, IDENTITY_ISSUER_72, IDENTITY_ISSUER_73, IDENTITY_SECRET_72,
    IDENTITY_SECRET_73,
};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use presence_server::clock::{Clock, SystemClock};
use serde_json::{json, Value};

fn now() -> u64 {
    SystemClock.now_secs()
}

fn claims(visitor: &str) -> Value {
    json!({"iss": IDENTITY_ISSUER_72, "aud": visitor, "exp": now() + 600, "iat": now(),
           "email": "fred@example.com", "name": "Fred Visitor"})
}

fn sign(claims: &Value, secret: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

/// A good token but for a `crit` header, which must be refused (RFC 7515).
fn sign_critical(claims: &Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.crit = Some(vec!["exp".into()]);
    encode(
        &header,
        claims,
        &EncodingKey::from_secret(IDENTITY_SECRET_72.as_bytes()),
    )
    .expect("sign")
}

/// The claims of `v-1` with no `iat`, expiring at `exp`.
fn without_iat(exp: u64) -> Value {
    let mut claims = claims("v-1");
    claims.as_object_mut().expect("object").remove("iat");
    claims["exp"] = json!(exp);
    claims
}

async fn hello(server: &TestServer, visitor: &str, identity: Option<String>) -> common::WsClient {
    let mut ws = server.socket("/visitor/ws", None).await.expect("connect");
    let mut frame = json!({"type":"hello","groupid":72,"visitorid":visitor});
    if let Some(identity) = identity {
        frame["identity"] = json!(identity);
    }
    ws.send(frame).await;
    ws
}

#[actix_web::test]
async fn a_verified_visitor_shows_its_identity_to_agents() {
    let server = TestServer::start().await;
    let token = server.token("fred.demo", 72);
    let mut agent = server.agent(&token).await;
    agent.send(json!({"type":"watch","visitorid":"v-1"})).await;
    assert_eq!(agent.recv().await["verified"], false);

    let mut ws = hello(
        &server,
        "v-1",
        Some(sign(&claims("v-1"), IDENTITY_SECRET_72)),
    )
    .await;
    assert_eq!(ws.recv().await["type"], "welcome");
    let event = agent.recv().await;
    assert_eq!(event["event"], "connected");
    assert_eq!(event["verified"], true);
    assert_eq!(
        event["identity"],
        json!({"email":"fred@example.com","name":"Fred Visitor"})
    );
    let (_, doc) = server
        .get("/presence/72/visitors/v-1", Some(&token), None)
        .await;
    assert_eq!(
        (doc["verified"].as_bool(), &doc["identity"]["email"]),
        (Some(true), &json!("fred@example.com"))
    );

    // An unverified tab that becomes the most recent one is what agents see.
    let mut other = hello(&server, "v-1", None).await;
    assert_eq!(other.recv().await["type"], "welcome");
    let (_, doc) = server
        .get("/presence/72/visitors/v-1", Some(&token), None)
        .await;
    assert_eq!(doc["verified"], false, "{doc}");
    assert!(doc.get("identity").is_none());
}

#[actix_web::test]
async fn crafted_identity_tokens_are_refused_with_1008() {
    let server = TestServer::start().await;
    let with = |key: &str, value: Value| {
        let mut c = claims("v-1");
        c[key] = value;
        c
    };
    let mut no_exp = claims("v-1");
    no_exp.as_object_mut().expect("object").remove("exp");
    let mut over_a_day_from_iat = claims("v-1");
    over_a_day_from_iat["exp"] = json!(over_a_day_from_iat["iat"].as_u64().expect("iat") + 86_401);
    let alg_none = {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine as _;
        format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(claims("v-1").to_string())
        )
    };
    let cases = [
        (
            "wrong aud",
            sign(&with("aud", json!("v-2")), IDENTITY_SECRET_72),
        ),
        (
            "aud as an array",
            sign(&with("aud", json!(["v-1"])), IDENTITY_SECRET_72),
        ),
        (
            "wrong iss",
            sign(&with("iss", json!(IDENTITY_ISSUER_73)), IDENTITY_SECRET_72),
        ),
        (
            "another group's secret",
            sign(&claims("v-1"), IDENTITY_SECRET_73),
        ),
        ("alg none", alg_none),
        (
            "expired",
            sign(&with("exp", json!(now() - 60)), IDENTITY_SECRET_72),
        ),
        ("no exp", sign(&no_exp, IDENTITY_SECRET_72)),
        (
            "oversize claims",
            sign(&with("blob", json!("x".repeat(600))), IDENTITY_SECRET_72),
        ),
        (
            "nbf in the future",
            sign(&with("nbf", json!(now() + 60)), IDENTITY_SECRET_72),
        ),
        (
            "nbf not a number",
            sign(&with("nbf", json!("soon")), IDENTITY_SECRET_72),
        ),
        ("a crit header", sign_critical(&claims("v-1"))),
        (
            "exp 2^64-1",
            sign(&with("exp", json!(u64::MAX)), IDENTITY_SECRET_72),
        ),
        (
            "lifetime over a day from iat",
            sign(&over_a_day_from_iat, IDENTITY_SECRET_72),
        ),
        (
            // A minute over, so a clock tick before the check cannot bring
            // it back under.
            "lifetime over a day from now, without iat",
            sign(&without_iat(now() + 86_460), IDENTITY_SECRET_72),
        ),
        ("an agent token", server.token("fred.demo", 72)),
        ("garbage", "not-a-jwt".to_owned()),
    ];
    for (what, token) in cases {
        let mut ws = hello(&server, "v-1", Some(token)).await;
        let closed = ws.closed().await;
        assert_eq!(closed.code, Some(CloseCode::Policy), "{what}: {closed:?}");
        assert!(
            closed
                .errors
                .iter()
                .any(|e| e["code"] == "identity_invalid"),
            "{what}: {closed:?}"
        );
    }
}

#[actix_web::test]
async fn the_groups_lifetime_cap_counts_from_iat_or_from_now() {
    let server = TestServer::start_with(|c| c.groups[0].visitor_identity_max_secs = 600).await;
    let accepted = |claims: Value| {
        let token = sign(&claims, IDENTITY_SECRET_72);
        async {
            let mut ws = hello(&server, "v-1", Some(token)).await;
            let frame = ws.recv().await;
            match frame["type"].as_str() {
                Some("welcome") => true,
                _ => {
                    assert_eq!(frame["code"], "identity_invalid", "{frame}");
                    assert!(
                        frame["message"]
                            .as_str()
                            .is_some_and(|m| m.contains("visitor_identity_max_secs")),
                        "{frame}"
                    );
                    false
                }
            }
        }
    };
    let t = now();
    let mut from_iat = claims("v-1");
    from_iat["iat"] = json!(t - 100);
    from_iat["exp"] = json!(t + 500);
    assert!(accepted(from_iat.clone()).await, "600 s from iat");
    from_iat["exp"] = json!(t + 501);
    assert!(!accepted(from_iat).await, "601 s from iat");
    // Without iat the lifetime counts from now; a little slack for the
    // second that may tick between signing and checking.
    assert!(accepted(without_iat(t + 590)).await, "under 600 s from now");
    assert!(!accepted(without_iat(t + 700)).await, "700 s from now");
}

#[actix_web::test]
async fn identity_tokens_are_never_agent_tokens() {
    let server = TestServer::start().await;
    let identity = sign(&claims("v-1"), IDENTITY_SECRET_72);
    let (status, body) = server
        .get("/presence/72/visitors/v-1", Some(&identity), None)
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized"))
    );
    let mut agent = server.socket("/agent/ws", None).await.expect("connect");
    agent.send(json!({"type":"auth","token":identity})).await;
    assert_closed(&agent.closed().await, CloseCode::Policy, "unauthorized");
}

#[actix_web::test]
async fn groups_can_require_identity() {
    let server = TestServer::start_with(|c| c.groups[0].require_visitor_identity = true).await;
    let mut ws = hello(&server, "v-1", None).await;
    assert_closed(&ws.closed().await, CloseCode::Policy, "identity_required");
    let mut ws = hello(
        &server,
        "v-1",
        Some(sign(&claims("v-1"), IDENTITY_SECRET_72)),
    )
    .await;
    assert_eq!(ws.recv().await["type"], "welcome");
}

#[actix_web::test]
async fn a_group_without_a_secret_refuses_any_token() {
    let server = TestServer::start_with(|c| {
        c.groups[0].visitor_identity_secret = None;
        c.groups[0].visitor_identity_issuer = None;
    })
    .await;
    let mut ws = hello(
        &server,
        "v-1",
        Some(sign(&claims("v-1"), IDENTITY_SECRET_72)),
    )
    .await;
    assert_closed(&ws.closed().await, CloseCode::Policy, "identity_invalid");
    let mut ws = hello(&server, "v-2", None).await;
    assert_eq!(
        ws.recv().await["type"],
        "welcome",
        "no token, no requirement: unverified"
    );
}
