//! SSO tokens through `SsoVerifier::verify`, pinned to the test keys (RS256
//! and ES256). Modes: 0 any text; 1 input claims signed with the ES256 test
//! key: a verified token's identity is its `sub` (an email), its `exp`, its
//! `jti`, with iat < exp and a live expiry, and the administrator role only
//! when allowed; 2 a valid token with byte edits verifies only unchanged.
#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::OnceLock;

use common::{object, tamper, NOW};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use libfuzzer_sys::fuzz_target;
use presence_server::fuzzing::{SsoAlgorithm, SsoConfig, SsoVerifier};
use serde_json::{json, Value};

const EC_PRIVATE: &str = include_str!("../../tests/keys/group72-ec.key.pem");
const EC_PUBLIC: &str = include_str!("../../tests/keys/group72-ec.pub.pem");
const RSA_PUBLIC: &str = include_str!("../../tests/keys/group72-a.pub.pem");
const ISSUER: &str = "acme-license";
const AUDIENCE: &str = "https://presence.example";

struct Fixture {
    verifier: SsoVerifier,
    key: EncodingKey,
    valid: String,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let config = SsoConfig {
            issuer: ISSUER.into(),
            audience: Some(AUDIENCE.into()),
            public_keys: vec![RSA_PUBLIC.into(), EC_PUBLIC.into()],
            algorithms: vec![SsoAlgorithm::RS256, SsoAlgorithm::ES256],
            allow_admin_role: false,
            auto_provision: true,
            require_jti: true,
            login_url: None,
        };
        let verifier = SsoVerifier::new(&config, AUDIENCE).expect("verifier");
        let key = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).expect("ec key");
        let valid = encode(
            &Header::new(Algorithm::ES256),
            &json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "ann@example.com", "iat": NOW,
                "exp": NOW + 300, "jti": "j-1", "displayName": "Ann"}),
            &key,
        )
        .expect("sign");
        verifier.verify(&valid, NOW).expect("the seed verifies");
        Fixture {
            verifier,
            key,
            valid,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let [mode, rest @ ..] = data else { return };
    let f = fixture();
    match mode % 3 {
        0 => {
            let Ok(token) = std::str::from_utf8(rest) else {
                return;
            };
            if let Ok(id) = f.verifier.verify(token, NOW) {
                assert!(id.email.contains('@'));
            }
        }
        1 => {
            let Some(claims) = object(rest) else { return };
            let Ok(token) = encode(&Header::new(Algorithm::ES256), &claims, &f.key) else {
                return;
            };
            if let Ok(id) = f.verifier.verify(&token, NOW) {
                assert_eq!(claims.get("iss"), Some(&json!(ISSUER)));
                assert_eq!(claims.get("sub"), Some(&json!(id.email)));
                assert!(id.email.contains('@'));
                assert_eq!(claims.get("exp").and_then(Value::as_u64), Some(id.exp));
                let iat = claims.get("iat").and_then(Value::as_u64).expect("iat");
                assert!(iat < id.exp && id.exp + 5 >= NOW);
                assert_eq!(claims.get("jti").and_then(Value::as_str), id.jti.as_deref());
                assert_ne!(claims.get("role"), Some(&json!("administrator")));
            }
        }
        _ => {
            let edited = tamper(&f.valid, rest);
            let Ok(token) = std::str::from_utf8(&edited) else {
                return;
            };
            if f.verifier.verify(token, NOW).is_ok() {
                assert_eq!(token, f.valid, "an edited SSO token verified");
            }
        }
    }
});
