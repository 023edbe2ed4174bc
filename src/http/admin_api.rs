//! The administrator API: endpoints only a group's administrators may use.

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::AgentAuth;
use crate::audit::{Query, MAX_PAGE};
use crate::error::ApiError;
use crate::ids::GroupId;
use crate::state::AppState;

/// Records per page when `limit` is not given.
const DEFAULT_PAGE: usize = 100;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    since: Option<u64>,
    until: Option<u64>,
    username: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// `GET /admin/{groupid}/audit?since=&until=&username=&limit=&cursor=`:
/// the group's token audit records, newest first.
pub async fn audit(
    app: web::Data<AppState>,
    auth: AgentAuth,
    group: web::Path<GroupId>,
    params: web::Query<AuditParams>,
) -> Result<HttpResponse, ApiError> {
    let group = group.into_inner();
    auth.require_admin(&app, group)?;
    let params = params.into_inner();
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::BadRequest(format!(
            "limit must be 1 to {MAX_PAGE}"
        )));
    }
    let query = Query {
        since: params.since,
        until: params.until,
        username: params.username,
        limit,
        cursor: params.cursor,
    };
    // The scan reads sled: keep it off the request threads.
    let audit = app.audit.clone();
    let page = web::block(move || audit.query(group, &query))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .ok_or_else(|| ApiError::BadRequest("cursor is not one this server issued".into()))?;
    Ok(HttpResponse::Ok().json(page))
}
