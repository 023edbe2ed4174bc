//! The one place a [`DomainError`] becomes an HTTP response: its status,
//! its headers (`WWW-Authenticate`, `Retry-After`) and the JSON body
//! `{"error": code, "message": text}`.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::infra::error::DomainError;

/// The HTTP status of `error`.
pub fn status(error: &DomainError) -> StatusCode {
    match error {
        DomainError::BadRequest(_)
        | DomainError::BadDuration(_)
        | DomainError::BadCredentialsForm(_)
        | DomainError::GroupIdRequired
        | DomainError::BadPolicy(_)
        | DomainError::BadPresenceData(_)
        | DomainError::NotRegistered => StatusCode::BAD_REQUEST,
        DomainError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        DomainError::InvalidCredentials | DomainError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        DomainError::WrongGroup { .. }
        | DomainError::OriginNotAllowed(_)
        | DomainError::PresenceNotSubscribed(_)
        | DomainError::NotAMember(_)
        | DomainError::Forbidden(_)
        | DomainError::FunctionNotAllowed(_)
        | DomainError::ConfirmationRequired
        | DomainError::RoleNotAllowed
        | DomainError::UnknownAgent => StatusCode::FORBIDDEN,
        DomainError::UnknownGroup(_)
        | DomainError::SsoNotConfigured(_)
        | DomainError::VisitorNotPresent(_)
        | DomainError::NotFound
        | DomainError::NotServedHere(..)
        | DomainError::UnknownToken
        | DomainError::SessionKeyNotFound
        | DomainError::ConfirmationNotFound => StatusCode::NOT_FOUND,
        DomainError::ConfirmationSettled(_) | DomainError::RestartRequired(_) => {
            StatusCode::CONFLICT
        }
        DomainError::ConfigInvalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        DomainError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        DomainError::TooManyPending(_)
        | DomainError::TooManyPrompts(_)
        | DomainError::TooManyConnections(_)
        | DomainError::TooManyAttempts(_) => StatusCode::TOO_MANY_REQUESTS,
        DomainError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
        DomainError::InvokeTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
        DomainError::ShuttingDown | DomainError::Busy | DomainError::AtCapacity(_) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        DomainError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        // Socket-only errors never reach HTTP; a status keeps the map total.
        DomainError::MessageTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        DomainError::TokenRevoked | DomainError::TokenExpired => StatusCode::UNAUTHORIZED,
        DomainError::RateLimited
        | DomainError::TooManyErrors
        | DomainError::TooManyWatches(_)
        | DomainError::SessionKeyMintLimited(_) => StatusCode::TOO_MANY_REQUESTS,
        DomainError::PromptNotOpen(_) | DomainError::UnknownInvoke(_) => StatusCode::NOT_FOUND,
        DomainError::SessionKeysExhausted
        | DomainError::ClusterUnavailable(_)
        | DomainError::NoSigningKey => StatusCode::SERVICE_UNAVAILABLE,
        DomainError::InternalAuth(..) => StatusCode::UNAUTHORIZED,
        DomainError::HeartbeatTimeout | DomainError::AuthTimeout | DomainError::HelloTimeout => {
            StatusCode::REQUEST_TIMEOUT
        }
        DomainError::BadFrame(_)
        | DomainError::ProtocolViolation(_)
        | DomainError::MalformedJson(_)
        | DomainError::UnknownType(_)
        | DomainError::BinaryNotSupported
        | DomainError::AuthRequired(_)
        | DomainError::AlreadyAuthenticated
        | DomainError::HelloRequired(_)
        | DomainError::AlreadyJoined
        | DomainError::BadHello(_)
        | DomainError::BadVisitorId(_)
        | DomainError::IdentityRequired
        | DomainError::IdentityInvalid(_)
        | DomainError::NotReady => StatusCode::BAD_REQUEST,
    }
}

impl ResponseError for DomainError {
    fn status_code(&self) -> StatusCode {
        status(self)
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(status(self));
        if matches!(
            self,
            DomainError::Unauthorized(_) | DomainError::InvalidCredentials
        ) {
            response.insert_header((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"presence\""),
            ));
        }
        match self {
            DomainError::ShuttingDown
            | DomainError::Busy
            | DomainError::AtCapacity(_)
            | DomainError::TooManyConnections(_) => {
                response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")));
            }
            // The rest of the body may still be on its way: the connection
            // cannot be reused, and holding it is what the deadline stops.
            DomainError::RequestTimeout(_) => {
                response.force_close();
            }
            DomainError::TooManyAttempts(secs) => {
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
        let resp = DomainError::TooManyAttempts(42).error_response();
        assert_eq!(
            resp.headers()
                .get(header::RETRY_AFTER)
                .map(|v| v.as_bytes()),
            Some(&b"42"[..])
        );
        let resp = DomainError::Busy.error_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(resp.headers().contains_key(header::RETRY_AFTER));
    }

    #[test]
    fn codes_and_statuses_match_the_published_contract() {
        let cases = [
            (DomainError::not_present(), 404, "visitor_not_present"),
            (DomainError::SsoNotConfigured(72), 404, "sso_not_configured"),
            (DomainError::AtCapacity(3), 503, "at_capacity"),
            (DomainError::InvokeTimeout(5), 504, "invoke_timeout"),
            (DomainError::TooManyPending(64), 429, "too_many_pending"),
            (DomainError::unauthorized("x"), 401, "unauthorized"),
            (
                DomainError::WrongGroup { token: 1, path: 2 },
                403,
                "wrong_group",
            ),
            (DomainError::BadRequest("x".into()), 400, "bad_request"),
            (
                DomainError::BadPresenceData("x".into()),
                400,
                "bad_presence_data",
            ),
            (
                DomainError::OriginNotAllowed("o".into()),
                403,
                "origin_not_allowed",
            ),
            (
                DomainError::PresenceNotSubscribed(7),
                403,
                "presence_not_subscribed",
            ),
            (DomainError::BadDuration("x".into()), 400, "bad_duration"),
            (
                DomainError::ConfirmationRequired,
                403,
                "confirmation_required",
            ),
            (
                DomainError::ConfirmationNotFound,
                404,
                "confirmation_not_found",
            ),
            (
                DomainError::ConfirmationSettled("confirmed".into()),
                409,
                "confirmation_settled",
            ),
            (DomainError::TooManyPrompts(8), 429, "too_many_pending"),
            (DomainError::GroupIdRequired, 400, "groupid_required"),
            (
                DomainError::TooManyConnections("x".into()),
                429,
                "too_many_connections",
            ),
            (DomainError::RequestTimeout(10), 408, "request_timeout"),
        ];
        for (err, expected, code) in cases {
            assert_eq!(status(&err).as_u16(), expected, "{code}");
            assert_eq!(err.code(), code);
        }
    }
}
