//! The visitor socket protocol: hello, presence, malformed input, size
//! limits, the hello timeout and the heartbeat.

mod common;

use awc::ws::{CloseCode, Message};
use common::{assert_closed, TestServer};
use serde_json::json;

#[actix_web::test]
async fn hello_is_welcomed_with_a_connection_id() {
    let server = TestServer::start().await;
    let mut ws = server.socket("/visitor/ws", None).await.expect("connect");
    ws.send(json!({"type":"hello","groupid":72,"visitorid":"fred@example.com","data":{"url":"https://shop/","title":"Shop"}}))
        .await;
    let welcome = ws.recv().await;
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["visitorid"], "fred@example.com");
    assert!(
        welcome["connection"].as_str().is_some_and(|c| c.len() >= 8),
        "{welcome}"
    );

    let token = server.token("fred.demo", 72);
    let (status, doc) = server
        .get("/presence/72/visitors/fred@example.com", Some(&token), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(doc["online"], true);
    assert_eq!(doc["connections"], 1);
    assert_eq!(doc["data"], json!({"url":"https://shop/","title":"Shop"}));
    assert!(doc["connected_at"]
        .as_u64()
        .is_some_and(|ms| ms > 1_700_000_000_000));
}

#[actix_web::test]
async fn bad_hellos_get_an_error_frame_and_close_1008() {
    let server = TestServer::start().await;
    let cases = [
        (
            json!({"type":"hello","groupid":999,"visitorid":"v"}),
            "unknown_group",
        ),
        (
            json!({"type":"hello","groupid":74,"visitorid":"v"}),
            "presence_not_subscribed",
        ),
        (
            json!({"type":"hello","groupid":72,"visitorid":"has space"}),
            "bad_visitor_id",
        ),
        (
            json!({"type":"hello","groupid":72,"visitorid":""}),
            "bad_visitor_id",
        ),
        (
            json!({"type":"hello","groupid":72,"visitorid":"x".repeat(129)}),
            "bad_visitor_id",
        ),
        (
            json!({"type":"hello","groupid":72,"visitorid":"v","data":{"nested":{"a":1}}}),
            "bad_presence_data",
        ),
        (
            json!({"type":"hello","groupid":72,"visitorid":"v","data":{"big":"x".repeat(5000)}}),
            "bad_presence_data",
        ),
        (
            json!({"type":"hello","groupid":"72","visitorid":"v"}),
            "bad_frame",
        ),
    ];
    for (hello, code) in cases {
        let mut ws = server.socket("/visitor/ws", None).await.expect("connect");
        ws.send(hello.clone()).await;
        assert_closed(&ws.closed().await, CloseCode::Policy, code);
    }
}

#[actix_web::test]
async fn frames_before_hello_close_with_1008() {
    let server = TestServer::start().await;
    for (text, code) in [
        (r#"{"type":"presence","data":{}}"#, "hello_required"),
        (r#"{"type":"result","id":"1","ok":true}"#, "hello_required"),
        ("not json", "malformed_json"),
        (r#"{"type":"dance"}"#, "unknown_type"),
    ] {
        let mut ws = server.socket("/visitor/ws", None).await.expect("connect");
        ws.send_text(text).await;
        assert_closed(&ws.closed().await, CloseCode::Policy, code);
    }
    let mut ws = server.socket("/visitor/ws", None).await.expect("connect");
    ws.send_message(Message::Binary(vec![1, 2, 3].into())).await;
    assert_closed(&ws.closed().await, CloseCode::Policy, "hello_required");
}

#[actix_web::test]
async fn malformed_frames_after_hello_get_errors_and_the_socket_stays_up() {
    let server = TestServer::start().await;
    let mut ws = server.visitor("v-1", json!({})).await;
    for (text, code) in [
        ("{oops", "malformed_json"),
        (r#"{"type":"teleport"}"#, "unknown_type"),
        (
            r#"{"type":"result","id":"nope","ok":true,"value":1}"#,
            "unknown_invoke",
        ),
        (r#"{"type":"presence","data":[1]}"#, "bad_presence_data"),
        (
            r#"{"type":"hello","groupid":72,"visitorid":"v-1"}"#,
            "already_joined",
        ),
        (r#"{"type":"presence"}"#, "bad_frame"),
    ] {
        ws.send_text(text).await;
        let err = ws.recv().await;
        assert_eq!(err["type"], "error", "{text}");
        assert_eq!(err["code"], code, "{text}");
    }
    ws.send_message(Message::Binary(vec![0; 4].into())).await;
    assert_eq!(ws.recv().await["code"], "binary_not_supported");

    // Still routable: an invoke round trip works.
    let token = server.token("fred.demo", 72);
    let call = server.invoke(&token, "v-1", json!({"func":"ping"}));
    let answer = ws.answer(json!("pong"));
    let ((status, body), _) = tokio::join!(call, answer);
    assert_eq!((status, body), (200, json!({"ok":true,"value":"pong"})));
}

#[actix_web::test]
async fn presence_updates_merge_into_the_stored_data() {
    let server = TestServer::start().await;
    let mut ws = server.visitor("v-1", json!({"url":"/a","title":"A"})).await;
    let token = server.token("fred.demo", 72);
    let mut agent = server.agent(&token).await;
    agent.send(json!({"type":"watch","visitorid":"v-1"})).await;
    assert_eq!(agent.recv().await["event"], "state");
    ws.send(json!({"type":"presence","data":{"url":"/b","cart":3}}))
        .await;
    let event = agent.recv().await;
    assert_eq!(event["event"], "presence");
    assert_eq!(event["data"], json!({"url":"/b","title":"A","cart":3}));
    let (_, doc) = server
        .get("/presence/72/visitors/v-1", Some(&token), None)
        .await;
    assert_eq!(doc["data"], json!({"url":"/b","title":"A","cart":3}));
}

#[actix_web::test]
async fn oversize_frames_close_with_1009() {
    let server = TestServer::start_with(|c| c.presence.max_message_bytes = 1024).await;
    let mut ws = server.visitor("v-1", json!({})).await;
    let big = format!(
        r#"{{"type":"presence","data":{{"x":"{}"}}}}"#,
        "y".repeat(2000)
    );
    ws.send_text(&big).await;
    assert_closed(&ws.closed().await, CloseCode::Size, "message_too_large");

    // Before hello too.
    let mut ws = server.socket("/visitor/ws", None).await.expect("connect");
    ws.send_text(&big).await;
    assert_closed(&ws.closed().await, CloseCode::Size, "message_too_large");
}

#[actix_web::test]
async fn fragmented_messages_are_reassembled_and_capped() {
    use actix_http::ws::Item;
    let server = TestServer::start_with(|c| c.presence.max_message_bytes = 1024).await;
    let mut ws = server.socket("/visitor/ws", None).await.expect("connect");
    let hello = r#"{"type":"hello","groupid":72,"visitorid":"frag"}"#;
    let (a, b) = hello.split_at(20);
    ws.send_message(Message::Continuation(Item::FirstText(
        a.as_bytes().to_vec().into(),
    )))
    .await;
    ws.send_message(Message::Continuation(Item::Last(
        b.as_bytes().to_vec().into(),
    )))
    .await;
    assert_eq!(ws.recv().await["type"], "welcome");
    let token = server.token("fred.demo", 72);
    let (_, doc) = server
        .get("/presence/72/visitors/frag", Some(&token), None)
        .await;
    assert_eq!(doc["online"], true);

    // Fragments adding up past the cap close with 1009 even though each
    // fragment is small.
    let mut ws = server.visitor("frag2", json!({})).await;
    ws.send_message(Message::Continuation(Item::FirstText(
        vec![b' '; 600].into(),
    )))
    .await;
    ws.send_message(Message::Continuation(Item::Last(vec![b' '; 600].into())))
        .await;
    assert_closed(&ws.closed().await, CloseCode::Size, "message_too_large");
}

#[actix_web::test]
async fn a_silent_socket_is_closed_after_the_hello_timeout() {
    let server = TestServer::start_with(|c| c.presence.hello_timeout_ms = 150).await;
    let mut ws = server.socket("/visitor/ws", None).await.expect("connect");
    assert_closed(&ws.closed().await, CloseCode::Policy, "hello_timeout");
}

#[actix_web::test]
async fn a_socket_that_never_answers_pings_is_dropped() {
    let server = TestServer::start_with(|c| {
        c.presence.ping_interval_ms = 50;
        c.presence.client_timeout_ms = 200;
    })
    .await;
    let mut ws = server.visitor("v-1", json!({})).await;
    // `closed` reads pings but never answers them.
    assert_closed(&ws.closed().await, CloseCode::Policy, "heartbeat_timeout");
    let token = server.token("fred.demo", 72);
    // The session deregistered before its close frame went out, so the
    // registry already counts no live connection (the visitor is in its
    // reconnect grace period).
    server
        .once_seen("no live connection", || async {
            let (_, doc) = server
                .get("/presence/72/visitors/v-1", Some(&token), None)
                .await;
            (doc["connections"] == 0).then_some(())
        })
        .await;
}

#[actix_web::test]
async fn a_socket_that_answers_pings_stays_up() {
    let server = TestServer::start_with(|c| {
        c.presence.ping_interval_ms = 30;
        c.presence.client_timeout_ms = 100;
    })
    .await;
    let mut ws = server.visitor("v-1", json!({})).await;
    let token = server.token("fred.demo", 72);
    // Answer pings (recv does) through many client timeouts, then prove the
    // socket still works with a round trip driven by a REST invoke whose own
    // timeout spans several heartbeats.
    let call = server.invoke(&token, "v-1", json!({"func":"slow","timeout_ms":5000}));
    let answer = async {
        let invoke = ws.recv().await;
        assert_eq!(invoke["type"], "invoke");
        // Keep answering pings for ~10 ping intervals by waiting for pings.
        for _ in 0..10 {
            ws.next_ping().await;
        }
        ws.send(json!({"type":"result","id":invoke["id"],"ok":true,"value":1}))
            .await;
    };
    let ((status, body), ()) = tokio::join!(call, answer);
    assert_eq!((status, body), (200, json!({"ok":true,"value":1})));
}

#[actix_web::test]
async fn a_flood_of_bad_frames_is_cut_off() {
    let server = TestServer::start().await;
    let mut ws = server.visitor("v-1", json!({})).await;
    // Sent without reading a single reply: the server must not keep
    // answering garbage (an amplifier that would also fill the send buffer
    // of a client that does not read).
    for _ in 0..(presence_server::ws_support::ERROR_BUDGET + 5) {
        ws.send_text("not json").await;
    }
    let closed = ws.closed().await;
    assert_closed(&closed, CloseCode::Policy, "too_many_errors");
    assert_eq!(
        closed.errors.len() as u32,
        presence_server::ws_support::ERROR_BUDGET + 1,
        "exactly the budget of error frames, then the closing one"
    );
}
