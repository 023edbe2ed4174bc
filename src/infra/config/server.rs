//! `[server]`: the listener, the process and its role (`all`, or one side
//! of the auth/presence split with its internal listener).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{
    ConfigError, ForwardedHeader, LogFormat, DEFAULT_MAX_CONNECTIONS_PER_IP,
    DEFAULT_MAX_SOCKETS_PER_IP,
};

/// Shortest `server.internal_secret`.
pub const MIN_INTERNAL_SECRET_BYTES: usize = 32;

/// What one process serves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ServerRole {
    /// Everything, in one process (the default).
    #[default]
    All,
    /// Credentials: `/auth/*`, SSO and the audit log; no sockets.
    Auth,
    /// Sockets, `/presence/*`, SDKs, console and demo; no credentials.
    Presence,
}

impl ServerRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ServerRole::All => "all",
            ServerRole::Auth => "auth",
            ServerRole::Presence => "presence",
        }
    }

    /// Serves the credential endpoints.
    pub fn serves_auth(self) -> bool {
        self != ServerRole::Presence
    }

    /// Serves the sockets and the presence API.
    pub fn serves_presence(self) -> bool {
        self != ServerRole::Auth
    }

    /// One side of the split (runs the internal listener).
    pub fn is_split(self) -> bool {
        self != ServerRole::All
    }
}

/// `[server]`: the listener and process.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub bind: String,
    /// Directory of the sled database.
    pub data_dir: PathBuf,
    /// The URL clients reach this server at.
    pub public_url: String,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    /// WebSocket connections the whole server holds (not per worker);
    /// also capped by the open-file limit less a reserve.
    pub max_connections: usize,
    /// Where `/metrics` is served (Prometheus); empty turns it off. Keep it
    /// on a private interface.
    pub metrics_bind: String,
    /// Listen backlog of the socket.
    pub backlog: u32,
    /// How long a graceful shutdown waits for in-flight requests.
    pub shutdown_timeout_secs: u64,
    /// `text` or `json` log lines.
    pub log_format: LogFormat,
    /// A request body not complete this long after its headers gets 408,
    /// and its connection closes.
    pub request_body_timeout_ms: u64,
    /// TCP connections (HTTP and WebSocket) one peer address may hold;
    /// trusted proxies are exempt.
    pub max_connections_per_ip: usize,
    /// WebSockets one client address may hold (behind a trusted proxy, the
    /// forwarded client's).
    pub max_sockets_per_ip: usize,
    /// CIDRs of the load balancers whose forwarding headers name the client.
    pub trusted_proxies: Vec<String>,
    /// The header those balancers write: `x-forwarded-for` or `forwarded`.
    pub forwarded_header: ForwardedHeader,
    /// What this process serves: `all`, `auth` or `presence`.
    pub role: ServerRole,
    /// Presence role: the public URL of the auth service, where the console
    /// signs in (named in `/console/config.json` and the pages' CSP).
    pub auth_url: String,
    /// Auth role: the public URL the console is served from (the presence
    /// service's), whose origin may sign in with cookies, cross-origin.
    /// Empty means `public_url`.
    pub console_url: String,
    /// Split roles: the internal listener (`/internal/*` only).
    pub internal_bind: String,
    /// Split roles: the shared secret of the internal calls' HMAC.
    pub internal_secret: SecretString,
    /// Presence role: base URLs of the auth nodes' internal listeners.
    pub auth_internal_urls: Vec<String>,
    /// Auth role without Redis: the base URL of the presence node's
    /// internal listener.
    pub presence_internal_urls: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".to_owned(),
            data_dir: PathBuf::from("data"),
            public_url: "http://127.0.0.1:8080".to_owned(),
            workers: 0,
            max_connections: 250_000,
            metrics_bind: "127.0.0.1:9090".to_owned(),
            backlog: 2048,
            shutdown_timeout_secs: 20,
            log_format: LogFormat::Text,
            request_body_timeout_ms: 10_000,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            max_sockets_per_ip: DEFAULT_MAX_SOCKETS_PER_IP,
            trusted_proxies: Vec::new(),
            forwarded_header: Default::default(),
            role: ServerRole::All,
            auth_url: String::new(),
            console_url: String::new(),
            internal_bind: "127.0.0.1:9091".to_owned(),
            internal_secret: SecretString::from(String::new()),
            auth_internal_urls: Vec::new(),
            presence_internal_urls: Vec::new(),
        }
    }
}

impl ServerConfig {
    /// The bind address; valid after [`Config::validate`].
    pub fn bind_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.bind
            .parse()
            .map_err(|e| ConfigError::new("server.bind", format!("not a socket address: {e}")))
    }

    /// Worker threads to start: the configured number, or one per core.
    pub fn request_body_timeout(&self) -> Duration {
        Duration::from_millis(self.request_body_timeout_ms)
    }

    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        }
    }

    /// The internal listener's address; valid after [`super::Config::validate`].
    pub fn internal_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.internal_bind.parse().map_err(|e| {
            ConfigError::new("server.internal_bind", format!("not a socket address: {e}"))
        })
    }

    /// Whether this process runs the internal listener: a split role
    /// always, role `all` when `internal_secret` is set (for
    /// `POST /internal/reload`).
    pub fn runs_internal_listener(&self) -> bool {
        self.role.is_split() || !self.internal_secret().is_empty()
    }

    /// The internal calls' shared secret.
    pub fn internal_secret(&self) -> &[u8] {
        self.internal_secret.expose_secret().as_bytes()
    }

    /// The origin of the console: `console_url`, else `public_url`.
    pub fn console_origin_url(&self) -> &str {
        if self.console_url.is_empty() {
            &self.public_url
        } else {
            &self.console_url
        }
    }

    /// Checks the role's keys; `redis` is whether cluster mode is on.
    pub(super) fn validate_role(&self, redis: bool) -> Result<(), ConfigError> {
        if !self.console_url.is_empty() {
            public_base(&self.console_url, "server.console_url")?;
        }
        if !self.auth_url.is_empty() {
            public_base(&self.auth_url, "server.auth_url")?;
        }
        if !self.runs_internal_listener() {
            return Ok(());
        }
        let addr = self.internal_addr()?;
        if self.bind_addr().ok() == Some(addr) && addr.port() != 0 {
            return Err(ConfigError::new(
                "server.internal_bind",
                "must differ from server.bind: the internal listener never serves the public API",
            ));
        }
        if self.internal_secret().len() < MIN_INTERNAL_SECRET_BYTES {
            return Err(ConfigError::new(
                "server.internal_secret",
                format!(
                    "must be at least {MIN_INTERNAL_SECRET_BYTES} bytes in a split deployment or \
                     to serve /internal/reload"
                ),
            ));
        }
        match self.role {
            ServerRole::Presence => {
                if self.auth_url.is_empty() {
                    return Err(ConfigError::new(
                        "server.auth_url",
                        "a presence node needs the auth service's public URL (the console signs in there)",
                    ));
                }
                internal_urls(
                    &self.auth_internal_urls,
                    "server.auth_internal_urls",
                    1..=64,
                )
            }
            ServerRole::Auth if !redis => internal_urls(
                &self.presence_internal_urls,
                "server.presence_internal_urls",
                1..=1,
            )
            .map_err(|e| {
                ConfigError::new(
                    e.key.clone(),
                    format!(
                        "{}; without Redis an auth node pairs with exactly one presence node",
                        e.message
                    ),
                )
            }),
            _ => Ok(()),
        }
    }
}

/// A public `http(s)://host[:port]` URL with no credentials, query or fragment.
fn public_base(text: &str, key: &str) -> Result<url::Url, ConfigError> {
    let url =
        url::Url::parse(text).map_err(|e| ConfigError::new(key, format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::new(
            key,
            "must be an http(s)://host[:port] URL",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::new(key, "must not carry credentials"));
    }
    if url.query().is_some() || url.fragment().is_some() || url.path() != "/" {
        return Err(ConfigError::new(
            key,
            "must be a base URL: no path, query or fragment",
        ));
    }
    Ok(url)
}

/// A list of internal base URLs, `count` of them, none repeated.
fn internal_urls(
    urls: &[String],
    key: &str,
    count: std::ops::RangeInclusive<usize>,
) -> Result<(), ConfigError> {
    if !count.contains(&urls.len()) {
        return Err(ConfigError::new(
            key,
            format!(
                "needs {} to {} URLs, has {}",
                count.start(),
                count.end(),
                urls.len()
            ),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, text) in urls.iter().enumerate() {
        let url = public_base(text, &format!("{key}[{i}]"))?;
        if !seen.insert(url.origin().ascii_serialization()) {
            return Err(ConfigError::new(format!("{key}[{i}]"), "is listed twice"));
        }
    }
    Ok(())
}
