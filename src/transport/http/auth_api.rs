//! The token endpoints: `POST /auth/token` issues agent tokens for any
//! credential kind; `POST /auth/revoke` denylists a token. Website
//! sessions (`/auth/login`, `/auth/logout`) are in `session_api`.
//!
//! Every token request that parses as JSON and names a configured group is
//! audited: issued tokens before they are handed out, refusals with their
//! reason, within the audit throttle's limits (see `auth_audit`).

use super::openapi::{AgentErrors, BodyErrors, ServerErrors};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::auth_audit::{
    begin_attempt, client_of, failed_attempt, forgive_attempt, refuse, write_audit, write_refusal,
    Refusal,
};
use super::session_api::SESSION_COOKIE;
use super::AgentAuth;
use super::AuthDeps;
use crate::auth::audit::{AuditRecord, Outcome};
use crate::auth::sign_in::{CredentialKind, Credentials};
use crate::auth::token::TokenError;
use crate::infra::config::{Role, MIN_TOKEN_SECS};
use crate::infra::error::{on_blocking_pool, DomainError, ErrorBody};
use crate::infra::ids::GroupId;
use crate::infra::json_integer;
use crate::presence::origin::RequestOrigin;
use crate::store::IssuedToken as IssuedTokenOwner;

/// The body of `POST /auth/token`. `duration` and `credentials` are checked
/// by hand so that each gets its own error code (and an audit record).
#[derive(Deserialize, ToSchema)]
pub struct TokenRequest {
    /// The group (tenant) to sign in to.
    #[schema(value_type = u64, example = 72, maximum = 9007199254740991.0)]
    #[serde(deserialize_with = "json_integer::u64")]
    groupid: GroupId,
    /// Token lifetime in seconds, from 60 to `auth.token_max_secs` (7200
    /// unless configured; default `auth.token_default_secs`).
    #[serde(default)]
    #[schema(value_type = Option<u64>, minimum = 60, maximum = 7200)]
    duration: Option<Value>,
    /// One of: `{"username", "password"}`; `{"partnerid", "loginkey"}` (a
    /// partner login key); `{"jwt"}` (a customer-signed SSO token); `{}` with
    /// the `gssnid` website-session cookie.
    #[serde(default)]
    #[schema(value_type = super::openapi::CredentialForms, required)]
    credentials: Option<Value>,
}

/// An issued agent token.
#[derive(Serialize, ToSchema)]
struct TokenResponse {
    /// The JWT, for `Authorization: Bearer` and the agent socket's `auth`.
    token: String,
    /// When it expires (Unix seconds).
    expires: u64,
    #[schema(value_type = u64)]
    groupid: GroupId,
    username: String,
    role: Role,
}

/// `POST /auth/token`. If an issued token cannot be recorded, it is not
/// handed out.
#[utoipa::path(
    post,
    path = "/auth/token",
    tag = "auth",
    summary = "Issue an agent token",
    description = "Checks the credentials and issues a short-lived agent token signed with the current key. Every attempt that names a configured group is audited.",
    request_body = TokenRequest,
    responses(
        (status = 200, description = "Issued", body = TokenResponse),
        (status = 400, description = "`bad_request` (not the JSON this route reads), `bad_duration`, `bad_credentials_form`", body = ErrorBody),
        (status = 401, description = "`invalid_credentials`", body = ErrorBody),
        (status = 403, description = "`origin_not_allowed`, `presence_not_subscribed`, `not_a_member`, `role_not_allowed`, `unknown_agent`", body = ErrorBody),
        (status = 404, description = "`unknown_group`, `not_served_here` (split roles: a presence node)", body = ErrorBody),
        ServerErrors, BodyErrors,
    ),
)]
pub async fn issue_token(
    app: web::Data<AuthDeps>,
    req: HttpRequest,
    body: web::Json<TokenRequest>,
) -> Result<HttpResponse, DomainError> {
    let body = body.into_inner();
    if app.tokens.keys().signing_key().is_none() {
        // Auth role before the first handover: refused before any
        // credential is checked (no argon2 work, no lockout counted).
        app.metrics.auth_failed(DomainError::NoSigningKey.code());
        return Err(DomainError::NoSigningKey);
    }
    let (remote, user_agent) = client_of(&req);
    let mut record =
        AuditRecord::new(Outcome::Refused, app.audit.now_ms()).with_client(remote, user_agent);
    record.groupid = Some(body.groupid);
    let mut lockouts = Vec::new();
    match attempt(&app, &req, body, &mut record, &mut lockouts).await {
        Ok(response) => {
            record.outcome = Outcome::Issued;
            let credential = record.credential.map_or("unknown", CredentialKind::as_str);
            write_audit(&app, vec![record]).await?;
            app.metrics.token_issued(credential);
            Ok(HttpResponse::Ok().json(response))
        }
        Err(refusal) => {
            app.metrics.auth_failed(refusal.error.code());
            if let DomainError::UnknownGroup(group) = refusal.error {
                // Anyone can name a group that does not exist: a log line
                // and a metric, never a record on disk.
                tracing::info!(group, "token refused: unknown group");
                app.audit.not_recorded("unknown_group");
                return Err(refusal.error);
            }
            record.reason = Some(refusal.reason);
            write_refusal(&app, record, refusal.locked.as_ref(), lockouts).await;
            Err(refusal.error)
        }
    }
}

fn duration_of(app: &AuthDeps, duration: Option<Value>) -> Result<u64, DomainError> {
    let max = app.config.load().auth.token_max_secs;
    let bad = || {
        DomainError::BadDuration(format!(
            "duration must be an integer from {MIN_TOKEN_SECS} to {max} seconds"
        ))
    };
    let secs = match duration {
        None | Some(Value::Null) => app.config.load().auth.token_default_secs,
        Some(Value::Number(n)) => json_integer::as_u64(&n).ok_or_else(bad)?,
        Some(_) => return Err(bad()),
    };
    if (MIN_TOKEN_SECS..=max).contains(&secs) {
        Ok(secs)
    } else {
        Err(bad())
    }
}

async fn attempt(
    app: &AuthDeps,
    req: &HttpRequest,
    body: TokenRequest,
    record: &mut AuditRecord,
    lockouts: &mut Vec<AuditRecord>,
) -> Result<TokenResponse, Refusal> {
    let config = app.config.current();
    let group = config
        .group(body.groupid)
        .ok_or_else(|| refuse(DomainError::UnknownGroup(body.groupid)))?;
    let origin = RequestOrigin::from_headers(req.headers());
    app.origins
        .check_console_or_group(group.id, &origin)
        .map_err(refuse)?;
    let lifetime = duration_of(app, body.duration).map_err(refuse)?;
    let cookie = req.cookie(SESSION_COOKIE);
    let credentials = body
        .credentials
        .ok_or_else(|| DomainError::BadCredentialsForm("credentials are required".into()))
        .and_then(|value| {
            // `{}` means the cookie: a browser sends it on any request, so
            // the request must come from a page allowed to make it.
            if value.as_object().is_some_and(|m| m.is_empty()) && cookie.is_some() {
                app.origins.check_cookie_request(Some(group.id), &origin)?;
            }
            Credentials::parse(&value, cookie.as_ref().map(|c| c.value()))
        })
        .map_err(refuse)?;
    let kind = credentials.kind();
    record.credential = Some(kind);
    record.username = credentials.claimed_username().map(str::to_owned);
    let account = credentials.account(group.id);
    let attempt = begin_attempt(app, account.as_deref(), record.remote.as_deref()).await?;
    let client = record.remote.clone();
    let agent = match app
        .auth
        .authenticate(group, credentials, client.as_deref())
        .await
    {
        Ok(agent) => {
            forgive_attempt(app, attempt).await;
            agent
        }
        Err(failure) => {
            if failure.username.is_some() {
                record.username = failure.username.clone();
            }
            tracing::info!(
                group = group.id,
                credential = kind.as_str(),
                reason = failure.reason,
                "token refused"
            );
            // This group's administrators read the reason: for a name that
            // is not in their group, do not tell whether it exists elsewhere.
            let member = record
                .username
                .as_deref()
                .is_some_and(|u| group.users.iter().any(|m| m.username == u));
            let reason = if failure.error == DomainError::InvalidCredentials && !member {
                "invalid_credentials"
            } else {
                failure.reason
            };
            if failure.error == DomainError::InvalidCredentials {
                lockouts.extend(failed_attempt(app, attempt, record).await);
            } else {
                // Not a guess (busy, not a member...): it does not count.
                forgive_attempt(app, attempt).await;
            }
            return Err(Refusal::new(failure.error, reason));
        }
    };
    record.username = Some(agent.username.clone());
    record.role = Some(agent.role);
    // A reload may have removed the group or user while the credentials
    // were being checked: the config in force decides (an SSO agent
    // needs no configured record).
    let in_force = app.config.load();
    match in_force.group(group.id) {
        None => return Err(refuse(DomainError::UnknownGroup(group.id))),
        Some(now)
            if agent.kind != CredentialKind::Sso
                && !now.users.iter().any(|u| u.username == agent.username) =>
        {
            return Err(Refusal::new(
                DomainError::NotAMember(group.id),
                "removed_by_reload",
            ));
        }
        Some(_) => {}
    }
    drop(in_force);
    if !group.presence {
        return Err(refuse(DomainError::PresenceNotSubscribed(group.id)));
    }
    // Issuance records the token, and a session files it: both flush, so
    // they run on the blocking pool.
    let (tokens, sessions) = (app.tokens.clone(), app.auth.sessions().clone());
    let (username, name, policy) = (
        agent.username.clone(),
        agent.name.clone(),
        agent.policy.clone(),
    );
    let (groupid, role, session) = (group.id, agent.role, agent.session);
    let issued = on_blocking_pool("token issuance", move || {
        let internal = |e: &dyn std::fmt::Display| refuse(DomainError::Internal(e.to_string()));
        let issued = tokens
            .issue_scoped(&username, groupid, role, lifetime, name, policy)
            .map_err(|e| match e {
                TokenError::Unavailable => refuse(DomainError::ClusterUnavailable(e.to_string())),
                TokenError::NoSigningKey => refuse(DomainError::NoSigningKey),
                e => internal(&e),
            })?;
        if let Some(session) = &session {
            // Redis down (cluster mode) is `cluster_unavailable`.
            let shared = |e| refuse(DomainError::from(e));
            sessions
                .record_token(session, &issued.claims.jti, issued.claims.exp)
                .map_err(shared)?;
            if !sessions.still_live(session).map_err(shared)? {
                // Logged out while the token was being issued: it never leaves.
                tokens
                    .revocations()
                    .revoke(&issued.claims.jti, issued.claims.exp)
                    .map_err(shared)?;
                return Err(Refusal::new(
                    DomainError::InvalidCredentials,
                    "unknown_or_expired_session",
                ));
            }
        }
        Ok(issued)
    })
    .await
    .map_err(refuse)??;
    record.jti = Some(issued.claims.jti.clone());
    record.iat = Some(issued.claims.iat);
    record.exp = Some(issued.claims.exp);
    tracing::info!(
        group = group.id,
        username = %agent.username,
        credential = kind.as_str(),
        jti = %issued.claims.jti,
        exp = issued.claims.exp,
        "token issued"
    );
    Ok(TokenResponse {
        token: issued.token,
        expires: issued.claims.exp,
        groupid: group.id,
        username: agent.username,
        role: agent.role,
    })
}

/// A storage failure as a client sees it: 503 `cluster_unavailable` when
/// Redis did not answer (cluster mode), otherwise internal.
fn storage_failure(e: crate::store::StoreError) -> DomainError {
    match e {
        crate::store::StoreError::Unavailable(e) => DomainError::ClusterUnavailable(e.0),
        e => DomainError::Internal(e.to_string()),
    }
}

/// Denylists `jti` until it expires (durably, on the blocking pool) and
/// closes the sockets using it; returns how many closed and the audit
/// record to write.
pub(super) async fn revoke_token(
    app: &AuthDeps,
    req: &HttpRequest,
    jti: &str,
    owner: &IssuedTokenOwner,
    by: &str,
) -> Result<(usize, AuditRecord), DomainError> {
    let (tokens, denied, exp) = (app.tokens.clone(), jti.to_owned(), owner.exp);
    // In a cluster, other nodes have denied it and closed theirs when this
    // returns; `sockets_closed` counts every node that answered.
    let elsewhere = on_blocking_pool("revocation", move || {
        tokens.revocations().revoke(&denied, exp)
    })
    .await?
    .map_err(storage_failure)?;
    // Denied from here on: close its sockets before anything that can fail.
    let sockets_closed = app.events.revoke(jti) + elsewhere;
    let (remote, user_agent) = client_of(req);
    let mut record =
        AuditRecord::new(Outcome::Revoked, app.audit.now_ms()).with_client(remote, user_agent);
    record.groupid = Some(owner.groupid);
    record.username = Some(owner.sub.clone());
    record.jti = Some(jti.to_owned());
    record.exp = Some(owner.exp);
    record.reason = Some(format!("revoked by {by}"));
    Ok((sockets_closed, record))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// The `jti` claim of the token to revoke.
    #[schema(min_length = 1, max_length = 128)]
    jti: String,
}

/// A revoked token.
#[derive(Serialize, ToSchema)]
struct TokenRevoked {
    /// Its `jti`.
    revoked: String,
    /// Denylisted until then, its expiry (Unix seconds).
    until: u64,
    /// Sockets that were using it, now closed.
    sockets_closed: usize,
}

/// `POST /auth/revoke`: the token's own user, or an administrator of its
/// group, denylists it until it expires; sockets using it close at once.
#[utoipa::path(
    post,
    path = "/auth/revoke",
    tag = "auth",
    summary = "Revoke a token",
    description = "The token's own user, or an administrator of its group, denylists it until it expires; sockets using it close at once with `token_revoked`.",
    request_body = RevokeRequest,
    security(("agent_token" = [])),
    responses(
        (status = 200, description = "Revoked", body = TokenRevoked),
        (status = 404, description = "`unknown_token`: no live token has this `jti`; `not_served_here` (split roles)", body = ErrorBody),
        AgentErrors, BodyErrors,
    ),
)]
pub async fn revoke(
    app: web::Data<AuthDeps>,
    req: HttpRequest,
    auth: AgentAuth,
    body: web::Json<RevokeRequest>,
) -> Result<HttpResponse, DomainError> {
    let jti = body.into_inner().jti;
    if jti.is_empty() || jti.len() > 128 {
        return Err(DomainError::BadRequest(
            "jti must be 1 to 128 characters".into(),
        ));
    }
    let caller = &auth.claims;
    app.origins.check_group(caller.groupid, &auth.origin)?;
    // A Redis read in a cluster: off the workers.
    let (tokens, looked_up) = (app.tokens.clone(), jti.clone());
    let owner = on_blocking_pool("revocation", move || tokens.revocations().owner(&looked_up))
        .await?
        .map_err(storage_failure)?
        .ok_or(DomainError::UnknownToken)?;
    let same_user = caller.sub == owner.sub && caller.groupid == owner.groupid;
    let group_admin = caller.role == Role::Administrator && caller.groupid == owner.groupid;
    if !(same_user || group_admin) {
        return Err(DomainError::Forbidden(
            "only the token's user or an administrator of its group may revoke it".into(),
        ));
    }
    let (sockets_closed, record) = revoke_token(&app, &req, &jti, &owner, &caller.sub).await?;
    write_audit(&app, vec![record]).await?;
    tracing::info!(%jti, by = %caller.sub, sockets_closed, "token revoked");
    Ok(HttpResponse::Ok().json(TokenRevoked {
        revoked: jti,
        until: owner.exp,
        sockets_closed,
    }))
}
