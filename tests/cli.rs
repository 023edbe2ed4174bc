//! The operator commands of the binary.

use std::io::Write;
use std::process::{Command, Stdio};

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_presence-server"))
}

#[test]
fn hash_password_prints_a_phc_string_that_verifies() {
    let mut child = binary()
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"correct horse battery\n")
        .expect("write");
    let out = child.wait_with_output().expect("output");
    assert!(out.status.success());
    let phc = String::from_utf8(out.stdout).expect("utf8");
    let phc = phc.trim();
    assert!(phc.starts_with("$argon2id$"), "{phc}");
    let checker = presence_server::password::PasswordChecker::new().expect("checker");
    assert!(checker.check("correct horse battery", Some(phc)));
    assert!(!checker.check("correct horse battery\n", Some(phc)));
}

#[test]
fn hash_password_refuses_empty_input() {
    let out = binary()
        .arg("hash-password")
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty password"));
}

#[test]
fn check_config_accepts_the_demo_and_names_bad_keys() {
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.toml");
    let out = binary()
        .args(["check-config", "--config", demo])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(demo)
            .expect("demo")
            .replace("ping_interval_ms = 25000", "ping_interval_ms = 45000"),
    )
    .expect("write");
    let out = binary()
        .args(["check-config", "--config"])
        .arg(&bad)
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("presence.ping_interval_ms"));

    let out = binary()
        .args(["check-config", "--config"])
        .arg(&bad)
        .env("PRESENCE__PRESENCE__PING_INTERVAL_MS", "20000")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "the environment overrides the file: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
