//! Graceful shutdown: in-process, and for the real binary on SIGTERM.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use awc::ws::CloseCode;
use common::TestServer;
use serde_json::{json, Value};

#[actix_web::test]
async fn shutdown_closes_every_socket_with_1001_and_flushes() {
    let server = TestServer::start().await;
    let token = server.token("fred.demo", 72);
    let mut visitor = server.visitor("v-1", json!({})).await;
    let mut agent = server.agent(&token).await;
    let addr = server.addr;

    let (dir, visitor_closed, agent_closed) =
        tokio::join!(server.shutdown(), visitor.closed(), agent.closed());
    assert_eq!(
        visitor_closed.code,
        Some(CloseCode::Away),
        "{visitor_closed:?}"
    );
    assert_eq!(agent_closed.code, Some(CloseCode::Away), "{agent_closed:?}");

    // No longer accepting.
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still accepting after shutdown"
    );
    // The store was flushed and released: it reopens with the key ring.
    let store = presence_server::Store::open(dir.path()).expect("store reopens");
    assert_eq!(store.signing_keys().expect("keys").len(), 1);
}

/// The released binary, started as an operator would.
#[test]
fn sigterm_stops_the_binary_gracefully_within_30_seconds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config_path = dir.path().join("presence.toml");
    let hash = presence_server::password::hash_password("pw").expect("hash");
    let mut file = std::fs::File::create(&config_path).expect("config");
    write!(
        file,
        r#"
[server]
bind = "127.0.0.1:0"
metrics_bind = "127.0.0.1:0"
data_dir = "{data}"
log_format = "json"
shutdown_timeout_secs = 10

[[groups]]
id = 72
name = "demo"
presence = true

[[groups.users]]
username = "fred.demo"
password_hash = "{hash}"
"#,
        data = dir.path().join("data").display()
    )
    .expect("write config");

    let mut child = Command::new(env!("CARGO_BIN_EXE_presence-server"))
        .args(["serve", "--config"])
        .arg(&config_path)
        // Log everything, request logs included, so a leaked token would show.
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let (lines_tx, lines) = std::sync::mpsc::channel::<Value>();
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                let _ = lines_tx.send(v);
            }
        }
    });
    let seen = std::cell::RefCell::new(Vec::<Value>::new());
    let wait_for = |message: &str| loop {
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("log line");
        seen.borrow_mut().push(line.clone());
        if line["message"] == message {
            return line;
        }
    };
    let listening = wait_for("listening");
    let addr = listening["addr"].as_str().expect("addr").to_owned();

    let closed = actix_web::rt::System::new().block_on(async move {
        let client = awc::Client::default();
        // Issue a token and use it, rightly and wrongly, so that the log has
        // every chance to show it.
        let mut resp = client
            .post(format!("http://{addr}/auth/token"))
            .send_json(
                &json!({"groupid":72,"credentials":{"username":"fred.demo","password":"pw"}}),
            )
            .await
            .expect("token response");
        let body: Value = resp.json().await.expect("json");
        let token = body["token"].as_str().expect("token").to_owned();
        for bearer in [token.clone(), format!("{token}x")] {
            let resp = client
                .get(format!(
                    "http://{addr}/presence/72/visitors/v-1?jwt={token}"
                ))
                .insert_header(("Authorization", format!("Bearer {bearer}")))
                .send()
                .await
                .expect("lookup");
            assert!(resp.status().as_u16() == 200 || resp.status().as_u16() == 401);
        }
        let (_, mut ws) = client
            .ws(format!("ws://{addr}/visitor/ws"))
            .connect()
            .await
            .expect("connect");
        use futures_util::{SinkExt, StreamExt};
        ws.send(awc::ws::Message::Text(
            json!({"type":"hello","groupid":72,"visitorid":"v-1"})
                .to_string()
                .into(),
        ))
        .await
        .expect("hello");
        let welcome = ws.next().await.expect("frame").expect("ok");
        assert!(matches!(welcome, awc::ws::Frame::Text(_)));

        let started = Instant::now();
        let pid = child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(status.success());
        let code = loop {
            match tokio::time::timeout(Duration::from_secs(30), ws.next())
                .await
                .expect("close in time")
            {
                Some(Ok(awc::ws::Frame::Close(reason))) => break reason.map(|r| r.code),
                Some(Ok(_)) => {}
                other => panic!("expected a close frame, got {other:?}"),
            }
        };
        (code, started, child, token)
    });
    let (code, started, child, token) = closed;
    assert_eq!(code, Some(CloseCode::Away));
    let (exited_tx, exited) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut child = child;
        let _ = exited_tx.send(child.wait());
    });
    let status = exited
        .recv_timeout(Duration::from_secs(30).saturating_sub(started.elapsed()))
        .expect("did not exit within 30 s")
        .expect("wait");
    assert!(status.success(), "{status:?}");
    wait_for("shutdown complete");
    let signature = token.rsplit('.').next().expect("signature");
    for line in seen
        .borrow()
        .iter()
        .chain(lines.try_iter().collect::<Vec<_>>().iter())
    {
        let text = line.to_string();
        assert!(!text.contains(signature), "a token reached the log: {text}");
    }
}
