//! Typed server configuration, layered as built-in defaults, then a TOML file,
//! then `PRESENCE__SECTION__KEY` environment variables, and validated once at
//! start-up so that a bad value is reported with its key before anything runs.
//!
//! Secrets (`api_key`, `password_hash`, `visitor_identity_secret`, webhook
//! `secret`s) are held in
//! [`secrecy::SecretString`], whose `Debug` prints a redaction marker, so a
//! config dumped to a log never carries them.

mod cluster;
mod live;
mod reload;
mod server;
mod sso;
mod validate;
mod values;
mod webhooks;

pub(crate) use validate::{valid_allow_pattern, valid_username};
pub use validate::{valid_function_name, MIN_TOKEN_SECS};

use std::path::Path;
use std::time::Duration;

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::infra::ids::GroupId;

pub use cluster::{ClusterConfig, ClusterMode};
pub use live::{restart_only_changes, settings_hash, ConfigSource, LiveConfig};
pub use reload::{ConfigReloader, ReloadChanges, ReloadOutcome, ReloadReport};
pub use server::{ServerConfig, ServerRole};
pub use sso::{load_public_key, SsoAlgorithm, SsoConfig};
pub use validate::ConfigError;
pub use values::{function_allowed, normalize_origin, parse_network, ForwardedHeader};
pub use webhooks::{
    WebhookEventType, WebhookSubscription, WebhooksConfig, MAX_WEBHOOKS_PER_GROUP,
    MIN_WEBHOOK_SECRET_LEN,
};

/// Prefix of environment overrides: `PRESENCE__SERVER__BIND=...`.
pub const ENV_PREFIX: &str = "PRESENCE__";

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub presence: PresenceConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub cluster: ClusterConfig,
    #[serde(default)]
    pub webhooks: WebhooksConfig,
    #[serde(default)]
    pub groups: Vec<GroupConfig>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Default of `server.max_sockets_per_ip`: a 1,000-person office behind one
/// NAT, a tab each, fits; one address holds at most ~5% of a 19,000-socket
/// server.
pub const DEFAULT_MAX_SOCKETS_PER_IP: usize = 1_000;
/// Default of `server.max_connections_per_ip`: those sockets plus the
/// short-lived REST connections of the same browsers.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 1_500;

/// `[presence]`: visitor and agent socket behaviour.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PresenceConfig {
    /// A socket must send `hello` (visitor) or `auth` (agent) within this.
    pub hello_timeout_ms: u64,
    /// The server pings each socket this often.
    pub ping_interval_ms: u64,
    /// A socket silent this long is closed.
    pub client_timeout_ms: u64,
    /// Largest accepted message; larger frames close the socket with 1009.
    pub max_message_bytes: usize,
    /// Default wait for a visitor's invoke result.
    pub invoke_timeout_ms: u64,
    /// Largest `timeout_ms` an agent may ask for.
    pub max_invoke_timeout_ms: u64,
    /// Invokes awaiting a result per visitor connection; beyond it, 429.
    pub max_pending_invokes: usize,
    /// How long a visitor whose last socket closed is still treated as present.
    pub reconnect_grace_ms: u64,
    /// Visitors one agent socket may watch at once.
    pub max_watches_per_agent: usize,
    /// How long a visitor's session key lives.
    pub session_key_ttl_secs: u64,
    /// Fresh session keys each group may mint per minute (also the burst).
    pub session_key_mints_per_minute: u64,
    /// How long a correct confirmation answer lets its agent invoke.
    pub confirmation_ttl_secs: u64,
    /// How long a visitor has to answer a confirmation prompt.
    pub confirm_timeout_ms: u64,
    /// A visitor connection's presence updates reach the registry at most
    /// once per this; updates in between are merged and sent together.
    pub min_presence_interval_ms: u64,
    /// Inbound frames per second a socket's token bucket refills.
    pub inbound_frames_per_sec: u32,
    /// Frames a socket may send at once (the bucket's size); beyond the
    /// bucket, close 1008 `rate_limited`.
    pub inbound_frame_burst: u32,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        Self {
            hello_timeout_ms: 10_000,
            ping_interval_ms: 25_000,
            client_timeout_ms: 60_000,
            max_message_bytes: 65_536,
            invoke_timeout_ms: 10_000,
            max_invoke_timeout_ms: 120_000,
            max_pending_invokes: 64,
            reconnect_grace_ms: 5_000,
            max_watches_per_agent: 1_000,
            session_key_ttl_secs: 1_200,
            session_key_mints_per_minute: 300,
            confirmation_ttl_secs: 3_600,
            confirm_timeout_ms: 120_000,
            min_presence_interval_ms: 250,
            inbound_frames_per_sec: 500,
            inbound_frame_burst: 4_096,
        }
    }
}

impl PresenceConfig {
    pub fn hello_timeout(&self) -> Duration {
        Duration::from_millis(self.hello_timeout_ms)
    }
    pub fn ping_interval(&self) -> Duration {
        Duration::from_millis(self.ping_interval_ms)
    }
    pub fn client_timeout(&self) -> Duration {
        Duration::from_millis(self.client_timeout_ms)
    }
    pub fn reconnect_grace(&self) -> Duration {
        Duration::from_millis(self.reconnect_grace_ms)
    }
    pub fn confirm_timeout(&self) -> Duration {
        Duration::from_millis(self.confirm_timeout_ms)
    }
    pub fn min_presence_interval(&self) -> Duration {
        Duration::from_millis(self.min_presence_interval_ms)
    }
}

/// `[auth]`: agent tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Lifetime of a token whose request names no `duration`.
    pub token_default_secs: u64,
    /// Longest token lifetime; the security model caps it at 7200.
    pub token_max_secs: u64,
    /// How often the signing key rotates.
    pub key_rotation_secs: u64,
    /// How far in the future a login key's `exp` may lie.
    pub login_key_max_future_secs: u64,
    /// A website session ends after this long unused.
    pub session_idle_secs: u64,
    /// Audit records older than this are deleted.
    pub audit_retention_days: u64,
    /// Failed attempts per account within `lockout_window_secs` before it
    /// is locked.
    pub lockout_failures: usize,
    /// Failed attempts per client IP within the window before it is locked.
    pub lockout_client_failures: usize,
    /// The failed-attempt window.
    pub lockout_window_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            token_default_secs: 3600,
            token_max_secs: 7200,
            key_rotation_secs: 7200,
            login_key_max_future_secs: 86_400,
            session_idle_secs: 43_200,
            audit_retention_days: 90,
            lockout_failures: 5,
            lockout_client_failures: 20,
            lockout_window_secs: 900,
        }
    }
}

/// Role of an agent within a group.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    #[default]
    Agent,
    Administrator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Administrator => "administrator",
        }
    }
}

/// `[[groups]]`: one tenant.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    pub id: GroupId,
    pub name: String,

    /// Whether the group's subscription includes Presence.
    #[serde(default)]
    pub presence: bool,
    /// HMAC secret of partner login keys.
    #[serde(default)]
    pub api_key: Option<SecretString>,
    /// Browser origins allowed to call this group's APIs.
    #[serde(default)]
    pub origins: Vec<String>,
    /// Functions agents may invoke: exact names or `prefix*`.
    #[serde(default = "default_invoke_allow")]
    pub invoke_allow: Vec<String>,
    #[serde(default)]
    pub require_confirmation: bool,
    #[serde(default)]
    pub visitor_identity_secret: Option<SecretString>,
    /// The `iss` of this group's visitor identity tokens (public).
    #[serde(default)]
    pub visitor_identity_issuer: Option<String>,
    #[serde(default)]
    pub require_visitor_identity: bool,
    /// Longest lifetime of an identity token: `exp` minus `iat`, or minus
    /// now when it has no `iat`.
    #[serde(default = "default_visitor_identity_max_secs")]
    pub visitor_identity_max_secs: u64,
    /// Visitor sockets the group may hold at once (none: no cap but the
    /// server's).
    #[serde(default)]
    pub max_visitors: Option<usize>,
    /// Agent single sign-on with customer-signed JWTs.
    #[serde(default)]
    pub sso: Option<SsoConfig>,
    /// Receivers of the group's presence and confirmation events.
    #[serde(default)]
    pub webhooks: Vec<WebhookSubscription>,
    #[serde(default)]
    pub users: Vec<UserConfig>,
}

fn default_visitor_identity_max_secs() -> u64 {
    86_400
}

pub(super) fn default_true() -> bool {
    true
}

fn default_invoke_allow() -> Vec<String> {
    vec!["*".to_owned()]
}

/// `[[groups.users]]`: an agent account.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub username: String,
    /// Argon2id PHC string; users without one cannot sign in by password.
    #[serde(default)]
    pub password_hash: Option<SecretString>,
    #[serde(default)]
    pub partner_user_id: Option<String>,
    #[serde(default)]
    pub role: Role,
    /// Display name shown to visitors.
    #[serde(default)]
    pub name: Option<String>,
}

/// Rotation periods below this are accepted but warned about.
const MIN_PRODUCTION_ROTATION_SECS: u64 = 60;

impl Config {
    /// Loads defaults, then `path` (which must exist), then the environment,
    /// and validates the result.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_as(path, None)
    }

    /// [`Config::load`], with `role` (the command line's `--role`) over
    /// every layer's `server.role`.
    pub fn load_as(path: &Path, role: Option<ServerRole>) -> Result<Self, ConfigError> {
        if !path.is_file() {
            return Err(ConfigError::new(
                "config",
                format!("config file {} not found", path.display()),
            ));
        }
        let mut figment = Figment::new()
            .merge(Toml::file_exact(path))
            .merge(env_layer());
        if let Some(role) = role {
            figment = figment.merge(figment::providers::Serialized::default(
                "server.role",
                role.as_str(),
            ));
        }
        Self::from_figment(figment)
    }

    /// Parses a TOML document (no environment layer) and validates it; for
    /// tests and embedding.
    pub fn from_toml_str(toml: &str) -> Result<Self, ConfigError> {
        Self::from_figment(Figment::new().merge(Toml::string(toml)))
    }

    fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let config: Config = figment.extract().map_err(ConfigError::from_figment)?;
        config.validate()?;
        Ok(config)
    }

    /// Valid values that an operator should hear about: one line each,
    /// logged at start-up and printed by `check-config`.
    pub fn warnings(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if self.auth.key_rotation_secs < MIN_PRODUCTION_ROTATION_SECS {
            notes.push(format!(
                "auth.key_rotation_secs = {} is below {MIN_PRODUCTION_ROTATION_SECS}: meant for tests such as loadtest/crash.sh; the ring keeps every key for auth.token_max_secs after it retires",
                self.auth.key_rotation_secs
            ));
        }
        notes
    }

    /// Checks every value; the error names the offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::validate(self)
    }

    /// The group with this id.
    pub fn group(&self, id: GroupId) -> Option<&GroupConfig> {
        self.groups.iter().find(|g| g.id == id)
    }
}

fn env_layer() -> Env {
    Env::prefixed(ENV_PREFIX).split("__")
}

#[cfg(test)]
mod tests;
