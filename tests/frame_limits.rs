//! The inbound frame guard over real sockets: a frame header declaring too
//! much is refused the moment it arrives, on both sockets and before hello
//! or auth; fragments are capped in total and in number; frames at the
//! limit pass; and what a socket buffers stays within `max_message_bytes`
//! plus a fixed overhead, measured by the server's own account.

mod common;

use actix_http::ws::{Item, OpCode};
use awc::ws::{CloseCode, Message};
use common::raw_ws::{client_frame, client_header, RawReader, RawWriter};
use common::{assert_closed, TestServer};
use presence_server::config::PresenceConfig;
use presence_server::ws_guard::{BUFFER_OVERHEAD_BYTES, MAX_FRAGMENTS};
use serde_json::json;

/// What a client streams after its huge header.
const STREAMED: usize = 64 << 20;

#[actix_web::test]
async fn a_huge_frame_header_is_refused_before_its_payload_on_both_sockets() {
    let server = TestServer::start().await;
    let max = PresenceConfig::default().max_message_bytes;
    for path in ["/visitor/ws", "/agent/ws"] {
        let (mut reader, mut writer) = server.raw_socket(path).await;
        // No hello, no auth: a text frame declaring 2^40 bytes, then as much
        // payload as the server will take while the answer is read.
        let stream = async {
            writer
                .write(&client_header(OpCode::Text, true, 1 << 40))
                .await
                .expect("header");
            writer.stream_zeros(STREAMED).await
        };
        let ((), closed) = tokio::join!(stream, reader.closed());
        assert_closed(&closed, CloseCode::Size, "message_too_large");
        // The server stopped reading: after actix's lingering close (it
        // discards for at most a second so the close frame is not lost to a
        // reset) the connection is gone.
        reader.eof().await;
    }
    let peak = server.running().socket_buffer_peak();
    assert!(
        peak <= max + BUFFER_OVERHEAD_BYTES,
        "a socket buffered {peak} bytes"
    );
}

#[actix_web::test]
async fn fragments_adding_up_past_the_limit_are_refused_at_the_header() {
    let server = TestServer::start_with(|c| c.presence.max_message_bytes = 1024).await;
    let (mut reader, mut writer) = raw_visitor(&server, "frag").await;
    // 600 bytes, then only the header of 600 more: the total is known to be
    // over before any of the second fragment's payload is sent.
    let mut bytes = client_frame(OpCode::Text, false, &[b' '; 600]);
    bytes.extend_from_slice(&client_header(OpCode::Continue, true, 600));
    writer.write(&bytes).await.expect("fragments");
    assert_closed(&reader.closed().await, CloseCode::Size, "message_too_large");
}

#[actix_web::test]
async fn a_message_of_more_than_1024_fragments_is_refused() {
    let server = TestServer::start().await;
    // 1024 one-byte fragments make a hello (JSON may start with spaces).
    let hello = json!({"type":"hello","groupid":72,"visitorid":"many"}).to_string();
    let text = format!("{}{hello}", " ".repeat(MAX_FRAGMENTS - hello.len()));
    let mut ws = server.socket("/visitor/ws", None).await.expect("connect");
    send_fragments(&mut ws, text.as_bytes()).await;
    assert_eq!(ws.recv().await["type"], "welcome");

    // 1025 fragments, far under the size limit, are one too many.
    send_fragments(&mut ws, &[b' '; MAX_FRAGMENTS + 1]).await;
    assert_closed(&ws.closed().await, CloseCode::Size, "message_too_large");
}

/// A raw visitor socket that has said hello and been welcomed.
async fn raw_visitor(server: &TestServer, visitorid: &str) -> (RawReader, RawWriter) {
    let (mut reader, mut writer) = server.raw_socket("/visitor/ws").await;
    let hello = json!({"type":"hello","groupid":72,"visitorid":visitorid}).to_string();
    writer
        .write(&client_frame(OpCode::Text, true, hello.as_bytes()))
        .await
        .expect("hello");
    assert_eq!(reader.recv().await["type"], "welcome");
    (reader, writer)
}

/// Sends `bytes` as a text message of one-byte fragments.
async fn send_fragments(ws: &mut common::WsClient, bytes: &[u8]) {
    let (first, rest) = bytes.split_first().expect("bytes");
    let (last, middle) = rest.split_last().expect("two bytes or more");
    ws.send_message(Message::Continuation(Item::FirstText(vec![*first].into())))
        .await;
    for byte in middle {
        ws.send_message(Message::Continuation(Item::Continue(vec![*byte].into())))
            .await;
    }
    ws.send_message(Message::Continuation(Item::Last(vec![*last].into())))
        .await;
}

#[actix_web::test]
async fn frames_at_the_limit_pass_and_a_socket_buffers_at_most_the_limit_and_a_fixed_overhead() {
    const MAX: usize = 4096;
    let server = TestServer::start_with(|c| c.presence.max_message_bytes = MAX).await;
    let mut ws = server.socket("/visitor/ws", None).await.expect("connect");
    // A hello of exactly the limit, in one frame.
    let hello = json!({"type":"hello","groupid":72,"visitorid":"edge"}).to_string();
    ws.send_text(&format!("{}{hello}", " ".repeat(MAX - hello.len())))
        .await;
    assert_eq!(ws.recv().await["type"], "welcome");
    // A presence message of exactly the limit in two fragments, with a ping
    // between them.
    let presence = json!({"type":"presence","data":{"url":"/edge"}}).to_string();
    let padded = format!("{}{presence}", " ".repeat(MAX - presence.len()));
    let (a, b) = padded.as_bytes().split_at(MAX - 10);
    ws.send_message(Message::Continuation(Item::FirstText(a.to_vec().into())))
        .await;
    ws.send_message(Message::Ping(vec![7; 125].into())).await;
    ws.send_message(Message::Continuation(Item::Last(b.to_vec().into())))
        .await;
    // Answered in order: the pong, then the session key asked for after the
    // presence message, so that message was taken, not refused.
    ws.send(json!({"type":"session_key"})).await;
    assert_eq!(ws.recv().await["type"], "session_key");
    let token = server.token("fred.demo", 72);
    let (_, doc) = server
        .get("/presence/72/visitors/edge", Some(&token), None)
        .await;
    assert_eq!(doc["data"], json!({"url":"/edge"}));

    let peak = server.running().socket_buffer_peak();
    assert!(peak >= MAX, "the account saw {peak} bytes");
    assert!(
        peak <= MAX + BUFFER_OVERHEAD_BYTES,
        "a socket buffered {peak} bytes"
    );

    // One byte over, in one frame or in fragments, is refused.
    ws.send_text(&" ".repeat(MAX + 1)).await;
    assert_closed(&ws.closed().await, CloseCode::Size, "message_too_large");
}

#[actix_web::test]
async fn control_frames_over_125_bytes_close_with_1002() {
    let server = TestServer::start().await;
    for path in ["/visitor/ws", "/agent/ws"] {
        let (mut reader, mut writer) = server.raw_socket(path).await;
        // Only the header of a 126-byte ping.
        writer
            .write(&client_header(OpCode::Ping, true, 126))
            .await
            .expect("header");
        assert_closed(&reader.closed().await, CloseCode::Protocol, "bad_frame");
    }
}

#[actix_web::test]
async fn many_frames_in_one_write_are_handed_to_the_parser_one_at_a_time() {
    const MAX: usize = 1024;
    let server = TestServer::start_with(|c| {
        c.presence.max_message_bytes = MAX;
        c.presence.inbound_frame_burst = 100_000;
    })
    .await;
    let (mut reader, mut writer) = raw_visitor(&server, "burst").await;
    // About 100 KiB of small frames in one write, then a session key asked
    // for after them all.
    let presence = json!({"type":"presence","data":{"url":"/".repeat(60)}}).to_string();
    let mut bytes = client_frame(OpCode::Text, true, presence.as_bytes()).repeat(1000);
    bytes.extend_from_slice(&client_frame(
        OpCode::Text,
        true,
        br#"{"type":"session_key"}"#,
    ));
    writer.write(&bytes).await.expect("frames");
    assert_eq!(reader.recv().await["type"], "session_key");
    let peak = server.running().socket_buffer_peak();
    assert!(
        peak <= MAX + BUFFER_OVERHEAD_BYTES,
        "a socket buffered {peak} bytes of small frames"
    );
}

#[actix_web::test]
async fn frames_out_of_message_order_are_refused_at_the_header() {
    let max = 4096;
    let server = TestServer::start_with(|c| c.presence.max_message_bytes = max).await;
    // A whole new message while a fragmented one is open: the parser would
    // only refuse it after buffering it beside the open fragment.
    let (mut reader, mut writer) = server.raw_socket("/visitor/ws").await;
    let mut bytes = client_frame(OpCode::Text, false, &vec![b' '; max]);
    bytes.extend_from_slice(&client_frame(OpCode::Text, true, &vec![b' '; max]));
    writer.write(&bytes).await.expect("frames");
    assert_closed(&reader.closed().await, CloseCode::Protocol, "bad_frame");
    // A continuation with nothing to continue.
    let (mut reader, mut writer) = server.raw_socket("/visitor/ws").await;
    let orphan = client_frame(OpCode::Continue, true, &vec![b' '; max]);
    writer.write(&orphan).await.expect("frame");
    assert_closed(&reader.closed().await, CloseCode::Protocol, "bad_frame");
    // A continuation declaring a length that would overflow a sum.
    let (mut reader, mut writer) = server.raw_socket("/visitor/ws").await;
    let mut bytes = client_frame(OpCode::Text, false, &[b' '; 1000]);
    bytes.extend_from_slice(&client_header(OpCode::Continue, true, u64::MAX - 100));
    writer.write(&bytes).await.expect("frames");
    assert_closed(&reader.closed().await, CloseCode::Size, "message_too_large");
    let peak = server.running().socket_buffer_peak();
    assert!(
        peak <= max + BUFFER_OVERHEAD_BYTES,
        "a socket buffered {peak} bytes"
    );
    // The server is still serving.
    let _ok = server.visitor("after", json!({})).await;
}
