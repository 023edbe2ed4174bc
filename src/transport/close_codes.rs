//! The one place a [`DomainError`] becomes a WebSocket close code, for the
//! errors that end a socket. The error frame sent before the close carries
//! the error's code; the close reason repeats it.

use actix_web_actors::ws::CloseCode;

use crate::infra::error::DomainError;

/// The close code of a socket ended by `error`.
pub fn close_code(error: &DomainError) -> CloseCode {
    match error {
        // 1009: the message is over `presence.max_message_bytes`.
        DomainError::MessageTooLarge(_) => CloseCode::Size,
        // 1002: the peer broke the WebSocket protocol.
        DomainError::ProtocolViolation(_) => CloseCode::Protocol,
        // 1001: the server is going away.
        DomainError::ShuttingDown => CloseCode::Away,
        // 1013: try again later (the SDK retries with backoff).
        DomainError::AtCapacity(_)
        | DomainError::TooManyConnections(_)
        | DomainError::Busy
        | DomainError::ClusterUnavailable(_)
        | DomainError::NoSigningKey => CloseCode::Again,
        // 1011: the server failed.
        DomainError::Internal(_) => CloseCode::Error,
        // 1008: everything else is a policy the client broke.
        _ => CloseCode::Policy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_match_the_documented_ones() {
        let cases = [
            (DomainError::MessageTooLarge("x".into()), 1009),
            (DomainError::ProtocolViolation("x".into()), 1002),
            (DomainError::BadFrame("x".into()), 1008),
            (DomainError::TokenRevoked, 1008),
            (DomainError::TokenExpired, 1008),
            (DomainError::UnknownGroup(9), 1008),
            (DomainError::AtCapacity(3), 1013),
            (DomainError::Internal("x".into()), 1011),
            (DomainError::ShuttingDown, 1001),
        ];
        for (error, code) in cases {
            assert_eq!(u16::from(close_code(&error)), code, "{}", error.code());
        }
    }
}
