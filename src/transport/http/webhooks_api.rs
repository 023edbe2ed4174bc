//! The administrator's webhook routes: the group's dead letters, a page at
//! a time, and replaying them (all, or the ones named) into the outbox.
//! Only the group's administrators may use them; an administrator of
//! another group gets 403 like any agent.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AgentAuth;
use crate::infra::error::DomainError;
use crate::infra::ids::GroupId;
use crate::presence::agent_ops::AgentOps;
use crate::presence::webhooks::{NamedLetter, Outbox};

/// Letters per page when `limit` is not given, and at most.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailedParams {
    limit: Option<usize>,
    cursor: Option<String>,
}

/// One dead letter as the administrator sees it.
#[derive(Serialize)]
struct FailedDelivery {
    /// What `replay` names it by.
    id: String,
    event_id: String,
    #[serde(rename = "type")]
    kind: String,
    visitorid: String,
    url: String,
    attempts: u32,
    /// Unix ms it was queued, and it gave up.
    queued_at: u64,
    failed_at: u64,
    reason: String,
    last_error: Option<String>,
    /// The event as it would be sent.
    payload: Value,
}

impl From<NamedLetter> for FailedDelivery {
    fn from(named: NamedLetter) -> Self {
        let NamedLetter { id, letter } = named;
        let d = letter.delivery;
        Self {
            id,
            payload: serde_json::from_str(&d.body).unwrap_or(Value::Null),
            event_id: d.event_id,
            kind: d.event_type,
            visitorid: d.visitorid,
            url: d.url,
            attempts: d.attempts,
            queued_at: d.created_ms,
            failed_at: letter.failed_ms,
            reason: letter.reason,
            last_error: d.last_error,
        }
    }
}

/// `GET /admin/{groupid}/webhooks/failed?limit=&cursor=`: the group's dead
/// letters, oldest first; `next_cursor` continues.
pub async fn failed(
    outbox: web::Data<Outbox>,
    ops: web::Data<AgentOps>,
    auth: AgentAuth,
    group: web::Path<GroupId>,
    params: web::Query<FailedParams>,
) -> Result<HttpResponse, DomainError> {
    let group = group.into_inner();
    auth.require_admin(&ops, group)?;
    let params = params.into_inner();
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(DomainError::BadRequest(format!(
            "limit must be 1 to {MAX_PAGE}"
        )));
    }
    let page = outbox
        .letters(group, params.cursor.as_deref(), limit)
        .await?;
    let failed: Vec<FailedDelivery> = page.letters.into_iter().map(Into::into).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "failed": failed,
        "next_cursor": page.next_cursor,
        "partial": !page.missing.is_empty(),
        "missing": page.missing,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayBody {
    #[serde(default)]
    ids: Option<Vec<String>>,
}

/// `POST /admin/{groupid}/webhooks/failed/replay`, with no body, `null` or
/// `{}` (every letter, up to 1,000 per call) or `{"ids": [...]}`: back into the outbox
/// with a fresh retry horizon. Answers `{"replayed": n, "more": bool}`.
pub async fn replay(
    outbox: web::Data<Outbox>,
    ops: web::Data<AgentOps>,
    auth: AgentAuth,
    group: web::Path<GroupId>,
    body: web::Bytes,
) -> Result<HttpResponse, DomainError> {
    let group = group.into_inner();
    auth.require_admin(&ops, group)?;
    let parsed: Option<ReplayBody> = match body.iter().all(u8::is_ascii_whitespace) {
        true => None,
        false => serde_json::from_slice(&body)
            .map_err(|e| DomainError::BadRequest(format!("bad body: {e}")))?,
    };
    let only = match parsed.and_then(|p| p.ids) {
        None => None,
        Some(ids) => {
            if ids.is_empty() || ids.len() > crate::presence::webhooks::MAX_REPLAY {
                return Err(DomainError::BadRequest(format!(
                    "ids must list 1 to {} dead letter ids (or send no body to replay all)",
                    crate::presence::webhooks::MAX_REPLAY
                )));
            }
            Some(ids)
        }
    };
    let done = outbox.replay_letters(group, only).await?;
    tracing::info!(
        group, replayed = done.replayed, by = %auth.claims.sub, "webhook dead letters replayed"
    );
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "replayed": done.replayed,
        "more": done.more,
        "partial": !done.missing.is_empty(),
        "missing": done.missing,
    })))
}
