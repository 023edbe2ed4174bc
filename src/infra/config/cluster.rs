//! `[cluster]`: whether this process is one node of several sharing
//! presence and security state through Redis, and how it reaches Redis.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::ConfigError;

/// How the process runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterMode {
    /// One process, embedded sled store, no Redis.
    #[default]
    Single,
    /// One node of a cluster sharing state through Redis.
    Redis,
}

impl ClusterMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterMode::Single => "single",
            ClusterMode::Redis => "redis",
        }
    }
}

/// `[cluster]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    pub mode: ClusterMode,
    /// `redis://[user:password@]host:port/db`; may hold a password, so it
    /// is kept redacted.
    pub redis_url: SecretString,
    /// Prefix of every key and channel, so deployments can share a Redis.
    pub key_prefix: String,
    /// A node unheard this long is dead; its visitors go offline.
    pub node_lease_ms: u64,
    /// Deadline of one Redis command; past it the caller gets
    /// `cluster_unavailable`.
    pub redis_timeout_ms: u64,
    /// Redis commands one node may have in flight; beyond it callers fail
    /// fast with `cluster_unavailable` instead of queueing.
    pub max_redis_in_flight: usize,
    /// Deadline of a question to the other nodes (the merged audit log).
    pub survey_timeout_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            mode: ClusterMode::Single,
            redis_url: SecretString::from("redis://127.0.0.1:6379/0"),
            key_prefix: "presence".to_owned(),
            node_lease_ms: 10_000,
            redis_timeout_ms: 1_000,
            max_redis_in_flight: 4_096,
            survey_timeout_ms: 2_000,
        }
    }
}

impl ClusterConfig {
    pub fn is_redis(&self) -> bool {
        self.mode == ClusterMode::Redis
    }

    pub fn node_lease(&self) -> Duration {
        Duration::from_millis(self.node_lease_ms)
    }

    /// How often a node renews its lease and says it is alive: four times
    /// per lease, so one lost beat never kills a node.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis((self.node_lease_ms / 4).max(100))
    }

    pub fn redis_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms)
    }

    pub fn survey_timeout(&self) -> Duration {
        Duration::from_millis(self.survey_timeout_ms)
    }

    /// The URL, for the client only (never for logs).
    pub fn redis_url(&self) -> &str {
        self.redis_url.expose_secret()
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !self.is_redis() {
            return Ok(());
        }
        let url = url::Url::parse(self.redis_url()).map_err(|_| {
            ConfigError::new("cluster.redis_url", "is not a URL (redis://host:port/db)")
        })?;
        if url.scheme() != "redis" {
            return Err(ConfigError::new(
                "cluster.redis_url",
                "must use the redis:// scheme",
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(ConfigError::new("cluster.redis_url", "names no host"));
        }
        let prefix_ok = !self.key_prefix.is_empty()
            && self.key_prefix.len() <= 64
            && self
                .key_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
        if !prefix_ok {
            return Err(ConfigError::new(
                "cluster.key_prefix",
                "must be 1-64 characters of A-Z, a-z, 0-9, '_', '-' or '.'",
            ));
        }
        if !(1_000..=600_000).contains(&self.node_lease_ms) {
            return Err(ConfigError::new(
                "cluster.node_lease_ms",
                "must be between 1000 and 600000",
            ));
        }
        if !(50..=60_000).contains(&self.redis_timeout_ms) {
            return Err(ConfigError::new(
                "cluster.redis_timeout_ms",
                "must be between 50 and 60000",
            ));
        }
        if self.redis_timeout_ms >= self.node_lease_ms {
            return Err(ConfigError::new(
                "cluster.redis_timeout_ms",
                "must be below cluster.node_lease_ms",
            ));
        }
        if !(16..=1_000_000).contains(&self.max_redis_in_flight) {
            return Err(ConfigError::new(
                "cluster.max_redis_in_flight",
                "must be between 16 and 1000000",
            ));
        }
        if !(100..=60_000).contains(&self.survey_timeout_ms) {
            return Err(ConfigError::new(
                "cluster.survey_timeout_ms",
                "must be between 100 and 60000",
            ));
        }
        Ok(())
    }
}
