//! The server under test: its config, and starting, killing and stopping
//! the real release binary on one data directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// The Origin the visitor sockets send (on the group's list).
pub const ORIGIN: &str = "http://crash.test";
/// The SSO issuer and audience of the group.
pub const SSO_ISSUER: &str = "crash-sso";
pub const SSO_AUDIENCE: &str = "crash-presence";
/// How long a visitor may take to come back: restored session keys must
/// be claimed within it.
pub const RECONNECT_GRACE_MS: u64 = 15_000;
/// A fresh signing key every second, so that most rounds rotate.
const KEY_ROTATION_SECS: u64 = 1;
/// How long a start may take before the run fails.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// `fred-demo-pass` and `ada-admin-pass`, as in config/default.toml.
const FRED_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$kNchUnckXSKUY0Y0peX21g$LLi58WDGDZLCRb50ldfUwgbLeu8ZVMUooy3SAOXMQzw";
const ADA_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$/pCWn4OWFJYdqgXcUUTR/Q$5fTgWuDIk18prQJd839EiXH9E1EU9/UZb63UC/Nd3k4";
/// The group's login-key secret.
pub const API_KEY: &str = "crash-api-key-0123456789";

/// What every start shares.
pub struct Setup {
    binary: PathBuf,
    config: PathBuf,
    log: PathBuf,
}

/// One running server process.
pub struct Running {
    child: Child,
    pub url: String,
    pub log: PathBuf,
}

impl Setup {
    /// Writes the config under `root` (data in `root/data`).
    pub fn new(binary: &Path, root: &Path, sso_public_key: &Path) -> Result<Self, String> {
        if !binary.is_file() {
            return Err(format!(
                "{} not found: build it with cargo build --release",
                binary.display()
            ));
        }
        let public_key = std::fs::canonicalize(sso_public_key)
            .map_err(|e| format!("{}: {e}", sso_public_key.display()))?;
        std::fs::create_dir_all(root).map_err(|e| e.to_string())?;
        let config = root.join("presence.toml");
        let toml = format!(
            r#"[server]
bind = "127.0.0.1:0"
data_dir = "{data}"
public_url = "http://127.0.0.1:8080"
metrics_bind = ""
workers = 2
shutdown_timeout_secs = 5

[presence]
reconnect_grace_ms = {RECONNECT_GRACE_MS}
session_key_mints_per_minute = 100000

[auth]
key_rotation_secs = {KEY_ROTATION_SECS}
token_max_secs = 7200
lockout_client_failures = 100000

[[groups]]
id = 72
name = "crash"
presence = true
api_key = "{API_KEY}"
origins = ["{ORIGIN}"]
invoke_allow = ["*"]
visitor_identity_secret = "crash-visitor-identity-secret-0123456789abcdef"
visitor_identity_issuer = "crash-shop"

[groups.sso]
issuer = "{SSO_ISSUER}"
audience = "{SSO_AUDIENCE}"
public_keys = ["{key}"]
algorithms = ["RS256"]
auto_provision = true

[[groups.users]]
username = "fred.demo"
password_hash = "{FRED_HASH}"
partner_user_id = "fred"
role = "agent"
name = "Fred Agent"

[[groups.users]]
username = "ada.admin"
password_hash = "{ADA_HASH}"
partner_user_id = "ada"
role = "administrator"
name = "Ada Admin"
"#,
            data = root.join("data").display(),
            key = public_key.display(),
        );
        std::fs::write(&config, toml).map_err(|e| e.to_string())?;
        Ok(Self {
            binary: binary.to_owned(),
            config,
            log: root.join("server.log"),
        })
    }

    /// Starts the server on a free loopback port and waits until
    /// `/healthz` answers.
    pub async fn start(&self, round: u32) -> Result<Running, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| e.to_string())?;
        writeln!(log, "==== crash round {round}: start on port {port}")
            .map_err(|e| e.to_string())?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(&self.binary)
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("PRESENCE__SERVER__BIND", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("{}: {e}", self.binary.display()))?;
        let mut running = Running {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log: self.log.clone(),
        };
        running.wait_ready().await?;
        Ok(running)
    }
}

impl Running {
    async fn wait_ready(&mut self) -> Result<(), String> {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + START_DEADLINE;
        let health = format!("{}/healthz", self.url);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "the server exited on start ({status}); see {}",
                    self.log.display()
                ));
            }
            if let Ok(r) = http.get(&health).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the server did not answer /healthz in {START_DEADLINE:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `kill -9` and wait for the process to be gone.
    pub async fn kill(mut self) -> Result<(), String> {
        self.child.start_kill().map_err(|e| e.to_string())?;
        self.child.wait().await.map_err(|e| e.to_string())?;
        Ok(())
    }

    /// SIGTERM, and a clean exit within the shutdown timeout.
    pub async fn stop(mut self) -> Result<(), String> {
        let pid = self.child.id().ok_or("the server already exited")?;
        let sent = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await
            .map_err(|e| e.to_string())?;
        if !sent.success() {
            return Err("kill -TERM failed".into());
        }
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .map_err(|_| "the server did not stop within 30 s of SIGTERM".to_string())?
            .map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("the server exited with {status} on SIGTERM"));
        }
        Ok(())
    }
}
