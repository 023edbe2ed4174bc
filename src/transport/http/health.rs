//! `GET /healthz`: whether this node serves, and on what it depends (Redis
//! in cluster mode, the key handover between split roles).

use std::collections::BTreeMap;
use std::sync::Arc;

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::token::ReceivedKeys;
use crate::infra::clock::SharedClock;
use crate::infra::config::{ConfigReloader, ReloadReport};
use crate::store::cluster::ClusterLink;
use crate::transport::internal::handover::{self, HandoverStatus, TargetStatus};

/// What `/healthz` reports on.
pub struct Health {
    /// Cluster mode: the node's link to Redis.
    pub cluster: Option<ClusterLink>,
    /// Split roles: what this node serves, and its side of the handover.
    pub role: RoleHealth,
    /// The config in force and the last reload.
    pub reloader: Arc<dyn ConfigReloader>,
}

/// A split role's part of `/healthz`.
pub enum RoleHealth {
    All,
    /// The keys received, judged stale past `key_rotation_secs` + 5 min.
    Auth {
        keys: Arc<ReceivedKeys>,
        clock: SharedClock,
        rotation_secs: u64,
        started_ms: u64,
    },
    /// Each auth node's handover.
    Presence(Arc<HandoverStatus>),
}

/// The `/healthz` document. Fields other than `status` appear only where
/// they apply.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthBody {
    /// `ok`; `degraded` (Redis unreachable, or an auth node's keys stale);
    /// `no_signing_key` (an auth node before its first handover).
    #[schema(example = "ok")]
    pub status: &'static str,
    /// The hash of the config in force (`sha256:…`); nodes that differ
    /// run different configs.
    pub config_hash: String,
    /// The last reload since start-up; `null` before the first. A failed
    /// reload does not make a node unhealthy: its old config serves.
    pub last_reload: Option<LastReload>,
    /// Cluster mode: `redis`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<&'static str>,
    /// Cluster mode: this node's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Cluster mode: the live nodes this node sees.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<usize>,
    /// Cluster mode: each live node's config hash (`null` until known), so
    /// drift shows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_config_hashes: Option<BTreeMap<String, Option<String>>>,
    /// Split roles: `auth` or `presence`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    /// Auth role: the key it signs with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<SigningKeyHealth>,
    /// Presence role: each auth node's handover, in
    /// `server.auth_internal_urls` order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handover: Option<Vec<TargetStatus>>,
}

/// The last reload, as `/healthz` shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct LastReload {
    /// `applied`, `refused` (a restart-only key changed) or `failed`.
    pub outcome: crate::infra::config::ReloadOutcome,
    /// When it ended (Unix ms).
    pub at_ms: u64,
    /// Why it was refused or failed, naming the key.
    pub error: Option<String>,
    /// The hash of the config in force afterwards.
    pub config_hash: String,
}

impl From<ReloadReport> for LastReload {
    fn from(report: ReloadReport) -> Self {
        Self {
            outcome: report.outcome,
            at_ms: report.at_ms,
            error: report.error,
            config_hash: report.config_hash,
        }
    }
}

/// An auth node's signing key, as `/healthz` shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SigningKeyHealth {
    /// The key's id; `null` before the first handover.
    pub kid: Option<String>,
    /// When a presence node last handed keys over (Unix ms).
    pub last_received_ms: Option<u64>,
    /// Whether no handover came within a rotation period and 5 minutes.
    pub stale: bool,
}

/// `GET /healthz`
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    summary = "Health",
    description = "200 while this node serves, with the hash of the config in force and the last reload. Cluster mode adds `mode`, `node`, `nodes` and every node's config hash, and is 503 `degraded` while Redis is unreachable. An auth-role node is 503 `no_signing_key` until its first key arrives.",
    responses(
        (status = 200, description = "Serving", body = HealthBody),
        (status = 503, description = "Not serving: Redis unreachable (cluster mode) or no signing key (auth role)", body = HealthBody),
    ),
)]
pub async fn healthz(health: web::Data<Health>) -> HttpResponse {
    let mut body = HealthBody {
        status: "ok",
        config_hash: health.reloader.config_hash(),
        last_reload: health.reloader.last_reload().map(LastReload::from),
        mode: None,
        node: None,
        nodes: None,
        node_config_hashes: None,
        role: None,
        signing_key: None,
        handover: None,
    };
    let mut healthy = true;
    if let Some(link) = &health.cluster {
        let reachable = link.is_reachable();
        healthy &= reachable;
        body.mode = Some("redis");
        body.node = Some(link.node_id().to_owned());
        body.nodes = Some(link.live_nodes().len());
        body.node_config_hashes = Some(link.node_config_hashes());
        if !reachable {
            body.status = "degraded";
        }
    }
    match &health.role {
        RoleHealth::All => {}
        RoleHealth::Auth {
            keys,
            clock,
            rotation_secs,
            started_ms,
        } => {
            let status = keys.status();
            let stale = handover::is_stale(
                status.last_received_ms.or(Some(*started_ms)),
                clock.now_ms(),
                *rotation_secs,
            );
            body.role = Some("auth");
            let no_key = status.signing.is_none();
            body.signing_key = Some(SigningKeyHealth {
                kid: status.signing,
                last_received_ms: status.last_received_ms,
                stale,
            });
            if no_key {
                healthy = false;
                body.status = "no_signing_key";
            } else if stale && healthy {
                body.status = "degraded";
            }
        }
        RoleHealth::Presence(handover) => {
            body.role = Some("presence");
            body.handover = Some(handover.snapshot());
        }
    }
    if healthy {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
