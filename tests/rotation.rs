//! Signing-key rotation through the real server, driven by a manual clock.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{TestServer, PASSWORD};
use presence_server::clock::ManualClock;
use serde_json::json;

async fn password_token(server: &TestServer) -> String {
    let (status, body) = server
        .post(
            "/auth/token",
            None,
            None,
            &json!({"groupid":72,"duration":7200,"credentials":{"username":"fred.demo","password":PASSWORD}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["token"].as_str().expect("token").to_owned()
}

fn kid(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .expect("header")
        .kid
        .expect("kid")
}

#[actix_web::test]
async fn rotation_keeps_live_tokens_across_restarts_and_purges_old_keys() {
    let clock = Arc::new(ManualClock::starting_now());
    let server = TestServer::start_with_clock(clock.clone()).await;
    let lookup = "/presence/72/visitors/v-1";
    let old = password_token(&server).await;

    clock.advance(Duration::from_secs(7200));
    let done = server.running().housekeeping().expect("housekeeping");
    let rotated = done
        .keys
        .rotated_to
        .expect("rotated after key_rotation_secs");
    let new = password_token(&server).await;
    assert_eq!(kid(&new), rotated);
    assert_ne!(kid(&old), kid(&new));
    // The old token was issued with a 2 h lifetime and it is now at its
    // end, inside the leeway: still accepted, by the old key.
    assert_eq!(server.status(lookup, &old).await, 200);
    assert_eq!(server.status(lookup, &new).await, 200);

    // A restart (same data, same clock) keeps both keys.
    let dir = server.shutdown().await;
    let server = TestServer::start_in(dir, |_| {}, clock.clone()).await;
    assert_eq!(server.status(lookup, &old).await, 200);
    assert_eq!(server.status(lookup, &new).await, 200);

    // Past retirement + token_max_secs + leeway the old key is purged.
    clock.advance(Duration::from_secs(7200 + 6));
    let done = server.running().housekeeping().expect("housekeeping");
    assert!(done.keys.purged.contains(&kid(&old)), "{done:?}");
    let tokens = server.running().tokens();
    assert_eq!(
        tokens.verify(&old),
        Err(presence_server::token::TokenError::UnknownKey)
    );
    assert_eq!(server.status(lookup, &old).await, 401);
}
