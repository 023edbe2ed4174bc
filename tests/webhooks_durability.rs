//! Presence webhooks survive a `kill -9` of the sender: events in the
//! outbox (tried, not acknowledged) are all delivered after a restart on
//! the same data directory. The real binary, a real HTTP receiver.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};

use common::webhook_receiver::{verify, Answer, Receiver, Recorded};
use serde_json::{json, Value};

const SECRET: &str = "whsec_test_0123456789";

fn of_visitor<'a>(seen: &'a [Recorded], visitor: &str) -> Vec<&'a Recorded> {
    seen.iter()
        .filter(|r| r.json()["visitorid"] == visitor)
        .collect()
}

/// The binary, with a config file.
struct Node {
    child: Child,
    addr: String,
}

fn start_node(config_path: &std::path::Path) -> Node {
    let mut child = Command::new(env!("CARGO_BIN_EXE_presence-server"))
        .args(["serve", "--config"])
        .arg(config_path)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if v["message"] == "listening" {
                    let _ = tx.send(v["addr"].as_str().unwrap_or_default().to_owned());
                }
            }
        }
    });
    let addr = rx.recv_timeout(common::WAIT).expect("listening");
    Node { child, addr }
}

#[actix_web::test]
async fn kill_9_of_the_sender_loses_no_event_in_the_outbox() {
    let receiver = Receiver::start().await;
    receiver.answer_by_default(Answer::Status(500));
    let dir = tempfile::tempdir().expect("tempdir");
    let config_path = dir.path().join("presence.toml");
    let mut file = std::fs::File::create(&config_path).expect("config");
    write!(
        file,
        r#"
[server]
bind = "127.0.0.1:0"
data_dir = "{data}"
log_format = "json"

[webhooks]
backoff_base_ms = 50
backoff_max_ms = 200

[[groups]]
id = 72
name = "demo"
presence = true
webhooks = [{{url = "{url}", events = ["visitor_online", "visitor_offline"], secret = "{SECRET}"}}]
"#,
        data = dir.path().join("data").display(),
        url = receiver.url,
    )
    .expect("write config");
    let mut node = start_node(&config_path);
    let client = awc::Client::default();
    let mut sockets = Vec::new();
    for i in 0..5 {
        let (_, mut ws) = client
            .ws(format!("ws://{}/visitor/ws", node.addr))
            .connect()
            .await
            .expect("connect");
        use futures_util::{SinkExt, StreamExt};
        let hello = json!({"type": "hello", "groupid": 72, "visitorid": format!("v-{i}")});
        ws.send(awc::ws::Message::Text(hello.to_string().into()))
            .await
            .expect("hello");
        let welcome = ws.next().await.expect("frame").expect("ok");
        assert!(matches!(welcome, awc::ws::Frame::Text(_)));
        sockets.push(ws);
    }
    // Each event was tried, so each is in the outbox (written before any
    // attempt); none was acknowledged.
    let seen = receiver
        .wait_for("an attempt of each event", |s| {
            (0..5).all(|i| !of_visitor(s, &format!("v-{i}")).is_empty())
        })
        .await;
    let ids: std::collections::BTreeSet<String> = seen
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 5);
    let status = Command::new("kill")
        .args(["-9", &node.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    node.child.wait().expect("reaped");
    drop(sockets);

    receiver.answer_by_default(Answer::Status(200));
    let mut node = start_node(&config_path);
    let seen = receiver
        .wait_for("every event delivered after the restart", |s| {
            let delivered: std::collections::BTreeSet<String> = s
                .iter()
                .filter(|r| r.delivered())
                .map(|r| r.json()["id"].as_str().unwrap().to_owned())
                .collect();
            ids.is_subset(&delivered)
        })
        .await;
    for r in seen.iter().filter(|r| r.delivered()) {
        assert!(verify(
            SECRET,
            &r.headers["presence-signature"],
            &r.body,
            300
        ));
    }
    node.child.kill().expect("stop");
    node.child.wait().expect("reaped");
}
