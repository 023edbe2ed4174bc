//! The command line: `serve` (the default) and operator tools; the token
//! tools (`gen-token`, `check-token`, `keys`) are in `cli/`.

mod key_tools;
mod token_check;
pub mod token_commands;
mod token_tools;

use std::io::Read;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::auth::password::{hash_password, MAX_PASSWORD_BYTES};
use crate::infra::config::{Config, ServerRole};

/// The demo config `cargo run` starts with.
pub const DEFAULT_CONFIG_PATH: &str = "config/default.toml";

#[derive(Debug, Parser)]
#[command(
    name = "presence-server",
    version,
    about = "Actor-based real-time presence server"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default, with config/default.toml).
    Serve {
        /// TOML config file; PRESENCE__SECTION__KEY variables override it.
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// What this process serves (overrides `server.role`).
        #[arg(long, value_enum)]
        role: Option<ServerRole>,
    },
    /// Read a password on stdin and print its argon2id PHC string.
    HashPassword,
    /// Load and validate a config file, then exit.
    CheckConfig {
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// Check the config as this role would load it.
        #[arg(long, value_enum)]
        role: Option<ServerRole>,
    },
    /// Print the REST API's OpenAPI 3.1 document (as served at /openapi.json).
    Openapi,
    /// Ask the running server to reload its config file and environment:
    /// `POST /internal/reload` to this node's internal listener (needs
    /// `server.internal_secret`), or with `--all` a reload broadcast to
    /// every node of the cluster (`[cluster] mode = "redis"`).
    Reload {
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// Load the config as this role would.
        #[arg(long, value_enum)]
        role: Option<ServerRole>,
        /// Every node of the cluster, each reloading its own file.
        #[arg(long)]
        all: bool,
    },
    /// Print a partner login key ($1$<exp>$<sig>) signed with the group's api_key.
    LoginKey {
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// The partner (group) id.
        #[arg(long)]
        group: u64,
        /// The partner user id.
        #[arg(long)]
        puid: String,
        /// Seconds until the key expires.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
    /// Print an agent token for a configured user, signed with the current
    /// key (refused while a server holds the data dir, unless in cluster
    /// mode).
    GenToken {
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// Open the data dir as this role would (overrides `server.role`).
        #[arg(long, value_enum)]
        role: Option<ServerRole>,
        /// The group id.
        #[arg(long)]
        group: u64,
        /// The configured username; the token gets its role and name.
        #[arg(long)]
        user: String,
        /// Seconds the token lives (auth.token_default_secs if omitted).
        #[arg(long)]
        ttl: Option<u64>,
    },
    /// Say whether a token is valid, why not (the server's error code), and
    /// its claims. Exit 0 valid, 1 invalid, 2 usage or config error.
    CheckToken {
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        #[arg(long, value_enum)]
        role: Option<ServerRole>,
        /// The token; `-` reads it from stdin (keeps it out of `ps`).
        token: String,
    },
    /// The signing key ring: list it (no secret bytes), or rotate now.
    Keys {
        #[command(subcommand)]
        action: KeysCommand,
    },
}

/// `keys list` and `keys rotate`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Show every key: kid, state, created, active from, age, retirement.
    List {
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        #[arg(long, value_enum)]
        role: Option<ServerRole>,
        /// One JSON array instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Make a fresh key the signer now; the old one keeps verifying.
    Rotate {
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        #[arg(long, value_enum)]
        role: Option<ServerRole>,
    },
}

impl Cli {
    /// The command to run; `serve` with the demo config when none is given.
    pub fn command(self) -> Command {
        self.command.unwrap_or(Command::Serve {
            config: PathBuf::from(DEFAULT_CONFIG_PATH),
            role: None,
        })
    }
}

/// `hash-password`: one line (or all) of stdin, without the trailing newline.
pub fn hash_password_from(mut input: impl Read) -> Result<String, String> {
    let mut raw = String::new();
    input
        .by_ref()
        .take(MAX_PASSWORD_BYTES as u64 + 2)
        .read_to_string(&mut raw)
        .map_err(|e| format!("cannot read stdin: {e}"))?;
    let password = raw.strip_suffix('\n').unwrap_or(&raw);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        return Err("empty password".into());
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!("password longer than {MAX_PASSWORD_BYTES} bytes"));
    }
    hash_password(password).map_err(|e| e.to_string())
}

/// `login-key`: a key for `puid` in `group`, expiring `ttl` seconds after
/// `now`.
pub fn login_key(
    config: &Config,
    group: u64,
    puid: &str,
    ttl: u64,
    now: u64,
) -> Result<String, String> {
    use secrecy::ExposeSecret;
    let g = config
        .group(group)
        .ok_or_else(|| format!("group {group} is not in the config"))?;
    let api_key = g
        .api_key
        .as_ref()
        .ok_or_else(|| format!("group {group} has no api_key"))?;
    let max = config.auth.login_key_max_future_secs;
    if ttl == 0 || ttl > max {
        return Err(format!(
            "--ttl must be 1 to auth.login_key_max_future_secs ({max})"
        ));
    }
    if puid.is_empty() || puid.len() > 128 {
        return Err("--puid must be 1 to 128 characters".into());
    }
    Ok(crate::auth::sign_in::login_key::generate(
        api_key.expose_secret().as_bytes(),
        group,
        puid,
        now + ttl,
    ))
}

/// `check-config`.
pub fn check_config(path: &std::path::Path, role: Option<ServerRole>) -> Result<Config, String> {
    Config::load_as(path, role).map_err(|e| e.to_string())
}

/// What `check-config` prints after a valid config: a `warning:` line per
/// password hash with other than the recommended parameters, and the
/// parameters unknown users are checked with.
pub fn check_config_notes(config: &Config) -> Vec<String> {
    let mut notes: Vec<String> = crate::auth::password::hash_warnings(config)
        .iter()
        .map(|w| format!("warning: {w}"))
        .chain(
            config
                .warnings()
                .into_iter()
                .map(|w| format!("warning: {w}")),
        )
        .collect();
    let hashes = crate::auth::password::configured_hashes(config);
    notes.push(format!(
        "unknown users are checked against argon2id {} (the costliest configured parameters, never below the recommended)",
        crate::auth::password::dummy_params(hashes.iter().map(|h| h.phc))
    ));
    notes
}

/// `reload`: asks this node (signed `POST /internal/reload`) or, with
/// `all`, every node of the cluster (a `reload` broadcast) to reload; what
/// to print on success.
/// This node's internal listener (an unspecified bind address is reached on
/// loopback) and a caller that signs with `server.internal_secret`.
pub(crate) fn internal_caller(
    config: &Config,
) -> Result<(String, crate::transport::internal::SignedCaller), String> {
    let mut addr = config.server.internal_addr().map_err(|e| e.to_string())?;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let caller = crate::transport::internal::SignedCaller::new(
        config.server.internal_secret(),
        std::sync::Arc::new(crate::infra::clock::SystemClock),
    )?;
    Ok((format!("http://{addr}"), caller))
}

pub async fn reload(config: &Config, all: bool) -> Result<String, String> {
    if all {
        if !config.cluster.is_redis() {
            return Err(
                "--all needs [cluster] mode = \"redis\"; a single node reloads without --all (or on SIGHUP)"
                    .into(),
            );
        }
        let nodes = crate::store::cluster::publish_reload(&config.cluster).await?;
        if nodes == 0 {
            return Err("no node is listening on the cluster's control channel".into());
        }
        return Ok(format!(
            "reload published to {nodes} node(s); each reloads its own config file (see /healthz: config_hash, last_reload)"
        ));
    }
    if !config.server.runs_internal_listener() {
        return Err(
            "server.internal_secret is not set, so this node serves no /internal/reload; set it (at least 32 bytes) or send the process SIGHUP"
                .into(),
        );
    }
    let (base, caller) = internal_caller(config)?;
    let report: serde_json::Value = caller
        .post(
            &base,
            crate::transport::internal::RELOAD_PATH,
            b"{}".to_vec(),
        )
        .await?;
    Ok(serde_json::to_string_pretty(&report).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_password_strips_the_newline() {
        let phc = hash_password_from("s3cret\n".as_bytes()).expect("hash");
        let checker = crate::auth::password::PasswordChecker::new().expect("checker");
        assert!(checker.check("s3cret", Some(&phc)));
    }

    #[test]
    fn hash_password_refuses_empty_and_huge_input() {
        assert!(hash_password_from("\n".as_bytes()).is_err());
        let huge = "x".repeat(MAX_PASSWORD_BYTES + 1);
        assert!(hash_password_from(huge.as_bytes()).is_err());
    }

    #[test]
    fn login_keys_come_from_the_groups_api_key() {
        let config = Config::from_toml_str(include_str!("../config/default.toml")).expect("demo");
        let key = login_key(&config, 72, "fred", 3600, 1_767_222_000).expect("key");
        assert_eq!(
            key,
            "$1$1767225600$8hwsGeuhRBzMKTqH9PMJpyyLPLqIrzocP1i6dh_DUjs"
        );
        assert!(login_key(&config, 99, "fred", 3600, 0).is_err());
        assert!(login_key(&config, 72, "fred", 86_401, 0).is_err());
        assert!(login_key(&config, 72, "", 60, 0).is_err());
    }

    #[test]
    fn no_subcommand_means_serve_the_demo_config() {
        let cli = Cli::parse_from(["presence-server"]);
        assert!(
            matches!(cli.command(), Command::Serve { config, role: None } if config == std::path::Path::new(DEFAULT_CONFIG_PATH))
        );
    }
}
