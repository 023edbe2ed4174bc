//! The token tools' access to the signing keys and the token records, and
//! `gen-token`; `check-token` is in `token_check.rs`, `keys list|rotate`
//! in `key_tools.rs`.
//!
//! They open what the server opens, through the same seams: on a single
//! node the [`KeyRing`] (or, on an auth-role data dir, the
//! [`ReceivedKeys`]) and the denylist in sled's `server.data_dir`, whose
//! exclusive lock a running server holds, so every tool refuses then
//! ([`ToolError::Held`]); in cluster mode the ring and the revocations in
//! Redis ([`RedisKeys`], [`SharedRevocations`]) over a link that never
//! joins the cluster (no lease, no subscriber), so the tools work while
//! nodes run.

use std::sync::Arc;

use crate::auth::audit::{Audit, AuditRecord, Outcome};
use crate::auth::sign_in::{CredentialKind, ProvisionedAgents, RedisAgents};
use crate::auth::token::{
    IssuedToken, KeyRing, ReceivedKeys, RedisKeys, Revocations, SharedRevocations,
    SigningKeySource, TokenService,
};
use crate::infra::clock::{SharedClock, SystemClock};
use crate::infra::config::{valid_username, Config, ServerRole, UserConfig, MIN_TOKEN_SECS};
use crate::infra::error::DomainError;
use crate::infra::ids::GroupId;
use crate::infra::metrics::Metrics;
use crate::store::cluster::ClusterLink;
use crate::store::{AgentRecord, AgentSource, Store, StoreError};

/// Why a tool could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The config did not load (exit 2).
    #[error("{0}")]
    Config(String),
    /// A running server holds the data dir (single node).
    #[error("a server holds the data dir {0}; stop it, or use cluster mode ([cluster] mode = \"redis\"), where the keys live in Redis")]
    Held(String),
    /// The request was refused: bad group, user, ttl, role.
    #[error("{0}")]
    Refused(String),
    /// Storage or Redis failed.
    #[error("{0}")]
    Failed(String),
}

impl From<StoreError> for ToolError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Held(dir) => ToolError::Held(dir),
            e => ToolError::Failed(e.to_string()),
        }
    }
}

/// What a tool needs of the data dir and the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads only: refuse a data dir (or a Redis ring) no server created,
    /// rather than creating one.
    Read,
    /// May create the data dir and the first key, as the server would.
    Write,
}

/// The keys and token records of one deployment, opened as its server
/// opens them.
pub struct TokenTools {
    pub(super) config: Config,
    pub(super) clock: SharedClock,
    pub(super) tokens: TokenService,
    /// Single node: the data dir, held while the tool runs.
    pub(super) store: Option<Arc<Store>>,
    /// Agents seen or provisioned (last issued a token), as the server
    /// keeps them.
    agents: Arc<dyn ProvisionedAgents>,
    /// Single node, presence side: the ring itself (to rotate it).
    pub(super) ring: Option<Arc<KeyRing>>,
    /// Cluster mode: the shared ring (to rotate it) and the runtime that
    /// waits on it.
    pub(super) shared: Option<(RedisKeys, tokio::runtime::Runtime)>,
}

impl TokenTools {
    /// Opens the keys and records `config` names.
    pub fn open(config: Config, access: Access) -> Result<Self, ToolError> {
        let clock: SharedClock = Arc::new(SystemClock);
        if config.cluster.is_redis() {
            return Self::open_cluster(config, clock, access);
        }
        let dir = &config.server.data_dir;
        // sled keeps its pages in `db`: without it, no server has run here.
        if access == Access::Read && !dir.join("db").is_file() {
            return Err(ToolError::Failed(format!(
                "no data dir at {}: no server has run with this config",
                dir.display()
            )));
        }
        let store = Arc::new(Store::open(dir)?);
        let auth = &config.auth;
        let (keys, ring): (Arc<dyn SigningKeySource>, _) = match config.server.role {
            ServerRole::Auth => (
                Arc::new(ReceivedKeys::load(
                    store.clone(),
                    clock.clone(),
                    auth.token_max_secs,
                )?),
                None,
            ),
            _ => {
                if access == Access::Read && store.signing_keys()?.is_empty() {
                    return Err(ToolError::Failed(format!(
                        "the key ring in {} is empty: no server has run with this config",
                        dir.display()
                    )));
                }
                let ring = Arc::new(KeyRing::load_or_create(
                    store.clone(),
                    clock.clone(),
                    auth.key_rotation_secs,
                    auth.token_max_secs,
                )?);
                (ring.clone(), Some(ring))
            }
        };
        let revocations = Revocations::load(store.clone())?;
        let tokens = TokenService::new(keys, revocations, clock.clone(), auth.token_max_secs);
        Ok(Self {
            config,
            clock,
            tokens,
            agents: store.clone(),
            store: Some(store),
            ring,
            shared: None,
        })
    }

    /// Cluster mode: the ring and revocations in Redis, whatever the role
    /// (auth nodes verify with the keys presence nodes hand over from this
    /// ring).
    fn open_cluster(config: Config, clock: SharedClock, access: Access) -> Result<Self, ToolError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ToolError::Failed(format!("cannot start a runtime: {e}")))?;
        let auth = config.auth.clone();
        let cluster = config.cluster.clone();
        let opened: Result<_, ToolError> = runtime.block_on(async {
            let link = ClusterLink::connect(&cluster, Arc::new(Metrics::new()))
                .await
                .map_err(|e| ToolError::Failed(format!("cluster: {e}")))?;
            if access == Access::Read {
                let hash = link.key("signing_keys");
                let held: u64 = link
                    .run("count signing keys", move |mut conn| async move {
                        redis::cmd("HLEN").arg(hash).query_async(&mut conn).await
                    })
                    .await
                    .map_err(StoreError::from)?;
                if held == 0 {
                    return Err(ToolError::Failed(
                        "the cluster's key ring in Redis is empty: no node has run with this config"
                            .into(),
                    ));
                }
            }
            let keys = RedisKeys::load(
                &link,
                clock.clone(),
                auth.key_rotation_secs,
                auth.token_max_secs,
                crate::server::housekeeping::interval(auth.key_rotation_secs),
            )
            .await?;
            let revocations = SharedRevocations::load(&link, clock.clone()).await?;
            Ok((keys, revocations, RedisAgents::new(&link)))
        });
        let (keys, revocations, agents) = opened?;
        let tokens = TokenService::new(
            Arc::new(keys.clone()),
            Revocations::Shared(revocations),
            clock.clone(),
            auth.token_max_secs,
        );
        Ok(Self {
            config,
            clock,
            tokens,
            agents: Arc::new(agents),
            store: None,
            ring: None,
            shared: Some((keys, runtime)),
        })
    }

    /// The key source the tools sign and verify with.
    pub(super) fn keys(&self) -> &dyn SigningKeySource {
        self.tokens.keys()
    }
}

/// What `gen-token` did.
pub struct Generated {
    pub issued: IssuedToken,
    /// Why no audit record was written, if none was (cluster mode, the
    /// node-local data dir held by a running node).
    pub unaudited: Option<String>,
}

/// The configured user a `gen-token` request names, once the request is
/// one the server would grant: a group with Presence, a valid and
/// configured username, a lifetime in the server's range, and a data dir
/// whose index `/auth/revoke` reads. Checked before anything is opened.
pub fn requested_user<'c>(
    config: &'c Config,
    group: GroupId,
    username: &str,
    ttl: u64,
) -> Result<&'c UserConfig, ToolError> {
    let refused = |m: String| Err(ToolError::Refused(m));
    if config.server.role == ServerRole::Presence && !config.cluster.is_redis() {
        // The auth node answers `/auth/revoke` from its own index: a token
        // indexed here could never be revoked.
        return refused(
            "split roles without Redis: the auth node issues and revokes tokens, so generate them on the auth node's data dir (--role auth)".into(),
        );
    }
    let Some(group_config) = config.group(group) else {
        return refused(format!("group {group} is not in the config"));
    };
    if !group_config.presence {
        return refused(format!(
            "group {group} has no Presence subscription (presence = false): the server refuses its tokens"
        ));
    }
    if !valid_username(username) {
        return refused(format!(
            "--user {username:?} is not a valid username (1 to 128 of A-Z a-z 0-9 . _ @ + -)"
        ));
    }
    let Some(user) = group_config.users.iter().find(|u| u.username == username) else {
        return refused(format!(
            "user {username} is not configured in group {group} ([[groups.users]]); gen-token issues tokens only to configured users (an SSO user's scope comes from the customer's signed token)"
        ));
    };
    let max = config.auth.token_max_secs;
    if !(MIN_TOKEN_SECS..=max).contains(&ttl) {
        return refused(format!(
            "--ttl must be {MIN_TOKEN_SECS} to auth.token_max_secs ({max}) seconds"
        ));
    }
    Ok(user)
}

/// `gen-token`: a token for the configured user `username` of `group`,
/// living `ttl` seconds, with the claims `POST /auth/token` gives it (its
/// role and display name from the config), recorded in the issued-token
/// index (so it can be revoked) and in the audit log with credential
/// `cli` before it is printed.
pub fn gen_token(
    tools: &TokenTools,
    group: GroupId,
    username: &str,
    ttl: u64,
) -> Result<Generated, ToolError> {
    let user = requested_user(&tools.config, group, username, ttl)?;
    if tools.keys().signing_key().is_none() {
        return Err(ToolError::Refused(format!(
            "{}: an auth-role data dir gets its keys from the presence node; start the pair once",
            DomainError::NoSigningKey
        )));
    }
    // Last issued a token now, as a sign-in records it.
    let seen = AgentRecord {
        username: username.to_owned(),
        name: user.name.clone(),
        role: user.role,
        source: AgentSource::Config,
        first_seen: 0,
        last_seen: 0,
    };
    tools
        .agents
        .touch_agent(group, &seen, tools.clock.now_secs())
        .map_err(|e| ToolError::Failed(format!("the agent record could not be written: {e}")))?;
    let issued = tools
        .tokens
        .issue_scoped(username, group, user.role, ttl, user.name.clone(), None)
        .map_err(|e| ToolError::Failed(format!("the token could not be issued: {e}")))?;
    let unaudited = audit_issue(tools, &issued)?;
    Ok(Generated { issued, unaudited })
}

/// Writes the `issued` audit record before the token is printed: into the
/// tool's open store; in cluster mode into the node-local data dir, or,
/// while a node holds it, through that node's internal listener (which
/// flushes it before answering). With neither, the token is not printed.
fn audit_issue(tools: &TokenTools, issued: &IssuedToken) -> Result<Option<String>, ToolError> {
    let claims = &issued.claims;
    let mut record = AuditRecord::new(Outcome::Issued, tools.clock.now_ms())
        .with_client(None, Some("presence-server gen-token"));
    record.groupid = Some(claims.groupid);
    record.username = Some(claims.sub.clone());
    record.credential = Some(CredentialKind::Cli);
    record.role = Some(claims.role);
    record.jti = Some(claims.jti.clone());
    record.iat = Some(claims.iat);
    record.exp = Some(claims.exp);
    // Informative only (the environment says it), so kept short and plain.
    let operator: String = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into())
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(64)
        .collect();
    record.reason = Some(format!("issued by the command line (OS user {operator})"));
    let store = match &tools.store {
        Some(store) => store.clone(),
        None => match Store::open(&tools.config.server.data_dir) {
            Ok(store) => Arc::new(store),
            Err(StoreError::Held(dir)) => return audit_through_node(tools, &record, &dir),
            Err(e) => return Err(ToolError::Failed(format!("audit: {e}"))),
        },
    };
    let audit = Audit::new(
        store,
        tools.clock.clone(),
        tools.config.auth.audit_retention_days,
        Arc::new(Metrics::new()),
    );
    audit
        .record(&record)
        .map_err(|e| ToolError::Failed(format!("audit: {e}; the token was not printed")))?;
    Ok(None)
}

/// Cluster mode, a node holding the data dir: the node records it.
fn audit_through_node(
    tools: &TokenTools,
    record: &AuditRecord,
    dir: &str,
) -> Result<Option<String>, ToolError> {
    let not_printed = |why: String| {
        ToolError::Refused(format!(
            "a node holds the data dir {dir} and keeps its audit log, so the token's audit record goes through its internal listener: {why}; the token was not printed"
        ))
    };
    if !tools.config.server.runs_internal_listener() {
        return Err(not_printed(
            "set server.internal_bind and server.internal_secret as the node has them".into(),
        ));
    }
    let Some((_, runtime)) = &tools.shared else {
        return Err(not_printed("not in cluster mode".into()));
    };
    let (base, caller) = crate::cli::internal_caller(&tools.config).map_err(not_printed)?;
    let body = serde_json::to_vec(record).map_err(|e| not_printed(e.to_string()))?;
    runtime
        .block_on(caller.post::<serde_json::Value>(
            &base,
            crate::transport::internal::AUDIT_PATH,
            body,
        ))
        .map_err(not_printed)?;
    Ok(None)
}
