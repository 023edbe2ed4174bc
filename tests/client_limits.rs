//! Security review, items 3, 4 and 5: no client can hold the server's
//! descriptors or sockets for itself, and behind a trusted proxy the
//! limits apply to the forwarded client, never to a header anyone can send.

mod common;

use std::net::SocketAddr;

use awc::ws::CloseCode;
use common::{TestServer, WAIT};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A raw TCP connection to `addr` from the loopback address `from`.
async fn connect_from(from: &str, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{from}:0").parse().expect("source address"))
        .expect("bind");
    socket.connect(addr).await.expect("connect")
}

/// Reads until the server closes the connection; returns what it sent.
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut text = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut text))
        .await
        .expect("the server closes the connection")
        .expect("read");
    String::from_utf8_lossy(&text).into_owned()
}

/// Sends a POST's headers promising a body that never comes.
async fn post_without_body(stream: &mut TcpStream) {
    stream
        .write_all(
            b"POST /auth/token HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n",
        )
        .await
        .expect("write");
}

/// A `GET /healthz` on a raw connection kept alive; the status line. Its
/// answer shows the server has accepted (and counted) the connection.
async fn healthz_kept_alive(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("write");
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    let read_head = async {
        while !seen.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).await.expect("read");
            seen.push(byte[0]);
        }
    };
    tokio::time::timeout(WAIT, read_head)
        .await
        .expect("an answer");
    let head = String::from_utf8_lossy(&seen).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.expect("body");
    head.lines().next().unwrap_or_default().to_owned()
}

/// A `GET /healthz` on a raw connection, answered and closed.
async fn healthz(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    read_to_close(stream).await
}

/// A WebSocket upgrade with extra headers; the status and error body.
async fn upgrade(server: &TestServer, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let (status, _, body) = common::upgrade_request(&server.http, &server.url(path), headers).await;
    (status, body)
}

/// A visitor socket whose handshake carries `X-Forwarded-For: xff`.
async fn visitor_via(server: &TestServer, id: &str, xff: &str) -> common::WsClient {
    let (_, framed) = server
        .http
        .ws(format!("ws://{}/visitor/ws", server.addr))
        .header("X-Forwarded-For", xff)
        .connect()
        .await
        .expect("connect");
    let mut ws = common::WsClient::from_framed(framed);
    ws.send(json!({"type":"hello","groupid":72,"visitorid":id}))
        .await;
    assert_eq!(ws.recv().await["type"], "welcome");
    ws
}

#[actix_web::test]
async fn a_body_that_never_arrives_gets_408_and_the_connection_closes() {
    let server = TestServer::start_with(|c| c.server.request_body_timeout_ms = 300).await;
    let mut stream = connect_from("127.0.0.1", server.addr).await;
    post_without_body(&mut stream).await;
    let answer = read_to_close(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"request_timeout\""), "{answer}");
    // A chunked body cut short, and a request with a stray Upgrade header,
    // get the same: only real WebSocket handshakes are exempt.
    for (head, expected) in [
        (
            "POST /auth/token HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\n\r\n5\r\n{\"gro",
            "HTTP/1.1 408",
        ),
        (
            "POST /auth/token HTTP/1.1\r\nHost: t\r\nUpgrade: x\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n",
            "HTTP/1.1 408",
        ),
        (
            "POST /auth/token HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n",
            "HTTP/1.1 408",
        ),
        // Not a socket route: answered, and the unread body closes it.
        (
            "GET /healthz HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n\
             Content-Length: 100\r\n\r\n",
            "HTTP/1.1 200",
        ),
    ] {
        let mut stream = connect_from("127.0.0.1", server.addr).await;
        stream.write_all(head.as_bytes()).await.expect("write");
        let answer = read_to_close(&mut stream).await;
        assert!(answer.starts_with(expected), "{head:?}: {answer}");
    }
    // A body that does arrive in time is read as usual.
    let (status, _) = server
        .post(
            "/auth/token",
            None,
            None,
            &json!({"groupid":72,"credentials":{}}),
        )
        .await;
    assert_eq!(status, 400);
}

#[actix_web::test]
async fn one_address_cannot_hold_every_connection() {
    let server = TestServer::start_with(|c| {
        c.server.max_connections_per_ip = 5;
        c.server.max_sockets_per_ip = 5;
        c.server.request_body_timeout_ms = 60_000;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..5 {
        let mut stream = connect_from("127.0.0.1", server.addr).await;
        // Answered first, so the server has counted it before the next.
        assert_eq!(healthz_kept_alive(&mut stream).await, "HTTP/1.1 200 OK");
        post_without_body(&mut stream).await;
        held.push(stream);
    }
    let mut sixth = connect_from("127.0.0.1", server.addr).await;
    let answer = healthz(&mut sixth).await;
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(answer.contains("\"too_many_connections\""), "{answer}");
    // Everyone else is served.
    let mut other = connect_from("127.0.0.2", server.addr).await;
    assert!(healthz(&mut other).await.starts_with("HTTP/1.1 200"));
    // A closed connection gives its slot back once the server sees it go.
    drop(held.pop());
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut again = connect_from("127.0.0.1", server.addr).await;
        if healthz(&mut again).await.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slot never came back"
        );
    }
}

#[actix_web::test]
async fn sockets_are_capped_per_address_and_per_group() {
    let server = TestServer::start_with(|c| {
        c.server.max_sockets_per_ip = 3;
        c.groups[1].max_visitors = Some(2);
    })
    .await;
    let token = server.token("fred.demo", 72);
    let _a = server.visitor("v-1", json!({})).await;
    let _b = server.visitor("v-2", json!({})).await;
    let _agent = server.agent(&token).await;
    for path in ["/visitor/ws", "/agent/ws"] {
        let (status, body) = upgrade(&server, path, &[]).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (429, Some("too_many_connections"))
        );
    }
    assert_eq!(server.running().connections().0, 3, "refusals hold no slot");

    // Group 73 holds two visitor sockets, from anywhere.
    let elsewhere = awc::Client::builder()
        .connector(awc::Connector::new().local_address("127.0.0.2".parse().expect("ip")))
        .timeout(WAIT)
        .finish();
    let visitor_73 = |id: &'static str| {
        let client = elsewhere.clone();
        let addr = server.addr;
        async move {
            let (_, framed) = client
                .ws(format!("ws://{addr}/visitor/ws"))
                .connect()
                .await
                .expect("connect");
            let mut ws = common::WsClient::from_framed(framed);
            ws.send(json!({"type":"hello","groupid":73,"visitorid":id}))
                .await;
            ws
        }
    };
    let mut first = visitor_73("o-1").await;
    assert_eq!(first.recv().await["type"], "welcome");
    let mut second = visitor_73("o-2").await;
    assert_eq!(second.recv().await["type"], "welcome");
    let mut third = visitor_73("o-3").await;
    let closed = third.closed().await;
    common::assert_closed(&closed, CloseCode::Again, "too_many_connections");
    // Naming the group in the URL refuses before the upgrade.
    let url = format!("http://{}/visitor/ws?groupid=73", server.addr);
    let (status, _, body) = common::upgrade_request(&elsewhere, &url, &[]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (429, Some("too_many_connections"))
    );
    first.close().await;
    let mut fourth = visitor_73("o-4").await;
    assert_eq!(fourth.recv().await["type"], "welcome", "room came back");
}

#[actix_web::test]
async fn behind_a_trusted_proxy_limits_follow_the_forwarded_client() {
    let server = TestServer::start_with(|c| {
        c.server.trusted_proxies = vec!["127.0.0.1/32".into()];
        c.server.max_connections_per_ip = 2;
        c.server.max_sockets_per_ip = 2;
        c.auth.lockout_failures = 3;
        c.auth.lockout_client_failures = 3;
    })
    .await;
    // The proxy itself is exempt from the connection cap; its clients are
    // capped one by one.
    let _a1 = visitor_via(&server, "v-1", "203.0.113.1").await;
    let _a2 = visitor_via(&server, "v-2", "198.51.100.7, 203.0.113.1").await;
    let (status, _) = upgrade(
        &server,
        "/visitor/ws",
        &[("X-Forwarded-For", "203.0.113.1")],
    )
    .await;
    assert_eq!(status, 429, "203.0.113.1 holds two");
    let _b = visitor_via(&server, "v-3", "203.0.113.2").await;

    let fail = |xff: &'static str, user: &'static str| {
        let server = &server;
        async move {
            let mut resp = server
                .http
                .post(server.url("/auth/token"))
                .insert_header(("X-Forwarded-For", xff))
                .send_json(&json!({"groupid":72,"credentials":{"username":user,"password":"x"}}))
                .await
                .expect("response");
            let _ = resp.body().await;
            resp.status().as_u16()
        }
    };
    for user in ["a", "b", "c"] {
        assert_eq!(fail("203.0.113.1", user).await, 401);
    }
    assert_eq!(fail("203.0.113.1", "d").await, 429, "that client is locked");
    assert_eq!(fail("203.0.113.2", "d").await, 401, "another client is not");
    // A forged left-most entry does not move the client.
    assert_eq!(fail("192.0.2.1, 203.0.113.1", "e").await, 429);
    let admin = server.admin_token("ada.admin", 72);
    let (_, page) = server
        .get("/admin/72/audit?username=a", Some(&admin), None)
        .await;
    assert_eq!(page["records"][0]["remote"], "203.0.113.1", "{page}");
}

#[actix_web::test]
async fn without_trusted_proxies_forwarding_headers_are_ignored() {
    let server = TestServer::start_with(|c| {
        c.auth.lockout_failures = 3;
        c.auth.lockout_client_failures = 3;
    })
    .await;
    for (i, xff) in ["203.0.113.1", "203.0.113.2", "203.0.113.3"]
        .iter()
        .enumerate()
    {
        let mut resp = server
            .http
            .post(server.url("/auth/token"))
            .insert_header(("X-Forwarded-For", *xff))
            .insert_header(("Forwarded", format!("for={xff}")))
            .send_json(
                &json!({"groupid":72,"credentials":{"username":format!("u{i}"),"password":"x"}}),
            )
            .await
            .expect("response");
        let _ = resp.body().await;
        assert_eq!(resp.status().as_u16(), 401);
    }
    let (status, _) = server
        .post(
            "/auth/token",
            None,
            None,
            &json!({"groupid":72,"credentials":{"username":"u9","password":"x"}}),
        )
        .await;
    assert_eq!(status, 429, "all three counted against the real peer");
    let admin = server.admin_token("ada.admin", 72);
    let (_, page) = server
        .get("/admin/72/audit?username=u0", Some(&admin), None)
        .await;
    assert_eq!(page["records"][0]["remote"], "127.0.0.1", "{page}");
}
