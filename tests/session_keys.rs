//! Session keys: a visitor reads a code to the agent, who finds it with it.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::TestServer;
use presence_server::clock::ManualClock;
use serde_json::{json, Value};

async fn ask_key(visitor: &mut common::WsClient) -> String {
    visitor.send(json!({"type":"session_key"})).await;
    let frame = visitor.recv().await;
    assert_eq!(frame["type"], "session_key", "{frame}");
    let key = frame["key"].as_str().expect("key").to_owned();
    assert!(
        key.len() == 6 && key.bytes().all(|b| b.is_ascii_digit()),
        "{key}"
    );
    key
}

#[actix_web::test]
async fn an_agent_finds_the_visitor_by_its_key_until_it_expires() {
    let clock = Arc::new(ManualClock::starting_now());
    let server = TestServer::start_with_clock(clock.clone()).await;
    let token = server.token("fred.demo", 72);
    let visitor = server.visitor("v-123", json!({"url":"/checkout"})).await;
    let mut visitor = visitor;
    let key = ask_key(&mut visitor).await;

    let (status, doc) = server
        .get(&format!("/presence/72/sessions/{key}"), Some(&token), None)
        .await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(
        (doc["visitorid"].as_str(), doc["online"].as_bool()),
        (Some("v-123"), Some(true))
    );
    assert_eq!(doc["data"]["url"], "/checkout");

    // It survives a page navigation.
    visitor.close().await;
    let _next = server.visitor("v-123", json!({"url":"/next"})).await;
    let (status, _) = server
        .get(&format!("/presence/72/sessions/{key}"), Some(&token), None)
        .await;
    assert_eq!(status, 200);

    // Another group's agent cannot use it.
    let other = server.token("olga", 73);
    let (status, body) = server
        .get(&format!("/presence/72/sessions/{key}"), Some(&other), None)
        .await;
    assert_eq!((status, body["error"].as_str()), (403, Some("wrong_group")));
    let (status, body) = server
        .get(&format!("/presence/73/sessions/{key}"), Some(&other), None)
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("session_key_not_found"))
    );

    clock.advance(Duration::from_secs(1200));
    let (status, body) = server
        .get(&format!("/presence/72/sessions/{key}"), Some(&token), None)
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("session_key_not_found")),
        "expired"
    );
}

#[actix_web::test]
async fn misses_are_limited_per_token_and_per_client() {
    let server = TestServer::start().await;
    let token = server.token("fred.demo", 72);
    let mut visitor = server.visitor("v-1", json!({})).await;
    let key = ask_key(&mut visitor).await;
    let miss = if key == "000000" { "000001" } else { "000000" };

    for i in 0..10 {
        // Hits do not count against the limit.
        let (status, _) = server
            .get(&format!("/presence/72/sessions/{key}"), Some(&token), None)
            .await;
        assert_eq!(status, 200, "hit before miss {i}");
        let probe = if i % 3 == 0 {
            "12ab56".to_owned()
        } else {
            miss.to_owned()
        };
        let (status, _) = server
            .get(
                &format!("/presence/72/sessions/{probe}"),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(status, 404, "miss {i}");
    }
    // Ten misses in the minute: the next lookup is refused, hit or miss.
    let mut resp = server
        .get_response(&format!("/presence/72/sessions/{miss}"), Some(&token), None)
        .await;
    assert_eq!(resp.status().as_u16(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["error"], "too_many_attempts");
    // A fresh token from the same client is limited too (per IP), even for
    // a key that exists.
    let fresh = server.token("ada.admin", 72);
    let (status, _) = server
        .get(&format!("/presence/72/sessions/{key}"), Some(&fresh), None)
        .await;
    assert_eq!(status, 429);
}

/// Asks for a key and returns the whole `session_key` frame.
async fn ask_frame(visitor: &mut common::WsClient) -> Value {
    visitor.send(json!({"type":"session_key"})).await;
    visitor.recv().await
}

async fn find(server: &TestServer, token: &str, key: &str) -> (u16, Value) {
    server
        .get(&format!("/presence/72/sessions/{key}"), Some(token), None)
        .await
}

#[actix_web::test]
async fn a_connection_keeps_one_key_until_it_expires_and_each_tab_has_its_own() {
    let clock = Arc::new(ManualClock::starting_now());
    let server = TestServer::start_with_clock(clock.clone()).await;
    let token = server.token("fred.demo", 72);
    let mut tab1 = server.visitor("v-1", json!({})).await;
    let first = ask_frame(&mut tab1).await;
    assert_eq!(first["type"], "session_key", "{first}");
    clock.advance(Duration::from_secs(600));
    assert_eq!(ask_frame(&mut tab1).await, first, "same key, same expiry");

    let mut tab2 = server.visitor("v-1", json!({})).await;
    let second = ask_frame(&mut tab2).await;
    assert_ne!(second["key"], first["key"], "another tab holds its own key");
    for frame in [&first, &second] {
        let (status, doc) = find(&server, &token, frame["key"].as_str().expect("key")).await;
        assert_eq!((status, doc["visitorid"].as_str()), (200, Some("v-1")));
    }

    clock.advance(Duration::from_secs(600));
    let renewed = ask_frame(&mut tab1).await;
    assert_eq!(renewed["type"], "session_key", "{renewed}");
    assert!(
        renewed["expires"].as_u64() > first["expires"].as_u64(),
        "a fresh key once the old one expired: {renewed} after {first}"
    );
}

#[actix_web::test]
async fn minting_is_limited_per_group_and_the_socket_stays_open() {
    let clock = Arc::new(ManualClock::starting_now());
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let server = TestServer::start_in(
        dir,
        |c| c.presence.session_key_mints_per_minute = 2,
        clock.clone(),
    )
    .await;
    let mut first = server.visitor("v-1", json!({})).await;
    let mut second = server.visitor("v-2", json!({})).await;
    let mut third = server.visitor("v-3", json!({})).await;
    let key = ask_key(&mut first).await;
    ask_key(&mut second).await;

    let refused = ask_frame(&mut third).await;
    assert_eq!(
        (refused["type"].as_str(), refused["code"].as_str()),
        (Some("error"), Some("rate_limited")),
        "{refused}"
    );
    assert_eq!(
        ask_key(&mut first).await,
        key,
        "a held key is not a new mint"
    );

    // Another group has its own budget.
    let mut elsewhere = server.socket("/visitor/ws", None).await.expect("connect");
    elsewhere
        .send(json!({"type":"hello","groupid":73,"visitorid":"v-9"}))
        .await;
    assert_eq!(elsewhere.recv().await["type"], "welcome");
    ask_key(&mut elsewhere).await;

    // Two a minute: one mint refills in 30 s, on the same socket.
    clock.advance(Duration::from_secs(30));
    ask_key(&mut third).await;
}

#[actix_web::test]
async fn a_key_stops_resolving_once_its_visitor_is_offline_after_the_grace_period() {
    let server = TestServer::start_with(|c| c.presence.reconnect_grace_ms = 150).await;
    let token = server.token("fred.demo", 72);
    let mut agent = server.agent(&token).await;
    agent.send(json!({"type":"watch","visitorid":"v-1"})).await;
    assert_eq!(agent.recv().await["event"], "state");
    let mut visitor = server.visitor("v-1", json!({})).await;
    assert_eq!(agent.recv().await["event"], "connected");
    let key = ask_key(&mut visitor).await;
    assert_eq!(find(&server, &token, &key).await.0, 200);

    visitor.close().await;
    assert_eq!(agent.recv().await["event"], "disconnected");
    let (status, body) = find(&server, &token, &key).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("session_key_not_found")),
        "offline after grace: {body}"
    );

    // Coming back starts a new online period; the old key stays dead.
    let _back = server.visitor("v-1", json!({})).await;
    assert_eq!(agent.recv().await["event"], "connected");
    assert_eq!(find(&server, &token, &key).await.0, 404);
}

#[actix_web::test]
async fn the_agent_socket_finds_sessions_under_the_same_miss_limit() {
    let server = TestServer::start().await;
    let token = server.token("fred.demo", 72);
    let mut visitor = server.visitor("v-9", json!({"url":"/help"})).await;
    let key = ask_key(&mut visitor).await;
    let miss = if key == "000000" { "000001" } else { "000000" };
    let mut agent = server.agent(&token).await;

    agent
        .send(json!({"type":"find_session","id":"f1","key": key}))
        .await;
    let found = agent.recv().await;
    assert_eq!(
        (found["type"].as_str(), found["id"].as_str()),
        (Some("lookup"), Some("f1")),
        "{found}"
    );
    assert_eq!(
        (found["visitorid"].as_str(), found["online"].as_bool()),
        (Some("v-9"), Some(true))
    );
    assert_eq!(found["data"]["url"], "/help");

    // Bad frames are bad requests that echo the id.
    agent.send(json!({"type":"find_session","id":"f2"})).await;
    let bad = agent.recv().await;
    assert_eq!(
        (bad["code"].as_str(), bad["id"].as_str()),
        (Some("bad_request"), Some("f2"))
    );

    for i in 0..10 {
        let probe = if i % 2 == 0 { miss } else { "12ab56" };
        agent
            .send(json!({"type":"find_session","id": format!("m{i}"),"key": probe}))
            .await;
        let frame = agent.recv().await;
        assert_eq!(
            (frame["code"].as_str(), frame["id"].as_str()),
            (
                Some("session_key_not_found"),
                Some(format!("m{i}").as_str())
            ),
            "{frame}"
        );
    }
    agent
        .send(json!({"type":"find_session","id":"late","key": key}))
        .await;
    let limited = agent.recv().await;
    assert_eq!(limited["code"], "too_many_attempts", "{limited}");
    // The limit is the REST endpoint's: the same client is refused there.
    let (status, _) = server
        .get(&format!("/presence/72/sessions/{key}"), Some(&token), None)
        .await;
    assert_eq!(status, 429);
}

#[actix_web::test]
async fn a_key_survives_a_restart_when_its_visitor_comes_back_within_the_grace_period() {
    let clock = Arc::new(ManualClock::starting_now());
    let grace = |c: &mut presence_server::config::Config| c.presence.reconnect_grace_ms = 5_000;
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let server = TestServer::start_in(dir.clone(), grace, clock.clone()).await;
    let mut visitor = server.visitor("v-1", json!({})).await;
    let key = ask_key(&mut visitor).await;
    let late = ask_key(&mut server.visitor("v-2", json!({})).await).await;
    drop(visitor);
    server.shutdown().await;

    let server = TestServer::start_in(dir.clone(), grace, clock.clone()).await;
    let token = server.token("fred.demo", 72);
    assert_eq!(
        find(&server, &token, &key).await.0,
        404,
        "not while its visitor is away"
    );
    let _back = server.visitor("v-1", json!({})).await;
    let (status, doc) = find(&server, &token, &key).await;
    assert_eq!(
        (status, doc["visitorid"].as_str()),
        (200, Some("v-1")),
        "{doc}"
    );

    // v-2 comes back only after the grace period: its period is a new one.
    clock.advance(Duration::from_millis(5_001));
    let _v2 = server.visitor("v-2", json!({})).await;
    let (status, body) = find(&server, &token, &late).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("session_key_not_found")),
        "{body}"
    );
    assert_eq!(
        find(&server, &token, &key).await.0,
        200,
        "v-1's key lives on"
    );
}

#[actix_web::test]
async fn a_burst_of_requests_on_one_socket_gets_one_key() {
    let server = TestServer::start().await;
    let mut visitor = server.visitor("v-burst", json!({})).await;
    for _ in 0..16 {
        visitor.send(json!({"type":"session_key"})).await;
    }
    let mut keys = std::collections::HashSet::new();
    for _ in 0..16 {
        let frame = visitor.recv().await;
        assert_eq!(frame["type"], "session_key", "{frame}");
        keys.insert(frame["key"].as_str().expect("key").to_owned());
    }
    assert_eq!(keys.len(), 1, "one live key per connection: {keys:?}");
}

#[actix_web::test]
async fn a_key_of_an_ended_online_period_stays_dead_after_a_restart() {
    let grace = |c: &mut presence_server::config::Config| c.presence.reconnect_grace_ms = 150;
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let server = TestServer::start_in(
        dir.clone(),
        grace,
        Arc::new(presence_server::clock::SystemClock),
    )
    .await;
    let token = server.token("fred.demo", 72);
    let mut agent = server.agent(&token).await;
    agent
        .send(json!({"type":"watch","visitorid":"v-old"}))
        .await;
    assert_eq!(agent.recv().await["event"], "state");
    let mut visitor = server.visitor("v-old", json!({})).await;
    assert_eq!(agent.recv().await["event"], "connected");
    let key = ask_key(&mut visitor).await;
    visitor.close().await;
    assert_eq!(agent.recv().await["event"], "disconnected");
    // Nobody looked the key up; the housekeeping pass drops it.
    server.running().housekeeping().expect("housekeeping");
    server.shutdown().await;

    let server =
        TestServer::start_in(dir, grace, Arc::new(presence_server::clock::SystemClock)).await;
    let token = server.token("fred.demo", 72);
    let _back = server.visitor("v-old", json!({})).await;
    let (status, body) = find(&server, &token, &key).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("session_key_not_found")),
        "{body}"
    );
}
