//! The agent REST API: look up a visitor, invoke a function in its browser,
//! send it a signal, confirm it is the person on the phone. Each handler
//! parses the request, calls the agent operations and formats the answer.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::Value;

use super::AgentAuth;
use crate::infra::error::DomainError;
use crate::infra::ids::GroupId;
use crate::presence::agent_ops::{
    AgentOps, CheckConfirmation, EndConfirmation, FindSession, Invoke, Lookup, Signal,
    StartConfirmation,
};
use crate::presence::confirmation::ConfirmOptions;

#[derive(Deserialize)]
pub struct VisitorPath {
    groupid: GroupId,
    visitorid: String,
}

/// `GET /presence/{groupid}/visitors/{visitorid}`
pub async fn lookup(
    ops: web::Data<AgentOps>,
    auth: AgentAuth,
    path: web::Path<VisitorPath>,
) -> Result<HttpResponse, DomainError> {
    let view = Lookup {
        group: path.groupid,
        visitorid: &path.visitorid,
    }
    .apply(&ops, &auth.caller(None))?;
    Ok(HttpResponse::Ok().json(view))
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
    ops: web::Data<AgentOps>,
    auth: AgentAuth,
    path: web::Path<VisitorPath>,
    body: web::Json<InvokeBody>,
) -> Result<HttpResponse, DomainError> {
    let body = body.into_inner();
    let outcome = Invoke {
        group: path.groupid,
        visitorid: &path.visitorid,
        func: body.func,
        args: body.args,
        timeout_ms: body.timeout_ms,
    }
    .apply(&ops, &auth.caller(None))?
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
    ops: web::Data<AgentOps>,
    req: HttpRequest,
    auth: AgentAuth,
    path: web::Path<SessionPath>,
) -> Result<HttpResponse, DomainError> {
    let client = super::client_ip(&req);
    let view = FindSession {
        group: path.groupid,
        key: &path.key,
    }
    .apply(&ops, &auth.caller(client.as_deref()))
    .await?;
    Ok(HttpResponse::Ok().json(view))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalBody {
    data: Value,
}

/// `POST /presence/{groupid}/visitors/{visitorid}/signal`
pub async fn signal(
    ops: web::Data<AgentOps>,
    auth: AgentAuth,
    path: web::Path<VisitorPath>,
    body: web::Json<SignalBody>,
) -> Result<HttpResponse, DomainError> {
    Signal {
        group: path.groupid,
        visitorid: &path.visitorid,
        data: body.into_inner().data,
    }
    .apply(&ops, &auth.caller(None))?
    .await?;
    Ok(HttpResponse::Accepted().json(serde_json::json!({"delivered": true})))
}

/// The optional body of a confirm request. It is optional, but one that is
/// sent must be right: a typo must not silently become the defaults.
fn confirm_options(
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<ConfirmOptions, DomainError> {
    let body = body.map_err(|e| match e.as_response_error().status_code().as_u16() {
        413 => DomainError::PayloadTooLarge(format!("the body is too large: {e}")),
        _ => DomainError::BadRequest(format!("cannot read the body: {e}")),
    })?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(ConfirmOptions::default());
    }
    let bad = |e: serde_json::Error| DomainError::BadRequest(format!("bad confirm body: {e}"));
    match serde_json::from_slice(&body).map_err(bad)? {
        object @ Value::Object(_) => serde_json::from_value(object).map_err(bad),
        _ => Err(DomainError::BadRequest(
            "the body must be a JSON object".into(),
        )),
    }
}

/// `POST /presence/{groupid}/visitors/{visitorid}/confirm`: shows the
/// visitor a prompt and answers the agent with the button to read out.
pub async fn start_confirmation(
    ops: web::Data<AgentOps>,
    auth: AgentAuth,
    path: web::Path<VisitorPath>,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, DomainError> {
    let started = StartConfirmation {
        group: path.groupid,
        visitorid: &path.visitorid,
        options: confirm_options(body),
    }
    .apply(&ops, &auth.caller(None))?
    .await?;
    Ok(HttpResponse::Created().json(started))
}

/// `DELETE /presence/{groupid}/visitors/{visitorid}/confirm`: ends this
/// agent's prompt and confirmation of the visitor.
pub async fn end_confirmation(
    ops: web::Data<AgentOps>,
    auth: AgentAuth,
    path: web::Path<VisitorPath>,
) -> Result<HttpResponse, DomainError> {
    let ended = EndConfirmation {
        group: path.groupid,
        visitorid: &path.visitorid,
    }
    .apply(&ops, &auth.caller(None))
    .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"visitorid": path.visitorid, "ended": ended})))
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
    ops: web::Data<AgentOps>,
    auth: AgentAuth,
    path: web::Path<ConfirmationPath>,
) -> Result<HttpResponse, DomainError> {
    let path = path.into_inner();
    let view = CheckConfirmation {
        group: path.groupid,
        visitorid: &path.visitorid,
        confirmation: path.cid,
    }
    .apply(&ops, &auth.caller(None))
    .await?;
    Ok(HttpResponse::Ok().json(view))
}
