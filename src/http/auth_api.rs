//! The authorization endpoints: `POST /auth/token` issues agent tokens for
//! any credential kind; `POST /auth/login` and `/auth/logout` manage
//! website sessions (`gssnid`); `POST /auth/revoke` denylists a token.
//!
//! Every token request that parses as JSON is audited: issued tokens before
//! they are handed out, refusals with their reason. Audit writes (fsyncs)
//! run on the blocking pool, off the request threads.

use actix_web::cookie::{time::Duration as CookieDuration, Cookie, SameSite};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AgentAuth;
use crate::audit::{AuditRecord, Outcome};
use crate::auth::lockout::Attempt;
use crate::auth::{CredentialKind, Credentials};
use crate::config::{Role, MIN_TOKEN_SECS};
use crate::error::{off_thread, ApiError};
use crate::ids::GroupId;
use crate::origin::RequestOrigin;
use crate::password::MAX_PASSWORD_BYTES;
use crate::state::AppState;
use crate::store::IssuedToken as IssuedTokenOwner;

/// Name of the website-session cookie.
pub const SESSION_COOKIE: &str = "gssnid";

/// The body of `POST /auth/token`. `duration` and `credentials` are checked
/// by hand so that each gets its own error code (and an audit record).
#[derive(Deserialize)]
pub struct TokenRequest {
    groupid: GroupId,
    #[serde(default)]
    duration: Option<Value>,
    #[serde(default)]
    credentials: Option<Value>,
}

#[derive(Serialize)]
struct TokenResponse {
    token: String,
    expires: u64,
    groupid: GroupId,
    username: String,
    role: Role,
}

/// A refused attempt: the client's error and the audit reason.
type Refusal = (ApiError, String);

fn refuse(error: ApiError) -> Refusal {
    let reason = error.code().to_owned();
    (error, reason)
}

/// The client's address and user agent, for audit records.
fn client_of(req: &HttpRequest) -> (Option<String>, Option<&str>) {
    (
        super::client_ip(req),
        req.headers()
            .get(actix_web::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok()),
    )
}

/// Writes audit records on the blocking pool.
pub(super) async fn write_audit(app: &AppState, records: Vec<AuditRecord>) -> Result<(), ApiError> {
    let audit = app.audit.clone();
    off_thread("audit log unavailable", move || {
        records.iter().try_for_each(|r| audit.record(r))
    })
    .await
}

/// Writes audit records for a refusal; a failure to write is logged, and
/// the refusal stands.
async fn write_refusal_audit(app: &AppState, records: Vec<AuditRecord>) {
    if let Err(e) = write_audit(app, records).await {
        tracing::error!(error = %e, "could not record a refused attempt");
    }
}

/// Starts a lockout-counted attempt, or refuses it while locked.
fn begin_attempt(
    app: &AppState,
    account: Option<&str>,
    client: Option<&str>,
) -> Result<Attempt, Refusal> {
    app.auth.lockout().begin(account, client).map_err(|locked| {
        (
            ApiError::TooManyAttempts(locked.retry_after_secs),
            format!("locked_out ({})", locked.what),
        )
    })
}

/// Settles a failed attempt; returns the lockout records it causes.
fn failed_attempt(app: &AppState, attempt: Attempt, base: &AuditRecord) -> Vec<AuditRecord> {
    app.auth
        .lockout()
        .failed(attempt)
        .into_iter()
        .map(|what| {
            let limit = if what == "account" {
                app.config.auth.lockout_failures
            } else {
                app.config.auth.lockout_client_failures
            };
            tracing::warn!(what, "lockout");
            let mut record = base.clone();
            record.outcome = Outcome::Lockout;
            record.at = app.audit.now_ms();
            record.reason = Some(format!(
                "{what} locked after {limit} failures in {} s",
                app.config.auth.lockout_window_secs
            ));
            record
        })
        .collect()
}

/// `POST /auth/token`. If an issued token cannot be recorded, it is not
/// handed out.
pub async fn issue_token(
    app: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<TokenRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let (remote, user_agent) = client_of(&req);
    let mut record =
        AuditRecord::new(Outcome::Refused, app.audit.now_ms()).from_client(remote, user_agent);
    record.groupid = Some(body.groupid);
    let mut extra = Vec::new();
    match attempt(&app, &req, body, &mut record, &mut extra).await {
        Ok(response) => {
            record.outcome = Outcome::Issued;
            let credential = record.credential.map_or("unknown", CredentialKind::as_str);
            write_audit(&app, vec![record]).await?;
            app.metrics.token_issued(credential);
            Ok(HttpResponse::Ok().json(response))
        }
        Err((error, reason)) => {
            app.metrics.auth_failed(error.code());
            record.reason = Some(reason);
            extra.insert(0, record);
            write_refusal_audit(&app, extra).await;
            Err(error)
        }
    }
}

fn duration_of(app: &AppState, duration: Option<Value>) -> Result<u64, ApiError> {
    let max = app.config.auth.token_max_secs;
    let bad = || {
        ApiError::BadDuration(format!(
            "duration must be an integer from {MIN_TOKEN_SECS} to {max} seconds"
        ))
    };
    let secs = match duration {
        None | Some(Value::Null) => app.config.auth.token_default_secs,
        Some(Value::Number(n)) => n.as_u64().ok_or_else(bad)?,
        Some(_) => return Err(bad()),
    };
    if (MIN_TOKEN_SECS..=max).contains(&secs) {
        Ok(secs)
    } else {
        Err(bad())
    }
}

async fn attempt(
    app: &AppState,
    req: &HttpRequest,
    body: TokenRequest,
    record: &mut AuditRecord,
    extra: &mut Vec<AuditRecord>,
) -> Result<TokenResponse, Refusal> {
    let group = app
        .config
        .group(body.groupid)
        .ok_or_else(|| refuse(ApiError::UnknownGroup(body.groupid)))?;
    app.origins
        .check_group(group.id, &RequestOrigin::from_headers(req.headers()))
        .map_err(refuse)?;
    let lifetime = duration_of(app, body.duration).map_err(refuse)?;
    let cookie = req.cookie(SESSION_COOKIE);
    let credentials = body
        .credentials
        .ok_or_else(|| ApiError::BadCredentialsForm("credentials are required".into()))
        .and_then(|value| Credentials::parse(&value, cookie.as_ref().map(|c| c.value())))
        .map_err(refuse)?;
    let kind = credentials.kind();
    record.credential = Some(kind);
    record.username = credentials.claimed_username().map(str::to_owned);
    let account = credentials.account();
    let attempt = begin_attempt(app, account.as_deref(), record.remote.as_deref())?;
    let agent = match app.auth.authenticate(group, credentials).await {
        Ok(agent) => {
            app.auth.lockout().succeeded(attempt);
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
            let reason = if failure.error == ApiError::InvalidCredentials && !member {
                "invalid_credentials"
            } else {
                failure.reason
            };
            if failure.error == ApiError::InvalidCredentials {
                extra.extend(failed_attempt(app, attempt, record));
            } else {
                // Not a guess (busy, not a member...): it does not count.
                app.auth.lockout().succeeded(attempt);
            }
            return Err((failure.error, reason.to_owned()));
        }
    };
    record.username = Some(agent.username.clone());
    record.role = Some(agent.role);
    if !group.presence {
        return Err(refuse(ApiError::PresenceNotSubscribed(group.id)));
    }
    let issued = app
        .tokens
        .issue_scoped(
            &agent.username,
            group.id,
            agent.role,
            lifetime,
            agent.name.clone(),
            agent.policy.clone(),
        )
        .map_err(|e| refuse(ApiError::Internal(e.to_string())))?;
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

#[derive(Deserialize)]
pub struct LoginRequest {
    username: String,
    password: String,
}

/// Copies of a login record for each group the username belongs to, so
/// each group's administrators see it (one group-less record for unknown
/// names).
fn per_group(app: &AppState, record: &AuditRecord, username: &str) -> Vec<AuditRecord> {
    let groups = app.auth.groups_of(username);
    if groups.is_empty() {
        return vec![record.clone()];
    }
    groups
        .into_iter()
        .map(|g| {
            let mut r = record.clone();
            r.groupid = Some(g);
            r
        })
        .collect()
}

/// `POST /auth/login`: starts a website session.
pub async fn login(
    app: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let LoginRequest { username, password } = body.into_inner();
    if username.len() > MAX_PASSWORD_BYTES || password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::BadRequest(format!(
            "username and password must be at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    let (remote, user_agent) = client_of(&req);
    let mut record =
        AuditRecord::new(Outcome::Refused, app.audit.now_ms()).from_client(remote, user_agent);
    record.username = Some(username.clone());
    record.credential = Some(CredentialKind::Password);
    let attempt = match begin_attempt(&app, Some(&username), record.remote.as_deref()) {
        Ok(attempt) => attempt,
        Err((error, reason)) => {
            app.metrics.auth_failed(error.code());
            record.reason = Some(format!("login: {reason}"));
            write_refusal_audit(&app, per_group(&app, &record, &username)).await;
            return Err(error);
        }
    };
    if let Err(failure) = app.auth.check_password(&username, password, None).await {
        tracing::info!(reason = failure.reason, "login refused");
        app.metrics.auth_failed(failure.error.code());
        record.reason = Some(format!("login: {}", failure.reason));
        let mut records = per_group(&app, &record, &username);
        if failure.error == ApiError::InvalidCredentials {
            for lockout in failed_attempt(&app, attempt, &record) {
                records.extend(per_group(&app, &lockout, &username));
            }
        } else {
            app.auth.lockout().succeeded(attempt);
        }
        write_refusal_audit(&app, records).await;
        return Err(failure.error);
    }
    app.auth.lockout().succeeded(attempt);
    let session = app
        .auth
        .sessions()
        .create(&username)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    tracing::info!(username = %username, "website session started");
    Ok(HttpResponse::Ok()
        .cookie(session_cookie(&app, session.id.clone(), None))
        .json(serde_json::json!({"gssnid": session.id, "expires": session.expires})))
}

#[derive(Deserialize, Default)]
pub struct LogoutRequest {
    #[serde(default)]
    gssnid: Option<String>,
}

/// `POST /auth/logout`: ends the session named in the body or the cookie.
pub async fn logout(
    app: web::Data<AppState>,
    req: HttpRequest,
    body: Option<web::Json<LogoutRequest>>,
) -> Result<HttpResponse, ApiError> {
    let from_body = body.and_then(|b| b.into_inner().gssnid);
    let id = from_body.or_else(|| req.cookie(SESSION_COOKIE).map(|c| c.value().to_owned()));
    let Some(id) = id else {
        return Err(ApiError::BadRequest(
            "no gssnid in the body or cookie".into(),
        ));
    };
    if id.len() <= MAX_PASSWORD_BYTES {
        app.auth
            .sessions()
            .end(&id)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
    }
    // Ending an unknown session is not an error: the outcome is the same.
    Ok(HttpResponse::NoContent()
        .cookie(session_cookie(&app, String::new(), Some(0)))
        .finish())
}

/// The session cookie: HttpOnly, SameSite=Lax, Secure on https. It has no
/// Max-Age (the server's idle timeout, extended on each use, decides), except
/// `Some(0)` to delete it.
fn session_cookie(app: &AppState, value: String, max_age_secs: Option<i64>) -> Cookie<'static> {
    let secure = app.config.server.public_url.starts_with("https://");
    let mut cookie = Cookie::build(SESSION_COOKIE, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .finish();
    if let Some(secs) = max_age_secs {
        cookie.set_max_age(CookieDuration::seconds(secs));
    }
    cookie
}

/// Denylists `jti` until it expires and closes the sockets using it; returns
/// how many closed and the audit record to write.
pub(super) fn revoke_token(
    app: &AppState,
    req: &HttpRequest,
    jti: &str,
    owner: &IssuedTokenOwner,
    by: &str,
) -> Result<(usize, AuditRecord), ApiError> {
    app.tokens
        .revocations()
        .revoke(jti, owner.exp)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    // Denied from here on: close its sockets before anything that can fail.
    let sockets_closed = app.live_agents.revoke(jti);
    let (remote, user_agent) = client_of(req);
    let mut record =
        AuditRecord::new(Outcome::Revoked, app.audit.now_ms()).from_client(remote, user_agent);
    record.groupid = Some(owner.groupid);
    record.username = Some(owner.sub.clone());
    record.jti = Some(jti.to_owned());
    record.exp = Some(owner.exp);
    record.reason = Some(format!("revoked by {by}"));
    Ok((sockets_closed, record))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    jti: String,
}

/// `POST /auth/revoke`: the token's own user, or an administrator of its
/// group, denylists it until it expires; sockets using it close at once.
pub async fn revoke(
    app: web::Data<AppState>,
    req: HttpRequest,
    auth: AgentAuth,
    body: web::Json<RevokeRequest>,
) -> Result<HttpResponse, ApiError> {
    let jti = body.into_inner().jti;
    if jti.is_empty() || jti.len() > 128 {
        return Err(ApiError::BadRequest(
            "jti must be 1 to 128 characters".into(),
        ));
    }
    let caller = &auth.claims;
    app.origins.check_group(caller.groupid, &auth.origin)?;
    let owner = app
        .tokens
        .revocations()
        .owner(&jti)
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .ok_or(ApiError::UnknownToken)?;
    let same_user = caller.sub == owner.sub && caller.groupid == owner.groupid;
    let group_admin = caller.role == Role::Administrator && caller.groupid == owner.groupid;
    if !(same_user || group_admin) {
        return Err(ApiError::Forbidden(
            "only the token's user or an administrator of its group may revoke it".into(),
        ));
    }
    let (sockets_closed, record) = revoke_token(&app, &req, &jti, &owner, &caller.sub)?;
    write_audit(&app, vec![record]).await?;
    tracing::info!(%jti, by = %caller.sub, sockets_closed, "token revoked");
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "revoked": jti,
        "until": owner.exp,
        "sockets_closed": sockets_closed,
    })))
}
