//! `check-token`: a token verified as the server verifies it, against
//! the keys and denylist the tools opened (`token_tools.rs`), reported
//! with the server's error code and the decoded header and claims.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

use super::token_tools::TokenTools;
use crate::auth::token::TokenError;
use crate::infra::error::DomainError;

/// What `check-token` found.
pub struct Checked {
    pub outcome: Result<(), TokenError>,
    pub report: Value,
}

/// The error the server gives for `e`: the agent socket's own codes for
/// an expired or revoked token, otherwise what a REST request gets.
fn server_error(e: &TokenError) -> DomainError {
    match e {
        TokenError::Expired => DomainError::TokenExpired,
        TokenError::Revoked => DomainError::TokenRevoked,
        e => e.to_domain(),
    }
}

/// Whether the signature was checked before `e` was found (the decoded
/// claims are then the signer's).
fn signature_checked(e: &TokenError) -> bool {
    matches!(
        e,
        TokenError::Expired
            | TokenError::IssuedInFuture
            | TokenError::NotYetValid
            | TokenError::Revoked
            | TokenError::LifetimeTooLong
    )
}

/// One base64url JSON part of a token, decoded without any check.
fn decode_part(token: &str, index: usize) -> Value {
    token
        .split('.')
        .nth(index)
        .and_then(|part| URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok())
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or(Value::Null)
}

/// `check-token`: verifies `token` as the server does (signature against
/// the ring, claims, time, revocation) and reports the outcome with the
/// decoded header and claims; those of a token that failed before its
/// signature was checked are marked unverified.
pub fn check_token(tools: &TokenTools, token: &str) -> Checked {
    let token = token.trim();
    let outcome = tools.tokens.verify(token).map(|_| ());
    let (header, claims) = (decode_part(token, 0), decode_part(token, 1));
    let mut report = json!({ "valid": outcome.is_ok() });
    let trusted = match &outcome {
        Ok(()) => true,
        Err(e) => {
            let error = server_error(e);
            report["error"] = json!(error.code());
            report["reason"] = json!(e.reason());
            report["message"] = json!(e.to_string());
            signature_checked(e)
        }
    };
    report["signature_verified"] = json!(trusted);
    if trusted {
        report["header"] = header;
        report["claims"] = claims.clone();
    } else {
        report["unverified_header"] = header;
        report["unverified_claims"] = claims.clone();
        report["note"] =
            json!("decoded without verification: nothing in the unverified parts can be trusted");
    }
    if let Some(exp) = claims.get("exp").and_then(Value::as_u64) {
        let now = tools.clock.now_secs();
        report["expires_in_secs"] = json!(exp as i128 - now as i128);
    }
    Checked { outcome, report }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_and_revocation_get_the_sockets_codes_others_the_rest_one() {
        assert_eq!(server_error(&TokenError::Expired).code(), "token_expired");
        assert_eq!(server_error(&TokenError::Revoked).code(), "token_revoked");
        assert_eq!(
            server_error(&TokenError::BadSignature).code(),
            "unauthorized"
        );
        assert_eq!(
            server_error(&TokenError::KeysUnavailable).code(),
            "cluster_unavailable"
        );
        assert!(!signature_checked(&TokenError::BadSignature));
        assert!(!signature_checked(&TokenError::UnknownKey));
        assert!(signature_checked(&TokenError::Expired));
    }

    #[test]
    fn undecodable_parts_are_null() {
        assert_eq!(decode_part("not a token", 1), Value::Null);
        assert_eq!(decode_part("e30.eyJhIjoxfQ.x", 1), json!({"a": 1}));
    }
}
