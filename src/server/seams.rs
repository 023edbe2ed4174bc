//! The seams a cluster build fills differently, chosen in one place: the
//! single-node implementations (sled and memory), or the shared ones of
//! cluster mode (Redis, through the node's [`ClusterLink`]).

use std::sync::Arc;

use crate::auth::sign_in::{
    InMemoryLockout, LockoutCounters, RedisAgents, RedisLockout, RedisUsedSsoTokens,
    RedisWebsiteSessions, SignInState, SledWebsiteSessions,
};
use crate::auth::token::{
    KeyRing, ReceivedKeys, RedisKeys, Revocations, SharedRevocations, SigningKeySource,
};
use crate::infra::clock::SharedClock;
use crate::infra::config::{Config, ServerRole};
use crate::presence::confirmation::{
    ConfirmationRecords, InMemoryFailureLocks, PromptFailureLocks, RedisConfirmationRecords,
    RedisFailureLocks,
};
use crate::presence::session_keys::{LocalSessionKeys, RedisSessionKeys, SessionKeys};
use crate::store::cluster::ClusterLink;
use crate::store::{Store, StoreError};

use super::SESSION_KEY_MISSES_PER_MINUTE;

/// The seams a cluster build fills differently: where signing keys come
/// from, and the short-lived state the nodes would share. Handlers,
/// sessions and services hold only the traits.
pub(super) struct Seams {
    pub keys: Arc<dyn SigningKeySource>,
    /// Auth role: the keys are only those presence nodes handed over.
    pub received: Option<Arc<ReceivedKeys>>,
    pub revocations: Revocations,
    pub sign_in: SignInState,
    pub session_keys: Arc<dyn SessionKeys>,
    pub session_key_misses: Arc<dyn LockoutCounters>,
    pub confirmation_records: Arc<dyn ConfirmationRecords>,
    pub prompt_failures: Arc<dyn PromptFailureLocks>,
}

impl Seams {
    /// This process alone: the rotating key ring, website sessions, used
    /// SSO token ids, confirmation records and session keys in sled;
    /// lockout counters and prompt failure locks in memory.
    pub(super) fn single_node(
        config: &Config,
        store: &Arc<Store>,
        clock: &SharedClock,
    ) -> Result<Self, StoreError> {
        // An auth node never generates a key (nor opens a key ring).
        let (keys, received): (Arc<dyn SigningKeySource>, _) = match config.server.role {
            ServerRole::Auth => {
                let received = Arc::new(ReceivedKeys::load(
                    store.clone(),
                    clock.clone(),
                    config.auth.token_max_secs,
                )?);
                (received.clone(), Some(received))
            }
            _ => (
                Arc::new(KeyRing::load_or_create(
                    store.clone(),
                    clock.clone(),
                    config.auth.key_rotation_secs,
                    config.auth.token_max_secs,
                )?),
                None,
            ),
        };
        let sign_in = SignInState {
            lockout: Arc::new(InMemoryLockout::new(
                clock.clone(),
                config.auth.lockout_failures,
                config.auth.lockout_client_failures,
                config.auth.lockout_window_secs,
            )),
            sessions: Arc::new(SledWebsiteSessions::new(
                store.clone(),
                clock.clone(),
                config.auth.session_idle_secs,
            )),
            used_sso_tokens: store.clone(),
            agents: store.clone(),
        };
        Ok(Self {
            keys,
            received,
            revocations: Revocations::load(store.clone())?,
            sign_in,
            session_keys: Arc::new(LocalSessionKeys::durable(
                store.clone(),
                clock.clone(),
                config.presence.session_key_ttl_secs,
                config.presence.session_key_mints_per_minute,
                config.presence.reconnect_grace_ms,
            )?),
            session_key_misses: Arc::new(InMemoryLockout::new(
                clock.clone(),
                SESSION_KEY_MISSES_PER_MINUTE,
                SESSION_KEY_MISSES_PER_MINUTE,
                60,
            )),
            confirmation_records: store.clone(),
            prompt_failures: Arc::new(InMemoryFailureLocks::default()),
        })
    }

    /// One node of a cluster: the state every node must see alike lives in
    /// Redis, reached through `link`: signing keys and revocations,
    /// lockout counters (scopes `sign_in` and `session_key`), website
    /// sessions, used SSO token ids and provisioned agents.
    pub(super) async fn cluster(
        config: &Config,
        store: &Arc<Store>,
        clock: &SharedClock,
        link: &ClusterLink,
    ) -> Result<Self, StoreError> {
        let mut seams = Self::single_node(config, store, clock)?;
        if seams.received.is_none() {
            seams.keys = Arc::new(
                RedisKeys::load(
                    link,
                    clock.clone(),
                    config.auth.key_rotation_secs,
                    config.auth.token_max_secs,
                    super::housekeeping::interval(config.auth.key_rotation_secs),
                )
                .await?,
            );
        }
        seams.revocations =
            Revocations::Shared(SharedRevocations::load(link, clock.clone()).await?);
        let auth = &config.auth;
        seams.sign_in = SignInState {
            lockout: Arc::new(RedisLockout::new(
                link,
                clock.clone(),
                "sign_in",
                (auth.lockout_failures, auth.lockout_client_failures),
                auth.lockout_window_secs,
            )),
            sessions: Arc::new(RedisWebsiteSessions::new(
                link,
                clock.clone(),
                auth.session_idle_secs,
            )),
            used_sso_tokens: Arc::new(RedisUsedSsoTokens::new(link, clock.clone())),
            agents: Arc::new(RedisAgents::new(link)),
        };
        seams.session_key_misses = Arc::new(RedisLockout::new(
            link,
            clock.clone(),
            "session_key",
            (SESSION_KEY_MISSES_PER_MINUTE, SESSION_KEY_MISSES_PER_MINUTE),
            60,
        ));
        let presence = &config.presence;
        seams.confirmation_records = RedisConfirmationRecords::new(
            link.clone(),
            clock.clone(),
            presence.confirm_timeout_ms + presence.confirmation_ttl_secs * 1000,
        );
        seams.prompt_failures = Arc::new(RedisFailureLocks::new(link.clone()));
        seams.session_keys = RedisSessionKeys::new(
            link.clone(),
            clock.clone(),
            presence.session_key_ttl_secs,
            presence.session_key_mints_per_minute,
        );
        Ok(seams)
    }
}
