//! Security review, item 13: logout revokes the session's tokens;
//! cookie-authenticated state changes need an allowed Origin; a CORS
//! preflight reads a percent-encoded group id as the router does.

mod common;

use awc::ws::CloseCode;
use common::{TestServer, ORIGIN_72, ORIGIN_73, PASSWORD};
use serde_json::{json, Value};

/// The console's own origin: the test config's `server.public_url`.
const CONSOLE: &str = "http://127.0.0.1:8080";

async fn login(server: &TestServer) -> String {
    let (status, body) = server
        .post(
            "/auth/login",
            None,
            None,
            &json!({"groupid":72,"username":"fred.demo","password":PASSWORD}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["gssnid"].as_str().expect("gssnid").to_owned()
}

/// `POST path` with the session cookie, an optional Origin and `body`.
async fn with_cookie(
    server: &TestServer,
    path: &str,
    cookie: &str,
    origin: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = server
        .http
        .post(server.url(path))
        .cookie(awc::cookie::Cookie::new("gssnid", cookie.to_owned()));
    if let Some(origin) = origin {
        req = req.insert_header(("Origin", origin));
    }
    let mut resp = match body {
        Some(body) => req.send_json(&body).await,
        None => req.send().await,
    }
    .expect("response");
    let bytes = resp.body().await.expect("body");
    (
        resp.status().as_u16(),
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// A group-72 token from the session cookie, as the console asks for it.
async fn console_token(server: &TestServer, cookie: &str) -> (u16, Value) {
    let body = json!({"groupid": 72, "credentials": {}});
    with_cookie(server, "/auth/token", cookie, Some(CONSOLE), Some(body)).await
}

#[actix_web::test]
async fn logout_revokes_the_tokens_the_session_issued() {
    let server = TestServer::start().await;
    let cookie = login(&server).await;
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let (status, body) = console_token(&server, &cookie).await;
        assert_eq!(status, 200, "{body}");
        tokens.push(body["token"].as_str().expect("token").to_owned());
    }
    // A token from a password is not the session's, and survives it.
    let (_, other) = server
        .post(
            "/auth/token",
            None,
            None,
            &json!({"groupid":72,"credentials":{"username":"fred.demo","password":PASSWORD}}),
        )
        .await;
    let other = other["token"].as_str().expect("token").to_owned();
    let mut socket = server.agent(&tokens[0]).await;
    assert_eq!(
        server.status("/presence/72/visitors/v-1", &tokens[1]).await,
        200
    );

    let (status, _) = with_cookie(&server, "/auth/logout", &cookie, Some(CONSOLE), None).await;
    assert_eq!(status, 204);
    let closed = socket.closed().await;
    common::assert_closed(&closed, CloseCode::Policy, "token_revoked");
    for token in &tokens {
        assert_eq!(
            server.status("/presence/72/visitors/v-1", token).await,
            401,
            "revoked by logout"
        );
    }
    assert_eq!(
        server.status("/presence/72/visitors/v-1", &other).await,
        200
    );
    let (status, body) = console_token(&server, &cookie).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_credentials"))
    );
}

#[actix_web::test]
async fn cookie_authenticated_changes_need_an_allowed_origin() {
    let server = TestServer::start().await;
    let cookie = login(&server).await;
    let token_body = || Some(json!({"groupid":72,"credentials":{}}));
    for (origin, what) in [
        (None, "no Origin"),
        (Some(ORIGIN_73), "another group's origin"),
    ] {
        let (status, body) =
            with_cookie(&server, "/auth/token", &cookie, origin, token_body()).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (403, Some("origin_not_allowed")),
            "token, {what}: {body}"
        );
        let (status, body) = with_cookie(&server, "/auth/logout", &cookie, origin, None).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (403, Some("origin_not_allowed")),
            "logout, {what}: {body}"
        );
    }
    // The session survived the refused logouts.
    for origin in [ORIGIN_72, CONSOLE] {
        let (status, body) =
            with_cookie(&server, "/auth/token", &cookie, Some(origin), token_body()).await;
        assert_eq!(status, 200, "{origin}: {body}");
    }
    // Naming the session in the body is not cookie authentication: a
    // server-side integration needs no Origin.
    let (status, _) = server
        .post("/auth/logout", None, None, &json!({"gssnid": cookie}))
        .await;
    assert_eq!(status, 204);
}

#[actix_web::test]
async fn preflights_read_percent_encoded_groups_as_the_router_does() {
    let server = TestServer::start().await;
    let preflight = |path: &'static str, origin: &'static str| {
        let server = &server;
        async move {
            server
                .http
                .request(awc::http::Method::OPTIONS, server.url(path))
                .insert_header(("Origin", origin))
                .insert_header(("Access-Control-Request-Method", "POST"))
                .send()
                .await
                .expect("response")
                .status()
                .as_u16()
        }
    };
    for path in [
        "/presence/72/visitors/v-1/invoke",
        "/presence/%37%32/visitors/v-1/invoke",
        "/presence/%2B72/visitors/v-1/invoke",
    ] {
        assert_eq!(preflight(path, ORIGIN_73).await, 403, "{path}");
        assert_eq!(preflight(path, ORIGIN_72).await, 204, "{path}");
    }
    // The router reads the encoded path as group 72 too.
    let token = server.token("fred.demo", 72);
    assert_eq!(
        server.status("/presence/%37%32/visitors/v-1", &token).await,
        200
    );
}

#[actix_web::test]
async fn logout_ends_nothing_quietly_and_refuses_a_body_it_cannot_read() {
    let server = TestServer::start().await;
    // No session named anywhere: nothing to end, as for an unknown one.
    for body in ["", "null", "{}"] {
        let resp = server
            .http
            .post(server.url("/auth/logout"))
            .insert_header(("Content-Type", "application/json"))
            .send_body(body)
            .await
            .expect("logout");
        assert_eq!(resp.status().as_u16(), 204, "{body:?}");
    }
    // A body that is sent must be the one logout reads: never ignored.
    for body in [
        r#"{"gssnid": 5}"#,
        r#"{"session": "x"}"#,
        "[1]",
        "{not json",
    ] {
        let mut resp = server
            .http
            .post(server.url("/auth/logout"))
            .insert_header(("Content-Type", "application/json"))
            .send_body(body)
            .await
            .expect("logout");
        assert_eq!(resp.status().as_u16(), 400, "{body}");
        let error: Value = resp.json().await.expect("error body");
        assert_eq!(error["error"], "bad_request", "{body}");
    }
}
