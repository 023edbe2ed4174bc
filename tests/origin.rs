//! Origin whitelisting and CORS on REST and on both sockets.

mod common;

use awc::ws::CloseCode;
use common::{assert_closed, TestServer, ORIGIN_72, ORIGIN_73, PASSWORD};
use serde_json::json;

#[actix_web::test]
async fn rest_allows_the_groups_origins_and_echoes_them() {
    let server = TestServer::start().await;
    let token = server.token("fred.demo", 72);
    let resp = server
        .get_response("/presence/72/visitors/v-1", Some(&token), Some(ORIGIN_72))
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()
            .get("access-control-allow-origin")
            .expect("acao"),
        ORIGIN_72
    );
    assert_eq!(resp.headers().get("vary").expect("vary"), "Origin");
}

#[actix_web::test]
async fn rest_refuses_foreign_and_near_miss_origins() {
    let server = TestServer::start().await;
    let token = server.token("fred.demo", 72);
    for origin in [
        "http://evil.test",
        "http://allowed.test.evil.test",
        "http://evilallowed.test",
        "https://allowed.test",
        "http://allowed.test:8080",
        "null",
        "http://allowed.test/",
        ORIGIN_73, // allowed for group 73, not for 72
    ] {
        let resp = server
            .get_response("/presence/72/visitors/v-1", Some(&token), Some(origin))
            .await;
        assert_eq!(resp.status().as_u16(), 403, "{origin}");
        assert!(
            resp.headers().get("access-control-allow-origin").is_none(),
            "{origin}"
        );
        assert_eq!(resp.headers().get("vary").expect("vary"), "Origin");
        let (_, body) = server
            .get("/presence/72/visitors/v-1", Some(&token), Some(origin))
            .await;
        assert_eq!(body["error"], "origin_not_allowed", "{origin}");
    }
    // Where the path names a group, another group's origin is refused
    // before anything else, so no response (not even a 401) echoes it.
    let resp = server
        .get_response("/presence/72/visitors/v-1", None, Some(ORIGIN_73))
        .await;
    assert_eq!(resp.status().as_u16(), 403);
    assert!(resp.headers().get("access-control-allow-origin").is_none());

    // Token issuance checks the group's list too.
    let (status, body) = server
        .post(
            "/auth/token",
            None,
            Some(ORIGIN_73),
            &json!({"groupid":72,"credentials":{"username":"fred.demo","password":PASSWORD}}),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("origin_not_allowed"))
    );
}

#[actix_web::test]
async fn requests_without_an_origin_are_allowed() {
    let server = TestServer::start().await;
    let token = server.token("fred.demo", 72);
    let resp = server
        .get_response("/presence/72/visitors/v-1", Some(&token), None)
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    assert_eq!(resp.headers().get("vary").expect("vary"), "Origin");
}

#[actix_web::test]
async fn preflights_are_answered_only_for_whitelisted_origins() {
    let server = TestServer::start().await;
    let preflight = |origin: &'static str| {
        server
            .http
            .request(
                awc::http::Method::OPTIONS,
                server.url("/presence/72/visitors/v-1/invoke"),
            )
            .insert_header(("Origin", origin))
            .insert_header(("Access-Control-Request-Method", "POST"))
            .insert_header((
                "Access-Control-Request-Headers",
                "authorization, content-type",
            ))
            .send()
    };
    let resp = preflight(ORIGIN_72).await.expect("response");
    assert_eq!(resp.status().as_u16(), 204);
    let h = resp.headers();
    assert_eq!(
        h.get("access-control-allow-origin").expect("acao"),
        ORIGIN_72
    );
    assert!(h
        .get("access-control-allow-methods")
        .expect("methods")
        .to_str()
        .expect("str")
        .contains("POST"));
    assert!(h
        .get("access-control-allow-headers")
        .expect("headers")
        .to_str()
        .expect("str")
        .contains("Authorization"));
    assert_eq!(h.get("vary").expect("vary"), "Origin");

    let resp = preflight("http://evil.test").await.expect("response");
    assert_eq!(resp.status().as_u16(), 403);
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    assert_eq!(resp.headers().get("vary").expect("vary"), "Origin");
}

#[actix_web::test]
async fn socket_handshakes_from_unlisted_origins_are_refused() {
    let server = TestServer::start().await;
    for path in ["/visitor/ws", "/agent/ws"] {
        for origin in ["http://evil.test", "null"] {
            let err = server
                .socket(path, Some(origin))
                .await
                .err()
                .expect("refused");
            assert!(
                matches!(err, awc::error::WsClientError::InvalidResponseStatus(s) if s.as_u16() == 403),
                "{path} {origin}: {err:?}"
            );
        }
        assert!(server.socket(path, Some(ORIGIN_72)).await.is_ok(), "{path}");
    }
}

#[actix_web::test]
async fn after_hello_the_groups_own_list_applies() {
    let server = TestServer::start().await;
    // ORIGIN_73 passes the handshake (some group lists it) but group 72
    // does not, so the hello is refused.
    let mut ws = server
        .socket("/visitor/ws", Some(ORIGIN_73))
        .await
        .expect("handshake");
    ws.send(json!({"type":"hello","groupid":72,"visitorid":"v-1"}))
        .await;
    assert_closed(&ws.closed().await, CloseCode::Policy, "origin_not_allowed");

    let mut ws = server
        .socket("/visitor/ws", Some(ORIGIN_72))
        .await
        .expect("handshake");
    ws.send(json!({"type":"hello","groupid":72,"visitorid":"v-1"}))
        .await;
    assert_eq!(ws.recv().await["type"], "welcome");

    let token = server.token("fred.demo", 72);
    let mut agent = server
        .socket("/agent/ws", Some(ORIGIN_73))
        .await
        .expect("handshake");
    agent.send(json!({"type":"auth","token":token})).await;
    assert_closed(
        &agent.closed().await,
        CloseCode::Policy,
        "origin_not_allowed",
    );

    let mut agent = server
        .socket("/agent/ws", Some(ORIGIN_72))
        .await
        .expect("handshake");
    agent.send(json!({"type":"auth","token":token})).await;
    assert_eq!(agent.recv().await["type"], "ready");
}

#[actix_web::test]
async fn health_is_never_gated_on_origin() {
    let server = TestServer::start().await;
    let (status, _) = server.get("/healthz", None, Some("http://evil.test")).await;
    assert_eq!(status, 200);
}
