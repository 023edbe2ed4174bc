//! The administrator API: endpoints only a group's administrators may use
//! (an agent token gets 403 `forbidden`): the token audit log, the online
//! visitors, the group's agents, and revoking all of one agent's tokens.

use std::collections::BTreeMap;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::auth_api::revoke_token;
use super::auth_audit::write_audit;
use super::AgentAuth;
use crate::auth::audit::{Query, MAX_PAGE};
use crate::infra::config::{valid_username, Role};
use crate::infra::error::{off_thread, on_blocking_pool, DomainError};
use crate::infra::ids::{GroupId, VisitorId, VisitorKey};
use crate::server::state::{in_scope, AppState, VisitorView};
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
    app: web::Data<AppState>,
    auth: AgentAuth,
    group: web::Path<GroupId>,
    params: web::Query<AuditParams>,
) -> Result<HttpResponse, DomainError> {
    let group = group.into_inner();
    auth.require_admin(&app, group)?;
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
    // The scan reads sled: keep it off the request threads.
    let audit = app.audit.clone();
    let page = off_thread("audit log", move || audit.query(group, &query))
        .await?
        .ok_or_else(|| DomainError::BadRequest("cursor is not one this server issued".into()))?;
    Ok(HttpResponse::Ok().json(page))
}

/// Most visitors per page of the visitor list.
const MAX_VISITOR_PAGE: usize = 1000;

/// The query of the visitor list: `limit`, `cursor` and `data.<key>`
/// filters; anything else is refused, not ignored.
struct VisitorQuery {
    limit: usize,
    cursor: Option<String>,
    data: BTreeMap<String, String>,
}

impl VisitorQuery {
    fn parse(query: &str) -> Result<Self, DomainError> {
        let bad = |m: String| DomainError::BadRequest(m);
        let mut parsed = VisitorQuery {
            limit: DEFAULT_PAGE,
            cursor: None,
            data: BTreeMap::new(),
        };
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match name.as_ref() {
                "limit" => {
                    parsed.limit = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_VISITOR_PAGE).contains(n))
                        .ok_or_else(|| bad(format!("limit must be 1 to {MAX_VISITOR_PAGE}")))?;
                }
                "cursor" => {
                    VisitorId::parse(&value)
                        .map_err(|_| bad("cursor is not one this server issued".into()))?;
                    parsed.cursor = Some(value.into_owned());
                }
                other => match other.strip_prefix("data.") {
                    Some(key) if !key.is_empty() && parsed.data.len() < 16 => {
                        parsed.data.insert(key.to_owned(), value.into_owned());
                    }
                    _ => return Err(bad(format!("unknown query parameter {other:?}"))),
                },
            }
        }
        Ok(parsed)
    }

    fn matches(&self, data: &Value) -> bool {
        self.data.iter().all(|(key, wanted)| match data.get(key) {
            Some(Value::String(s)) => s == wanted,
            Some(Value::Number(n)) => n.to_string() == *wanted,
            _ => false,
        })
    }
}

#[derive(Serialize)]
struct VisitorPage {
    visitors: Vec<VisitorView>,
    /// Pass as `cursor` for the next page; `null` on the last.
    next_cursor: Option<String>,
}

/// `GET /presence/{groupid}/visitors?limit=&cursor=&data.<key>=<value>`:
/// the group's online visitors in id order, a page at a time.
pub async fn list_visitors(
    app: web::Data<AppState>,
    auth: AgentAuth,
    req: HttpRequest,
    group: web::Path<GroupId>,
) -> Result<HttpResponse, DomainError> {
    let group = group.into_inner();
    auth.require_admin(&app, group)?;
    let query = VisitorQuery::parse(req.query_string())?;
    let claims = &auth.claims;
    let (states, more) = app
        .registry
        .page(group, query.cursor.as_deref(), query.limit, |state| {
            query.matches(&state.data) && in_scope(claims, state)
        });
    let next_cursor = more
        .then(|| states.last().map(|s| s.visitorid.clone()))
        .flatten();
    let visitors = states
        .into_iter()
        .map(|state| {
            let confirmed = VisitorId::parse(&state.visitorid).is_ok_and(|id| {
                app.confirmations
                    .shows_confirmed(&VisitorKey::new(group, id), &claims.sub)
            });
            VisitorView { state, confirmed }
        })
        .collect();
    Ok(HttpResponse::Ok().json(VisitorPage {
        visitors,
        next_cursor,
    }))
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
    app: web::Data<AppState>,
    auth: AgentAuth,
    group: web::Path<GroupId>,
) -> Result<HttpResponse, DomainError> {
    let group = group.into_inner();
    let config = auth.require_admin(&app, group)?;
    let store = app.store.clone();
    let seen = off_thread("agent store", move || store.agents(group)).await?;
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
    app: web::Data<AppState>,
    auth: AgentAuth,
    req: HttpRequest,
    path: web::Path<AgentPath>,
) -> Result<HttpResponse, DomainError> {
    let AgentPath { groupid, username } = path.into_inner();
    let config = auth.require_admin(&app, groupid)?;
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
    .map_err(|e| DomainError::Internal(e.to_string()))?;
    let known = app
        .auth
        .knows(config, &username)
        .map_err(|e| DomainError::Internal(e.to_string()))?;
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
