//! The administrator's webhook routes: the group's dead letters, a page at
//! a time, and replaying them (all, or the ones named) into the outbox.
//! Only the group's administrators may use them; an administrator of
//! another group gets 403 like any agent.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use utoipa::{IntoParams, ToSchema};

use super::admin_api::GroupPath;
use super::openapi::{AgentErrors, BodyErrors};
use super::AgentAuth;
use crate::infra::error::DomainError;
use crate::infra::ids::GroupId;
use crate::presence::agent_ops::AgentOps;
use crate::presence::webhooks::{NamedLetter, Outbox};

/// Letters per page when `limit` is not given, and at most.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FailedParams {
    /// Letters per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = r"^[0-9]{1,19}(@[A-Za-z0-9_\-]{1,64})?$")]
    cursor: Option<String>,
}

/// One dead letter as the administrator sees it.
#[derive(Serialize, ToSchema)]
struct FailedDelivery {
    /// What `replay` names it by.
    id: String,
    event_id: String,
    #[serde(rename = "type")]
    kind: String,
    visitorid: String,
    /// The receiver, without its query string.
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

/// A dead letter's id, as `failed` lists it.
#[derive(Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(pattern = r"^[0-9]{1,19}(@[A-Za-z0-9_\-]{1,64})?$", example = "17")]
pub struct LetterId(String);

/// A page of dead letters.
#[derive(Serialize, ToSchema)]
struct FailedPage {
    failed: Vec<FailedDelivery>,
    /// Pass as `cursor` for the next page; `null` on the last.
    next_cursor: Option<String>,
    /// Cluster mode: whether a live node did not answer in time.
    partial: bool,
    /// Those nodes.
    missing: Vec<String>,
}

/// What a replay did.
#[derive(Serialize, ToSchema)]
struct Replayed {
    /// Letters put back into the outbox.
    replayed: usize,
    /// Whether more letters are left (replaying all takes 1,000 per call).
    more: bool,
    /// Cluster mode: whether a live node did not answer in time.
    partial: bool,
    /// Those nodes.
    missing: Vec<String>,
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
            // As the logs show it: a query string may carry a credential.
            url: d
                .url
                .split(['?', '#'])
                .next()
                .unwrap_or_default()
                .to_owned(),
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
#[utoipa::path(
    get,
    path = "/admin/{groupid}/webhooks/failed",
    tag = "admin",
    summary = "The group's webhook dead letters",
    description = "Deliveries that gave up (after `webhooks.retry_horizon_secs`, or a receiver removed from the config), oldest first. In cluster mode every node's.",
    params(GroupPath, FailedParams),
    security(("agent_token" = [])),
    responses((status = 200, description = "A page of dead letters", body = FailedPage), AgentErrors),
)]
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
    Ok(HttpResponse::Ok().json(FailedPage {
        failed,
        next_cursor: page.next_cursor,
        partial: !page.missing.is_empty(),
        missing: page.missing,
    }))
}

/// Which dead letters to replay; none named (or no body) replays all.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    /// The `id`s of the letters, 1 to 1000: `{seq}` on a single node,
    /// `{seq}@{node}` in cluster mode (where a bare `{seq}` is a 400). An id
    /// that names no dead letter is skipped.
    #[serde(default)]
    #[schema(min_items = 1, max_items = 1000, inline)]
    ids: Option<Vec<LetterId>>,
}

/// `POST /admin/{groupid}/webhooks/failed/replay`, with no body, `null` or
/// `{}` (every letter, up to 1,000 per call) or `{"ids": [...]}`: back into the outbox
/// with a fresh retry horizon. Answers `{"replayed": n, "more": bool}`.
#[utoipa::path(
    post,
    path = "/admin/{groupid}/webhooks/failed/replay",
    tag = "admin",
    summary = "Replay webhook dead letters",
    description = "Puts the named dead letters (or, with no body, `null` or `{}`, every one, 1,000 per call) back into the outbox with a fresh retry horizon.",
    params(GroupPath),
    request_body(content = Option<ReplayBody>, description = "Optional: the letters to replay"),
    security(("agent_token" = [])),
    responses(
        (status = 200, description = "Replayed", body = Replayed),
        AgentErrors, BodyErrors,
    ),
)]
pub async fn replay(
    outbox: web::Data<Outbox>,
    ops: web::Data<AgentOps>,
    auth: AgentAuth,
    group: web::Path<GroupId>,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, DomainError> {
    let group = group.into_inner();
    auth.require_admin(&ops, group)?;
    let parsed: ReplayBody = super::optional_json_object(body, "replay body")?;
    let only = match parsed
        .ids
        .map(|ids| ids.into_iter().map(|id| id.0).collect::<Vec<_>>())
    {
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
    Ok(HttpResponse::Ok().json(Replayed {
        replayed: done.replayed,
        more: done.more,
        partial: !done.missing.is_empty(),
        missing: done.missing,
    }))
}
