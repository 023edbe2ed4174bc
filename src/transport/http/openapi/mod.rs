//! The OpenAPI 3.1 document of the REST API, derived by `utoipa` from the
//! handlers' `#[utoipa::path]` attributes and the types they read and
//! write, so it cannot drift from them. Served at `GET /openapi.json` and
//! printed by `presence-server openapi`.
//!
//! The error statuses every route shares are the response sets below; each
//! names the codes (`ErrorCode`) a client can get under that status.

mod credentials;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use actix_web::HttpResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{IntoResponses, Modify, OpenApi};

use super::{admin_api, auth_api, health, session_api, sockets, sso_start, webhooks_api};
use super::{presence_api, HealthBody};
use crate::infra::error::{ErrorBody, ErrorCode};

pub use credentials::CredentialForms;

/// The document's types, routes and security scheme.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "presence-server",
        description = "Agent, administrator and sign-in API of presence-server. Every error is a JSON `ErrorBody` `{\"error\": code, \"message\": text}`; `error` is one of `ErrorCode`. Agent routes take `Authorization: Bearer <agent token>` from `POST /auth/token`; administrator routes need a token of an administrator of the group in the path.",
        license(name = "MIT OR Apache-2.0")
    ),
    paths(
        health::healthz,
        openapi_json,
        auth_api::issue_token,
        auth_api::revoke,
        session_api::login,
        session_api::logout,
        sso_start::start,
        sockets::visitor_socket,
        sockets::agent_socket,
        admin_api::audit,
        admin_api::list_agents,
        admin_api::revoke_agent,
        admin_api::list_visitors,
        webhooks_api::failed,
        webhooks_api::replay,
        presence_api::lookup,
        presence_api::invoke,
        presence_api::find_session,
        presence_api::signal,
        presence_api::start_confirmation,
        presence_api::end_confirmation,
        presence_api::confirmation_status,
    ),
    components(schemas(ErrorBody, ErrorCode, HealthBody)),
    modifiers(&BearerToken),
    tags(
        (name = "auth", description = "Agent tokens, website sessions, SSO"),
        (name = "presence", description = "Visitors: lookup, invoke, signal, session keys"),
        (name = "confirmation", description = "Confirmation prompts"),
        (name = "admin", description = "Group administrators"),
        (name = "sockets", description = "The WebSocket endpoints"),
        (name = "operations", description = "Health and this document"),
    )
)]
struct ApiDoc;

/// Adds the `agent_token` bearer scheme the routes name.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "agent_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An agent token from POST /auth/token (administrator routes: a token \
                         of an administrator of the group in the path)",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document, as built from the code.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

/// The document as pretty JSON (built once).
pub fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        document()
            .to_pretty_json()
            .expect("the OpenAPI document serialises")
    })
}

/// `GET /openapi.json`
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    summary = "This document",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object),
        ServerErrors,
    ),
)]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document_json())
}

/// An error response whose body is an [`ErrorBody`].
fn error(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            Content::new(Some(Ref::from_schema_name("ErrorBody"))),
        )
        .build()
        .into()
}

fn set(entries: &[(&str, &str)]) -> BTreeMap<String, RefOr<Response>> {
    entries
        .iter()
        .map(|(status, description)| ((*status).to_owned(), error(description)))
        .collect()
}

/// What any connection can be told, before a handler runs.
const CONNECTION: [(&str, &str); 3] = [
    (
        "429",
        "`too_many_connections`: this client address holds too many connections \
         (`server.max_connections_per_ip`); `too_many_attempts`: sign-ins or prompts locked \
         (`Retry-After`); `too_many_pending`: the visitor has too many commands in flight",
    ),
    (
        "500",
        "`internal`: a storage failure or a bug; the message says which",
    ),
    (
        "503",
        "`shutting_down`, `at_capacity`, `server_busy`, `cluster_unavailable` \
         (cluster mode: Redis did not answer), `no_signing_key` (auth role before its first key)",
    ),
];

/// The statuses of routes that need no token.
pub struct ServerErrors;

impl IntoResponses for ServerErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        set(&CONNECTION)
    }
}

/// The statuses every agent-token route shares.
pub struct AgentErrors;

impl IntoResponses for AgentErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let mut responses = set(&CONNECTION);
        responses.extend(set(&[
            (
                "400",
                "`bad_request` (a bad path or query parameter), `bad_visitor_id`, `bad_policy`",
            ),
            (
                "401",
                "`unauthorized` (no, malformed or unverifiable token), `token_expired`, `token_revoked`",
            ),
            (
                "403",
                "`wrong_group` (the token is for another group), `origin_not_allowed`, \
                 `presence_not_subscribed`, `forbidden` (an administrator route, or outside \
                 the token's policy), `function_not_allowed`, `confirmation_required`",
            ),
            (
                "404",
                "`unknown_group`, `visitor_not_present`, `session_key_not_found`, \
                 `confirmation_not_found`, `not_served_here` (split roles: the other role's route)",
            ),
        ]));
        responses
    }
}

/// The statuses of routes that read a body (a body that is not the JSON
/// the route reads is a 400 `bad_request`, in the route's own 400).
pub struct BodyErrors;

impl IntoResponses for BodyErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        set(&[
            (
                "408",
                "`request_timeout`: the body did not arrive within `server.request_body_timeout_ms`",
            ),
            (
                "413",
                "`payload_too_large`: the body is over `presence.max_message_bytes`",
            ),
        ])
    }
}

#[cfg(test)]
mod tests;
