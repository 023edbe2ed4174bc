//! The authorization endpoints: `POST /auth/token` issues agent tokens for
//! any credential kind; `POST /auth/login` and `/auth/logout` manage
//! website sessions (`gssnid`).

use actix_web::cookie::{time::Duration as CookieDuration, Cookie, SameSite};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AgentAuth;
use crate::audit::{AuditRecord, Outcome};
use crate::auth::{CredentialKind, Credentials};
use crate::config::{Role, MIN_TOKEN_SECS};
use crate::error::ApiError;
use crate::ids::GroupId;
use crate::origin::RequestOrigin;
use crate::password::MAX_PASSWORD_BYTES;
use crate::state::AppState;

/// Name of the website-session cookie.
pub const SESSION_COOKIE: &str = "gssnid";

#[derive(Deserialize)]
pub struct TokenRequest {
    groupid: GroupId,
    #[serde(default)]
    duration: Option<u64>,
    credentials: Value,
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
        req.peer_addr().map(|a| a.ip().to_string()),
        req.headers()
            .get(actix_web::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok()),
    )
}

/// Refuses an attempt from a locked account or client before any
/// credential work.
fn check_lockout(
    app: &AppState,
    account: Option<&str>,
    client: Option<&str>,
) -> Result<(), Refusal> {
    app.auth.lockout().check(account, client).map_err(|locked| {
        (
            ApiError::TooManyAttempts(locked.retry_after_secs),
            format!("locked_out ({})", locked.what),
        )
    })
}

/// Counts a failed attempt; if it locks the account or client, writes a
/// lockout record to the audit log.
fn note_failure(app: &AppState, base: &AuditRecord, account: Option<&str>, client: Option<&str>) {
    for what in app.auth.lockout().fail(account, client) {
        let mut record = base.clone();
        record.outcome = Outcome::Lockout;
        record.at = app.audit.now_ms();
        let limit = if what == "account" {
            app.config.auth.lockout_failures
        } else {
            app.config.auth.lockout_client_failures
        };
        record.reason = Some(format!(
            "{what} locked after {limit} failures in {} s",
            app.config.auth.lockout_window_secs
        ));
        tracing::warn!(what, account = account.unwrap_or(""), "lockout");
        if let Err(e) = app.audit.record(&record) {
            tracing::error!(error = %e, "could not record a lockout");
        }
    }
}

/// `POST /auth/token`. Every outcome is written to the audit log before
/// the client hears it; if an issued token cannot be recorded, it is not
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
    match attempt(&app, &req, body, &mut record).await {
        Ok(response) => {
            record.outcome = Outcome::Issued;
            app.audit
                .record(&record)
                .map_err(|e| ApiError::Internal(format!("audit log unavailable: {e}")))?;
            Ok(HttpResponse::Ok().json(response))
        }
        Err((error, reason)) => {
            record.reason = Some(reason);
            if let Err(e) = app.audit.record(&record) {
                tracing::error!(error = %e, "could not record a refused token request");
            }
            Err(error)
        }
    }
}

async fn attempt(
    app: &AppState,
    req: &HttpRequest,
    body: TokenRequest,
    record: &mut AuditRecord,
) -> Result<TokenResponse, Refusal> {
    let group = app
        .config
        .group(body.groupid)
        .ok_or_else(|| refuse(ApiError::UnknownGroup(body.groupid)))?;
    app.origins
        .check_group(group.id, &RequestOrigin::from_headers(req.headers()))
        .map_err(refuse)?;
    let max = app.config.auth.token_max_secs;
    let lifetime = body.duration.unwrap_or(app.config.auth.token_default_secs);
    if !(MIN_TOKEN_SECS..=max).contains(&lifetime) {
        return Err(refuse(ApiError::BadDuration(format!(
            "duration must be {MIN_TOKEN_SECS} to {max} seconds"
        ))));
    }
    let cookie = req.cookie(SESSION_COOKIE);
    let credentials = Credentials::parse(&body.credentials, cookie.as_ref().map(|c| c.value()))
        .map_err(refuse)?;
    let kind = credentials.kind();
    record.credential = Some(kind);
    let account = credentials.account();
    record.username = credentials.claimed_username().map(str::to_owned);
    let client = record.remote.clone();
    check_lockout(app, account.as_deref(), client.as_deref())?;
    let agent = match app.auth.authenticate(group, credentials).await {
        Ok(agent) => agent,
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
            if failure.error == ApiError::InvalidCredentials {
                note_failure(app, record, account.as_deref(), client.as_deref());
            }
            return Err((failure.error, failure.reason.to_owned()));
        }
    };
    record.username = Some(agent.username.clone());
    record.role = Some(agent.role);
    if !group.presence {
        return Err(refuse(ApiError::PresenceNotSubscribed(group.id)));
    }
    let issued = app
        .tokens
        .issue(&agent.username, group.id, agent.role, lifetime)
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
    let client = record.remote.clone();
    if let Err((error, reason)) = check_lockout(&app, Some(&username), client.as_deref()) {
        record.reason = Some(format!("login: {reason}"));
        if let Err(e) = app.audit.record(&record) {
            tracing::error!(error = %e, "could not record a refused login");
        }
        return Err(error);
    }
    if let Err(failure) = app.auth.check_password(&username, password, None).await {
        tracing::info!(reason = failure.reason, "login refused");
        record.reason = Some(format!("login: {}", failure.reason));
        if let Err(e) = app.audit.record(&record) {
            tracing::error!(error = %e, "could not record a refused login");
        }
        if failure.error == ApiError::InvalidCredentials {
            note_failure(&app, &record, Some(&username), client.as_deref());
        }
        return Err(failure.error);
    }
    let session = app
        .auth
        .sessions()
        .create(&username)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    tracing::info!(username = %username, "website session started");
    let cookie = session_cookie(&app, session.id.clone(), app.auth.sessions().idle_secs());
    Ok(HttpResponse::Ok()
        .cookie(cookie)
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
        .cookie(session_cookie(&app, String::new(), 0))
        .finish())
}

/// The session cookie: HttpOnly, SameSite=Lax, Secure on https.
fn session_cookie(app: &AppState, value: String, max_age_secs: u64) -> Cookie<'static> {
    let secure = app.config.server.public_url.starts_with("https://");
    Cookie::build(SESSION_COOKIE, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .max_age(CookieDuration::seconds(
            max_age_secs.min(i64::MAX as u64) as i64
        ))
        .finish()
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
    app.tokens
        .revocations()
        .revoke(&jti, owner.exp)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let (remote, user_agent) = client_of(&req);
    let mut record =
        AuditRecord::new(Outcome::Revoked, app.audit.now_ms()).from_client(remote, user_agent);
    record.groupid = Some(owner.groupid);
    record.username = Some(owner.sub.clone());
    record.jti = Some(jti.clone());
    record.exp = Some(owner.exp);
    record.reason = Some(format!("revoked by {}", caller.sub));
    app.audit
        .record(&record)
        .map_err(|e| ApiError::Internal(format!("audit log unavailable: {e}")))?;
    let sockets_closed = app.live_agents.revoke(&jti);
    tracing::info!(%jti, by = %caller.sub, sockets_closed, "token revoked");
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "revoked": jti,
        "until": owner.exp,
        "sockets_closed": sockets_closed,
    })))
}
