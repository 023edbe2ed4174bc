//! Security review, item 6: what refusals may write to the audit log.
//! Each rule counts the records written.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{sample, scrape, TestServer, PASSWORD};
use presence_server::clock::ManualClock;
use serde_json::{json, Value};

/// Audit records written since start, by outcome, from `/metrics`.
async fn written(server: &TestServer, outcome: &str) -> f64 {
    let text = scrape(server).await;
    sample(
        &text,
        &format!("presence_audit_records_total{{outcome=\"{outcome}\"}}"),
    )
}

/// Group 72's audit records, newest first (as its administrator sees them).
async fn records(server: &TestServer, query: &str) -> Vec<Value> {
    let admin = server.admin_token("ada.admin", 72);
    let (status, page) = server
        .get(
            &format!("/admin/72/audit?limit=1000{query}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    page["records"].as_array().expect("records").clone()
}

/// A password token request's status.
async fn token_status(server: &TestServer, user: &str, password_text: &str) -> u16 {
    let body = password(72, user, password_text);
    server.post("/auth/token", None, None, &body).await.0
}

fn password(group: u64, user: &str, password: &str) -> Value {
    json!({"groupid": group, "credentials": {"username": user, "password": password}})
}

#[actix_web::test]
async fn an_unknown_group_writes_no_record() {
    let server = TestServer::start().await;
    for _ in 0..30 {
        let (status, body) = server
            .post("/auth/token", None, None, &password(999, "fred.demo", "x"))
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (404, Some("unknown_group"))
        );
        let (status, _) = server
            .post(
                "/auth/login",
                None,
                None,
                &json!({"groupid":999,"username":"fred.demo","password":"x"}),
            )
            .await;
        assert_eq!(status, 404);
    }
    let text = scrape(&server).await;
    assert_eq!(
        sample(&text, "presence_audit_records_total{outcome=\"refused\"}"),
        0.0
    );
    assert_eq!(
        sample(
            &text,
            "presence_audit_suppressed_total{rule=\"unknown_group\"}"
        ),
        60.0
    );
    assert_eq!(
        sample(
            &text,
            "presence_auth_failures_total{reason=\"unknown_group\"}"
        ),
        60.0
    );
}

#[actix_web::test]
async fn a_lockout_writes_one_refusal_per_lockout_window() {
    let clock = Arc::new(ManualClock::starting_now());
    let server = TestServer::start_with_clock(clock.clone()).await;
    for _ in 0..5 {
        let status = token_status(&server, "fred.demo", "wrong").await;
        assert_eq!(status, 401);
    }
    for _ in 0..20 {
        let status = token_status(&server, "fred.demo", PASSWORD).await;
        assert_eq!(status, 429);
        clock.advance(Duration::from_secs(5));
    }
    let fred = records(&server, "&username=fred.demo").await;
    let count = |outcome: &str, reason: Option<&str>| {
        fred.iter()
            .filter(|r| r["outcome"] == outcome)
            .filter(|r| reason.is_none_or(|why| r["reason"].as_str().unwrap_or("").contains(why)))
            .count()
    };
    assert_eq!(count("lockout", None), 1, "{fred:?}");
    assert_eq!(count("refused", Some("locked_out")), 1, "{fred:?}");
    assert_eq!(
        count("refused", None),
        6,
        "five failures and one 429: {fred:?}"
    );
    // The 19 unwritten 429s span two client windows (5 s apart): the one
    // that ended is summed up in one record.
    let all = records(&server, "").await;
    let summaries: Vec<_> = all
        .iter()
        .filter(|r| {
            r["reason"]
                .as_str()
                .unwrap_or("")
                .starts_with("suppressed ")
        })
        .collect();
    assert_eq!(summaries.len(), 1, "{all:?}");
    assert_eq!(written(&server, "refused").await, 7.0);

    // The next lockout window gets its own record.
    clock.advance(Duration::from_secs(900));
    for _ in 0..5 {
        token_status(&server, "fred.demo", "wrong").await;
    }
    let status = token_status(&server, "fred.demo", PASSWORD).await;
    assert_eq!(status, 429);
    let fred = records(&server, "&username=fred.demo").await;
    let locked = fred
        .iter()
        .filter(|r| r["reason"].as_str().unwrap_or("").contains("locked_out"))
        .count();
    assert_eq!(locked, 2, "{fred:?}");
}

#[actix_web::test]
async fn audited_fields_are_capped_with_a_marker() {
    let server = TestServer::start().await;
    let long_name = "n".repeat(1024);
    let mut resp = server
        .http
        .post(server.url("/auth/token"))
        .insert_header(("User-Agent", "u".repeat(4000)))
        .send_json(&password(72, &long_name, "wrong"))
        .await
        .expect("response");
    assert_eq!(resp.status().as_u16(), 401);
    let _ = resp.body().await;
    let all = records(&server, "").await;
    assert_eq!(all.len(), 1, "{all:?}");
    let username = all[0]["username"].as_str().expect("username");
    let agent = all[0]["user_agent"].as_str().expect("user agent");
    assert_eq!(
        username.chars().count(),
        presence_server::audit::MAX_USERNAME
    );
    assert_eq!(
        agent.chars().count(),
        presence_server::audit::MAX_USER_AGENT
    );
    assert!(
        username.ends_with(presence_server::audit::TRUNCATED),
        "{username}"
    );
    assert!(
        agent.ends_with(presence_server::audit::TRUNCATED),
        "{agent}"
    );
}

#[actix_web::test]
async fn one_client_writes_ten_refusals_a_minute_then_one_summary() {
    let clock = Arc::new(ManualClock::starting_now());
    let server = TestServer::start_with_clock(clock.clone()).await;
    let bad_duration = json!({"groupid":72,"duration":5,"credentials":{}});
    for _ in 0..35 {
        let (status, body) = server.post("/auth/token", None, None, &bad_duration).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("bad_duration"))
        );
    }
    assert_eq!(records(&server, "").await.len(), 10);
    assert_eq!(written(&server, "refused").await, 10.0);
    let text = scrape(&server).await;
    assert_eq!(
        sample(
            &text,
            "presence_audit_suppressed_total{rule=\"client_rate\"}"
        ),
        25.0
    );

    // The window ends; the sweeper writes what it suppressed, once.
    clock.advance(Duration::from_secs(60));
    let pass = server.running().housekeeping().expect("housekeeping");
    assert_eq!(pass.audit_summaries_written, 1);
    assert_eq!(
        server
            .running()
            .housekeeping()
            .expect("again")
            .audit_summaries_written,
        0
    );
    let all = records(&server, "").await;
    assert_eq!(all.len(), 11);
    let summary = all[0]["reason"].as_str().expect("reason");
    assert!(summary.starts_with("suppressed 25 refusals"), "{summary}");
    assert_eq!(all[0]["remote"], "127.0.0.1");

    // A new minute admits ten more.
    for _ in 0..12 {
        server.post("/auth/token", None, None, &bad_duration).await;
    }
    assert_eq!(records(&server, "").await.len(), 21);
}
