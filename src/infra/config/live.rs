//! The config in force, swappable while the server runs (a live reload),
//! where the config came from (so it can be read again the same way), which
//! keys a reload may not change, and the hash `/healthz` shows of it.
//!
//! Only `[[groups]]` reloads: groups, users, origins, allow-lists, identity
//! secrets, SSO settings and keys, and the per-group policy switches. Every
//! key of `[server]`, `[presence]`, `[auth]` and `[cluster]` is read once
//! at start-up (listeners, the data directory, worker threads, the cluster
//! link, the registry's timers, the key ring's rotation), so a reload that
//! changes one is refused, naming it: it needs a restart.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

use super::{
    AuthConfig, ClusterConfig, Config, ConfigError, PresenceConfig, ServerConfig, ServerRole,
    WebhooksConfig,
};

/// The config in force: read lock-free on every request, replaced whole by
/// a reload.
pub struct LiveConfig {
    current: ArcSwap<Config>,
}

impl LiveConfig {
    pub fn new(config: Arc<Config>) -> Self {
        Self {
            current: ArcSwap::new(config),
        }
    }

    /// The config in force now (an `Arc`, so it can be held across awaits).
    pub fn current(&self) -> Arc<Config> {
        self.current.load_full()
    }

    /// A cheap borrow of the config in force, for one request's reads.
    pub fn load(&self) -> arc_swap::Guard<Arc<Config>> {
        self.current.load()
    }

    /// Puts `config` in force (the reload, after every check passed).
    pub fn replace(&self, config: Arc<Config>) {
        self.current.store(config);
    }
}

/// Where the running config came from: the file and the command line's
/// `--role`; the environment is read again too.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    pub path: PathBuf,
    pub role: Option<ServerRole>,
}

impl ConfigSource {
    /// Loads and validates the config exactly as start-up does.
    pub fn load(&self) -> Result<Config, ConfigError> {
        Config::load_as(&self.path, self.role)
    }
}

/// Compares fields by their `Debug` text (secrets by their exposed text);
/// the destructuring makes a new field a compile error until it is listed.
macro_rules! changed_keys {
    ($out:ident, $section:literal, $ty:ident, $old:expr, $new:expr,
     fields { $($field:ident),* $(,)? } secrets { $($secret:ident),* $(,)? }) => {{
        let $ty { $($field: _,)* $($secret: _,)* } = $old;
        $(
            if format!("{:?}", $old.$field) != format!("{:?}", $new.$field) {
                $out.push(concat!($section, ".", stringify!($field)));
            }
        )*
        $(
            if $old.$secret.expose_secret() != $new.$secret.expose_secret() {
                $out.push(concat!($section, ".", stringify!($secret)));
            }
        )*
    }};
}

/// The keys `new` changes that only a restart applies, in file order.
pub fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    changed_keys!(changed, "server", ServerConfig, &old.server, &new.server,
        fields {
            bind, data_dir, public_url, workers, max_connections, metrics_bind, backlog,
            shutdown_timeout_secs, log_format, request_body_timeout_ms,
            max_connections_per_ip, max_sockets_per_ip, trusted_proxies, forwarded_header,
            role, auth_url, console_url, internal_bind, auth_internal_urls,
            presence_internal_urls,
        }
        secrets { internal_secret });
    changed_keys!(changed, "presence", PresenceConfig, &old.presence, &new.presence,
        fields {
            hello_timeout_ms, ping_interval_ms, client_timeout_ms, max_message_bytes,
            invoke_timeout_ms, max_invoke_timeout_ms, max_pending_invokes,
            reconnect_grace_ms, max_watches_per_agent, session_key_ttl_secs,
            session_key_mints_per_minute, confirmation_ttl_secs, confirm_timeout_ms,
            min_presence_interval_ms, inbound_frames_per_sec, inbound_frame_burst,
        }
        secrets {});
    changed_keys!(changed, "auth", AuthConfig, &old.auth, &new.auth,
        fields {
            token_default_secs, token_max_secs, key_rotation_secs, login_key_max_future_secs,
            session_idle_secs, audit_retention_days, lockout_failures,
            lockout_client_failures, lockout_window_secs,
        }
        secrets {});
    changed_keys!(changed, "cluster", ClusterConfig, &old.cluster, &new.cluster,
        fields {
            mode, key_prefix, node_lease_ms, redis_timeout_ms, max_redis_in_flight,
            survey_timeout_ms,
        }
        secrets { redis_url });
    changed_keys!(changed, "webhooks", WebhooksConfig, &old.webhooks, &new.webhooks,
        fields {
            timeout_ms, max_concurrency, max_concurrency_per_receiver, max_payload_bytes,
            retry_horizon_secs,
            backoff_base_ms, backoff_max_ms, max_outbox, max_dead_letters, allow_http,
        }
        secrets {});
    changed
}

/// `sha256:` and the hex SHA-256 of the settings every node of a cluster
/// should share: `[[groups]]` (secrets included, so a differing secret
/// shows as drift; only their hash leaves the process; SSO key files by
/// their contents), `[presence]`, `[auth]` and `[webhooks]`. `[server]`
/// and `[cluster]` are left out: addresses, data directories and Redis
/// URLs differ between nodes by design.
pub fn settings_hash(config: &Config) -> String {
    let mut hasher = Sha256::new();
    hasher.update(format!("{:?}\n", config.presence));
    hasher.update(format!("{:?}\n", config.auth));
    hasher.update(format!("{:?}\n", config.webhooks));
    for group in &config.groups {
        hasher.update(format!("{group:?}\n"));
        // An SSO key named by its path: what the file holds now, so a key
        // rotated on one node's disk only shows as drift.
        for source in group.sso.iter().flat_map(|sso| &sso.public_keys) {
            if !source.trim_start().starts_with("-----BEGIN") {
                let held = std::fs::read(source).unwrap_or_default();
                hasher.update((held.len() as u64).to_le_bytes());
                hasher.update(&held);
            }
        }
        let secrets = [&group.api_key, &group.visitor_identity_secret];
        let webhook_secrets = group
            .webhooks
            .iter()
            .map(|w| Some(w.secret.expose_secret()));
        for text in secrets
            .into_iter()
            .chain(group.users.iter().map(|u| &u.password_hash))
            .map(|secret| secret.as_ref().map(|s| s.expose_secret()))
            .chain(webhook_secrets)
        {
            // Length-prefixed, so no two lists of secrets hash alike.
            let text = text.unwrap_or("");
            hasher.update((text.len() as u64).to_le_bytes());
            hasher.update(text.as_bytes());
        }
    }
    let digest = hasher.finalize();
    let mut hex = String::with_capacity(7 + 64);
    hex.push_str("sha256:");
    for byte in digest {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        Config::from_toml_str(&format!(
            "{extra}\n[[groups]]\nid = 1\nname = \"a\"\npresence = true\n\
             visitor_identity_secret = \"0123456789abcdef0123456789abcdef\"\n\
             visitor_identity_issuer = \"https://a.example\"\n"
        ))
        .expect("valid")
    }

    #[test]
    fn restart_only_keys_are_named_and_groups_are_not() {
        let old = config("[server]\nbind = \"127.0.0.1:1\"");
        let mut new = config("[server]\nbind = \"127.0.0.1:2\"\nworkers = 3");
        new.groups[0].origins.push("https://a.example".into());
        new.cluster.redis_url = "redis://other:6379/0".to_owned().into();
        assert_eq!(
            restart_only_changes(&old, &new),
            ["server.bind", "server.workers", "cluster.redis_url"]
        );
        assert!(restart_only_changes(&old, &old.clone()).is_empty());
    }

    #[test]
    fn the_hash_follows_shared_settings_and_secrets_but_not_node_keys() {
        let base = config("");
        let hash = settings_hash(&base);
        assert!(hash.starts_with("sha256:") && hash.len() == 71, "{hash}");
        let mut moved = base.clone();
        moved.server.bind = "127.0.0.1:9".into();
        moved.server.data_dir = "/elsewhere".into();
        assert_eq!(settings_hash(&moved), hash, "per-node keys are left out");
        let mut secret = base.clone();
        secret.groups[0].visitor_identity_secret =
            Some("fedcba9876543210fedcba9876543210".to_owned().into());
        assert_ne!(settings_hash(&secret), hash, "a secret changes it");
        assert!(!hash.contains("0123456789abcdef"));
        let mut origin = base.clone();
        origin.groups[0].origins.push("https://b.example".into());
        assert_ne!(settings_hash(&origin), hash);
        let mut tuned = base.clone();
        tuned.webhooks.timeout_ms += 1;
        assert_ne!(settings_hash(&tuned), hash, "[webhooks] counts");
    }

    #[test]
    fn an_sso_key_file_counts_by_what_it_holds() {
        let keys = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("idp.pub.pem");
        std::fs::copy(format!("{keys}group72-a.pub.pem"), &path).expect("copy");
        let keyed = Config::from_toml_str(&format!(
            "[[groups]]\nid = 1\nname = \"a\"\npresence = true\n\
             visitor_identity_secret = \"0123456789abcdef0123456789abcdef\"\n\
             visitor_identity_issuer = \"https://a.example\"\n\
             [groups.sso]\nissuer = \"idp\"\npublic_keys = [{:?}]\n",
            path.display().to_string()
        ))
        .expect("valid");
        let first = settings_hash(&keyed);
        std::fs::copy(format!("{keys}group72-b.pub.pem"), &path).expect("rotate");
        assert_ne!(settings_hash(&keyed), first, "same path, another key");
    }
}
