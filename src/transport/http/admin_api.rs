//! The administrator API: endpoints only a group's administrators may use
//! (an agent token gets 403 `forbidden`): the token audit log, the online
//! visitors, the group's agents, and revoking all of one agent's tokens.

use super::openapi::AgentErrors;
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::auth_api::revoke_token;
use super::auth_audit::write_audit;
use super::AgentAuth;
use super::AuthDeps;
use crate::auth::audit::Found;
use crate::auth::audit::{Query, MAX_PAGE};
use crate::infra::config::{valid_username, Role};
use crate::infra::error::{off_thread, on_blocking_pool, DomainError, ErrorBody};
use crate::infra::ids::GroupId;
use crate::presence::agent_ops::{AgentOps, ListVisitors, VisitorPage, VisitorQuery};
use crate::store::AgentSource;

/// The largest `since` or `until` (2^53 - 1, the largest integer every JSON
/// reader holds exactly; some 285,000 years from 1970).
const MAX_UNIX_MS: u64 = 9_007_199_254_740_991;
/// Records per page when `limit` is not given.
const DEFAULT_PAGE: usize = 100;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Records at or after this time (Unix ms).
    #[param(maximum = 9007199254740991.0)]
    since: Option<u64>,
    /// Records before this time (Unix ms).
    #[param(maximum = 9007199254740991.0)]
    until: Option<u64>,
    /// Only this agent's records.
    username: Option<String>,
    /// Records per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^[0-9a-fA-F]{32}$")]
    cursor: Option<String>,
}

/// The group id in an administrator path (the document's parameter; the
/// handlers read it as a bare `web::Path<GroupId>`).
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(super) struct GroupPath {
    /// The group (tenant) id.
    #[param(value_type = u64, example = 72, maximum = 9007199254740991.0)]
    groupid: GroupId,
}

/// `GET /admin/{groupid}/audit?since=&until=&username=&limit=&cursor=`:
/// the group's token audit records, newest first.
#[utoipa::path(
    get,
    path = "/admin/{groupid}/audit",
    tag = "admin",
    summary = "The group's token audit log",
    description = "Issued, refused and revoked tokens, newest first, a page at a time. In cluster mode the page merges every live node's log; `partial` and `missing` say whether a node did not answer.",
    params(GroupPath, AuditParams),
    security(("agent_token" = [])),
    responses((status = 200, description = "A page of records", body = Found), AgentErrors),
)]
pub async fn audit(
    app: web::Data<AuthDeps>,
    ops: web::Data<AgentOps>,
    auth: AgentAuth,
    group: web::Path<GroupId>,
    params: web::Query<AuditParams>,
) -> Result<HttpResponse, DomainError> {
    let group = group.into_inner();
    auth.require_admin(&ops, group)?;
    let params = params.into_inner();
    if params.since.max(params.until) > Some(MAX_UNIX_MS) {
        return Err(DomainError::BadRequest(format!(
            "since and until are Unix ms, at most {MAX_UNIX_MS}"
        )));
    }
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(DomainError::BadRequest(format!(
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
    // The scan reads sled off the request threads; in cluster mode it
    // merges every live node's records (`partial` and `missing` say whether
    // one did not answer).
    let page = app.audit.clone().search(group, query).await?;
    Ok(HttpResponse::Ok().json(page))
}

/// `GET /presence/{groupid}/visitors?limit=&cursor=&data.<key>=<value>`:
/// the group's online visitors in id order, a page at a time.
#[utoipa::path(
    get,
    path = "/presence/{groupid}/visitors",
    tag = "admin",
    summary = "The group's online visitors",
    description = "Administrators only. In visitor id order, a page at a time; `data.<key>=<value>` (up to 16) keeps visitors whose presence data has that string or number at that key.",
    params(
        GroupPath,
        ("limit" = Option<usize>, Query, description = "Visitors per page, 1 to 1000 (default 100)", minimum = 1, maximum = 1000),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page", pattern = r"^[A-Za-z0-9._~@+\-]{1,128}$"),
    ),
    security(("agent_token" = [])),
    responses((status = 200, description = "A page of visitors", body = VisitorPage), AgentErrors),
)]
pub async fn list_visitors(
    ops: web::Data<AgentOps>,
    auth: AgentAuth,
    req: HttpRequest,
    group: web::Path<GroupId>,
) -> Result<HttpResponse, DomainError> {
    let page = ListVisitors {
        group: group.into_inner(),
        query: VisitorQuery::parse(req.query_string()),
    }
    .apply(&ops, &auth.caller(None))?;
    Ok(HttpResponse::Ok().json(page))
}

/// One of the group's agents.
#[derive(Serialize, ToSchema)]
struct AgentEntry {
    username: String,
    name: Option<String>,
    role: Role,
    source: AgentSource,
    /// Unix seconds; `null` for a configured agent never seen.
    first_seen: Option<u64>,
    last_seen: Option<u64>,
}

/// `GET /admin/{groupid}/agents`: configured and provisioned agents, with
/// The group's agents.
#[derive(Serialize, ToSchema)]
struct AgentList {
    /// By username.
    agents: Vec<AgentEntry>,
}

/// `GET /admin/{groupid}/agents`: configured and provisioned agents, with
/// when they were first and last issued a token.
#[utoipa::path(
    get,
    path = "/admin/{groupid}/agents",
    tag = "admin",
    summary = "The group's agents",
    description = "Configured agents, and agents provisioned by SSO or partner keys, with when each was first and last issued a token.",
    params(GroupPath),
    security(("agent_token" = [])),
    responses((status = 200, description = "The agents", body = AgentList), AgentErrors),
)]
pub async fn list_agents(
    app: web::Data<AuthDeps>,
    ops: web::Data<AgentOps>,
    auth: AgentAuth,
    group: web::Path<GroupId>,
) -> Result<HttpResponse, DomainError> {
    let group = group.into_inner();
    let config = auth.require_admin(&ops, group)?;
    let agents = app.auth.agents().clone();
    let seen = off_thread("agent store", move || agents.agents(group)).await?;
    let mut agents: BTreeMap<String, AgentEntry> = seen
        .into_iter()
        .map(|r| {
            let entry = AgentEntry {
                username: r.username.clone(),
                name: r.name,
                role: r.role,
                source: r.source,
                first_seen: Some(r.first_seen),
                last_seen: Some(r.last_seen),
            };
            (r.username, entry)
        })
        .collect();
    for user in &config.users {
        let entry = agents
            .entry(user.username.clone())
            .or_insert_with(|| AgentEntry {
                username: user.username.clone(),
                name: None,
                role: user.role,
                source: AgentSource::Config,
                first_seen: None,
                last_seen: None,
            });
        // The config is the truth for configured agents.
        entry.source = AgentSource::Config;
        entry.role = user.role;
        entry.name = user.name.clone().or(entry.name.take());
    }
    let agents: Vec<AgentEntry> = agents.into_values().collect();
    Ok(HttpResponse::Ok().json(AgentList { agents }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AgentPath {
    /// The group (tenant) id.
    #[param(value_type = u64, example = 72, maximum = 9007199254740991.0)]
    groupid: GroupId,
    /// The agent's username.
    #[param(example = "former.agent", pattern = r"^[A-Za-z0-9._@+\-]{1,128}$")]
    username: String,
}

/// An agent's revoked tokens.
#[derive(Serialize, ToSchema)]
struct AgentRevoked {
    username: String,
    /// Live tokens denylisted.
    tokens_revoked: usize,
    /// Sockets that were using them, now closed.
    sockets_closed: usize,
}

/// `POST /admin/{groupid}/agents/{username}/revoke`: denylists every live
/// token of the agent in this group and closes its sockets.
#[utoipa::path(
    post,
    path = "/admin/{groupid}/agents/{username}/revoke",
    tag = "admin",
    summary = "Revoke every token of an agent",
    params(AgentPath),
    security(("agent_token" = [])),
    responses(
        (status = 200, description = "Revoked", body = AgentRevoked),
        (status = 404, description = "`not_found`: no such agent and no live token; `unknown_group`; `not_served_here` (split roles)", body = ErrorBody),
        AgentErrors,
    ),
)]
pub async fn revoke_agent(
    app: web::Data<AuthDeps>,
    ops: web::Data<AgentOps>,
    auth: AgentAuth,
    req: HttpRequest,
    path: web::Path<AgentPath>,
) -> Result<HttpResponse, DomainError> {
    let AgentPath { groupid, username } = path.into_inner();
    let config = auth.require_admin(&ops, groupid)?;
    if !valid_username(&username) {
        return Err(DomainError::BadRequest("not a valid username".into()));
    }
    let now = app.audit.now_ms() / 1000;
    // A scan of every issued token: off the workers, like the audit query.
    let (issued, user) = (app.tokens.clone(), username.clone());
    let tokens = on_blocking_pool("revocation", move || {
        issued.revocations().live_tokens_of(groupid, &user, now)
    })
    .await?
    .map_err(DomainError::from)?;
    let known = app.auth.knows(&config, &username).await?;
    if !known && tokens.is_empty() {
        return Err(DomainError::NotFound);
    }
    let mut sockets_closed = 0;
    let mut records = Vec::with_capacity(tokens.len());
    for (jti, owner) in &tokens {
        let (closed, record) = revoke_token(&app, &req, jti, owner, &auth.claims.sub).await?;
        sockets_closed += closed;
        records.push(record);
    }
    write_audit(&app, records).await?;
    tracing::info!(
        group = groupid, %username, tokens = tokens.len(), sockets_closed,
        by = %auth.claims.sub, "agent revoked"
    );
    Ok(HttpResponse::Ok().json(AgentRevoked {
        username,
        tokens_revoked: tokens.len(),
        sockets_closed,
    }))
}
