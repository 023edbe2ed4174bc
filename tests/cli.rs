//! The operator commands of the binary.

use std::io::Write;
use std::path::Path;
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

/// The shipped demo config.
const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.toml");

/// `check-config` on `path`.
fn check_config(path: &Path) -> Command {
    let mut command = binary();
    command.args(["check-config", "--config"]).arg(path);
    command
}

/// Runs `command`, which must succeed, and returns its stdout.
fn succeeds(command: &mut Command) -> String {
    let out = command.output().expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

#[test]
fn check_config_accepts_the_demo_and_names_bad_keys() {
    succeeds(&mut check_config(Path::new(DEMO)));

    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(DEMO)
            .expect("demo")
            .replace("ping_interval_ms = 25000", "ping_interval_ms = 45000"),
    )
    .expect("write");
    let out = check_config(&bad).output().expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("presence.ping_interval_ms"));

    // The environment overrides the file.
    succeeds(check_config(&bad).env("PRESENCE__PRESENCE__PING_INTERVAL_MS", "20000"));
}

/// A PHC string of `password` with argon2id m=24 MiB, t=3, p=1: costlier
/// than the recommended parameters.
fn costly_hash(password: &str) -> String {
    use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
    let params = argon2::Params::new(24 * 1024, 3, 1, None).expect("params");
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password(password.as_bytes(), &SaltString::generate(&mut OsRng))
        .expect("hash")
        .to_string()
}

#[test]
fn check_config_warns_about_hashes_off_the_recommended_parameters() {
    let plain = succeeds(&mut check_config(Path::new(DEMO)));
    assert!(!plain.contains("warning:"), "{plain}");
    assert!(
        plain.contains("unknown users are checked against argon2id v=19 m=19456,t=2,p=1"),
        "{plain}"
    );

    let text = std::fs::read_to_string(DEMO).expect("demo");
    let ada = text
        .lines()
        .filter(|l| l.starts_with("password_hash = "))
        .nth(1)
        .expect("ada's hash line")
        .to_owned();
    let costly = costly_hash("ada-admin-pass");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("costly.toml");
    std::fs::write(
        &path,
        text.replace(&ada, &format!("password_hash = \"{costly}\"")),
    )
    .expect("write");
    let out = succeeds(&mut check_config(&path));
    let warning = out
        .lines()
        .find(|l| l.starts_with("warning: "))
        .unwrap_or_else(|| panic!("no warning in {out}"));
    assert!(
        warning.contains("groups[0].users[1].password_hash (group 72, user \"ada.admin\")")
            && warning.contains("m=24576,t=3,p=1"),
        "{warning}"
    );
    let digest = costly.rsplit('$').next().expect("digest");
    let salt = costly.rsplit('$').nth(1).expect("salt");
    assert!(
        !out.contains(digest) && !out.contains(salt),
        "never the hash: {out}"
    );
    assert!(
        out.contains("unknown users are checked against argon2id v=19 m=24576,t=3,p=1"),
        "the dummy takes the costliest parameters: {out}"
    );
}

#[test]
fn openapi_prints_the_document_the_server_serves() {
    let printed = succeeds(binary().arg("openapi"));
    let doc: serde_json::Value = serde_json::from_str(&printed).expect("JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    let served: serde_json::Value =
        serde_json::from_str(presence_server::openapi_json()).expect("JSON");
    assert_eq!(doc, served);
    assert!(doc["paths"]["/presence/{groupid}/visitors/{visitorid}/invoke"]["post"].is_object());
}
