//! An idle socket gives back the buffers its busiest moment needed (the
//! two crates patched under `patches/`, see patches/README.md): a real
//! server process holds visitor sockets, each sends one 60 KiB message, and
//! once every one has been answered the server's resident memory per socket
//! is back within a few KiB of where it was; the same when the server
//! sends each socket one 60 KiB frame (the write buffer). Without the
//! patches each socket kept a buffer of the message's size (64 KiB or more).

mod common;

use common::cluster::ProcessNode;
use serde_json::json;

const SOCKETS: usize = 300;
const LARGE_BYTES: usize = 60 * 1024;

/// The resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in proc status")
}

/// A server process holding `SOCKETS` welcomed visitors, and a client of it.
/// (The data directory goes with the returned `TempDir`.)
async fn node_with_visitors() -> (
    tempfile::TempDir,
    ProcessNode,
    common::TestServer,
    Vec<common::WsClient>,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = common::config_toml(dir.path());
    let node = ProcessNode::start(
        &toml,
        &[
            ("PRESENCE__SERVER__MAX_SOCKETS_PER_IP", "5000".to_owned()),
            (
                "PRESENCE__SERVER__MAX_CONNECTIONS_PER_IP",
                "5000".to_owned(),
            ),
        ],
    );
    let mut client = node.client();
    // awc pools at most 100 connections by default; these sockets stay open.
    client.http = awc::Client::builder()
        .connector(awc::Connector::new().limit(0))
        .timeout(std::time::Duration::from_secs(10))
        .finish();
    let mut visitors = Vec::with_capacity(SOCKETS);
    for n in 0..SOCKETS {
        visitors.push(
            client
                .visitor(&format!("mem-{n}"), json!({"url": "/"}))
                .await,
        );
    }
    (dir, node, client, visitors)
}

/// Fails unless the RSS kept per socket since `idle` is under 16 KiB.
fn assert_given_back(pid: u32, idle: u64, what: &str) {
    let after = rss_kib(pid);
    let kept_per_socket = after.saturating_sub(idle) as f64 / SOCKETS as f64;
    eprintln!(
        "{what}: RSS {idle} KiB idle, {after} KiB after: {kept_per_socket:.1} KiB kept per socket"
    );
    assert!(
        kept_per_socket < 16.0,
        "{what}: each socket kept {kept_per_socket:.1} KiB (RSS {idle} KiB idle, {after} KiB after)"
    );
}

#[actix_web::test]
async fn a_large_message_does_not_stay_in_its_sockets_buffers() {
    let (_dir, node, _client, mut visitors) = node_with_visitors().await;
    let pid = node.child.id();
    let idle = rss_kib(pid);

    // One at a time, so that what a socket gives back is what the next one
    // takes: the figure is what each socket keeps afterwards.
    let blob = "x".repeat(LARGE_BYTES);
    for visitor in &mut visitors {
        visitor
            .send(json!({"type": "presence", "data": {"blob": blob}}))
            .await;
        // Over the 4 KiB presence cap: refused, and the socket stays.
        let answer = visitor.recv().await;
        assert_eq!(answer["type"], "error", "{answer}");
        assert_eq!(answer["code"], "bad_presence_data", "{answer}");
    }
    assert_given_back(pid, idle, "after one large message received");

    // Every socket is still open and answering.
    for visitor in &mut visitors {
        visitor
            .send(json!({"type": "presence", "data": "none"}))
            .await;
        let answer = visitor.recv().await;
        assert_eq!(answer["code"], "bad_presence_data", "{answer}");
    }
}

#[actix_web::test]
async fn a_large_frame_sent_to_a_socket_does_not_stay_in_its_write_buffer() {
    let (_dir, node, client, mut visitors) = node_with_visitors().await;
    let pid = node.child.id();
    let (status, token) = common::roles::password_token(&client, "fred.demo").await;
    assert_eq!(status, 200, "{token}");
    let mut console = client.agent(token["token"].as_str().expect("token")).await;
    let idle = rss_kib(pid);

    // Each visitor is sent one invoke whose frame is nearly 60 KiB: the
    // server's write buffer for that socket grows to hold it, and must be
    // freed once flushed.
    let blob = "y".repeat(LARGE_BYTES - 4096);
    for (n, visitor) in visitors.iter_mut().enumerate() {
        console
            .send(
                json!({"type": "invoke", "id": format!("big-{n}"), "visitorid": format!("mem-{n}"),
                         "func": "showTerms", "args": {"blob": blob}}),
            )
            .await;
        let invoke = visitor.recv().await;
        assert_eq!(invoke["type"], "invoke", "{invoke}");
        assert_eq!(
            invoke["args"]["blob"].as_str().map(str::len),
            Some(blob.len())
        );
        visitor
            .send(json!({"type": "result", "id": invoke["id"], "ok": true, "value": n}))
            .await;
        let result = console.recv().await;
        assert_eq!(result["type"], "result", "{result}");
        assert_eq!(result["value"], n, "{result}");
    }
    assert_given_back(pid, idle, "after one large frame sent");
}
