//! The administrator API: endpoints only a group's administrators may use
//! (an agent token gets 403 `forbidden`): the token audit log, the online
//! visitors, the group's agents, and revoking all of one agent's tokens.

use std::collections::BTreeMap;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::auth_api::revoke_token;
use super::auth_audit::write_audit;
use super::AgentAuth;
use super::AuthDeps;
use crate::auth::audit::{Query, MAX_PAGE};
use crate::infra::config::{valid_username, Role};
use crate::infra::error::{off_thread, on_blocking_pool, DomainError};
use crate::infra::ids::GroupId;
use crate::presence::agent_ops::{AgentOps, ListVisitors, VisitorQuery};
use crate::store::AgentSource;

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
    app: web::Data<AuthDeps>,
    ops: web::Data<AgentOps>,
    auth: AgentAuth,
    group: web::Path<GroupId>,
    params: web::Query<AuditParams>,
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

#[derive(Serialize)]
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
/// when they were first and last issued a token.
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
    Ok(HttpResponse::Ok().json(serde_json::json!({ "agents": agents })))
}

#[derive(Deserialize)]
pub struct AgentPath {
    groupid: GroupId,
    username: String,
}

/// `POST /admin/{groupid}/agents/{username}/revoke`: denylists every live
/// token of the agent in this group and closes its sockets.
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
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "username": username,
        "tokens_revoked": tokens.len(),
        "sockets_closed": sockets_closed,
    })))
}
