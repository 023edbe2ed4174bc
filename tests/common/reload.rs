//! Live config reload helpers: a server started from a config file of its
//! own that a test rewrites, signed `POST /internal/reload` calls, and
//! edits of the base config's TOML.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use presence_server::clock::{Clock, SystemClock};
use serde_json::{json, Value};

use super::roles::{internal_post, INTERNAL_SECRET};
use super::{TestServer, PASSWORD};

pub const LOCAL_ORIGIN: &str = "http://localhost:8080";

/// The base test config with an internal listener for `/internal/reload`.
pub fn base_toml(dir: &Path) -> String {
    super::config_toml(&dir.join("data")).replacen(
        "[server]\n",
        &format!(
            "[server]\ninternal_bind = \"127.0.0.1:0\"\ninternal_secret = \"{INTERNAL_SECRET}\"\n"
        ),
        1,
    )
}

pub fn user_block(username: &str) -> String {
    let hash = presence_server::password::hash_password(PASSWORD).expect("hash");
    format!("[[groups.users]]\nusername = \"{username}\"\npassword_hash = \"{hash}\"\n\n")
}

/// `toml` with `username` added to group 72 (before its first user).
pub fn with_user(toml: &str, username: &str) -> String {
    let at = toml
        .find("[[groups.users]]\nusername = \"fred.demo\"")
        .expect("fred");
    format!("{}{}{}", &toml[..at], user_block(username), &toml[at..])
}

/// `toml` without the `[[groups.users]]` block of `username` (the first).
pub fn without_user(toml: &str, username: &str) -> String {
    let start = toml
        .find(&format!("[[groups.users]]\nusername = \"{username}\""))
        .expect("user");
    let end = toml[start + 1..]
        .find("[[groups")
        .map_or(toml.len(), |i| start + 1 + i);
    format!("{}{}", &toml[..start], &toml[end..])
}

/// `toml` without the group `id` (its table and users).
pub fn without_group(toml: &str, id: u64) -> String {
    let start = toml
        .find(&format!("[[groups]]\nid = {id}\n"))
        .expect("group");
    let end = toml[start + 1..]
        .find("[[groups]]")
        .map_or(toml.len(), |i| start + 1 + i);
    format!("{}{}", &toml[..start], &toml[end..])
}

pub struct Reloadable {
    pub server: TestServer,
    pub path: PathBuf,
    /// The config it started with.
    pub toml: String,
}

impl Reloadable {
    /// A server started from [`base_toml`] in a file of its own.
    pub async fn start() -> Self {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        let path = dir.path().join("config.toml");
        let toml = base_toml(dir.path());
        std::fs::write(&path, &toml).expect("write config");
        let server = TestServer::start_from_file(dir, &path).await;
        Self { server, path, toml }
    }

    pub fn rewrite(&self, toml: &str) {
        std::fs::write(&self.path, toml).expect("rewrite config");
    }

    pub fn internal_url(&self) -> String {
        let addr = self
            .server
            .running()
            .internal_addr()
            .expect("internal listener");
        format!("http://{addr}")
    }

    /// A signed `POST /internal/reload`.
    pub async fn reload_over_http(&self) -> (u16, Value) {
        let body = b"{}";
        let headers = presence_server::internal_auth::sign(
            INTERNAL_SECRET.as_bytes(),
            "POST",
            "/internal/reload",
            body,
            SystemClock.now_ms(),
        );
        internal_post(&self.internal_url(), "/internal/reload", &headers, body).await
    }

    pub async fn sign_in(&self, group: u64, username: &str) -> (u16, Value) {
        self.server
            .post(
                "/auth/token",
                None,
                None,
                &json!({"groupid": group, "credentials": {"username": username, "password": PASSWORD}}),
            )
            .await
    }

    pub async fn token(&self, group: u64, username: &str) -> String {
        let (status, body) = self.sign_in(group, username).await;
        assert_eq!(status, 200, "{body}");
        body["token"].as_str().expect("token").to_owned()
    }

    pub async fn health(&self) -> Value {
        let (status, body) = self.server.get("/healthz", None, None).await;
        assert_eq!(status, 200, "{body}");
        body
    }
}
