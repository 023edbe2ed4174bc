//! What a live config reload reports, and the seam the transports trigger
//! it through (the server assembles the reloader; the internal listener,
//! `/healthz` and the cluster's control channel only hold the trait).

use std::sync::Arc;

use futures_core::future::BoxFuture;
use serde::Serialize;

use crate::infra::ids::GroupId;

/// How a reload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReloadOutcome {
    /// The new config is in force.
    Applied,
    /// It changes a restart-only key; the old config stays.
    Refused,
    /// It did not load or validate; the old config stays.
    Failed,
}

impl ReloadOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadOutcome::Applied => "applied",
            ReloadOutcome::Refused => "refused",
            ReloadOutcome::Failed => "failed",
        }
    }
}

/// What an applied reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ReloadChanges {
    #[schema(value_type = Vec<u64>)]
    pub groups_added: Vec<GroupId>,
    #[schema(value_type = Vec<u64>)]
    pub groups_removed: Vec<GroupId>,
    /// `group/username` of each user added or removed.
    pub users_added: Vec<String>,
    pub users_removed: Vec<String>,
    /// Live tokens of removed users denylisted.
    pub tokens_revoked: usize,
    /// Agent sockets closed with `token_revoked` (removed group or user).
    pub agent_sockets_revoked: usize,
    /// Sockets the new rules no longer admit, closed with 1008.
    pub visitor_sockets_closed: usize,
    pub agent_sockets_closed: usize,
}

/// One reload's outcome.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReloadReport {
    pub outcome: ReloadOutcome,
    /// When it ended, Unix milliseconds.
    pub at_ms: u64,
    /// Why it was refused or failed, naming the key.
    pub error: Option<String>,
    /// The hash of the config in force afterwards.
    pub config_hash: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<ReloadChanges>,
}

/// Re-reads the config and applies it (the server's reloader).
pub trait ConfigReloader: Send + Sync {
    /// Reads the config file and environment again and applies them, or
    /// says why not; reloads run one at a time.
    fn reload(self: Arc<Self>) -> BoxFuture<'static, ReloadReport>;

    /// The hash of the config in force (`settings_hash`).
    fn config_hash(&self) -> String;

    /// The last reload since start-up, if any.
    fn last_reload(&self) -> Option<ReloadReport>;
}
