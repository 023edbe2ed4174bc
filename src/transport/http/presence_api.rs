//! The agent REST API: look up a visitor, invoke a function in its browser,
//! send it a signal, confirm it is the person on the phone. Each handler
//! parses the request, calls the agent operations and formats the answer.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::openapi::{AgentErrors, BodyErrors};

use super::AgentAuth;
use crate::infra::error::{DomainError, ErrorBody};
use crate::infra::ids::GroupId;
use crate::infra::json_integer;
use crate::presence::agent_ops::VisitorView;
use crate::presence::agent_ops::{
    AgentOps, CheckConfirmation, EndConfirmation, FindSession, Invoke, Lookup, Signal,
    StartConfirmation,
};
use crate::presence::confirmation::{ConfirmOptions, ConfirmationView, Started};
use crate::presence::registry::InvokeOutcome;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct VisitorPath {
    /// The group (tenant) id.
    #[param(value_type = u64, example = 72, maximum = 9007199254740991.0)]
    groupid: GroupId,
    /// The visitor id the visitor script connected with.
    #[param(example = "visitor-1", pattern = r"^[A-Za-z0-9._~@+\-]{1,128}$")]
    visitorid: String,
}

/// `GET /presence/{groupid}/visitors/{visitorid}`
#[utoipa::path(
    get,
    path = "/presence/{groupid}/visitors/{visitorid}",
    tag = "presence",
    summary = "Look up a visitor",
    description = "Whether the visitor is online, on which page (its presence `data`), and whether this agent holds a live confirmation. An offline visitor is 200 with `online: false`.",
    params(VisitorPath),
    security(("agent_token" = [])),
    responses((status = 200, description = "The visitor as this agent sees it", body = VisitorView), AgentErrors),
)]
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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvokeBody {
    /// The function to call: a name the visitor page registered and the
    /// group's `invoke_allow` list admits.
    #[schema(pattern = r"^[A-Za-z0-9._$]{1,128}$", example = "showTerms")]
    func: String,
    /// Passed to the function as its argument (any JSON; default null).
    #[serde(default)]
    args: Value,
    /// How long to wait for the result (default and cap:
    /// `presence.invoke_timeout_ms`), at most
    /// `presence.max_invoke_timeout_ms` (default 120000).
    #[serde(default, deserialize_with = "json_integer::optional_u64")]
    #[schema(minimum = 1, maximum = 120000)]
    timeout_ms: Option<u64>,
}

/// `POST /presence/{groupid}/visitors/{visitorid}/invoke`
#[utoipa::path(
    post,
    path = "/presence/{groupid}/visitors/{visitorid}/invoke",
    tag = "presence",
    summary = "Invoke a function in the visitor's browser",
    description = "Runs the function on the visitor's most recently active page and answers with what it returned (`ok: true, value`) or threw (`ok: false, error`). Waits through a page navigation within the grace period.",
    params(VisitorPath),
    request_body = InvokeBody,
    security(("agent_token" = [])),
    responses(
        (status = 200, description = "What the function returned or threw", body = InvokeOutcome),
        (status = 504, description = "`invoke_timeout`: no result in time", body = ErrorBody),
        AgentErrors, BodyErrors,
    ),
)]
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

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SessionPath {
    /// The group (tenant) id.
    #[param(value_type = u64, example = 72, maximum = 9007199254740991.0)]
    groupid: GroupId,
    /// The 6-digit session key the visitor reads out.
    key: String,
}

/// `GET /presence/{groupid}/sessions/{key}`: the visitor holding a session
/// key. Misses are limited per token and per client, so the 6-digit space
/// cannot be walked.
#[utoipa::path(
    get,
    path = "/presence/{groupid}/sessions/{key}",
    tag = "presence",
    summary = "Find the visitor holding a session key",
    params(SessionPath),
    security(("agent_token" = [])),
    responses(
        (status = 200, description = "The visitor holding the key", body = VisitorView),
        AgentErrors,
    ),
)]
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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignalBody {
    /// Handed to the visitor page's signal handlers (any JSON).
    data: Value,
}

/// The answer to a signal.
#[derive(Serialize, ToSchema)]
pub struct SignalAccepted {
    /// Always true: the signal reached the visitor's socket.
    delivered: bool,
}

/// `POST /presence/{groupid}/visitors/{visitorid}/signal`
#[utoipa::path(
    post,
    path = "/presence/{groupid}/visitors/{visitorid}/signal",
    tag = "presence",
    summary = "Send the visitor's page a one-way signal",
    params(VisitorPath),
    request_body = SignalBody,
    security(("agent_token" = [])),
    responses(
        (status = 202, description = "Delivered to the visitor's socket", body = SignalAccepted),
        AgentErrors, BodyErrors,
    ),
)]
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
    Ok(HttpResponse::Accepted().json(SignalAccepted { delivered: true }))
}

/// `POST /presence/{groupid}/visitors/{visitorid}/confirm`: shows the
/// visitor a prompt and answers the agent with the button to read out.
#[utoipa::path(
    post,
    path = "/presence/{groupid}/visitors/{visitorid}/confirm",
    tag = "confirmation",
    summary = "Ask the visitor to confirm they are on the phone",
    description = "Shows the visitor a prompt with `choices` buttons and answers with the one the agent reads out. The body is optional; one that is sent must be a JSON object.",
    params(VisitorPath),
    request_body(content = Option<ConfirmOptions>, description = "Optional: buttons and who is asking"),
    security(("agent_token" = [])),
    responses(
        (status = 201, description = "The prompt is shown; read out `answer`", body = Started),
        AgentErrors, BodyErrors,
    ),
)]
pub async fn start_confirmation(
    ops: web::Data<AgentOps>,
    auth: AgentAuth,
    path: web::Path<VisitorPath>,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, DomainError> {
    let started = StartConfirmation {
        group: path.groupid,
        visitorid: &path.visitorid,
        options: super::optional_json_object(body, "confirm body"),
    }
    .apply(&ops, &auth.caller(None))?
    .await?;
    Ok(HttpResponse::Created().json(started))
}

/// `DELETE /presence/{groupid}/visitors/{visitorid}/confirm`: ends this
/// agent's prompt and confirmation of the visitor.
#[utoipa::path(
    delete,
    path = "/presence/{groupid}/visitors/{visitorid}/confirm",
    tag = "confirmation",
    summary = "End this agent's prompt and confirmation",
    params(VisitorPath),
    security(("agent_token" = [])),
    responses(
        (status = 200, description = "Ended (`ended: false` if there was nothing to end)", body = ConfirmationEnded),
        AgentErrors,
    ),
)]
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
    Ok(HttpResponse::Ok().json(ConfirmationEnded {
        visitorid: path.into_inner().visitorid,
        ended,
    }))
}

/// The answer to ending a confirmation.
#[derive(Serialize, ToSchema)]
pub struct ConfirmationEnded {
    visitorid: String,
    /// Whether a prompt or a confirmation was ended.
    ended: bool,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ConfirmationPath {
    /// The group (tenant) id.
    #[param(value_type = u64, example = 72, maximum = 9007199254740991.0)]
    groupid: GroupId,
    /// The visitor id.
    #[param(example = "visitor-1", pattern = r"^[A-Za-z0-9._~@+\-]{1,128}$")]
    visitorid: String,
    /// The `confirmation` id the start answered with.
    cid: String,
}

/// `GET /presence/{groupid}/visitors/{visitorid}/confirm/{cid}`: the
/// outcome, for agents that poll instead of holding a socket.
#[utoipa::path(
    get,
    path = "/presence/{groupid}/visitors/{visitorid}/confirm/{cid}",
    tag = "confirmation",
    summary = "Poll a confirmation's outcome",
    params(ConfirmationPath),
    security(("agent_token" = [])),
    responses(
        (status = 200, description = "Where the prompt stands", body = ConfirmationView),
        AgentErrors,
    ),
)]
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
