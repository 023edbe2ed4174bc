//! Split roles in cluster mode: one auth node and two presence nodes on a
//! real Redis. The presence nodes share the key ring and hand it to the
//! auth node; revocations travel over the cluster's bus.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::{eventually, free_port, join, wait_for_nodes, RedisServer, TEST_LEASE_MS};
use common::roles::{auth_role, first_token, kid_of, password_token, presence_role};
use common::{TestServer, ORIGIN_72, WAIT};
use presence_server::clock::SystemClock;
use serde_json::json;

#[actix_web::test]
async fn one_auth_node_and_two_presence_nodes_share_keys_and_revocations() {
    let redis = RedisServer::start();
    let url = redis.url();
    let auth_port = free_port();
    let auth_internal = format!("http://127.0.0.1:{auth_port}");
    let mut presence = Vec::new();
    for _ in 0..2 {
        let (url, auth_internal) = (url.clone(), auth_internal.clone());
        let port = free_port();
        presence.push(
            TestServer::start_in(
                Arc::new(tempfile::tempdir().expect("tempdir")),
                move |c| {
                    join(c, &url, TEST_LEASE_MS);
                    presence_role(c, port, &[auth_internal]);
                },
                Arc::new(SystemClock),
            )
            .await,
        );
    }
    let auth = TestServer::start_in(
        Arc::new(tempfile::tempdir().expect("tempdir")),
        |c| {
            join(c, &url, TEST_LEASE_MS);
            auth_role(c, auth_port, &[]);
        },
        Arc::new(SystemClock),
    )
    .await;
    wait_for_nodes(&auth, 3).await;
    let token = first_token(&auth, "fred.demo").await;
    // Both presence nodes hold the one shared ring the auth node signs with.
    for node in &presence {
        assert!(node.running().tokens().verify(&token).is_ok());
        let (status, body) = node
            .get(
                "/presence/72/visitors/v-nobody",
                Some(&token),
                Some(ORIGIN_72),
            )
            .await;
        assert_ne!(status, 401, "{body}");
    }
    let (_, body) = auth.get("/healthz", None, None).await;
    assert_eq!(
        body["signing_key"]["kid"].as_str(),
        Some(kid_of(&token).as_str())
    );
    // The auth node never generated a key of its own.
    assert_eq!(
        redis.command(&["HLEN", "presence:signing_keys"]).as_deref(),
        Some(":1\r\n")
    );

    // Revoking on the auth node closes a socket on the second presence node.
    let mut agent = presence[1].agent(&token).await;
    let jti = presence[1]
        .running()
        .tokens()
        .verify(&token)
        .expect("valid")
        .jti;
    let started = Instant::now();
    let (status, body) = auth
        .post(
            "/auth/revoke",
            Some(&token),
            Some(ORIGIN_72),
            &json!({"jti": jti}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    tokio::time::timeout(Duration::from_secs(1), agent.closed())
        .await
        .expect("closed within 1 s");
    assert!(started.elapsed() < Duration::from_secs(1));
    for node in &presence {
        let (status, _) = node
            .get(
                "/presence/72/visitors/v-nobody",
                Some(&token),
                Some(ORIGIN_72),
            )
            .await;
        assert_eq!(status, 401);
    }
    // And a fresh token still comes from the auth node.
    let (status, body) = password_token(&auth, "ada.admin").await;
    assert_eq!(status, 200, "{body}");
    eventually(
        WAIT,
        "both presence nodes in the auth node's view",
        || async {
            let (_, body) = presence[0].get("/healthz", None, None).await;
            (body["handover"][0]["current"] == true).then_some(())
        },
    )
    .await;
}
