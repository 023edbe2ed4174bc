//! The token audit log and its administrator query.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{TestServer, PASSWORD};
use presence_server::clock::ManualClock;
use serde_json::{json, Value};

async fn login(server: &TestServer, group: u64, user: &str, password: &str) -> (u16, Value) {
    server
        .http
        .post(server.url("/auth/token"))
        .insert_header(("User-Agent", "audit-test/1.0"))
        .send_json(&json!({"groupid":group,"credentials":{"username":user,"password":password}}))
        .await
        .map(|mut r| async move {
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        })
        .expect("response")
        .await
}

async fn admin_token(server: &TestServer) -> String {
    let (status, body) = login(server, 72, "ada.admin", PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    body["token"].as_str().expect("token").to_owned()
}

async fn audit(server: &TestServer, token: &str, query: &str) -> (u16, Value) {
    server
        .get(&format!("/admin/72/audit{query}"), Some(token), None)
        .await
}

#[actix_web::test]
async fn every_issue_and_refusal_is_recorded_without_secrets() {
    let server = TestServer::start().await;
    let (_, issued) = login(&server, 72, "fred.demo", PASSWORD).await;
    let claims = server
        .running()
        .tokens()
        .verify(issued["token"].as_str().expect("token"))
        .expect("valid");
    let (status, _) = login(&server, 72, "fred.demo", "a-wrong-password-xyz").await;
    assert_eq!(status, 401);
    let admin = admin_token(&server).await;

    let (status, page) = audit(&server, &admin, "?username=fred.demo").await;
    assert_eq!(status, 200, "{page}");
    let records = page["records"].as_array().expect("records");
    assert_eq!(records.len(), 2, "{page}");
    let (refused, ok) = (&records[0], &records[1]);
    assert_eq!(refused["outcome"], "refused");
    assert_eq!(refused["reason"], "wrong_password");
    assert_eq!(refused["credential"], "password");
    assert_eq!(ok["outcome"], "issued");
    assert_eq!(ok["jti"], claims.jti);
    assert_eq!(ok["groupid"], 72);
    assert_eq!(ok["role"], "agent");
    assert_eq!(ok["credential"], "password");
    assert_eq!(
        (ok["iat"].as_u64(), ok["exp"].as_u64()),
        (Some(claims.iat), Some(claims.exp))
    );
    assert_eq!(ok["remote"], "127.0.0.1");
    assert_eq!(ok["user_agent"], "audit-test/1.0");
    let text = page.to_string();
    assert!(!text.contains("a-wrong-password-xyz") && !text.contains(PASSWORD));
    assert!(!text.contains(issued["token"].as_str().expect("token")));
}

#[actix_web::test]
async fn only_the_groups_administrators_may_read_it() {
    let server = TestServer::start().await;
    let agent = server.token("fred.demo", 72);
    let (status, body) = audit(&server, &agent, "").await;
    assert_eq!((status, body["error"].as_str()), (403, Some("forbidden")));
    // multi is an administrator, but of group 73.
    let (_, other) = login(&server, 73, "multi", PASSWORD).await;
    let (status, body) = audit(&server, other["token"].as_str().expect("token"), "").await;
    assert_eq!((status, body["error"].as_str()), (403, Some("wrong_group")));
    let (status, body) = server.get("/admin/72/audit", None, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized"))
    );
}

#[actix_web::test]
async fn pages_filter_and_survive_a_restart() {
    let clock = Arc::new(ManualClock::starting_now());
    let server = TestServer::start_with_clock(clock.clone()).await;
    let start = presence_server::clock::Clock::now_secs(clock.as_ref());
    for _ in 0..3 {
        login(&server, 72, "fred.demo", "wrong").await;
        clock.advance(Duration::from_secs(10));
    }
    let admin = admin_token(&server).await;

    let (_, first) = audit(&server, &admin, "?username=fred.demo&limit=2").await;
    assert_eq!(first["records"].as_array().expect("records").len(), 2);
    let cursor = first["next_cursor"].as_str().expect("cursor").to_owned();
    let (_, second) = audit(
        &server,
        &admin,
        &format!("?username=fred.demo&limit=2&cursor={cursor}"),
    )
    .await;
    assert_eq!(second["records"].as_array().expect("records").len(), 1);
    assert!(second["next_cursor"].is_null());
    let newest = first["records"][0]["at"].as_u64().expect("at");
    let oldest = second["records"][0]["at"].as_u64().expect("at");
    assert!(newest > oldest);

    let (_, window) = audit(
        &server,
        &admin,
        &format!("?since={}&until={}", start + 5, start + 25),
    )
    .await;
    assert_eq!(
        window["records"].as_array().expect("records").len(),
        2,
        "{window}"
    );
    let (status, _) = audit(&server, &admin, "?limit=0").await;
    assert_eq!(status, 400);
    let (status, _) = audit(&server, &admin, "?cursor=nothex").await;
    assert_eq!(status, 400);
    let (status, _) = audit(&server, &admin, "?sinse=1").await;
    assert_eq!(status, 400);

    let dir = server.shutdown().await;
    let server = TestServer::start_in(dir, |_| {}, clock.clone()).await;
    let (_, after) = audit(&server, &admin, "?username=fred.demo").await;
    assert_eq!(
        after["records"].as_array().expect("records").len(),
        3,
        "durable"
    );

    // Retention: 90 days by default.
    clock.advance(Duration::from_secs(91 * 86_400));
    let done = server.running().housekeeping().expect("housekeeping");
    assert!(done.audit_swept >= 4, "{done:?}");
    let admin = admin_token(&server).await;
    let (_, swept) = audit(&server, &admin, "?username=fred.demo").await;
    assert_eq!(swept["records"].as_array().expect("records").len(), 0);
}

#[actix_web::test]
async fn refusal_reasons_do_not_reveal_other_groups_users() {
    let server = TestServer::start().await;
    // olga exists only in group 73; "ghost" nowhere. Asked for group 72,
    // both read the same in 72's audit log.
    login(&server, 72, "olga", "wrong").await;
    login(&server, 72, "ghost", "wrong").await;
    login(&server, 72, "fred.demo", "wrong").await;
    let admin = admin_token(&server).await;
    for (user, reason) in [
        ("olga", "invalid_credentials"),
        ("ghost", "invalid_credentials"),
        ("fred.demo", "wrong_password"),
    ] {
        let (_, page) = audit(&server, &admin, &format!("?username={user}")).await;
        assert_eq!(page["records"][0]["reason"], reason, "{user}: {page}");
    }
}
