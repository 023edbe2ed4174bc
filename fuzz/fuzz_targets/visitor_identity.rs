//! Visitor identity tokens through `visitor_identity::verify`. Modes as in
//! `agent_token`: 0 any text; 1 input claims signed with the group's
//! secret: a verified token had this issuer, this visitor as audience, a
//! live `exp`, and returns exactly its custom claims (registered ones
//! removed, at most 500 bytes); 2 a valid token with byte edits verifies
//! only unchanged.
#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::OnceLock;

use common::{object, tamper, NOW};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use libfuzzer_sys::fuzz_target;
use presence_server::fuzzing::{visitor_identity_verify, IdentityRules, MAX_CUSTOM_CLAIMS_BYTES};
use serde_json::{json, Value};

const SECRET: &[u8] = b"fuzz-visitor-identity-secret-0123456789";
const ISSUER: &str = "https://shop.example";
const VISITOR: &str = "v-123";
const LEEWAY: u64 = 5;
const REGISTERED: [&str; 7] = ["iss", "sub", "aud", "exp", "nbf", "iat", "jti"];

fn rules() -> IdentityRules<'static> {
    IdentityRules {
        secret: SECRET,
        issuer: ISSUER,
        max_lifetime_secs: 86_400,
    }
}

fn sign(claims: &Value) -> Option<String> {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET),
    )
    .ok()
}

fn valid() -> &'static str {
    static VALID: OnceLock<String> = OnceLock::new();
    VALID.get_or_init(|| {
        let token = sign(
            &json!({"iss": ISSUER, "aud": VISITOR, "exp": NOW + 600, "iat": NOW,
            "name": "Ann"}),
        )
        .expect("sign");
        visitor_identity_verify(&token, &rules(), VISITOR, NOW).expect("the seed verifies");
        token
    })
}

fuzz_target!(|data: &[u8]| {
    let [mode, rest @ ..] = data else { return };
    match mode % 3 {
        0 => {
            let Ok(token) = std::str::from_utf8(rest) else {
                return;
            };
            if let Ok(custom) = visitor_identity_verify(token, &rules(), VISITOR, NOW) {
                let map = custom.as_object().expect("custom claims are an object");
                assert!(REGISTERED.iter().all(|r| !map.contains_key(*r)));
            }
        }
        1 => {
            let Some(claims) = object(rest) else { return };
            let Some(token) = sign(&Value::Object(claims.clone())) else { return };
            if let Ok(custom) = visitor_identity_verify(&token, &rules(), VISITOR, NOW) {
                assert_eq!(claims.get("iss"), Some(&json!(ISSUER)));
                assert_eq!(claims.get("aud"), Some(&json!(VISITOR)));
                let exp = claims.get("exp").and_then(Value::as_u64).expect("exp");
                assert!(exp + LEEWAY > NOW, "expired identity verified");
                let mut want = claims.clone();
                for r in REGISTERED {
                    want.remove(r);
                }
                assert_eq!(custom, Value::Object(want));
                assert!(
                    serde_json::to_vec(&custom).expect("json").len() <= MAX_CUSTOM_CLAIMS_BYTES
                );
            }
        }
        _ => {
            let valid = valid();
            let edited = tamper(valid, rest);
            let Ok(token) = std::str::from_utf8(&edited) else {
                return;
            };
            if visitor_identity_verify(token, &rules(), VISITOR, NOW).is_ok() {
                assert_eq!(token, valid, "an edited identity token verified");
            }
        }
    }
});
