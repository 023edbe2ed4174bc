//! Failed-attempt lockout per account and per client IP.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{TestServer, API_KEY_72, PASSWORD};
use presence_server::clock::{Clock, ManualClock};
use serde_json::{json, Value};

async fn attempt(server: &TestServer, body: Value) -> (u16, Option<String>, Value) {
    attempt_with(&server.http, server, body).await
}

/// As [`attempt`], with another client (another source address).
async fn attempt_with(
    client: &awc::Client,
    server: &TestServer,
    body: Value,
) -> (u16, Option<String>, Value) {
    let mut resp = client
        .post(server.url("/auth/token"))
        .send_json(&body)
        .await
        .expect("response");
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    (resp.status().as_u16(), retry, body)
}

fn password(user: &str, password: &str) -> Value {
    json!({"groupid":72,"credentials":{"username":user,"password":password}})
}

#[actix_web::test]
async fn five_failures_lock_the_account_until_the_window_passes() {
    let clock = Arc::new(ManualClock::starting_now());
    let server = TestServer::start_with_clock(clock.clone()).await;
    for _ in 0..5 {
        let (status, _, _) = attempt(&server, password("fred.demo", "wrong")).await;
        assert_eq!(status, 401);
        clock.advance(Duration::from_secs(30));
    }
    // Even the right password is refused now, before any hashing.
    let (status, retry, body) = attempt(&server, password("fred.demo", PASSWORD)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (429, Some("too_many_attempts")),
        "{body}"
    );
    let retry: u64 = retry.expect("Retry-After").parse().expect("seconds");
    assert_eq!(
        retry,
        900 - 150,
        "until the first failure leaves the 15 min window"
    );
    // Login keys for the same account are locked too; other accounts are not.
    let key = presence_server::login_key::generate(
        API_KEY_72.as_bytes(),
        72,
        "fred",
        clock.now_secs() + 600,
    );
    let (status, _, _) = attempt(
        &server,
        json!({"groupid":72,"credentials":{"username":"fred.demo","loginkey":key}}),
    )
    .await;
    assert_eq!(status, 429);
    let (status, _, _) = attempt(&server, password("ada.admin", PASSWORD)).await;
    assert_eq!(status, 200);

    // The audit log shows the lockout and the refused attempts.
    let admin = server.admin_token("ada.admin", 72);
    let (_, page) = server
        .get("/admin/72/audit?username=fred.demo", Some(&admin), None)
        .await;
    let records = page["records"].as_array().expect("records");
    assert!(records.iter().any(|r| r["outcome"] == "lockout"), "{page}");
    assert!(
        records
            .iter()
            .any(|r| r["reason"] == "locked_out (account)"),
        "{page}"
    );

    clock.advance(Duration::from_secs(retry));
    let (status, _, body) = attempt(&server, password("fred.demo", PASSWORD)).await;
    assert_eq!(status, 200, "{body}");
}

#[actix_web::test]
async fn one_client_failing_across_accounts_is_locked() {
    let server = TestServer::start_with(|c| c.auth.lockout_client_failures = 6).await;
    for user in ["a1", "a2", "a3", "a4", "a5", "a6"] {
        let (status, _, _) = attempt(&server, password(user, "wrong")).await;
        assert_eq!(status, 401);
    }
    let (status, retry, body) = attempt(&server, password("fred.demo", PASSWORD)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (429, Some("too_many_attempts")),
        "{body}"
    );
    assert!(retry.is_some());
}

#[actix_web::test]
async fn website_logins_share_the_limits_and_show_in_the_groups_audit() {
    let server = TestServer::start().await;
    let login = |pw: &'static str| {
        let server = &server;
        async move {
            server
                .post(
                    "/auth/login",
                    None,
                    None,
                    &json!({"username":"fred.demo","password":pw}),
                )
                .await
        }
    };
    for _ in 0..5 {
        assert_eq!(login("wrong").await.0, 401);
    }
    let (status, body) = login(PASSWORD).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (429, Some("too_many_attempts"))
    );
    let admin = server.admin_token("ada.admin", 72);
    let (_, page) = server
        .get("/admin/72/audit?username=fred.demo", Some(&admin), None)
        .await;
    let records = page["records"].as_array().expect("records");
    assert_eq!(
        records.iter().filter(|r| r["outcome"] == "lockout").count(),
        1,
        "exactly one lockout record: {page}"
    );
}

#[actix_web::test]
async fn concurrent_guesses_cannot_overrun_the_limit() {
    let server = TestServer::start().await;
    // Each guess from its own address, so that the per-client limit on
    // password checks in flight (two) does not stand in for the lockout.
    let clients: Vec<awc::Client> = (0..12)
        .map(|i| {
            let ip = std::net::Ipv4Addr::new(127, 0, 0, 10 + i);
            awc::Client::builder()
                .connector(awc::Connector::new().local_address(ip.into()))
                .timeout(common::WAIT)
                .finish()
        })
        .collect();
    let guesses = clients
        .iter()
        .map(|client| attempt_with(client, &server, password("fred.demo", "wrong")));
    let results = futures_util::future::join_all(guesses).await;
    let unauthorized = results.iter().filter(|(s, _, _)| *s == 401).count();
    let locked = results.iter().filter(|(s, _, _)| *s == 429).count();
    assert_eq!(
        (unauthorized, locked),
        (5, 7),
        "only 5 guesses may be checked"
    );
}
