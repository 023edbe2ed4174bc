//! `GET /healthz`: whether this node serves, and on what it depends (Redis
//! in cluster mode, the key handover between split roles).

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::token::ReceivedKeys;
use crate::infra::clock::SharedClock;
use crate::store::cluster::ClusterLink;
use crate::transport::internal::handover::{self, HandoverStatus, TargetStatus};

/// What `/healthz` reports on.
pub struct Health {
    /// Cluster mode: the node's link to Redis.
    pub cluster: Option<ClusterLink>,
    /// Split roles: what this node serves, and its side of the handover.
    pub role: RoleHealth,
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
    /// Cluster mode: `redis`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<&'static str>,
    /// Cluster mode: this node's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Cluster mode: the live nodes this node sees.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<usize>,
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
    description = "200 while this node serves. Cluster mode adds `mode`, `node` and `nodes`, and is 503 `degraded` while Redis is unreachable. An auth-role node is 503 `no_signing_key` until its first key arrives.",
    responses(
        (status = 200, description = "Serving", body = HealthBody),
        (status = 503, description = "Not serving: Redis unreachable (cluster mode) or no signing key (auth role)", body = HealthBody),
    ),
)]
pub async fn healthz(health: web::Data<Health>) -> HttpResponse {
    let mut body = HealthBody {
        status: "ok",
        mode: None,
        node: None,
        nodes: None,
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
