//! Revoking agent tokens: who may, what stops working, and durability.

mod common;

use awc::ws::CloseCode;
use common::{assert_closed, TestServer, PASSWORD};
use serde_json::{json, Value};

async fn token(server: &TestServer, group: u64, user: &str) -> (String, String) {
    let (status, body) = server
        .post(
            "/auth/token",
            None,
            None,
            &json!({"groupid":group,"credentials":{"username":user,"password":PASSWORD}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().expect("token").to_owned();
    let jti = server.running().tokens().verify(&token).expect("valid").jti;
    (token, jti)
}

async fn revoke(server: &TestServer, with: &str, jti: &str) -> (u16, Value) {
    server
        .post("/auth/revoke", Some(with), None, &json!({"jti": jti}))
        .await
}

#[actix_web::test]
async fn revoking_a_token_stops_rest_and_closes_its_sockets() {
    let server = TestServer::start().await;
    let (fred, fred_jti) = token(&server, 72, "fred.demo").await;
    let mut socket = server.agent(&fred).await;
    let (status, body) = revoke(&server, &fred, &fred_jti).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["revoked"], fred_jti);
    assert_eq!(body["sockets_closed"], 1);
    assert_closed(&socket.closed().await, CloseCode::Policy, "token_revoked");

    let (status, body) = server
        .get("/presence/72/visitors/v-1", Some(&fred), None)
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized"))
    );
    let mut late = server.socket("/agent/ws", None).await.expect("connect");
    late.send(json!({"type":"auth","token":fred})).await;
    assert_closed(&late.closed().await, CloseCode::Policy, "unauthorized");
}

#[actix_web::test]
async fn only_the_user_or_a_group_administrator_may_revoke() {
    let server = TestServer::start().await;
    let (fred, fred_jti) = token(&server, 72, "fred.demo").await;
    let (ada, ada_jti) = token(&server, 72, "ada.admin").await;
    let (other_admin, _) = token(&server, 73, "multi").await;

    let (status, body) = revoke(&server, &fred, &ada_jti).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("forbidden")),
        "an agent cannot revoke others"
    );
    let (status, body) = revoke(&server, &other_admin, &fred_jti).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("forbidden")),
        "another group's admin cannot"
    );
    let (status, body) = revoke(&server, &fred, "no-such-jti").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("unknown_token"))
    );
    let (status, _) = server
        .post("/auth/revoke", None, None, &json!({"jti": fred_jti}))
        .await;
    assert_eq!(status, 401);
    let (status, _) = server
        .post("/auth/revoke", Some(&fred), None, &json!({"jti": ""}))
        .await;
    assert_eq!(status, 400);

    let (status, _) = revoke(&server, &ada, &fred_jti).await;
    assert_eq!(status, 200, "the group's administrator can");
    assert_eq!(server.status("/presence/72/visitors/v-1", &fred).await, 401);
    assert_eq!(server.status("/presence/72/visitors/v-1", &ada).await, 200);

    let (_, page) = server
        .get("/admin/72/audit?username=fred.demo", Some(&ada), None)
        .await;
    let revoked = &page["records"][0];
    assert_eq!(
        (revoked["outcome"].as_str(), revoked["jti"].as_str()),
        (Some("revoked"), Some(fred_jti.as_str()))
    );
    assert_eq!(revoked["reason"], "revoked by ada.admin");
}

#[actix_web::test]
async fn the_denylist_survives_a_restart() {
    let server = TestServer::start().await;
    let (fred, fred_jti) = token(&server, 72, "fred.demo").await;
    let (keep, _) = token(&server, 72, "fred.demo").await;
    assert_eq!(revoke(&server, &fred, &fred_jti).await.0, 200);
    let dir = server.shutdown().await;
    let server = TestServer::start_in(
        dir,
        |_| {},
        std::sync::Arc::new(presence_server::clock::SystemClock),
    )
    .await;
    assert_eq!(server.status("/presence/72/visitors/v-1", &fred).await, 401);
    assert_eq!(server.status("/presence/72/visitors/v-1", &keep).await, 200);
}
