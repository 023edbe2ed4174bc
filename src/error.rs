//! The one error type of the HTTP and WebSocket APIs: each variant has a
//! stable code that clients match on, and a status, mapped to HTTP here and
//! nowhere else. Over HTTP it becomes `{"error": code, "message": text}`; over
//! a socket it becomes an error frame with the same code.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

/// Everything a client can be told went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    BadDuration(String),
    #[error("{0}")]
    BadCredentialsForm(String),
    #[error("this username belongs to several groups; say which with groupid")]
    GroupIdRequired,
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("the username or password is wrong")]
    InvalidCredentials,
    #[error("{0}")]
    Unauthorized(String),
    #[error("the token is for group {token}, not group {path}")]
    WrongGroup { token: u64, path: u64 },
    #[error("origin {0:?} is not allowed for this group")]
    OriginNotAllowed(String),
    #[error("group {0} does not subscribe to Presence")]
    PresenceNotSubscribed(u64),
    #[error("the agent is not a member of group {0}")]
    NotAMember(u64),
    #[error("{0}")]
    Forbidden(String),
    #[error("function {0:?} is not in the group's invoke_allow list")]
    FunctionNotAllowed(String),
    #[error("this group does not accept the administrator role from SSO tokens")]
    RoleNotAllowed,
    #[error("the agent is not known to this group and auto-provisioning is off")]
    UnknownAgent,
    #[error("{0}")]
    BadPolicy(String),
    #[error("this group requires a live confirmation of the visitor by this agent")]
    ConfirmationRequired,
    #[error("no such confirmation for this visitor and agent")]
    ConfirmationNotFound,
    #[error("the confirmation was already settled: {0}")]
    ConfirmationSettled(String),
    #[error("the visitor already has {0} confirmation prompts open")]
    TooManyPrompts(usize),
    #[error("group {0} does not exist")]
    UnknownGroup(u64),
    #[error("group {0} has no SSO sign-in page configured")]
    SsoNotConfigured(u64),
    #[error("{0}")]
    VisitorNotPresent(String),
    #[error("no such resource")]
    NotFound,
    #[error("no live token has this jti")]
    UnknownToken,
    #[error("no visitor holds this session key")]
    SessionKeyNotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("the visitor already has {0} invokes awaiting a result")]
    TooManyPending(usize),
    #[error("too many failed attempts; retry in {0} s")]
    TooManyAttempts(u64),
    #[error("the visitor did not answer within {0} ms")]
    InvokeTimeout(u64),
    #[error("{0}")]
    TooManyConnections(String),
    #[error("the request body was not complete within {0} ms")]
    RequestTimeout(u64),
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("the server is busy; retry shortly")]
    Busy,
    #[error("the server holds its maximum of {0} connections; retry shortly")]
    AtCapacity(usize),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::BadDuration(_) => "bad_duration",
            ApiError::BadCredentialsForm(_) => "bad_credentials_form",
            ApiError::GroupIdRequired => "groupid_required",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::InvalidCredentials => "invalid_credentials",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::WrongGroup { .. } => "wrong_group",
            ApiError::OriginNotAllowed(_) => "origin_not_allowed",
            ApiError::PresenceNotSubscribed(_) => "presence_not_subscribed",
            ApiError::NotAMember(_) => "not_a_member",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::FunctionNotAllowed(_) => "function_not_allowed",
            ApiError::ConfirmationRequired => "confirmation_required",
            ApiError::RoleNotAllowed => "role_not_allowed",
            ApiError::UnknownAgent => "unknown_agent",
            ApiError::BadPolicy(_) => "bad_policy",
            ApiError::ConfirmationNotFound => "confirmation_not_found",
            ApiError::ConfirmationSettled(_) => "confirmation_settled",
            ApiError::TooManyPrompts(_) => "too_many_pending",
            ApiError::UnknownGroup(_) => "unknown_group",
            ApiError::SsoNotConfigured(_) => "sso_not_configured",
            ApiError::VisitorNotPresent(_) => "visitor_not_present",
            ApiError::NotFound => "not_found",
            ApiError::UnknownToken => "unknown_token",
            ApiError::SessionKeyNotFound => "session_key_not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::TooManyPending(_) => "too_many_pending",
            ApiError::TooManyAttempts(_) => "too_many_attempts",
            ApiError::InvokeTimeout(_) => "invoke_timeout",
            ApiError::TooManyConnections(_) => "too_many_connections",
            ApiError::RequestTimeout(_) => "request_timeout",
            ApiError::ShuttingDown => "shutting_down",
            ApiError::Busy => "server_busy",
            ApiError::AtCapacity(_) => "at_capacity",
            ApiError::Internal(_) => "internal",
        }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_)
            | ApiError::BadDuration(_)
            | ApiError::BadCredentialsForm(_)
            | ApiError::GroupIdRequired
            | ApiError::BadPolicy(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::InvalidCredentials | ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::WrongGroup { .. }
            | ApiError::OriginNotAllowed(_)
            | ApiError::PresenceNotSubscribed(_)
            | ApiError::NotAMember(_)
            | ApiError::Forbidden(_)
            | ApiError::FunctionNotAllowed(_)
            | ApiError::ConfirmationRequired
            | ApiError::RoleNotAllowed
            | ApiError::UnknownAgent => StatusCode::FORBIDDEN,
            ApiError::UnknownGroup(_)
            | ApiError::SsoNotConfigured(_)
            | ApiError::VisitorNotPresent(_)
            | ApiError::NotFound
            | ApiError::UnknownToken
            | ApiError::SessionKeyNotFound
            | ApiError::ConfirmationNotFound => StatusCode::NOT_FOUND,
            ApiError::ConfirmationSettled(_) => StatusCode::CONFLICT,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooManyPending(_)
            | ApiError::TooManyPrompts(_)
            | ApiError::TooManyConnections(_)
            | ApiError::TooManyAttempts(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::InvokeTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::ShuttingDown | ApiError::Busy | ApiError::AtCapacity(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The JSON body of this error.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.code(),
            message: self.to_string(),
        }
    }

    /// The standard "visitor is not online" error.
    pub fn not_present() -> Self {
        ApiError::VisitorNotPresent("the visitor is not online".to_owned())
    }

    /// The standard "bad token" error; the reason is for the client, never
    /// the token itself.
    pub fn unauthorized(reason: impl Into<String>) -> Self {
        ApiError::Unauthorized(reason.into())
    }
}

/// Runs a fallible blocking call (a sled scan or flush, an fsync) on the
/// blocking pool, off the async workers. Any failure, of the call or of the
/// pool, is an internal error described as `what: cause`.
pub async fn off_thread<T, E>(
    what: &'static str,
    call: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    actix_web::web::block(call)
        .await
        .map_err(|e| ApiError::Internal(format!("{what}: {e}")))?
        .map_err(|e| ApiError::Internal(format!("{what}: {e}")))
}

/// `{"error": code, "message": text}`.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub error: &'static str,
    pub message: String,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status());
        if matches!(
            self,
            ApiError::Unauthorized(_) | ApiError::InvalidCredentials
        ) {
            response.insert_header((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"presence\""),
            ));
        }
        match self {
            ApiError::Busy
            | ApiError::ShuttingDown
            | ApiError::AtCapacity(_)
            | ApiError::TooManyConnections(_) => {
                response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")));
            }
            // The rest of the body may still be on its way: the connection
            // cannot be reused, and holding it is what the deadline stops.
            ApiError::RequestTimeout(_) => {
                response.force_close();
            }
            ApiError::TooManyAttempts(secs) => {
                response.insert_header((header::RETRY_AFTER, HeaderValue::from(*secs)));
            }
            _ => {}
        }
        response.json(self.body())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_accompanies_429_and_503() {
        let resp = ApiError::TooManyAttempts(42).error_response();
        assert_eq!(
            resp.headers()
                .get(header::RETRY_AFTER)
                .map(|v| v.as_bytes()),
            Some(&b"42"[..])
        );
        let resp = ApiError::Busy.error_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(resp.headers().contains_key(header::RETRY_AFTER));
    }

    #[test]
    fn codes_and_statuses_match_the_published_contract() {
        let cases = [
            (ApiError::not_present(), 404, "visitor_not_present"),
            (ApiError::SsoNotConfigured(72), 404, "sso_not_configured"),
            (ApiError::AtCapacity(3), 503, "at_capacity"),
            (ApiError::InvokeTimeout(5), 504, "invoke_timeout"),
            (ApiError::TooManyPending(64), 429, "too_many_pending"),
            (ApiError::unauthorized("x"), 401, "unauthorized"),
            (
                ApiError::WrongGroup { token: 1, path: 2 },
                403,
                "wrong_group",
            ),
            (ApiError::BadRequest("x".into()), 400, "bad_request"),
            (
                ApiError::OriginNotAllowed("o".into()),
                403,
                "origin_not_allowed",
            ),
            (
                ApiError::PresenceNotSubscribed(7),
                403,
                "presence_not_subscribed",
            ),
            (ApiError::BadDuration("x".into()), 400, "bad_duration"),
            (ApiError::ConfirmationRequired, 403, "confirmation_required"),
            (
                ApiError::ConfirmationNotFound,
                404,
                "confirmation_not_found",
            ),
            (
                ApiError::ConfirmationSettled("confirmed".into()),
                409,
                "confirmation_settled",
            ),
            (ApiError::TooManyPrompts(8), 429, "too_many_pending"),
            (ApiError::GroupIdRequired, 400, "groupid_required"),
            (
                ApiError::TooManyConnections("x".into()),
                429,
                "too_many_connections",
            ),
            (ApiError::RequestTimeout(10), 408, "request_timeout"),
        ];
        for (err, status, code) in cases {
            assert_eq!(err.status().as_u16(), status, "{code}");
            assert_eq!(err.code(), code);
        }
    }
}
