//! Authentication of the internal calls between the auth and presence
//! roles (`POST /internal/keys`, `POST /internal/revoked`): an HMAC-SHA256
//! over the method, path, a timestamp, a nonce and the body, keyed with
//! `server.internal_secret`.
//!
//! Three headers carry it:
//! - `x-presence-timestamp`: Unix milliseconds when the request was signed;
//! - `x-presence-nonce`: 16 to 64 characters of `[A-Za-z0-9_-]`, fresh per
//!   request;
//! - `x-presence-signature`: `v1=` and the unpadded base64url MAC of
//!   `v1\n{METHOD}\n{path}\n{timestamp}\n{nonce}\n{body}`.
//!
//! A receiver checks, in this order: the headers' form and the MAC
//! (`bad_signature`), the timestamp within [`MAX_SKEW_MS`] of its clock
//! (`stale_request`), and the nonce unseen within the window
//! (`replayed_request`). Nonces are remembered for twice the skew, so a
//! request can never be replayed while its timestamp would pass.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::infra::error::DomainError;
use crate::infra::ids::random_id;

/// The request's signing time, Unix milliseconds.
pub const TIMESTAMP_HEADER: &str = "x-presence-timestamp";
/// A fresh value per request.
pub const NONCE_HEADER: &str = "x-presence-nonce";
/// `v1=` and the MAC.
pub const SIGNATURE_HEADER: &str = "x-presence-signature";
/// How far a request's timestamp may lie from the receiver's clock.
pub const MAX_SKEW_MS: u64 = 30_000;
/// Nonces one receiver remembers at most (far above any honest rate:
/// a few calls a minute per peer).
pub const MAX_REMEMBERED_NONCES: usize = 100_000;

const VERSION: &str = "v1";

type HmacSha256 = Hmac<Sha256>;

/// The three header values of one signed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    pub timestamp: String,
    pub nonce: String,
    pub signature: String,
}

fn mac(
    secret: &[u8],
    method: &str,
    path: &str,
    timestamp: &str,
    nonce: &str,
    body: &[u8],
) -> HmacSha256 {
    // HMAC takes keys of any length; the config requires at least 32 bytes.
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts any key length");
    for part in [VERSION, method, path, timestamp, nonce] {
        mac.update(part.as_bytes());
        mac.update(b"\n");
    }
    mac.update(body);
    mac
}

/// Signs a request made now (`now_ms`) with a fresh nonce.
pub fn sign(secret: &[u8], method: &str, path: &str, body: &[u8], now_ms: u64) -> SignedHeaders {
    let timestamp = now_ms.to_string();
    let nonce = random_id(24);
    let tag = mac(secret, method, path, &timestamp, &nonce, body)
        .finalize()
        .into_bytes();
    SignedHeaders {
        signature: format!("{VERSION}={}", URL_SAFE_NO_PAD.encode(tag)),
        timestamp,
        nonce,
    }
}

fn bad(message: impl Into<String>) -> DomainError {
    DomainError::InternalAuth("bad_signature", message.into())
}

/// Checks signed requests and remembers their nonces.
pub struct InternalVerifier {
    secret: Vec<u8>,
    seen: Mutex<Nonces>,
}

#[derive(Default)]
struct Nonces {
    set: HashSet<String>,
    /// (forget at, nonce), oldest first: expiry pops from the front.
    order: VecDeque<(u64, String)>,
}

impl InternalVerifier {
    pub fn new(secret: &[u8]) -> Self {
        Self {
            secret: secret.to_vec(),
            seen: Mutex::new(Nonces::default()),
        }
    }

    /// `Ok` if the request is signed with the shared secret, fresh, and
    /// not seen before; its nonce is then remembered.
    pub fn verify(
        &self,
        method: &str,
        path: &str,
        headers: Option<&SignedHeaders>,
        body: &[u8],
        now_ms: u64,
    ) -> Result<(), DomainError> {
        let headers = headers.ok_or_else(|| {
            bad(format!("the {TIMESTAMP_HEADER}, {NONCE_HEADER} and {SIGNATURE_HEADER} headers are required"))
        })?;
        let SignedHeaders {
            timestamp,
            nonce,
            signature,
        } = headers;
        let at: u64 = match timestamp.len() <= 16 && timestamp.bytes().all(|b| b.is_ascii_digit()) {
            true => timestamp
                .parse()
                .map_err(|_| bad("the timestamp is not a number"))?,
            false => return Err(bad("the timestamp is not Unix milliseconds")),
        };
        if !(16..=64).contains(&nonce.len())
            || !nonce
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(bad(
                "the nonce must be 16 to 64 characters of [A-Za-z0-9_-]",
            ));
        }
        let tag = signature
            .strip_prefix("v1=")
            .and_then(|t| URL_SAFE_NO_PAD.decode(t).ok())
            .ok_or_else(|| bad("the signature is not v1=<base64url>"))?;
        mac(&self.secret, method, path, timestamp, nonce, body)
            .verify_slice(&tag)
            .map_err(|_| bad("the signature does not match"))?;
        if at.abs_diff(now_ms) > MAX_SKEW_MS {
            return Err(DomainError::InternalAuth(
                "stale_request",
                format!(
                    "the request was signed {} ms from this node's clock (at most {MAX_SKEW_MS})",
                    at.abs_diff(now_ms)
                ),
            ));
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((forget_at, _)) = seen.order.front() {
            if *forget_at > now_ms && seen.order.len() < MAX_REMEMBERED_NONCES {
                break;
            }
            if let Some((_, old)) = seen.order.pop_front() {
                seen.set.remove(&old);
            }
        }
        if !seen.set.insert(nonce.clone()) {
            return Err(DomainError::InternalAuth(
                "replayed_request",
                "this nonce was already used".into(),
            ));
        }
        // Past `at + skew` the timestamp check refuses it anyway.
        seen.order
            .push_back((now_ms.max(at) + 2 * MAX_SKEW_MS, nonce.clone()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NOW: u64 = 1_800_000_000_000;

    fn code(result: Result<(), DomainError>) -> &'static str {
        match result {
            Ok(()) => "ok",
            Err(e) => e.code(),
        }
    }

    #[test]
    fn a_signed_request_passes_once() {
        let verifier = InternalVerifier::new(SECRET);
        let h = sign(SECRET, "POST", "/internal/keys", b"{}", NOW);
        assert_eq!(
            code(verifier.verify("POST", "/internal/keys", Some(&h), b"{}", NOW + 10)),
            "ok"
        );
        assert_eq!(
            code(verifier.verify("POST", "/internal/keys", Some(&h), b"{}", NOW + 20)),
            "replayed_request"
        );
    }

    #[test]
    fn any_change_breaks_the_signature() {
        let verifier = InternalVerifier::new(SECRET);
        let h = sign(SECRET, "POST", "/internal/keys", b"{\"a\":1}", NOW);
        for (method, path, body) in [
            ("POST", "/internal/keys", &b"{\"a\":2}"[..]),
            ("PUT", "/internal/keys", &b"{\"a\":1}"[..]),
            ("POST", "/internal/revoked", &b"{\"a\":1}"[..]),
        ] {
            assert_eq!(
                code(verifier.verify(method, path, Some(&h), body, NOW)),
                "bad_signature"
            );
        }
        let other = InternalVerifier::new(b"another-secret-of-thirty-two-byte");
        assert_eq!(
            code(other.verify("POST", "/internal/keys", Some(&h), b"{\"a\":1}", NOW)),
            "bad_signature"
        );
        let mut later = h.clone();
        later.timestamp = (NOW + 1).to_string();
        assert_eq!(
            code(verifier.verify("POST", "/internal/keys", Some(&later), b"{\"a\":1}", NOW)),
            "bad_signature"
        );
        let mut padded = h.clone();
        padded.signature.push('=');
        assert_eq!(
            code(verifier.verify("POST", "/internal/keys", Some(&padded), b"{\"a\":1}", NOW)),
            "bad_signature"
        );
        assert_eq!(
            code(verifier.verify("POST", "/internal/keys", None, b"{\"a\":1}", NOW)),
            "bad_signature"
        );
    }

    #[test]
    fn old_or_future_requests_are_stale() {
        let verifier = InternalVerifier::new(SECRET);
        let h = sign(SECRET, "POST", "/p", b"", NOW);
        assert_eq!(
            code(verifier.verify("POST", "/p", Some(&h), b"", NOW + MAX_SKEW_MS + 1)),
            "stale_request"
        );
        assert_eq!(
            code(verifier.verify("POST", "/p", Some(&h), b"", NOW - MAX_SKEW_MS - 1)),
            "stale_request"
        );
        assert_eq!(
            code(verifier.verify("POST", "/p", Some(&h), b"", NOW + MAX_SKEW_MS)),
            "ok"
        );
    }

    #[test]
    fn nonces_are_forgotten_only_after_their_timestamps_would_fail() {
        let verifier = InternalVerifier::new(SECRET);
        let h = sign(SECRET, "POST", "/p", b"", NOW);
        assert_eq!(
            code(verifier.verify("POST", "/p", Some(&h), b"", NOW)),
            "ok"
        );
        // Another request later sweeps the cache; the first nonce is gone
        // only once its timestamp is stale.
        let late = NOW + 2 * MAX_SKEW_MS + 1;
        let other = sign(SECRET, "POST", "/p", b"", late);
        assert_eq!(
            code(verifier.verify("POST", "/p", Some(&other), b"", late)),
            "ok"
        );
        assert_eq!(
            code(verifier.verify("POST", "/p", Some(&h), b"", late)),
            "stale_request"
        );
        assert_eq!(verifier.seen.lock().unwrap().set.len(), 1);
    }
}
