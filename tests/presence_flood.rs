//! Presence floods and frame rates: a connection's presence updates reach
//! the registry coalesced, at most one per `min_presence_interval_ms`, so
//! flooding sockets cannot hold up another visitor's hello; and every
//! socket's inbound frames pass a token bucket, beyond which it is closed
//! with 1008 `rate_limited`. The flood is measured by counting registry
//! messages, never by timing.

mod common;

use awc::ws::{CloseCode, Message};
use common::{assert_closed, TestServer, WsClient};
use futures_util::future::join_all;
use serde_json::json;

/// Flooding sockets, and presence frames each sends in each half.
const FLOODERS: usize = 10;
const HALF_FLOOD: usize = 1000;

async fn presence_updates(server: &TestServer) -> u64 {
    server
        .running()
        .stats()
        .await
        .expect("stats")
        .presence_updates
}

/// Sends `count` presence frames without reading anything.
async fn flood(ws: &mut WsClient, count: usize) {
    for n in 0..count {
        ws.send(json!({"type":"presence","data":{"n":n}})).await;
    }
}

#[actix_web::test]
async fn a_presence_flood_reaches_the_registry_once_per_interval_and_cannot_hold_up_a_hello() {
    // An interval longer than the test: each flooding connection's first
    // update goes at once and every later one is held, so the registry's
    // count is exact.
    let server = TestServer::start_with(|c| c.presence.min_presence_interval_ms = 60_000).await;
    let mut flooders = Vec::new();
    for i in 0..FLOODERS {
        flooders.push(server.visitor(&format!("flood-{i}"), json!({})).await);
    }
    join_all(flooders.iter_mut().map(|ws| flood(ws, HALF_FLOOD))).await;

    // Another visitor says hello between the two halves of the flood. By
    // the time it is welcomed the registry has handled at most one update
    // per flooding connection: that is all the hello could wait behind.
    let mut other = server.visitor("bystander", json!({"url":"/"})).await;
    let before_welcome = presence_updates(&server).await;
    assert!(
        before_welcome <= FLOODERS as u64,
        "{before_welcome} presence updates for {FLOODERS} flooding connections"
    );

    join_all(flooders.iter_mut().map(|ws| flood(ws, HALF_FLOOD))).await;
    // Frames on one socket are handled in order: a session key answered
    // after the flood means every flood frame was taken.
    for ws in &mut flooders {
        ws.send(json!({"type":"session_key"})).await;
    }
    for ws in &mut flooders {
        assert_eq!(ws.recv().await["type"], "session_key");
    }
    assert_eq!(
        presence_updates(&server).await,
        FLOODERS as u64,
        "{} presence frames reached the registry as one update per connection",
        FLOODERS * 2 * HALF_FLOOD
    );
    // The bystander is unaffected: its own update goes at once.
    other
        .send(json!({"type":"presence","data":{"url":"/next"}}))
        .await;
    other.send(json!({"type":"session_key"})).await;
    assert_eq!(other.recv().await["type"], "session_key");
    assert_eq!(presence_updates(&server).await, FLOODERS as u64 + 1);
}

#[actix_web::test]
async fn coalesced_presence_keeps_every_key_and_the_latest_values() {
    let server = TestServer::start_with(|c| c.presence.min_presence_interval_ms = 1_000).await;
    let token = server.token("fred.demo", 72);
    let mut agent = server.agent(&token).await;
    let mut ws = server.visitor("v-1", json!({"title":"Shop"})).await;
    agent.send(json!({"type":"watch","visitorid":"v-1"})).await;
    assert_eq!(agent.recv().await["event"], "state");

    for data in [
        json!({"url":"/a"}),
        json!({"url":"/b","cart":1}),
        json!({"scroll":50}),
        json!({"url":"/c"}),
    ] {
        ws.send(json!({"type":"presence","data":data})).await;
    }
    // The first goes at once; the other three arrive as one update.
    let first = agent.recv().await;
    assert_eq!(first["data"], json!({"title":"Shop","url":"/a"}));
    let merged = agent.recv().await;
    assert_eq!(merged["event"], "presence");
    assert_eq!(
        merged["data"],
        json!({"title":"Shop","url":"/c","cart":1,"scroll":50})
    );
    assert_eq!(presence_updates(&server).await, 2);
}

#[actix_web::test]
async fn a_held_update_is_not_lost_when_the_socket_closes() {
    let server = TestServer::start_with(|c| c.presence.min_presence_interval_ms = 60_000).await;
    let mut ws = server.visitor("v-1", json!({})).await;
    ws.send(json!({"type":"presence","data":{"url":"/a"}}))
        .await;
    ws.send(json!({"type":"presence","data":{"url":"/b"}}))
        .await;
    ws.send(json!({"type":"session_key"})).await;
    assert_eq!(ws.recv().await["type"], "session_key");
    ws.close().await;
    // The registry's mailbox is a queue: once it answers stats, it has
    // handled what the session sent before its close.
    presence_updates(&server).await;
    let token = server.token("fred.demo", 72);
    let (_, doc) = server
        .get("/presence/72/visitors/v-1", Some(&token), None)
        .await;
    assert_eq!(doc["data"], json!({"url":"/b"}));
}

#[actix_web::test]
async fn a_socket_beyond_its_frame_rate_is_closed_with_1008_rate_limited() {
    let server = TestServer::start_with(|c| {
        c.presence.inbound_frames_per_sec = 1;
        c.presence.inbound_frame_burst = 16;
    })
    .await;
    // Pings count like any frame: within the burst all is well...
    let mut ws = server.socket("/visitor/ws", None).await.expect("connect");
    for _ in 0..14 {
        ws.send_message(Message::Ping(vec![].into())).await;
    }
    ws.send(json!({"type":"hello","groupid":72,"visitorid":"v-1"}))
        .await;
    assert_eq!(ws.recv().await["type"], "welcome");

    // ...and beyond it the socket is closed, before hello or auth too.
    let visitor = server.visitor("v-2", json!({})).await;
    let before_auth = server.socket("/agent/ws", None).await.expect("connect");
    for mut ws in [visitor, before_auth] {
        for _ in 0..40 {
            ws.send_message(Message::Ping(vec![].into())).await;
        }
        assert_closed(&ws.closed().await, CloseCode::Policy, "rate_limited");
    }
}
