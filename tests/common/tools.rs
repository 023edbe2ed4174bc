//! The token tools of the real binary (`gen-token`, `check-token`,
//! `keys`), run off the test's runtime so in-process servers keep serving.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use tempfile::TempDir;

/// A config file of the test config on `data`, plus `extra` TOML.
pub struct ConfigFile {
    _dir: TempDir,
    path: PathBuf,
}

impl ConfigFile {
    pub fn new(data: &Path, extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.toml");
        std::fs::write(&path, super::config_toml(data) + extra).expect("write config");
        Self { _dir: dir, path }
    }

    /// The same, with `server` lines added to its `[server]` table.
    pub fn with_server(data: &Path, server: &str, extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.toml");
        let toml =
            super::config_toml(data).replacen("[server]\n", &format!("[server]\n{server}"), 1);
        std::fs::write(&path, toml + extra).expect("write config");
        Self { _dir: dir, path }
    }

    pub fn path(&self) -> &str {
        self.path.to_str().expect("utf-8 path")
    }
}

/// What one run of the binary printed.
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `presence-server args...` (with `stdin`) off the test's runtime,
/// so in-process servers keep serving meanwhile.
pub async fn tool(args: &[&str], stdin: Option<&str>) -> Ran {
    tool_with_env(args, stdin, &[]).await
}

/// [`tool`] with environment overrides.
pub async fn tool_with_env(args: &[&str], stdin: Option<&str>, env: &[(&str, String)]) -> Ran {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let (args, stdin): (Vec<String>, _) = (
        args.iter().map(|a| a.to_string()).collect(),
        stdin.map(str::to_owned),
    );
    let out: Output = actix_web::rt::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_presence-server"))
            .args(&args)
            .envs(env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let mut input = child.stdin.take().expect("stdin");
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).expect("write stdin");
        }
        drop(input);
        child.wait_with_output().expect("output")
    })
    .await
    .expect("join");
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).expect("utf-8"),
        stderr: String::from_utf8(out.stderr).expect("utf-8"),
    }
}

/// `gen-token` for `user` of group 72, which must succeed: the token.
pub async fn gen_token(config: &ConfigFile, user: &str, ttl: &str) -> String {
    let ran = tool(
        &[
            "gen-token",
            "--config",
            config.path(),
            "--group",
            "72",
            "--user",
            user,
            "--ttl",
            ttl,
        ],
        None,
    )
    .await;
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    ran.stdout.trim().to_owned()
}

/// `check-token`: the exit code, the first line, and the JSON report.
pub async fn check_token(config: &ConfigFile, token: &str) -> (Option<i32>, String, Value) {
    let ran = tool(&["check-token", "--config", config.path(), token], None).await;
    let (first, rest) = ran.stdout.split_once('\n').unwrap_or((&ran.stdout, ""));
    let report =
        serde_json::from_str(rest).unwrap_or_else(|e| panic!("{e}: {}{}", ran.stdout, ran.stderr));
    (ran.code, first.to_owned(), report)
}

/// `keys list --json`.
pub async fn list_keys(config: &ConfigFile) -> Vec<Value> {
    let ran = tool(&["keys", "list", "--json", "--config", config.path()], None).await;
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    serde_json::from_str(&ran.stdout).expect("json")
}

pub fn kid(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .expect("header")
        .kid
        .expect("kid")
}
