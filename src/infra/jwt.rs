//! Rules every JWT kind here shares (the server's agent tokens, customers'
//! SSO tokens and visitor identity tokens), checked by hand because
//! jsonwebtoken either skips them or checks them on the system clock:
//!
//! - a protected header with a `crit` member is refused, whatever its value:
//!   no critical extension is understood here, and RFC 7515 §4.1.11 says a
//!   recipient must then reject the token;
//! - a present `nbf` must be a non-negative integer NumericDate no later than
//!   now plus the same leeway `exp` gets; anything else (a string, a
//!   fraction, `null`) is refused rather than ignored.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// Why a token's header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// The header is not base64url JSON.
    Malformed,
    /// The header has a `crit` member.
    Critical,
}

/// Refuses a token whose protected header carries `crit`.
pub fn check_header(token: &str) -> Result<(), HeaderError> {
    let encoded = token.split('.').next().unwrap_or_default();
    let bytes = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| HeaderError::Malformed)?;
    let header: Map<String, Value> =
        serde_json::from_slice(&bytes).map_err(|_| HeaderError::Malformed)?;
    if header.contains_key("crit") {
        return Err(HeaderError::Critical);
    }
    Ok(())
}

/// Why a token's `nbf` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotBeforeError {
    /// `nbf` is not a non-negative integer.
    Malformed,
    /// `nbf` lies more than the leeway after now.
    NotYetValid,
}

/// Checks an optional `nbf` claim against `now`, allowing `leeway_secs`.
pub fn check_not_before(
    nbf: Option<&Value>,
    now: u64,
    leeway_secs: u64,
) -> Result<(), NotBeforeError> {
    let Some(nbf) = nbf else {
        return Ok(());
    };
    let nbf = nbf.as_u64().ok_or(NotBeforeError::Malformed)?;
    if nbf > now.saturating_add(leeway_secs) {
        return Err(NotBeforeError::NotYetValid);
    }
    Ok(())
}

/// A claim as it was sent, `null` included; with `#[serde(default)]` an
/// absent claim reads as `None`, so "absent" and "present but null" differ.
pub fn present_claim<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// Typed claims plus the raw `nbf`, for the token kinds decoded into
/// structs.
#[derive(Deserialize)]
pub struct WithNotBefore<T> {
    #[serde(flatten)]
    pub claims: T,
    #[serde(default, deserialize_with = "present_claim")]
    pub nbf: Option<Value>,
}

/// `iss` of every agent token.
pub const ISSUER: &str = "presence-server";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn token_with_header(header: &str) -> String {
        format!("{}.e30.sig", URL_SAFE_NO_PAD.encode(header))
    }

    #[test]
    fn any_crit_member_is_refused() {
        assert_eq!(
            check_header(&token_with_header(r#"{"alg":"HS256"}"#)),
            Ok(())
        );
        for crit in [r#"["exp"]"#, "[]", "null", r#""b64""#] {
            let header = format!(r#"{{"alg":"HS256","crit":{crit}}}"#);
            assert_eq!(
                check_header(&token_with_header(&header)),
                Err(HeaderError::Critical),
                "{crit}"
            );
        }
        for junk in ["", "!!!.e30.x", &token_with_header("[1]")] {
            assert_eq!(check_header(junk), Err(HeaderError::Malformed), "{junk}");
        }
    }

    #[test]
    fn nbf_must_be_an_integer_no_later_than_now_plus_leeway() {
        let check = |nbf: Value| check_not_before(Some(&nbf), 1000, 5);
        assert_eq!(check_not_before(None, 1000, 5), Ok(()));
        assert_eq!(check(json!(0)), Ok(()));
        assert_eq!(check(json!(1005)), Ok(()), "within leeway");
        assert_eq!(check(json!(1006)), Err(NotBeforeError::NotYetValid));
        assert_eq!(check(json!(u64::MAX)), Err(NotBeforeError::NotYetValid));
        for bad in [
            json!("soon"),
            json!(null),
            json!(999.5),
            json!(-1),
            json!([1]),
        ] {
            assert_eq!(check(bad.clone()), Err(NotBeforeError::Malformed), "{bad}");
        }
        assert_eq!(
            check_not_before(Some(&json!(u64::MAX)), u64::MAX - 1, 5),
            Ok(()),
            "no overflow"
        );
    }

    #[test]
    fn present_claims_keep_null_apart_from_absent() {
        #[derive(Deserialize)]
        struct Claims {
            sub: String,
        }
        let parse = |v: Value| serde_json::from_value::<WithNotBefore<Claims>>(v).expect("parse");
        let absent = parse(json!({"sub":"a"}));
        assert_eq!((absent.claims.sub.as_str(), absent.nbf), ("a", None));
        assert_eq!(parse(json!({"sub":"a","nbf":null})).nbf, Some(Value::Null));
        assert_eq!(parse(json!({"sub":"a","nbf":7})).nbf, Some(json!(7)));
    }
}
