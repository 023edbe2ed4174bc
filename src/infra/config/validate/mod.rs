//! Start-up validation of [`Config`]: every rule names the key it checks, so
//! an operator sees `groups[0].origins[1]: ...` rather than a bare failure.
//! The server, presence and auth sections are checked here; the groups,
//! their users and SSO settings in [`groups`], webhooks in [`webhooks`].

mod groups;
mod webhooks;

use std::fmt;

use super::{parse_network, Config};

/// A configuration problem, tied to the key that caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }

    pub(super) fn from_figment(err: figment::Error) -> Self {
        let key = if err.path.is_empty() {
            "config".to_owned()
        } else {
            err.path.join(".")
        };
        // figment's Display repeats the key; the kind alone reads better.
        Self::new(key, without_values(&err.kind.to_string()))
    }
}

/// A parser's message without what the file said: no source excerpt (a
/// TOML error quotes the offending line, which may hold a secret) and no
/// quoted values (`found string "..."`). The key, line and column stay.
/// The message reaches logs and, after a failed reload, `/healthz`.
fn without_values(message: &str) -> String {
    let excerpt = |line: &str| {
        let rest = line
            .trim_start()
            .trim_start_matches(|c: char| c.is_ascii_digit());
        let rest = rest.trim_start();
        rest.starts_with('|') || (!rest.is_empty() && rest.chars().all(|c| c == '^' || c == ' '))
    };
    let kept: Vec<&str> = message
        .lines()
        .filter(|line| !line.trim().is_empty() && !excerpt(line))
        .collect();
    let mut out = String::with_capacity(message.len());
    for (i, piece) in kept.join("; ").split('"').enumerate() {
        // Odd pieces are inside quotes.
        match i % 2 {
            0 => out.push_str(piece),
            _ => out.push_str("\"…\""),
        }
    }
    out
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid config key `{}`: {}", self.key, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The longest agent token lifetime the security model allows (2 h).
pub const HARD_TOKEN_MAX_SECS: u64 = 7200;
/// The shortest token lifetime anyone may ask for.
pub const MIN_TOKEN_SECS: u64 = 60;
/// Longest function name an allow-list entry may hold.
pub const MAX_FUNCTION_NAME_LEN: usize = 128;

fn check(ok: bool, key: impl Into<String>, message: impl Into<String>) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(key, message))
    }
}

pub(super) fn validate(config: &Config) -> Result<(), ConfigError> {
    validate_server(config)?;
    validate_presence(config)?;
    validate_auth(config)?;
    config.cluster.validate()?;
    config.server.validate_role(config.cluster.is_redis())?;
    webhooks::validate_webhooks_section(config)?;
    groups::validate_groups(config)
}

fn validate_server(config: &Config) -> Result<(), ConfigError> {
    let server = &config.server;
    server.bind_addr()?;
    let url = url::Url::parse(&server.public_url)
        .map_err(|e| ConfigError::new("server.public_url", format!("not a URL: {e}")))?;
    check(
        matches!(url.scheme(), "http" | "https") && url.host().is_some(),
        "server.public_url",
        "must be an http or https URL with a host",
    )?;
    check(
        !server.data_dir.as_os_str().is_empty(),
        "server.data_dir",
        "must not be empty",
    )?;
    check(
        server.workers <= 1024,
        "server.workers",
        "must be at most 1024 (0 = one per core)",
    )?;
    check(
        server.max_connections >= 1,
        "server.max_connections",
        "must be at least 1",
    )?;
    check(server.backlog >= 1, "server.backlog", "must be at least 1")?;
    check(
        server.metrics_bind.is_empty()
            || server.metrics_bind.parse::<std::net::SocketAddr>().is_ok(),
        "server.metrics_bind",
        "must be host:port (an IP address and port), or empty to turn metrics off",
    )?;
    check(
        (1..=25).contains(&server.shutdown_timeout_secs),
        "server.shutdown_timeout_secs",
        "must be 1 to 25, so shutdown always completes within 30 s",
    )?;
    check(
        (100..=600_000).contains(&server.request_body_timeout_ms),
        "server.request_body_timeout_ms",
        "must be 100 to 600000 ms",
    )?;
    check(
        server.max_sockets_per_ip >= 1,
        "server.max_sockets_per_ip",
        "must be at least 1",
    )?;
    check(
        server.max_connections_per_ip >= server.max_sockets_per_ip,
        "server.max_connections_per_ip",
        "must be at least server.max_sockets_per_ip (each WebSocket is a connection)",
    )?;
    for (i, network) in server.trusted_proxies.iter().enumerate() {
        parse_network(network)
            .map_err(|m| ConfigError::new(format!("server.trusted_proxies[{i}]"), m))?;
    }
    Ok(())
}

fn validate_presence(config: &Config) -> Result<(), ConfigError> {
    let p = &config.presence;
    check(
        p.hello_timeout_ms >= 1,
        "presence.hello_timeout_ms",
        "must be at least 1",
    )?;
    check(
        p.ping_interval_ms >= 1,
        "presence.ping_interval_ms",
        "must be at least 1",
    )?;
    check(
        p.ping_interval_ms.saturating_mul(2) <= p.client_timeout_ms,
        "presence.ping_interval_ms",
        format!(
            "must be at most half of presence.client_timeout_ms ({}), so a live client always gets two pings before it is dropped",
            p.client_timeout_ms
        ),
    )?;
    check(
        (1024..=16 * 1024 * 1024).contains(&p.max_message_bytes),
        "presence.max_message_bytes",
        "must be 1024 to 16777216",
    )?;
    check(
        p.max_invoke_timeout_ms >= 1,
        "presence.max_invoke_timeout_ms",
        "must be at least 1",
    )?;
    check(
        (1..=p.max_invoke_timeout_ms).contains(&p.invoke_timeout_ms),
        "presence.invoke_timeout_ms",
        format!(
            "must be 1 to presence.max_invoke_timeout_ms ({})",
            p.max_invoke_timeout_ms
        ),
    )?;
    check(
        (1..=10_000).contains(&p.max_pending_invokes),
        "presence.max_pending_invokes",
        "must be 1 to 10000",
    )?;
    check(
        p.reconnect_grace_ms <= 600_000,
        "presence.reconnect_grace_ms",
        "must be at most 600000",
    )?;
    check(
        p.max_watches_per_agent >= 1,
        "presence.max_watches_per_agent",
        "must be at least 1",
    )?;
    check(
        (60..=86_400).contains(&p.session_key_ttl_secs),
        "presence.session_key_ttl_secs",
        "must be 60 to 86400",
    )?;
    check(
        (1..=100_000).contains(&p.session_key_mints_per_minute),
        "presence.session_key_mints_per_minute",
        "must be 1 to 100000",
    )?;
    check(
        (60..=86_400).contains(&p.confirmation_ttl_secs),
        "presence.confirmation_ttl_secs",
        "must be 60 to 86400",
    )?;
    check(
        (100..=600_000).contains(&p.confirm_timeout_ms),
        "presence.confirm_timeout_ms",
        "must be 100 to 600000",
    )?;
    check(
        (10..=60_000).contains(&p.min_presence_interval_ms),
        "presence.min_presence_interval_ms",
        "must be 10 to 60000",
    )?;
    check(
        (1..=100_000).contains(&p.inbound_frames_per_sec),
        "presence.inbound_frames_per_sec",
        "must be 1 to 100000",
    )?;
    check(
        (16..=1_000_000).contains(&p.inbound_frame_burst),
        "presence.inbound_frame_burst",
        "must be 16 to 1000000",
    )
}

fn validate_auth(config: &Config) -> Result<(), ConfigError> {
    let a = &config.auth;
    check(
        (MIN_TOKEN_SECS..=HARD_TOKEN_MAX_SECS).contains(&a.token_max_secs),
        "auth.token_max_secs",
        format!("must be {MIN_TOKEN_SECS} to {HARD_TOKEN_MAX_SECS}"),
    )?;
    check(
        (MIN_TOKEN_SECS..=a.token_max_secs).contains(&a.token_default_secs),
        "auth.token_default_secs",
        format!(
            "must be {MIN_TOKEN_SECS} to auth.token_max_secs ({})",
            a.token_max_secs
        ),
    )?;
    check(
        (1..=86_400).contains(&a.key_rotation_secs),
        "auth.key_rotation_secs",
        "must be 1 to 86400",
    )?;
    check(
        (60..=30 * 86_400).contains(&a.login_key_max_future_secs),
        "auth.login_key_max_future_secs",
        "must be 60 to 2592000",
    )?;
    check(
        (60..=30 * 86_400).contains(&a.session_idle_secs),
        "auth.session_idle_secs",
        "must be 60 to 2592000",
    )?;
    check(
        (1..=3650).contains(&a.audit_retention_days),
        "auth.audit_retention_days",
        "must be 1 to 3650",
    )?;
    check(
        (1..=1000).contains(&a.lockout_failures),
        "auth.lockout_failures",
        "must be 1 to 1000",
    )?;
    check(
        (a.lockout_failures..=100_000).contains(&a.lockout_client_failures),
        "auth.lockout_client_failures",
        "must be auth.lockout_failures to 100000",
    )?;
    check(
        (1..=86_400).contains(&a.lockout_window_secs),
        "auth.lockout_window_secs",
        "must be 1 to 86400",
    )
}

pub(crate) fn valid_username(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._@+-".contains(c))
}

/// A function name: 1 to 128 characters from `A-Z a-z 0-9 . _ $`.
pub fn valid_function_name(name: &str) -> bool {
    (1..=MAX_FUNCTION_NAME_LEN).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._$".contains(c))
}

pub(crate) fn valid_allow_pattern(pattern: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some("") => true,
        Some(prefix) => valid_function_name(prefix),
        None => valid_function_name(pattern),
    }
}

#[cfg(test)]
mod message_tests {
    use super::without_values;

    #[test]
    fn a_parse_error_keeps_its_place_but_not_the_line_it_quotes() {
        let toml = "TOML parse error at line 90, column 11\n   |\n90 | api_key = \"LEAKED-key\n   |           ^\ninvalid basic string\n";
        let clean = without_values(toml);
        assert!(!clean.contains("LEAKED"), "{clean}");
        assert!(clean.contains("line 90, column 11"), "{clean}");
        assert!(clean.contains("invalid basic string"), "{clean}");
        let typed = without_values("invalid type: found string \"s3cret\", expected u64");
        assert_eq!(typed, "invalid type: found string \"…\", expected u64");
    }
}
