//! The split roles' assembly: the internal listener, the key handover
//! (presence side), the stale-key watch (auth side) and, without Redis,
//! the revocation notices to the presence node.

use std::sync::Arc;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::ServerError;
use crate::auth::audit::Audit;
use crate::auth::token::{ReceivedKeys, TokenService};
use crate::infra::clock::SharedClock;
use crate::infra::config::{Config, ConfigReloader, ServerRole};
use crate::infra::internal_auth::InternalVerifier;
use crate::infra::metrics::Metrics;
use crate::presence::events::EventBus;
use crate::store::Store;
use crate::transport::http::RoleHealth;
use crate::transport::internal::{
    self, handover, notices, InternalDeps, InternalServer, SignedCaller,
};

/// What the roles left running.
pub(super) struct RoleParts {
    pub health: RoleHealth,
    pub internal: Option<InternalServer>,
}

/// What the roles are built from.
pub(super) struct RoleInputs {
    pub config: Arc<Config>,
    pub store: Arc<Store>,
    pub clock: SharedClock,
    pub tokens: Arc<TokenService>,
    pub received: Option<Arc<ReceivedKeys>>,
    pub events: Arc<dyn EventBus>,
    pub audit: Arc<Audit>,
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
    pub reloader: Arc<dyn ConfigReloader>,
}

/// Starts this role's side of the split (nothing for `all`).
pub(super) fn start(inputs: RoleInputs) -> Result<RoleParts, ServerError> {
    let RoleInputs {
        config,
        store,
        clock,
        tokens,
        received,
        events,
        audit,
        metrics,
        shutdown,
        reloader,
    } = inputs;
    let server = &config.server;
    let internal_deps = |received| InternalDeps {
        verifier: InternalVerifier::new(server.internal_secret()),
        clock: clock.clone(),
        received,
        tokens: tokens.clone(),
        events: events.clone(),
        audit: audit.clone(),
        metrics: metrics.clone(),
        reloader: reloader.clone(),
    };
    if !server.role.is_split() {
        // Role `all` listens only to serve `/internal/reload`, if asked to.
        return Ok(RoleParts {
            health: RoleHealth::All,
            internal: internal::start(&config, internal_deps(None))?,
        });
    }
    let caller = SignedCaller::new(server.internal_secret(), clock.clone())
        .map_err(|e| ServerError::Io(std::io::Error::other(e)))?;
    let health = match (server.role, &received) {
        (ServerRole::Auth, Some(keys)) => {
            let started_ms = clock.now_ms();
            handover::watch_received(
                keys.clone(),
                clock.clone(),
                config.auth.key_rotation_secs,
                started_ms,
                shutdown.clone(),
            );
            if !config.cluster.is_redis() {
                let wake = Arc::new(Notify::new());
                tokens
                    .revocations()
                    .forward_local(notices::forwarder(store.clone(), wake.clone()));
                notices::start(notices::NoticeSender {
                    caller: caller.clone(),
                    url: server.presence_internal_urls[0].clone(),
                    store: store.clone(),
                    clock: clock.clone(),
                    metrics: metrics.clone(),
                    wake,
                    shutdown: shutdown.clone(),
                });
            }
            RoleHealth::Auth {
                keys: keys.clone(),
                clock: clock.clone(),
                rotation_secs: config.auth.key_rotation_secs,
                started_ms,
            }
        }
        _ => RoleHealth::Presence(handover::start(
            handover::Sender {
                caller,
                keys: tokens.keys_arc(),
                store: store.clone(),
                clock: clock.clone(),
                metrics: metrics.clone(),
                shutdown: shutdown.clone(),
            },
            &server.auth_internal_urls,
        )),
    };
    let internal = internal::start(&config, internal_deps(received))?;
    Ok(RoleParts { health, internal })
}
