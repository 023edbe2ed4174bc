//! Signed visitor identity tokens, as chat widgets do it: the customer's
//! backend signs an HS256 JWT with the group's `visitor_identity_secret`
//! (`iss` = the group's `visitor_identity_issuer`, `aud` = the visitor id,
//! `exp` required, custom claims up to 500 bytes), and the visitor presents
//! it in `hello`. A present but invalid token is always refused, never
//! downgraded to "unverified".
//!
//! `exp`, `iat` and `nbf` are checked with [`LEEWAY_SECS`] of skew, a `crit`
//! header is refused, and a token may live at most the group's
//! `visitor_identity_max_secs`, counted from `iat` when present and from now
//! otherwise, so no token can be made to last forever.
//!
//! Agent tokens never pass here (other key, issuer and audience), and these
//! never pass as agent tokens (no `kid` of ours, other issuer).

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::infra::jwt;

/// Largest serialised size of the custom claims.
pub const MAX_CUSTOM_CLAIMS_BYTES: usize = 500;
/// Longest identity token accepted before parsing.
pub const MAX_TOKEN_BYTES: usize = 4096;
/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const LEEWAY_SECS: u64 = 5;
/// Registered claims, not part of the custom identity shown to agents.
const REGISTERED: [&str; 7] = ["iss", "sub", "aud", "exp", "nbf", "iat", "jti"];

/// Why an identity token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("the identity token is malformed")]
    Malformed,
    #[error("the identity token must be signed with HS256")]
    WrongAlgorithm,
    #[error("the identity token's signature is invalid")]
    BadSignature,
    #[error("the identity token has no valid exp")]
    MissingExpiry,
    #[error("the identity token has expired")]
    Expired,
    #[error("the identity token was issued in the future")]
    IssuedInFuture,
    #[error("the identity token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the identity token's header has a critical extension (crit)")]
    CriticalHeader,
    #[error("the identity token's lifetime exceeds this group's visitor_identity_max_secs")]
    LifetimeTooLong,
    #[error("the identity token's iss is not this group's issuer")]
    WrongIssuer,
    #[error("the identity token's aud is not this visitor")]
    WrongAudience,
    #[error("the identity token's custom claims exceed {MAX_CUSTOM_CLAIMS_BYTES} bytes")]
    ClaimsTooLarge,
    #[error("this group does not accept identity tokens")]
    NotConfigured,
}

/// What a group accepts as an identity token.
pub struct IdentityRules<'a> {
    pub secret: &'a [u8],
    pub issuer: &'a str,
    /// Longest lifetime: `exp` minus `iat` (or minus now, without `iat`).
    pub max_lifetime_secs: u64,
}

/// Verifies `token` for `visitor_id` at Unix time `now`; returns the custom
/// claims (registered claims removed).
pub fn verify(
    token: &str,
    rules: &IdentityRules<'_>,
    visitor_id: &str,
    now: u64,
) -> Result<Value, IdentityError> {
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
        return Err(IdentityError::Malformed);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| IdentityError::Malformed)?;
    if header.alg != Algorithm::HS256 {
        return Err(IdentityError::WrongAlgorithm);
    }
    jwt::check_header(token).map_err(|e| match e {
        jwt::HeaderError::Malformed => IdentityError::Malformed,
        jwt::HeaderError::Critical => IdentityError::CriticalHeader,
    })?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let data = jsonwebtoken::decode::<Map<String, Value>>(
        token,
        &DecodingKey::from_secret(rules.secret),
        &validation,
    )
    .map_err(|e| match e.kind() {
        jsonwebtoken::errors::ErrorKind::InvalidSignature => IdentityError::BadSignature,
        jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => IdentityError::WrongAlgorithm,
        _ => IdentityError::Malformed,
    })?;
    let mut claims = data.claims;
    // Exact matches only: no audience arrays, no issuer lists.
    if claims.get("iss") != Some(&Value::String(rules.issuer.to_owned())) {
        return Err(IdentityError::WrongIssuer);
    }
    if claims.get("aud") != Some(&Value::String(visitor_id.to_owned())) {
        return Err(IdentityError::WrongAudience);
    }
    let exp = claims
        .get("exp")
        .and_then(Value::as_u64)
        .ok_or(IdentityError::MissingExpiry)?;
    if exp.saturating_add(LEEWAY_SECS) <= now {
        return Err(IdentityError::Expired);
    }
    let issued = match claims.get("iat") {
        None => now,
        Some(iat) => match iat.as_u64() {
            Some(iat) if iat <= now.saturating_add(LEEWAY_SECS) => iat,
            Some(_) => return Err(IdentityError::IssuedInFuture),
            None => return Err(IdentityError::Malformed),
        },
    };
    jwt::check_not_before(claims.get("nbf"), now, LEEWAY_SECS).map_err(|e| match e {
        jwt::NotBeforeError::Malformed => IdentityError::Malformed,
        jwt::NotBeforeError::NotYetValid => IdentityError::NotYetValid,
    })?;
    if exp.saturating_sub(issued) > rules.max_lifetime_secs {
        return Err(IdentityError::LifetimeTooLong);
    }
    for name in REGISTERED {
        claims.remove(name);
    }
    let custom = Value::Object(claims);
    let size = serde_json::to_vec(&custom).map_or(usize::MAX, |v| v.len());
    if size > MAX_CUSTOM_CLAIMS_BYTES {
        return Err(IdentityError::ClaimsTooLarge);
    }
    Ok(custom)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    const SECRET: &[u8] = b"a-visitor-identity-secret-of-32-bytes!";
    const NOW: u64 = 1_800_000_000;

    fn sign(claims: Value, secret: &[u8]) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .expect("sign")
    }

    fn good() -> Value {
        json!({"iss":"shop.example","aud":"v-1","exp":NOW + 600,"iat":NOW,"email":"v@example.com","tier":"gold"})
    }

    const RULES: IdentityRules<'static> = IdentityRules {
        secret: SECRET,
        issuer: "shop.example",
        max_lifetime_secs: 86_400,
    };

    fn check(claims: Value) -> Result<Value, IdentityError> {
        verify(&sign(claims, SECRET), &RULES, "v-1", NOW)
    }

    #[test]
    fn a_good_token_yields_its_custom_claims() {
        assert_eq!(
            check(good()),
            Ok(json!({"email":"v@example.com","tier":"gold"}))
        );
        let mut no_iat = good();
        no_iat.as_object_mut().expect("object").remove("iat");
        assert!(check(no_iat).is_ok(), "iat is optional");
    }

    #[test]
    fn every_claim_rule_is_enforced() {
        let with = |key: &str, value: Value| {
            let mut claims = good();
            claims[key] = value;
            check(claims)
        };
        assert_eq!(with("aud", json!("v-2")), Err(IdentityError::WrongAudience));
        assert_eq!(
            with("aud", json!(["v-1"])),
            Err(IdentityError::WrongAudience)
        );
        assert_eq!(with("iss", json!("other")), Err(IdentityError::WrongIssuer));
        assert_eq!(
            with("exp", json!(NOW - LEEWAY_SECS)),
            Err(IdentityError::Expired)
        );
        assert!(
            with("exp", json!(NOW - LEEWAY_SECS + 1)).is_ok(),
            "within leeway"
        );
        assert_eq!(
            with("exp", json!("soon")),
            Err(IdentityError::MissingExpiry)
        );
        assert_eq!(
            with("iat", json!(NOW + 60)),
            Err(IdentityError::IssuedInFuture)
        );
        assert_eq!(
            with("blob", json!("x".repeat(500))),
            Err(IdentityError::ClaimsTooLarge)
        );
        let mut no_exp = good();
        no_exp.as_object_mut().expect("object").remove("exp");
        assert_eq!(check(no_exp), Err(IdentityError::MissingExpiry));
        assert_eq!(
            with("nbf", json!(NOW + LEEWAY_SECS + 1)),
            Err(IdentityError::NotYetValid)
        );
        assert!(
            with("nbf", json!(NOW + LEEWAY_SECS)).is_ok(),
            "within leeway"
        );
        assert_eq!(with("nbf", json!("now")), Err(IdentityError::Malformed));
    }

    #[test]
    fn lifetime_counts_from_iat_or_from_now() {
        let with = |iat: Option<u64>, exp: u64| {
            let mut claims = good();
            claims["exp"] = json!(exp);
            match iat {
                Some(iat) => claims["iat"] = json!(iat),
                None => {
                    claims.as_object_mut().expect("object").remove("iat");
                }
            }
            check(claims)
        };
        assert!(with(Some(NOW - 100), NOW - 100 + 86_400).is_ok());
        assert_eq!(
            with(Some(NOW - 100), NOW - 100 + 86_401),
            Err(IdentityError::LifetimeTooLong)
        );
        assert!(with(None, NOW + 86_400).is_ok());
        assert_eq!(
            with(None, NOW + 86_401),
            Err(IdentityError::LifetimeTooLong)
        );
        assert_eq!(
            with(Some(NOW), u64::MAX),
            Err(IdentityError::LifetimeTooLong)
        );
        assert_eq!(with(None, u64::MAX), Err(IdentityError::LifetimeTooLong));
        assert_eq!(with(Some(0), u64::MAX), Err(IdentityError::LifetimeTooLong));
    }

    #[test]
    fn a_crit_header_is_refused() {
        let mut header = Header::new(Algorithm::HS256);
        header.crit = Some(vec!["exp".into()]);
        let token = jsonwebtoken::encode(&header, &good(), &EncodingKey::from_secret(SECRET))
            .expect("sign");
        assert_eq!(
            verify(&token, &RULES, "v-1", NOW),
            Err(IdentityError::CriticalHeader)
        );
    }

    #[test]
    fn other_secrets_algorithms_and_garbage_are_refused() {
        let token = sign(good(), b"another-groups-secret-of-32-bytes!!");
        assert_eq!(
            verify(&token, &RULES, "v-1", NOW),
            Err(IdentityError::BadSignature)
        );
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &good(),
            &EncodingKey::from_secret(SECRET),
        )
        .expect("sign");
        assert_eq!(
            verify(&hs512, &RULES, "v-1", NOW),
            Err(IdentityError::WrongAlgorithm)
        );
        let none = {
            use base64::engine::general_purpose::URL_SAFE_NO_PAD;
            use base64::Engine as _;
            format!(
                "{}.{}.",
                URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
                URL_SAFE_NO_PAD.encode(good().to_string())
            )
        };
        assert!(verify(&none, &RULES, "v-1", NOW).is_err());
        for junk in ["", "a.b.c", "x".repeat(MAX_TOKEN_BYTES + 1).as_str()] {
            assert!(verify(junk, &RULES, "v-1", NOW).is_err());
        }
    }
}
