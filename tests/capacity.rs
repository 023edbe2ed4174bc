//! The connection limit: at `max_connections` sockets a new upgrade gets a
//! clean 503 before the upgrade, existing sockets and REST keep working, and
//! a closed socket makes room at once.

mod common;

use common::TestServer;
use serde_json::{json, Value};

/// A WebSocket upgrade request, answered without upgrading when refused.
async fn upgrade(server: &TestServer, path: &str) -> (u16, Option<String>, Value) {
    common::upgrade_request(&server.http, &server.url(path), &[]).await
}

#[actix_web::test]
async fn sockets_beyond_the_limit_get_a_clean_503_and_room_comes_back() {
    let server = TestServer::start_with(|c| c.server.max_connections = 3).await;
    assert_eq!(server.running().connections(), (0, 3));
    let token = server.token("fred.demo", 72);
    let mut first = server.visitor("v-1", json!({})).await;
    let second = server.visitor("v-2", json!({})).await;
    let mut agent = server.agent(&token).await;
    assert_eq!(server.running().connections(), (3, 3));

    for path in ["/visitor/ws", "/agent/ws"] {
        let (status, retry_after, body) = upgrade(&server, path).await;
        assert_eq!(status, 503, "{path}: {body}");
        assert_eq!(body["error"], "at_capacity", "{body}");
        assert_eq!(retry_after.as_deref(), Some("1"));
    }
    let refused = server.socket("/visitor/ws", None).await;
    assert!(refused.is_err(), "the client sees a refusal, not a hang");

    // Existing sockets and REST keep working at the limit.
    let (status, doc) = server
        .get("/presence/72/visitors/v-1", Some(&token), None)
        .await;
    assert_eq!((status, doc["online"].as_bool()), (200, Some(true)));
    let call = server.invoke(&token, "v-1", json!({"func": "ping"}));
    let ((status, result), _) = tokio::join!(call, first.answer(json!("pong")));
    assert_eq!((status, result["value"].as_str()), (200, Some("pong")));
    agent
        .send(json!({"type":"lookup","id":"l1","visitorid":"v-2"}))
        .await;
    assert_eq!(agent.recv().await["online"], true);

    // A socket that closes makes room at once: its slot is given back
    // before the close is answered.
    second.close().await;
    assert_eq!(server.running().connections(), (2, 3));
    let _third = server.visitor("v-3", json!({})).await;
    let (status, _, body) = upgrade(&server, "/visitor/ws").await;
    assert_eq!((status, body["error"].as_str()), (503, Some("at_capacity")));
    agent.close().await;
    let _agent_again = server.agent(&token).await;
    assert_eq!(server.running().connections(), (3, 3));
}

/// The real binary under a 2,000-file limit: sockets stop 768 short of it
/// (512 for files, 256 kept for plain HTTP), and actix's per-worker caps
/// split the rest so the workers together never exceed it.
#[test]
fn the_binary_splits_the_descriptor_room_across_its_workers() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("presence.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nbind = \"127.0.0.1:0\"\nmetrics_bind = \"\"\ndata_dir = \"{}\"\n\
             workers = 2\nlog_format = \"json\"\n\n[[groups]]\nid = 72\nname = \"demo\"\n",
            dir.path().join("data").display()
        ),
    )
    .expect("config");
    let mut child = std::process::Command::new("bash")
        .args(["-c", "ulimit -n 2000 && exec \"$0\" serve --config \"$1\""])
        .arg(env!("CARGO_BIN_EXE_presence-server"))
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let listening = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .filter_map(|line| serde_json::from_str::<Value>(&line).ok())
        .find(|line| line["message"] == "listening");
    let _ = child.kill();
    let _ = child.wait();
    let listening = listening.expect("a listening line");
    assert_eq!(listening["open_file_limit"], 2000, "{listening}");
    assert_eq!(
        listening["max_connections"],
        2000 - 512 - 256,
        "{listening}"
    );
    assert_eq!(
        listening["connections_per_worker"],
        (2000 - 512) / 2,
        "{listening}"
    );
}
