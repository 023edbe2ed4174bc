//! What every handler and socket actor shares: config, registry address,
//! token service, origin policy, store, clock and the shutdown signal.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::audit::Audit;
use crate::auth::Authenticator;
use crate::auth::Lockout;
use crate::clock::SharedClock;
use crate::config::{Config, GroupConfig};
use crate::confirmation::Confirmations;
use crate::error::ApiError;
use crate::housekeeping::Chores;
use crate::ids::{GroupId, VisitorKey};
use crate::live_agents::LiveAgents;
use crate::origin::OriginPolicy;
use crate::registry::{RegistryHandle, VisitorState};
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
    /// Agent sockets by token id and by agent.
    pub live_agents: Arc<LiveAgents>,
    /// Confirmation prompts and grants.
    pub confirmations: Arc<Confirmations>,
    pub chores: Chores,
    pub store: Arc<Store>,
    pub clock: SharedClock,
    /// Cancelled when shutdown begins; sockets then close with 1001.
    pub shutdown: CancellationToken,
}

/// A visitor's lookup document as one agent sees it.
#[derive(Debug, serde::Serialize)]
pub struct VisitorView {
    #[serde(flatten)]
    pub state: VisitorState,
    /// Whether this agent holds a live confirmation of the visitor.
    pub confirmed: bool,
}

impl AppState {
    /// The configured group (tokens can outlive a config change).
    pub fn group(&self, id: GroupId) -> Result<&GroupConfig, ApiError> {
        self.config.group(id).ok_or(ApiError::UnknownGroup(id))
    }

    /// The lookup document of `key` for the agent `username`.
    pub fn visitor_view(&self, key: &VisitorKey, username: &str) -> VisitorView {
        VisitorView {
            state: self.registry.lookup(key),
            confirmed: self.confirmations.shows_confirmed(key, username),
        }
    }
}
