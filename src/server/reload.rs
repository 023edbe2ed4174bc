//! Live config reload: on SIGHUP, `POST /internal/reload` or a cluster's
//! `reload` broadcast, the config file and environment are read again
//! through the start-up loader and validated the same way; a change to a
//! restart-only key refuses the whole reload (`infra::config::live`). An
//! accepted config is put in force without dropping a socket: the accounts
//! (password checker, SSO keys), the Origin rules and the group lookups
//! switch at once; removed users' tokens are denylisted and every socket
//! the new rules no longer admit is closed. Whatever else must follow the
//! config registers an [`ReloadListener`] (called after the swap).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use futures_core::future::BoxFuture;

use crate::auth::audit::{Audit, AuditRecord, Outcome};
use crate::auth::password::{self, PasswordChecker};
use crate::auth::sign_in::{Accounts, Authenticator};
use crate::auth::token::{ConfiguredStanding, Removal, TokenService};
use crate::infra::clock::SharedClock;
use crate::infra::config::{
    restart_only_changes, settings_hash, Config, ConfigError, ConfigReloader, ConfigSource,
    LiveConfig, ReloadChanges, ReloadOutcome, ReloadReport,
};
use crate::infra::error::on_blocking_pool;
use crate::infra::ids::GroupId;
use crate::infra::metrics::Metrics;
use crate::presence::admission::GroupAccess;
use crate::presence::events::EventBus;
use crate::presence::live_sockets::LiveSockets;
use crate::presence::origin::OriginPolicy;
use crate::store::cluster::ClusterLink;

/// Called with the new config after a reload put it in force (the hook for
/// parts added later, such as per-group webhook subscriptions). Must not
/// block.
pub type ReloadListener = Arc<dyn Fn(&Arc<Config>) + Send + Sync>;

/// What a reload swaps or tells.
pub struct Reloader {
    pub(super) source: Option<ConfigSource>,
    pub(super) live: Arc<LiveConfig>,
    pub(super) auth: Arc<Authenticator>,
    pub(super) origins: Arc<OriginPolicy>,
    pub(super) groups: Arc<GroupAccess>,
    pub(super) standing: Arc<ConfiguredStanding>,
    pub(super) tokens: Arc<TokenService>,
    /// Where the removed users' revocations are recorded.
    pub(super) audit: Arc<Audit>,
    pub(super) events: Arc<dyn EventBus>,
    pub(super) sockets: Arc<LiveSockets>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) clock: SharedClock,
    pub(super) cluster: Option<ClusterLink>,
    pub(super) hash: Mutex<String>,
    pub(super) last: Mutex<Option<ReloadReport>>,
    /// One reload at a time.
    pub(super) running: tokio::sync::Mutex<()>,
    pub(super) listeners: Mutex<Vec<ReloadListener>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

type Refusal = (ReloadOutcome, String);

fn failed(error: impl std::fmt::Display) -> Refusal {
    (ReloadOutcome::Failed, error.to_string())
}

impl Reloader {
    /// Registers `listener`, called after every applied reload.
    pub fn on_applied(&self, listener: ReloadListener) {
        lock(&self.listeners).push(listener);
    }

    async fn run(self: Arc<Self>) -> ReloadReport {
        let _one_at_a_time = self.running.lock().await;
        let attempt = self.attempt().await;
        let (outcome, error, changes) = match attempt {
            Ok(changes) => (ReloadOutcome::Applied, None, Some(changes)),
            Err((outcome, error)) => (outcome, Some(error), None),
        };
        let at_ms = self.clock.now_ms();
        let report = ReloadReport {
            outcome,
            at_ms,
            error,
            config_hash: lock(&self.hash).clone(),
            changes,
        };
        self.metrics
            .reloads
            .reloaded(outcome.as_str(), at_ms / 1000);
        match (&report.error, &report.changes) {
            (None, Some(changes)) => tracing::info!(
                config_hash = %report.config_hash,
                groups_added = ?changes.groups_added,
                groups_removed = ?changes.groups_removed,
                users_added = ?changes.users_added,
                users_removed = ?changes.users_removed,
                tokens_revoked = changes.tokens_revoked,
                agent_sockets_revoked = changes.agent_sockets_revoked,
                visitor_sockets_closed = changes.visitor_sockets_closed,
                agent_sockets_closed = changes.agent_sockets_closed,
                "config reloaded"
            ),
            (Some(error), _) if outcome == ReloadOutcome::Refused => tracing::warn!(
                config_hash = %report.config_hash,
                "config reload refused, the config in force stays: {error}"
            ),
            (error, _) => tracing::error!(
                config_hash = %report.config_hash,
                "config reload failed, the config in force stays: {}",
                error.as_deref().unwrap_or("")
            ),
        }
        *lock(&self.last) = Some(report.clone());
        report
    }

    /// Loads, checks, builds and applies; any error before the swap leaves
    /// everything as it was.
    async fn attempt(&self) -> Result<ReloadChanges, Refusal> {
        let source = self.source.clone().ok_or_else(|| {
            failed(ConfigError::new(
                "config",
                "this server was started without a config file: there is nothing to re-read",
            ))
        })?;
        let new = on_blocking_pool("config reload", move || source.load())
            .await
            .map_err(failed)?
            .map_err(failed)?;
        let new = Arc::new(new);
        let old = self.live.current();
        let restart_only = restart_only_changes(&old, &new);
        if !restart_only.is_empty() {
            return Err((
                ReloadOutcome::Refused,
                format!(
                    "changed {}: only a restart applies {}",
                    restart_only.join(", "),
                    if restart_only.len() == 1 {
                        "it"
                    } else {
                        "them"
                    }
                ),
            ));
        }
        // Everything derived is built before anything is swapped.
        let hashes = new.clone();
        let passwords = on_blocking_pool("password checker", move || {
            PasswordChecker::for_hashes(password::configured_hashes(&hashes).iter().map(|h| h.phc))
        })
        .await
        .map_err(failed)?
        .map_err(|e| {
            failed(ConfigError::new(
                "groups.users.password_hash",
                e.to_string(),
            ))
        })?;
        let accounts = Accounts::build(new.clone(), Arc::new(passwords))
            .map_err(|message| failed(ConfigError::new("groups.sso", message)))?;
        for warning in new.warnings() {
            tracing::warn!("{warning}");
        }
        for warning in password::hash_warnings(&new) {
            tracing::warn!(group = warning.group, user = %warning.username, "{warning}");
        }

        let mut changes = diff(&old, &new);
        let now = self.clock.now_secs();
        let removed = removed_users(&old, &new);
        let restored = restored_users(&old, &new);
        let removal = Removal {
            users: &removed,
            groups: &changes.groups_removed,
            restored_users: &restored,
            restored_groups: &changes.groups_added,
        };
        // Removed users stop standing before the swap (a removed group
        // once it is gone from the config in force), so no token of
        // theirs verifies in between.
        self.standing.removed(removal, now, new.auth.token_max_secs);
        self.live.replace(new.clone());
        self.auth.replace_accounts(accounts);
        self.origins.replace(&new);
        changes.tokens_revoked = self.revoke_tokens(&removed, now).await;
        let removed: HashSet<(GroupId, String)> = removed.into_iter().collect();
        changes.agent_sockets_revoked = self
            .events
            .revoke_agents(&|group, user| removed.contains(&(group, user.to_owned())));
        let (visitors, agents) = self.sockets.recheck(&self.groups);
        changes.visitor_sockets_closed = visitors;
        changes.agent_sockets_closed = agents;
        let listeners = lock(&self.listeners).clone();
        for listener in listeners {
            listener(&new);
        }
        let hash = settings_hash(&new);
        *lock(&self.hash) = hash.clone();
        if let Some(link) = &self.cluster {
            link.set_config_hash(hash);
        }
        Ok(changes)
    }

    /// Denylists every live token of the removed users (durably, and in a
    /// cluster on every node) and closes this node's sockets using them.
    /// A failure is logged: the standing check refuses the tokens anyway.
    async fn revoke_tokens(&self, removed: &[(GroupId, String)], now: u64) -> usize {
        if removed.is_empty() {
            return 0;
        }
        let (tokens, audit, users) = (self.tokens.clone(), self.audit.clone(), removed.to_vec());
        let revoked = on_blocking_pool("reload revocations", move || {
            let mut revoked = Vec::new();
            for (group, user) in &users {
                let live = tokens.revocations().live_tokens_of(*group, user, now)?;
                for (jti, owner) in live {
                    tokens.revocations().revoke(&jti, owner.exp)?;
                    let mut record = AuditRecord::new(Outcome::Revoked, audit.now_ms());
                    record.groupid = Some(owner.groupid);
                    record.username = Some(owner.sub.clone());
                    record.jti = Some(jti.clone());
                    record.exp = Some(owner.exp);
                    record.reason = Some("revoked by a config reload: the user was removed".into());
                    audit.record(&record)?;
                    revoked.push(jti);
                }
            }
            Ok::<_, crate::store::StoreError>(revoked)
        })
        .await;
        match revoked {
            Ok(Ok(jtis)) => {
                for jti in &jtis {
                    self.events.revoke(jti);
                }
                jtis.len()
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "config reload: could not denylist removed users' tokens");
                0
            }
            Err(e) => {
                tracing::error!(error = %e, "config reload: could not denylist removed users' tokens");
                0
            }
        }
    }
}

impl ConfigReloader for Reloader {
    fn reload(self: Arc<Self>) -> BoxFuture<'static, ReloadReport> {
        Box::pin(self.run())
    }

    fn config_hash(&self) -> String {
        lock(&self.hash).clone()
    }

    fn last_reload(&self) -> Option<ReloadReport> {
        lock(&self.last).clone()
    }
}

fn users(config: &Config) -> HashSet<(GroupId, String)> {
    config
        .groups
        .iter()
        .flat_map(|g| g.users.iter().map(|u| (g.id, u.username.clone())))
        .collect()
}

/// Configured users that `new` no longer has (a removed group removes all
/// of its users).
fn removed_users(old: &Config, new: &Config) -> Vec<(GroupId, String)> {
    let kept = users(new);
    let mut removed: Vec<_> = users(old).difference(&kept).cloned().collect();
    removed.sort();
    removed
}

/// Users `new` configures that `old` did not.
fn restored_users(old: &Config, new: &Config) -> Vec<(GroupId, String)> {
    let before = users(old);
    let mut added: Vec<_> = users(new).difference(&before).cloned().collect();
    added.sort();
    added
}

fn diff(old: &Config, new: &Config) -> ReloadChanges {
    let ids = |c: &Config| c.groups.iter().map(|g| g.id).collect::<HashSet<_>>();
    let (before, after) = (ids(old), ids(new));
    let mut groups_added: Vec<_> = after.difference(&before).copied().collect();
    let mut groups_removed: Vec<_> = before.difference(&after).copied().collect();
    groups_added.sort_unstable();
    groups_removed.sort_unstable();
    let named = |list: Vec<(GroupId, String)>| {
        list.into_iter()
            .map(|(g, u)| format!("{g}/{u}"))
            .collect::<Vec<_>>()
    };
    ReloadChanges {
        groups_added,
        groups_removed,
        users_added: named(restored_users(old, new)),
        users_removed: named(removed_users(old, new)),
        ..ReloadChanges::default()
    }
}

/// Cluster mode: publishes this node's config hash on its beats, and
/// reloads on every `reload` broadcast (`presence-server reload --all`).
/// Register before the link starts.
pub(super) fn on_broadcast(link: &ClusterLink, reloader: &Arc<Reloader>) {
    link.set_config_hash(reloader.config_hash());
    let (asked, runtime) = (reloader.clone(), link.runtime().clone());
    link.on_control(
        crate::store::cluster::RELOAD_BROADCAST,
        Arc::new(move |from, _body| {
            tracing::info!(from, "reload broadcast: reloading the config");
            let reloader = asked.clone();
            runtime.spawn(async move {
                reloader.run().await;
            });
        }),
    );
}

/// Without Unix signals there is no SIGHUP: reload over HTTP.
#[cfg(not(unix))]
pub(super) fn on_sighup(
    _reloader: Arc<Reloader>,
    _shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    Ok(())
}

/// Reloads on every SIGHUP until `shutdown` (SIGHUP no longer ends the
/// process once this runs).
#[cfg(unix)]
pub(super) fn on_sighup(
    reloader: Arc<Reloader>,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = signal(SignalKind::hangup())?;
    actix_web::rt::spawn(async move {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                got = hangups.recv() => {
                    if got.is_none() {
                        return;
                    }
                    tracing::info!("SIGHUP: reloading the config");
                    reloader.clone().run().await;
                }
            }
        }
    });
    Ok(())
}
