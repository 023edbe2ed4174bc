//! `/metrics`: served on its own listener in the Prometheus (OpenMetrics)
//! text format, and the counters move with the traffic.

mod common;

use common::{sample, scrape, TestServer};
use serde_json::json;

#[actix_web::test]
async fn the_counters_move_with_the_traffic() {
    let server = TestServer::start().await;
    let before = scrape(&server).await;
    assert!(before.contains("# TYPE presence_invoke_duration_seconds histogram"));
    assert!(before.trim_end().ends_with("# EOF"));

    // Tokens issued and refused.
    let creds = |password: &str| json!({"groupid": 72, "credentials": {"username": "fred.demo", "password": password}});
    let (status, _) = server
        .post("/auth/token", None, None, &creds(common::PASSWORD))
        .await;
    assert_eq!(status, 200);
    let (status, _) = server
        .post("/auth/token", None, None, &creds("wrong"))
        .await;
    assert_eq!(status, 401);
    assert_eq!(
        server
            .status("/presence/72/visitors/v-1", "not-a-token")
            .await,
        401
    );

    // Sockets, invokes and a confirmation.
    let token = server.token("fred.demo", 72);
    let mut visitor = server.visitor("v-1", json!({})).await;
    let _agent = server.agent(&token).await;
    let call = server.invoke(&token, "v-1", json!({"func": "ping"}));
    let ((status, _), _) = tokio::join!(call, visitor.answer(json!("pong")));
    assert_eq!(status, 200);
    let call = server.invoke(&token, "v-1", json!({"func": "ping"}));
    let answer_failure = async {
        let invoke = visitor.recv().await;
        visitor
            .send(json!({"type":"result","id": invoke["id"],"ok": false,"error":"nope"}))
            .await;
    };
    let ((status, body), _) = tokio::join!(call, answer_failure);
    assert_eq!((status, body["ok"].as_bool()), (200, Some(false)));
    let (status, started) = server
        .post(
            "/presence/72/visitors/v-1/confirm",
            Some(&token),
            None,
            &json!({}),
        )
        .await;
    assert_eq!(status, 201, "{started}");
    let prompt = visitor.recv().await;
    assert_eq!(prompt["type"], "confirm");
    visitor
        .send(json!({"type":"confirm_answer","id": prompt["id"],"choice": started["answer"]}))
        .await;
    assert_eq!(visitor.recv().await["type"], "confirm_closed");

    let after = scrape(&server).await;
    let moved = |name: &str| sample(&after, name) - sample(&before, name);
    assert_eq!(
        moved(r#"presence_tokens_issued_total{credential="password"}"#),
        1.0
    );
    assert_eq!(
        moved(r#"presence_auth_failures_total{reason="invalid_credentials"}"#),
        1.0
    );
    assert_eq!(
        moved(r#"presence_auth_failures_total{reason="token_malformed"}"#),
        1.0
    );
    assert_eq!(
        sample(&after, r#"presence_open_connections{kind="visitor"}"#),
        1.0
    );
    assert_eq!(
        sample(&after, r#"presence_open_connections{kind="agent"}"#),
        1.0
    );
    assert_eq!(moved(r#"presence_invokes_total{outcome="ok"}"#), 1.0);
    assert_eq!(moved(r#"presence_invokes_total{outcome="failed"}"#), 1.0);
    assert_eq!(moved("presence_invoke_duration_seconds_count"), 2.0);
    assert_eq!(sample(&after, "presence_pending_invokes"), 0.0);
    assert_eq!(
        moved(r#"presence_confirmations_total{outcome="confirmed"}"#),
        1.0
    );
    assert_eq!(sample(&after, "presence_registry_visitors"), 1.0);
    assert_eq!(sample(&after, "presence_registry_connections"), 1.0);

    // Never on the public listener.
    assert_eq!(server.status_of("/metrics").await, 404);
}
