//! Agent tokens: issuance on `POST /auth/token`, and every way a token can
//! be wrong on REST and on the agent socket.

mod common;

use std::sync::Arc;
use std::time::Duration;

use awc::ws::CloseCode;
use common::{assert_closed, TestServer, PASSWORD};
use presence_server::clock::{Clock, ManualClock};
use presence_server::token::{AUDIENCE, ISSUER};
use serde_json::{json, Value};

async fn login(server: &TestServer, body: Value) -> (u16, Value) {
    server.post("/auth/token", None, None, &body).await
}

/// The claims of a token, decoded without verification (to re-sign
/// variations of them).
fn claims_of(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("b64");
    serde_json::from_slice(&bytes).expect("claims")
}

fn password_login(group: u64, username: &str, password: &str) -> Value {
    json!({"groupid": group, "credentials": {"username": username, "password": password}})
}

#[actix_web::test]
async fn a_password_login_returns_a_working_token() {
    let server = TestServer::start().await;
    let mut body = password_login(72, "fred.demo", PASSWORD);
    body["duration"] = json!(600);
    let (status, resp) = server.post("/auth/token", None, None, &body).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["groupid"], 72);
    assert_eq!(resp["username"], "fred.demo");
    assert_eq!(resp["role"], "agent");
    let token = resp["token"].as_str().expect("token");
    let claims = server.running().tokens().verify(token).expect("valid");
    assert_eq!(claims.exp - claims.iat, 600);
    assert_eq!(resp["expires"], claims.exp);
    assert_eq!(
        (claims.iss.as_str(), claims.aud.as_str()),
        (ISSUER, AUDIENCE)
    );
    assert_eq!(claims.groupid, 72);

    let (status, _) = server
        .get("/presence/72/visitors/anyone", Some(token), None)
        .await;
    assert_eq!(status, 200);

    let (_, admin) = login(&server, password_login(72, "ada.admin", PASSWORD)).await;
    assert_eq!(admin["role"], "administrator");
    let claims = server
        .running()
        .tokens()
        .verify(admin["token"].as_str().expect("token"))
        .expect("valid");
    assert_eq!(claims.exp - claims.iat, 3600, "default duration");
}

#[actix_web::test]
async fn wrong_credentials_look_the_same_whether_or_not_the_user_exists() {
    let server = TestServer::start().await;
    let (s1, wrong_password) = login(&server, password_login(72, "fred.demo", "nope")).await;
    let (s2, no_such_user) = login(&server, password_login(72, "nobody", "nope")).await;
    // A member of another group with a wrong password learns nothing either
    // (with the right one it would get 403 not_a_member).
    let (s3, other_group_user) = login(&server, password_login(72, "olga", "nope")).await;
    assert_eq!((s1, s2, s3), (401, 401, 401));
    assert_eq!(wrong_password, no_such_user);
    assert_eq!(wrong_password, other_group_user);
    assert_eq!(wrong_password["error"], "invalid_credentials");
}

#[actix_web::test]
async fn token_requests_are_validated() {
    let server = TestServer::start().await;
    let mut too_long = password_login(72, "fred.demo", PASSWORD);
    too_long["duration"] = json!(7201);
    let mut too_short = password_login(72, "fred.demo", PASSWORD);
    too_short["duration"] = json!(59);
    let cases = [
        (too_long, 400, "bad_duration"),
        (too_short, 400, "bad_duration"),
        (
            password_login(74, "nick", PASSWORD),
            403,
            "presence_not_subscribed",
        ),
        (
            password_login(999, "fred.demo", PASSWORD),
            404,
            "unknown_group",
        ),
        (
            json!({"groupid":72,"credentials":{"username":"fred.demo"}}),
            400,
            "bad_credentials_form",
        ),
        (
            json!({"groupid":72,"credentials":{"username":"fred.demo","password":"x","extra":1}}),
            400,
            "bad_credentials_form",
        ),
        (
            json!({"groupid":72,"credentials":"fred"}),
            400,
            "bad_credentials_form",
        ),
        (
            json!({"groupid":72,"credentials":{"username":"fred.demo","password":7}}),
            400,
            "bad_credentials_form",
        ),
        (
            password_login(72, "fred.demo", &"x".repeat(1025)),
            400,
            "bad_request",
        ),
        (json!({"credentials":{}}), 400, "bad_request"),
        (json!({"groupid":"72","credentials":{}}), 400, "bad_request"),
    ];
    for (body, status, code) in cases {
        let (got, resp) = server.post("/auth/token", None, None, &body).await;
        assert_eq!(
            (got, resp["error"].as_str()),
            (status, Some(code)),
            "{body} -> {resp}"
        );
    }
}

#[actix_web::test]
async fn rest_refuses_missing_malformed_forged_and_wrong_key_tokens() {
    let server = TestServer::start().await;
    let path = "/presence/72/visitors/v-1";
    let good = server.token("fred.demo", 72);

    let (status, body) = server.get(path, None, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized"))
    );

    let resp = server
        .http
        .get(server.url(path))
        .insert_header(("Authorization", format!("Basic {good}")))
        .send()
        .await
        .expect("response");
    assert_eq!(resp.status().as_u16(), 401);

    let mut tampered = good.clone().into_bytes();
    let last = tampered.len() - 5;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");

    let header = jsonwebtoken::decode_header(&good).expect("header");
    let claims: Value = claims_of(&good);
    let wrong_key = {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        h.kid = header.kid.clone();
        jsonwebtoken::encode(
            &h,
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(b"not-the-server-key-at-all-32byte"),
        )
        .expect("encode")
    };
    let unknown_kid = {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        h.kid = Some("made-up".into());
        jsonwebtoken::encode(&h, &claims, &jsonwebtoken::EncodingKey::from_secret(b"x"))
            .expect("encode")
    };
    let alg_none = {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.",
            b64.encode(json!({"alg":"none","typ":"JWT","kid":header.kid}).to_string()),
            b64.encode(claims.to_string())
        )
    };
    let tokens = server.running().tokens();
    let mut long = claims.clone();
    long["exp"] = json!(long["iat"].as_u64().expect("iat") + 7201);
    let too_long_lifetime = tokens.sign(&long).expect("sign");
    let mut no_sub = claims.clone();
    no_sub.as_object_mut().expect("object").remove("sub");
    let missing_sub = tokens.sign(&no_sub).expect("sign");
    let mut expired = claims.clone();
    expired["iat"] = json!(claims["iat"].as_u64().expect("iat") - 4000);
    expired["exp"] = json!(claims["iat"].as_u64().expect("iat") - 400);
    let expired = tokens.sign(&expired).expect("sign");
    let with_nbf = |nbf: serde_json::Value| {
        let mut c = claims.clone();
        c["nbf"] = nbf;
        tokens.sign(&c).expect("sign")
    };
    let not_yet_valid = with_nbf(json!(claims["iat"].as_u64().expect("iat") + 60));
    let nbf_not_a_number = with_nbf(json!("soon"));

    for (name, token) in [
        ("garbage", "not-a-token".to_owned()),
        ("tampered", tampered),
        ("wrong key", wrong_key),
        ("unknown kid", unknown_kid),
        ("alg none", alg_none),
        ("lifetime over max", too_long_lifetime),
        ("missing sub", missing_sub),
        ("expired", expired),
        ("nbf in the future", not_yet_valid),
        ("nbf not a number", nbf_not_a_number),
    ] {
        let (status, body) = server.get(path, Some(&token), None).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("unauthorized")),
            "{name}: {body}"
        );
        let (status, _) = server.invoke(&token, "v-1", json!({"func":"f"})).await;
        assert_eq!(status, 401, "{name} on invoke");
    }
}

#[actix_web::test]
async fn expiry_follows_the_clock_with_five_seconds_of_leeway() {
    let clock = Arc::new(ManualClock::starting_now());
    let server = TestServer::start_with_clock(clock.clone()).await;
    let token = server
        .running()
        .tokens()
        .issue("fred.demo", 72, presence_server::config::Role::Agent, 60)
        .expect("issue")
        .token;
    let path = "/presence/72/visitors/v-1";
    assert_eq!(server.status(path, &token).await, 200);
    clock.advance(Duration::from_secs(64));
    assert_eq!(server.status(path, &token).await, 200, "within leeway");
    clock.advance(Duration::from_secs(1));
    let (status, body) = server.get(path, Some(&token), None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized"))
    );
}

#[actix_web::test]
async fn a_token_for_another_group_gets_wrong_group() {
    let server = TestServer::start().await;
    let token73 = server.token("olga", 73);
    let (status, body) = server
        .get("/presence/72/visitors/v-1", Some(&token73), None)
        .await;
    assert_eq!((status, body["error"].as_str()), (403, Some("wrong_group")));
    let (status, body) = server.invoke(&token73, "v-1", json!({"func":"f"})).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("wrong_group")));
    let (status, body) = server
        .post(
            "/presence/72/visitors/v-1/signal",
            Some(&token73),
            None,
            &json!({"data":1}),
        )
        .await;
    assert_eq!((status, body["error"].as_str()), (403, Some("wrong_group")));
}

#[actix_web::test]
async fn agent_socket_refuses_bad_tokens_with_1008() {
    let server = TestServer::start().await;
    let tokens = server.running().tokens();
    let good = server.token("fred.demo", 72);
    let mut claims: Value = claims_of(&good);
    claims["exp"] = json!(claims["iat"].as_u64().expect("iat") - 100);
    claims["iat"] = json!(claims["iat"].as_u64().expect("iat") - 200);
    let expired = tokens.sign(&claims).expect("sign");
    let no_presence = server.token("nick", 74);
    let header = jsonwebtoken::decode_header(&good).expect("header");
    let fresh: Value = claims_of(&good);
    let signed_with = |kid: Option<String>, secret: &[u8]| {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        h.kid = kid;
        jsonwebtoken::encode(&h, &fresh, &jsonwebtoken::EncodingKey::from_secret(secret))
            .expect("encode")
    };
    let wrong_key = signed_with(header.kid.clone(), b"not-the-server-key-at-all-32byte");
    let unknown_kid = signed_with(Some("made-up".into()), b"not-the-server-key-at-all-32byte");
    for (token, code) in [
        ("junk".to_owned(), "unauthorized"),
        (expired, "unauthorized"),
        (format!("{good}x"), "unauthorized"),
        (wrong_key, "unauthorized"),
        (unknown_kid, "unauthorized"),
        (no_presence, "presence_not_subscribed"),
    ] {
        let mut ws = server.socket("/agent/ws", None).await.expect("connect");
        ws.send(json!({"type":"auth","token":token})).await;
        assert_closed(&ws.closed().await, CloseCode::Policy, code);
    }
    // Anything but auth first is refused too.
    let mut ws = server.socket("/agent/ws", None).await.expect("connect");
    ws.send(json!({"type":"watch","visitorid":"v-1"})).await;
    assert_closed(&ws.closed().await, CloseCode::Policy, "auth_required");
    let mut ws = server.socket("/agent/ws", None).await.expect("connect");
    ws.send_text("{{{").await;
    assert_closed(&ws.closed().await, CloseCode::Policy, "malformed_json");
}

#[actix_web::test]
async fn agent_socket_must_authenticate_within_the_hello_timeout() {
    let server = TestServer::start_with(|c| c.presence.hello_timeout_ms = 150).await;
    let mut ws = server.socket("/agent/ws", None).await.expect("connect");
    assert_closed(&ws.closed().await, CloseCode::Policy, "auth_timeout");
}

#[actix_web::test]
async fn agent_socket_closes_when_the_token_expires() {
    let server = TestServer::start().await;
    let now = presence_server::clock::SystemClock.now_secs();
    let token = server
        .running()
        .tokens()
        .sign(&json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": "fred.demo", "groupid": 72,
            "role": "agent", "iat": now, "exp": now + 1, "jti": "short"
        }))
        .expect("sign");
    let mut ws = server.agent(&token).await;
    assert_closed(&ws.closed().await, CloseCode::Policy, "token_expired");
}

#[actix_web::test]
async fn the_ready_frame_names_the_agent_and_expiry() {
    let server = TestServer::start().await;
    let token = server.token("fred.demo", 72);
    let claims = server.running().tokens().verify(&token).expect("valid");
    let mut ws = server.socket("/agent/ws", None).await.expect("connect");
    ws.send(json!({"type":"auth","token":token})).await;
    assert_eq!(
        ws.recv().await,
        json!({"type":"ready","groupid":72,"username":"fred.demo","role":"agent",
               "expires":claims.exp,"functions":["*"]})
    );
    ws.send(json!({"type":"auth","token":token})).await;
    assert_eq!(ws.recv().await["code"], "already_authenticated");
}

#[actix_web::test]
async fn tokens_survive_a_restart() {
    let server = TestServer::start().await;
    let token = server.token("fred.demo", 72);
    let dir = server.shutdown().await;
    let server =
        TestServer::start_in(dir, |_| {}, Arc::new(presence_server::clock::SystemClock)).await;
    let (status, _) = server
        .get("/presence/72/visitors/v-1", Some(&token), None)
        .await;
    assert_eq!(status, 200);
}
