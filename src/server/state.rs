//! What every handler and socket actor shares: config, presence directory,
//! event bus, token service, origin policy, store, clock and the shutdown signal.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::auth::audit::Audit;
use crate::auth::sign_in::Authenticator;
use crate::auth::sign_in::LockoutCounters;
use crate::auth::token::TokenService;
use crate::infra::capacity::ConnectionGate;
use crate::infra::clock::SharedClock;
use crate::infra::config::function_allowed;
use crate::infra::config::{Config, GroupConfig};
use crate::infra::error::DomainError;
use crate::infra::ids::{GroupId, VisitorKey};
use crate::infra::metrics::Metrics;
use crate::presence::agent_ops::AgentOps;
use crate::presence::confirmation::Confirmations;
use crate::presence::events::EventBus;
use crate::presence::origin::OriginPolicy;
use crate::presence::registry::{PresenceDirectory, VisitorState};
use crate::presence::session_keys::{self, SessionKeys};
use crate::server::housekeeping::Chores;
use crate::store::Store;

pub struct AppState {
    /// The agent operations both transports call.
    pub ops: Arc<AgentOps>,
    pub config: Arc<Config>,
    /// Which visitors are present, and the routing of commands to them.
    pub registry: Arc<dyn PresenceDirectory>,
    pub tokens: Arc<TokenService>,
    pub origins: Arc<OriginPolicy>,
    pub auth: Arc<Authenticator>,
    pub audit: Arc<Audit>,
    /// Visitors' session keys.
    pub session_keys: Arc<dyn SessionKeys>,
    /// Session-key lookups that missed, per token and per client.
    pub session_key_misses: Arc<dyn LockoutCounters>,
    /// The event bus to live agent sockets (by token id, by agent, by
    /// watched visitor).
    pub live_agents: Arc<dyn EventBus>,
    /// Confirmation prompts and grants.
    pub confirmations: Arc<Confirmations>,
    pub chores: Chores,
    pub store: Arc<Store>,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
    /// Open WebSockets against the server's limit.
    pub gate: Arc<ConnectionGate>,
    /// Load balancers whose forwarding headers name the client.
    pub trusted_proxies: Arc<crate::transport::client_addr::TrustedProxies>,
    /// Cancelled when shutdown begins; sockets then close with 1001.
    pub shutdown: CancellationToken,
}
