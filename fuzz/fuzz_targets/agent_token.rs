//! Agent tokens through `TokenService::verify`. The first byte picks a mode:
//! 0: any text as a token: no panic, and a token that verifies has sane
//!    claims; 1: the input is a claims object, signed with the service's
//!    key: if it verifies, the claims it returns are the ones signed and
//!    obey every documented rule; 2: a valid token with byte edits: it
//!    verifies only if the edits left it unchanged.
#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::OnceLock;

use common::{object, tamper, NOW};
use libfuzzer_sys::fuzz_target;
use presence_server::fuzzing::{token_service, AgentClaims, TokenService, LEEWAY_SECS};
use presence_server::token::{AUDIENCE, ISSUER};

const MAX_LIFETIME: u64 = 3600;

fn service() -> &'static (TokenService, String) {
    static SERVICE: OnceLock<(TokenService, String)> = OnceLock::new();
    SERVICE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("presence-fuzz-token-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let service = token_service(&dir, NOW, MAX_LIFETIME).expect("token service");
        let valid = service
            .sign(&serde_json::json!({
                "iss": ISSUER, "aud": AUDIENCE, "sub": "fred", "groupid": 72,
                "role": "agent", "iat": NOW, "exp": NOW + 600, "jti": "j1"
            }))
            .expect("sign");
        service.verify(&valid).expect("the seed token verifies");
        (service, valid)
    })
}

fn check(claims: &AgentClaims) {
    assert_eq!(claims.iss, ISSUER);
    assert_eq!(claims.aud, AUDIENCE);
    assert!(
        claims.exp.saturating_add(LEEWAY_SECS) > NOW,
        "expired token verified"
    );
    assert!(claims.iat <= NOW + LEEWAY_SECS, "future token verified");
    assert!(claims.iat <= claims.exp && claims.exp - claims.iat <= MAX_LIFETIME);
}

fuzz_target!(|data: &[u8]| {
    let [mode, rest @ ..] = data else { return };
    let (service, valid) = service();
    match mode % 3 {
        0 => {
            let Ok(token) = std::str::from_utf8(rest) else {
                return;
            };
            if let Ok(claims) = service.verify(token) {
                check(&claims);
            }
        }
        1 => {
            let Some(signed) = object(rest) else { return };
            let Ok(token) = service.sign(&signed) else {
                return;
            };
            if let Ok(claims) = service.verify(&token) {
                check(&claims);
                let back: AgentClaims =
                    serde_json::from_value(serde_json::Value::Object(signed.clone()))
                        .expect("verified claims deserialise");
                assert_eq!(back, claims, "verify returned other claims than signed");
            }
        }
        _ => {
            let edited = tamper(valid, rest);
            let Ok(token) = std::str::from_utf8(&edited) else {
                return;
            };
            if service.verify(token).is_ok() {
                assert_eq!(token, valid.as_str(), "an edited token verified");
            }
        }
    }
});
