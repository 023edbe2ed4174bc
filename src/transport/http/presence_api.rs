//! The agent REST API: look up a visitor, invoke a function in its browser,
//! send it a signal, confirm it is the person on the phone.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::Value;

use super::AgentAuth;
use crate::infra::config::GroupConfig;
use crate::infra::error::DomainError;
use crate::infra::ids::{GroupId, VisitorId, VisitorKey};
use crate::presence::confirmation::{card_for, ConfirmOptions};
use crate::presence::invoke::{self, check_invoke};
use crate::server::state::AppState;

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
    ) -> Result<(VisitorKey, &'a GroupConfig), DomainError> {
        let group = auth.for_group(app, self.groupid)?;
        let visitor = VisitorId::parse(&self.visitorid).map_err(DomainError::BadRequest)?;
        Ok((VisitorKey::new(self.groupid, visitor), group))
    }
}

/// `GET /presence/{groupid}/visitors/{visitorid}`
pub async fn lookup(
    app: web::Data<AppState>,
    auth: AgentAuth,
    path: web::Path<VisitorPath>,
) -> Result<HttpResponse, DomainError> {
    let (key, _) = path.key(&app, &auth)?;
    Ok(HttpResponse::Ok().json(app.visitor_view(&key, &auth.claims)?))
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
) -> Result<HttpResponse, DomainError> {
    let (key, group) = path.key(&app, &auth)?;
    let body = body.into_inner();
    let timeout_ms = check_invoke(
        &body.func,
        body.timeout_ms,
        &app.config.presence,
        &group.invoke_allow,
    )?;
    app.check_scope(&auth.claims, &key, Some(&body.func))?;
    let only_to = app
        .confirmations
        .check_gate(group, &key, &auth.claims.sub)?;
    let outcome = invoke::invoke(
        &*app.registry,
        &app.metrics,
        key,
        body.func,
        body.args,
        timeout_ms,
        only_to,
    )
    .await?;
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
) -> Result<HttpResponse, DomainError> {
    auth.for_group(&app, path.groupid)?;
    let client = super::client_ip(&req);
    let view = app.find_session(&auth.claims, &path.key, client.as_deref())?;
    Ok(HttpResponse::Ok().json(view))
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
) -> Result<HttpResponse, DomainError> {
    let (key, group) = path.key(&app, &auth)?;
    app.check_scope(&auth.claims, &key, None)?;
    let only_to = app
        .confirmations
        .check_gate(group, &key, &auth.claims.sub)?;
    invoke::signal(
        &*app.registry,
        key,
        body.into_inner().data,
        &app.config.presence,
        only_to,
    )
    .await?;
    Ok(HttpResponse::Accepted().json(serde_json::json!({"delivered": true})))
}

/// `POST /presence/{groupid}/visitors/{visitorid}/confirm`: shows the
/// visitor a prompt and answers the agent with the button to read out.
pub async fn start_confirmation(
    app: web::Data<AppState>,
    auth: AgentAuth,
    path: web::Path<VisitorPath>,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, DomainError> {
    let (key, group) = path.key(&app, &auth)?;
    let body = body.map_err(|e| match e.as_response_error().status_code().as_u16() {
        413 => DomainError::PayloadTooLarge(format!("the body is too large: {e}")),
        _ => DomainError::BadRequest(format!("cannot read the body: {e}")),
    })?;
    // The body is optional, but one that is sent must be right: a typo must
    // not silently become the defaults.
    let options: ConfirmOptions = if body.iter().all(u8::is_ascii_whitespace) {
        ConfirmOptions::default()
    } else {
        let bad = |e: serde_json::Error| DomainError::BadRequest(format!("bad confirm body: {e}"));
        match serde_json::from_slice(&body).map_err(bad)? {
            object @ Value::Object(_) => serde_json::from_value(object).map_err(bad)?,
            _ => {
                return Err(DomainError::BadRequest(
                    "the body must be a JSON object".into(),
                ))
            }
        }
    };
    app.check_scope(&auth.claims, &key, None)?;
    let card = card_for(
        group,
        &auth.claims.sub,
        auth.claims.name.as_deref(),
        options.agent,
    )?;
    let started = app
        .confirmations
        .start(key, &auth.claims.sub, card, options.choices)
        .await?;
    Ok(HttpResponse::Created().json(started))
}

/// `DELETE /presence/{groupid}/visitors/{visitorid}/confirm`: ends this
/// agent's prompt and confirmation of the visitor.
pub async fn end_confirmation(
    app: web::Data<AppState>,
    auth: AgentAuth,
    path: web::Path<VisitorPath>,
) -> Result<HttpResponse, DomainError> {
    let (key, _) = path.key(&app, &auth)?;
    let visitorid = key.visitor.as_str().to_owned();
    let ended = app.confirmations.cancel(key, &auth.claims.sub).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"visitorid": visitorid, "ended": ended})))
}

#[derive(Deserialize)]
pub struct ConfirmationPath {
    groupid: GroupId,
    visitorid: String,
    cid: String,
}

/// `GET /presence/{groupid}/visitors/{visitorid}/confirm/{cid}`: the
/// outcome, for agents that poll instead of holding a socket.
pub async fn confirmation_status(
    app: web::Data<AppState>,
    auth: AgentAuth,
    path: web::Path<ConfirmationPath>,
) -> Result<HttpResponse, DomainError> {
    let path = path.into_inner();
    let visitor = VisitorPath {
        groupid: path.groupid,
        visitorid: path.visitorid,
    };
    let (key, _) = visitor.key(&app, &auth)?;
    let view = app
        .confirmations
        .view(key, &auth.claims.sub, path.cid)
        .await?;
    Ok(HttpResponse::Ok().json(view))
}
