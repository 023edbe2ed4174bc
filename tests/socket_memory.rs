//! An idle socket gives back the buffers its busiest moment needed (the
//! two crates patched under `patches/`, see patches/README.md): a real
//! server process holds visitor sockets, each sends one 60 KiB message, and
//! once every one has been answered the server's resident memory per socket
//! is back within a few KiB of where it was. Without either patch each
//! socket kept a buffer of the message's size (64 KiB or more).

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

#[actix_web::test]
async fn a_large_message_does_not_stay_in_its_sockets_buffers() {
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
    let pid = node.child.id();
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
    let after = rss_kib(pid);
    let kept_per_socket = after.saturating_sub(idle) as f64 / SOCKETS as f64;
    eprintln!("RSS {idle} KiB idle, {after} KiB after: {kept_per_socket:.1} KiB kept per socket");
    assert!(
        kept_per_socket < 16.0,
        "each socket kept {kept_per_socket:.1} KiB after one {LARGE_BYTES}-byte message \
         (RSS {idle} KiB idle, {after} KiB after)"
    );

    // Every socket is still open and answering.
    for visitor in &mut visitors {
        visitor
            .send(json!({"type": "presence", "data": "none"}))
            .await;
        let answer = visitor.recv().await;
        assert_eq!(answer["code"], "bad_presence_data", "{answer}");
    }
}
