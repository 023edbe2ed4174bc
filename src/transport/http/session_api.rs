//! Website sessions: `POST /auth/login` checks a password and starts a
//! session (`gssnid` cookie) bound to the one (group, user) record whose
//! password was checked; `POST /auth/logout` ends it and revokes every
//! token it issued.
//!
//! A username found in several groups must name its group (`groupid`);
//! failed sign-ins are audited under the group asked for, and only there.

use actix_web::cookie::{time::Duration as CookieDuration, Cookie, SameSite};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::auth_audit::{
    begin_attempt, client_of, failed_attempt, forgive_attempt, write_audit, write_refusal,
};
use super::AuthDeps;
use crate::auth::audit::{AuditRecord, Outcome};
use crate::auth::password::MAX_PASSWORD_BYTES;
use crate::auth::sign_in::CredentialKind;
use crate::infra::error::{on_blocking_pool, DomainError};
use crate::infra::ids::GroupId;
use crate::presence::origin::RequestOrigin;

/// Name of the website-session cookie.
pub const SESSION_COOKIE: &str = "gssnid";

#[derive(Deserialize)]
pub struct LoginRequest {
    /// The group to sign in to; required when the username is in several.
    #[serde(default)]
    groupid: Option<GroupId>,
    username: String,
    password: String,
}

/// `POST /auth/login`: starts a website session.
pub async fn login(
    app: web::Data<AuthDeps>,
    req: HttpRequest,
    body: web::Json<LoginRequest>,
) -> Result<HttpResponse, DomainError> {
    let LoginRequest {
        groupid,
        username,
        password,
    } = body.into_inner();
    if username.len() > MAX_PASSWORD_BYTES || password.len() > MAX_PASSWORD_BYTES {
        return Err(DomainError::BadRequest(format!(
            "username and password must be at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    let group = match groupid {
        Some(id) if app.config.load().group(id).is_none() => {
            tracing::info!(group = id, "login refused: unknown group");
            app.metrics.auth_failed("unknown_group");
            app.audit.not_recorded("unknown_group");
            return Err(DomainError::UnknownGroup(id));
        }
        Some(id) => Some(id),
        None => app.auth.sign_in_group(&username).inspect_err(|e| {
            app.metrics.auth_failed(e.code());
        })?,
    };
    let (remote, user_agent) = client_of(&req);
    let mut record =
        AuditRecord::new(Outcome::Refused, app.audit.now_ms()).with_client(remote, user_agent);
    record.groupid = group;
    record.username = Some(username.clone());
    record.credential = Some(CredentialKind::Password);
    let account = crate::auth::sign_in::credentials::username_account(group, &username);
    let attempt = match begin_attempt(&app, Some(&account), record.remote.as_deref()).await {
        Ok(attempt) => attempt,
        Err(refusal) => {
            app.metrics.auth_failed(refusal.error.code());
            record.reason = Some(format!("login: {}", refusal.reason));
            write_refusal(&app, record, refusal.locked.as_ref(), Vec::new()).await;
            return Err(refusal.error);
        }
    };
    let client = record.remote.clone();
    let checked = app
        .auth
        .check_password(&username, password, group, client.as_deref())
        .await;
    if let Err(failure) = checked {
        tracing::info!(reason = failure.reason, "login refused");
        app.metrics.auth_failed(failure.error.code());
        record.reason = Some(format!("login: {}", failure.reason));
        let lockouts = if failure.error == DomainError::InvalidCredentials {
            failed_attempt(&app, attempt, &record).await
        } else {
            forgive_attempt(&app, attempt).await;
            Vec::new()
        };
        write_refusal(&app, record, None, lockouts).await;
        return Err(failure.error);
    }
    // A password only ever matches a record in a group.
    let group = group.ok_or(DomainError::InvalidCredentials)?;
    forgive_attempt(&app, attempt).await;
    // The session is flushed before the client hears of it: off the workers.
    let (sessions, user) = (app.auth.sessions().clone(), username.clone());
    let session = on_blocking_pool("website sessions", move || sessions.create(group, &user))
        .await?
        .map_err(DomainError::from)?;
    tracing::info!(group, username = %username, "website session started");
    Ok(HttpResponse::Ok()
        .cookie(session_cookie(&app, session.id.clone(), None))
        .json(
            serde_json::json!({"gssnid": session.id, "expires": session.expires, "groupid": group}),
        ))
}

#[derive(Deserialize, Default)]
pub struct LogoutRequest {
    #[serde(default)]
    gssnid: Option<String>,
}

/// `POST /auth/logout`: ends the session named in the body or the cookie,
/// and revokes the tokens it issued (their sockets close at once). With
/// the cookie, the request must come from the console or one of the
/// session's group's origins.
pub async fn logout(
    app: web::Data<AuthDeps>,
    req: HttpRequest,
    body: Option<web::Json<LogoutRequest>>,
) -> Result<HttpResponse, DomainError> {
    let from_body = body.and_then(|b| b.into_inner().gssnid);
    let from_cookie = from_body.is_none();
    let id = from_body.or_else(|| req.cookie(SESSION_COOKIE).map(|c| c.value().to_owned()));
    let Some(id) = id else {
        return Err(DomainError::BadRequest(
            "no gssnid in the body or cookie".into(),
        ));
    };
    // Ending an unknown session is not an error: the outcome is the same.
    if id.len() <= MAX_PASSWORD_BYTES {
        // Reading a session may delete it, and ending one flushes: both run
        // on the blocking pool.
        let sessions = app.auth.sessions().clone();
        let (peeking, peeked) = (sessions.clone(), id.clone());
        let user = on_blocking_pool("website sessions", move || peeking.peek(&peeked))
            .await?
            .map_err(DomainError::from)?;
        if from_cookie {
            let origin = RequestOrigin::from_headers(req.headers());
            app.origins
                .check_cookie_request(user.as_ref().map(|u| u.groupid), &origin)?;
        }
        let tokens = on_blocking_pool("website sessions", move || sessions.end(&id))
            .await?
            .map_err(DomainError::from)?;
        if let Some(user) = user {
            revoke_session_tokens(&app, &req, &user.username, user.groupid, tokens).await?;
        }
    }
    Ok(HttpResponse::NoContent()
        .cookie(session_cookie(&app, String::new(), Some(0)))
        .finish())
}

/// Denylists the tokens a session issued, closing their sockets, with an
/// audit record for each.
async fn revoke_session_tokens(
    app: &AuthDeps,
    req: &HttpRequest,
    username: &str,
    groupid: GroupId,
    tokens: Vec<(String, u64)>,
) -> Result<(), DomainError> {
    let now = app.audit.now_ms() / 1000;
    let mut records = Vec::new();
    for (jti, exp) in tokens.into_iter().filter(|(_, exp)| *exp > now) {
        let owner = crate::store::IssuedToken {
            sub: username.to_owned(),
            groupid,
            exp,
        };
        let (_, record) = super::auth_api::revoke_token(app, req, &jti, &owner, "logout").await?;
        records.push(record);
    }
    tracing::info!(username, revoked = records.len(), "website session ended");
    write_audit(app, records).await
}

/// The session cookie: HttpOnly, SameSite=Lax, Secure on https. It has no
/// Max-Age (the server's idle timeout, extended on each use, decides), except
/// `Some(0)` to delete it.
fn session_cookie(app: &AuthDeps, value: String, max_age_secs: Option<i64>) -> Cookie<'static> {
    let secure = app.config.load().server.public_url.starts_with("https://");
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
