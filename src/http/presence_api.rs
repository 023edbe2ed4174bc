//! The agent REST API: look up a visitor, invoke a function in its browser,
//! send it a signal.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::Value;

use super::AgentAuth;
use crate::config::GroupConfig;
use crate::error::ApiError;
use crate::ids::{GroupId, VisitorId, VisitorKey};
use crate::invoke::{self, check_invoke};
use crate::session_keys;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct VisitorPath {
    groupid: GroupId,
    visitorid: String,
}

impl VisitorPath {
    /// Authorises the request for the path's group and parses the visitor.
    fn key<'a>(
        &self,
        app: &'a AppState,
        auth: &AgentAuth,
    ) -> Result<(VisitorKey, &'a GroupConfig), ApiError> {
        let group = auth.for_group(app, self.groupid)?;
        let visitor = VisitorId::parse(&self.visitorid).map_err(ApiError::BadRequest)?;
        Ok((VisitorKey::new(self.groupid, visitor), group))
    }
}

/// `GET /presence/{groupid}/visitors/{visitorid}`
pub async fn lookup(
    app: web::Data<AppState>,
    auth: AgentAuth,
    path: web::Path<VisitorPath>,
) -> Result<HttpResponse, ApiError> {
    let (key, _) = path.key(&app, &auth)?;
    let state = app.registry.lookup(&key);
    Ok(HttpResponse::Ok().json(state))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvokeBody {
    func: String,
    #[serde(default)]
    args: Value,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

/// `POST /presence/{groupid}/visitors/{visitorid}/invoke`
pub async fn invoke(
    app: web::Data<AppState>,
    auth: AgentAuth,
    path: web::Path<VisitorPath>,
    body: web::Json<InvokeBody>,
) -> Result<HttpResponse, ApiError> {
    let (key, group) = path.key(&app, &auth)?;
    let body = body.into_inner();
    let timeout_ms = check_invoke(
        &body.func,
        body.timeout_ms,
        &app.config.presence,
        &group.invoke_allow,
    )?;
    let outcome = invoke::invoke(&app.registry, key, body.func, body.args, timeout_ms).await?;
    Ok(HttpResponse::Ok().json(outcome))
}

#[derive(Deserialize)]
pub struct SessionPath {
    groupid: GroupId,
    key: String,
}

/// `GET /presence/{groupid}/sessions/{key}`: the visitor holding a session
/// key. Misses are limited per token and per client, so the 6-digit space
/// cannot be walked.
pub async fn find_session(
    app: web::Data<AppState>,
    req: HttpRequest,
    auth: AgentAuth,
    path: web::Path<SessionPath>,
) -> Result<HttpResponse, ApiError> {
    auth.for_group(&app, path.groupid)?;
    let client = super::client_ip(&req);
    let token = format!("jti:{}", auth.claims.jti);
    let attempt = app
        .session_key_misses
        .begin(Some(&token), client.as_deref())
        .map_err(|locked| ApiError::TooManyAttempts(locked.retry_after_secs))?;
    let found = session_keys::well_formed(&path.key)
        .then(|| app.session_keys.find(path.groupid, &path.key))
        .flatten();
    match found {
        Some(visitor) => {
            app.session_key_misses.succeeded(attempt);
            Ok(HttpResponse::Ok().json(app.registry.lookup(&visitor)))
        }
        None => {
            let _ = app.session_key_misses.failed(attempt);
            Err(ApiError::SessionKeyNotFound)
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalBody {
    data: Value,
}

/// `POST /presence/{groupid}/visitors/{visitorid}/signal`
pub async fn signal(
    app: web::Data<AppState>,
    auth: AgentAuth,
    path: web::Path<VisitorPath>,
    body: web::Json<SignalBody>,
) -> Result<HttpResponse, ApiError> {
    let (key, _) = path.key(&app, &auth)?;
    invoke::signal(
        &app.registry,
        key,
        body.into_inner().data,
        &app.config.presence,
    )
    .await?;
    Ok(HttpResponse::Accepted().json(serde_json::json!({"delivered": true})))
}
