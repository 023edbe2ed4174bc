//! What every handler and socket actor shares: config, registry address,
//! token service, origin policy, store, clock and the shutdown signal.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::agent_session::LiveAgents;
use crate::audit::Audit;
use crate::auth::Authenticator;
use crate::auth::Lockout;
use crate::clock::SharedClock;
use crate::config::Config;
use crate::housekeeping::Chores;
use crate::origin::OriginPolicy;
use crate::registry::RegistryHandle;
use crate::session_keys::SessionKeys;
use crate::store::Store;
use crate::token::TokenService;

pub struct AppState {
    pub config: Arc<Config>,
    pub registry: RegistryHandle,
    pub tokens: Arc<TokenService>,
    pub origins: Arc<OriginPolicy>,
    pub auth: Arc<Authenticator>,
    pub audit: Arc<Audit>,
    /// Visitors' session keys.
    pub session_keys: Arc<SessionKeys>,
    /// Session-key lookups that missed, per token and per client.
    pub session_key_misses: Arc<Lockout>,
    /// Agent sockets by token id, for revocation.
    pub live_agents: Arc<LiveAgents>,
    pub chores: Chores,
    pub store: Arc<Store>,
    pub clock: SharedClock,
    /// Cancelled when shutdown begins; sockets then close with 1001.
    pub shutdown: CancellationToken,
}
