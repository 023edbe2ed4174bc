//! Website sessions: `POST /auth/login` checks a password and starts a
//! session (`gssnid` cookie) bound to the one (group, user) record whose
//! password was checked; `POST /auth/logout` ends it and revokes every
//! token it issued.
//!
//! A username found in several groups must name its group (`groupid`);
//! failed sign-ins are audited under the group asked for, and only there.

use super::openapi::{BodyErrors, ServerErrors};
use actix_web::cookie::{time::Duration as CookieDuration, Cookie, SameSite};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth_audit::{
    begin_attempt, client_of, failed_attempt, forgive_attempt, write_audit, write_refusal,
};
use super::AuthDeps;
use crate::auth::audit::{AuditRecord, Outcome};
use crate::auth::password::MAX_PASSWORD_BYTES;
use crate::auth::sign_in::CredentialKind;
use crate::infra::error::{on_blocking_pool, DomainError, ErrorBody};
use crate::infra::ids::GroupId;
use crate::presence::origin::RequestOrigin;

/// Name of the website-session cookie.
pub const SESSION_COOKIE: &str = "gssnid";

#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    /// The group to sign in to; required when the username is in several.
    #[serde(default, deserialize_with = "crate::infra::json_integer::optional_u64")]
    #[schema(value_type = Option<u64>, example = 72, maximum = 9007199254740991.0)]
    groupid: Option<GroupId>,
    #[schema(example = "fred.demo", max_length = 256)]
    username: String,
    #[schema(max_length = 256)]
    password: String,
}

/// A started website session.
#[derive(Serialize, ToSchema)]
struct SessionStarted {
    /// The session id, also set as the `gssnid` cookie.
    gssnid: String,
    /// When it ends unless used (Unix seconds).
    expires: u64,
    #[schema(value_type = u64)]
    groupid: GroupId,
}

/// `POST /auth/login`: starts a website session.
#[utoipa::path(
    post,
    path = "/auth/login",
    tag = "auth",
    summary = "Start a website session",
    description = "Checks a password and starts a session bound to that (group, user). The `gssnid` cookie (HttpOnly, SameSite=Lax) then gets tokens from `POST /auth/token` with empty credentials.",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Started; the `gssnid` cookie is set", body = SessionStarted),
        (status = 400, description = "`bad_request` (not the JSON this route reads, or over the length limits), `groupid_required` (the username is in several groups)", body = ErrorBody),
        (status = 401, description = "`invalid_credentials`", body = ErrorBody),
        (status = 403, description = "`origin_not_allowed`: a browser Origin that is neither the console's nor the group's", body = ErrorBody),
        (status = 404, description = "`unknown_group`, `not_served_here` (split roles)", body = ErrorBody),
        ServerErrors, BodyErrors,
    ),
)]
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
        .json(SessionStarted {
            gssnid: session.id,
            expires: session.expires,
            groupid: group,
        }))
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogoutRequest {
    /// The session to end; without it, the `gssnid` cookie's.
    #[serde(default)]
    gssnid: Option<String>,
}

/// `POST /auth/logout`: ends the session named in the body or the cookie,
/// and revokes the tokens it issued (their sockets close at once). With
/// the cookie, the request must come from the console or one of the
/// session's group's origins.
#[utoipa::path(
    post,
    path = "/auth/logout",
    tag = "auth",
    summary = "End a website session",
    description = "Ends the session named in the body or the `gssnid` cookie and revokes every token it issued (their sockets close). Ending an unknown session, or none, is not an error.",
    request_body(content = Option<LogoutRequest>, description = "Optional: the session id, else the cookie's"),
    responses(
        (status = 204, description = "Ended (or there was none to end); the cookie is cleared"),
        (status = 400, description = "`bad_request`: the body is not the JSON this route reads", body = ErrorBody),
        (status = 403, description = "`origin_not_allowed`: a cookie request from an origin that is not the console's or the session's group's", body = ErrorBody),
        (status = 404, description = "`not_served_here` (split roles)", body = ErrorBody),
        ServerErrors, BodyErrors,
    ),
)]
pub async fn logout(
    app: web::Data<AuthDeps>,
    req: HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, DomainError> {
    let body: LogoutRequest = super::optional_json_object(body, "logout body")?;
    let from_body = body.gssnid;
    let from_cookie = from_body.is_none();
    let id = from_body.or_else(|| req.cookie(SESSION_COOKIE).map(|c| c.value().to_owned()));
    // Ending an unknown session, or none, is not an error: the outcome is
    // the same (no session, the cookie cleared).
    let id = id.unwrap_or_default();
    if !id.is_empty() && id.len() <= MAX_PASSWORD_BYTES {
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
