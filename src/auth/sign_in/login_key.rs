//! Glance-format partner login keys: `$1$<exp>$<sig>`, where `<sig>` is the
//! unpadded base64url HMAC-SHA256, keyed with the group's `api_key`, of
//! `partnerid + partneruserid + "1" + exp` (decimal, concatenated). Partner
//! code already generates these, so the format is fixed.
//!
//! A key is valid while `now < exp <= now + max_future`. The cap matters
//! beyond hygiene: the key for puid `fred1` with exp `E` is byte for byte a
//! valid signature for puid `fred` with exp `1E`, a far-future expiry the cap
//! refuses.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Characters of the signature part (32 bytes, unpadded base64url).
pub const SIGNATURE_CHARS: usize = 43;
/// Longest key accepted before any parsing.
pub const MAX_KEY_BYTES: usize = 128;

/// Why a login key was refused. All of them answer 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LoginKeyError {
    #[error("the login key is malformed")]
    Malformed,
    #[error("the login key has expired")]
    Expired,
    #[error("the login key expires too far in the future")]
    TooFarInFuture,
    #[error("the login key's signature is invalid")]
    BadSignature,
}

fn mac(api_key: &[u8], partner_id: u64, partner_user_id: &str, exp: &str) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(api_key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(partner_id.to_string().as_bytes());
    mac.update(partner_user_id.as_bytes());
    mac.update(b"1");
    mac.update(exp.as_bytes());
    mac
}

/// Makes a login key (for partners, the CLI and tests).
pub fn generate(api_key: &[u8], partner_id: u64, partner_user_id: &str, exp: u64) -> String {
    let exp = exp.to_string();
    let sig = URL_SAFE_NO_PAD.encode(
        mac(api_key, partner_id, partner_user_id, &exp)
            .finalize()
            .into_bytes(),
    );
    format!("$1${exp}${}", &sig[..SIGNATURE_CHARS])
}

/// Verifies a login key at Unix time `now`, in constant time.
pub fn verify(
    key: &str,
    api_key: &[u8],
    partner_id: u64,
    partner_user_id: &str,
    now: u64,
    max_future_secs: u64,
) -> Result<(), LoginKeyError> {
    if key.len() > MAX_KEY_BYTES {
        return Err(LoginKeyError::Malformed);
    }
    let mut parts = key.split('$');
    let (Some(""), Some("1"), Some(exp), Some(sig), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(LoginKeyError::Malformed);
    };
    if exp.is_empty()
        || exp.len() > 20
        || !exp.bytes().all(|b| b.is_ascii_digit())
        || exp.starts_with('0')
    {
        return Err(LoginKeyError::Malformed);
    }
    let exp_secs: u64 = exp.parse().map_err(|_| LoginKeyError::Malformed)?;
    if sig.len() != SIGNATURE_CHARS {
        return Err(LoginKeyError::Malformed);
    }
    // Strict decoding: wrong alphabet, padding or non-canonical trailing
    // bits are all malformed.
    let sig = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| LoginKeyError::Malformed)?;
    if exp_secs <= now {
        return Err(LoginKeyError::Expired);
    }
    if exp_secs > now.saturating_add(max_future_secs) {
        return Err(LoginKeyError::TooFarInFuture);
    }
    mac(api_key, partner_id, partner_user_id, exp)
        .verify_slice(&sig)
        .map_err(|_| LoginKeyError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    const API_KEY: &[u8] = b"demo-api-key-7f3a";
    const KNOWN: &str = "$1$1767225600$8hwsGeuhRBzMKTqH9PMJpyyLPLqIrzocP1i6dh_DUjs";
    const EXP: u64 = 1_767_225_600;

    #[test]
    fn matches_the_known_answer() {
        assert_eq!(generate(API_KEY, 72, "fred", EXP), KNOWN);
        assert_eq!(KNOWN.len(), 57);
        assert_eq!(
            verify(KNOWN, API_KEY, 72, "fred", EXP - 3600, 86_400),
            Ok(())
        );
    }

    /// Found by `fuzz/login_key`: the generator writes any `u64` expiry,
    /// and a 20-digit one was refused as malformed; every key the
    /// generator makes must verify inside its window.
    #[test]
    fn the_largest_expiry_verifies() {
        let key = generate(API_KEY, 72, "fred", u64::MAX);
        assert_eq!(verify(&key, API_KEY, 72, "fred", u64::MAX - 1, 1), Ok(()));
        let over = key.replacen("18446744073709551615", "18446744073709551616", 1);
        assert_eq!(
            verify(&over, API_KEY, 72, "fred", 0, u64::MAX),
            Err(LoginKeyError::Malformed)
        );
    }

    #[test]
    fn enforces_the_validity_window() {
        assert_eq!(
            verify(KNOWN, API_KEY, 72, "fred", EXP, 86_400),
            Err(LoginKeyError::Expired)
        );
        assert_eq!(
            verify(KNOWN, API_KEY, 72, "fred", EXP - 86_401, 86_400),
            Err(LoginKeyError::TooFarInFuture)
        );
        assert_eq!(
            verify(KNOWN, API_KEY, 72, "fred", EXP - 86_400, 86_400),
            Ok(())
        );
    }

    #[test]
    fn the_future_cap_closes_the_concatenation_ambiguity() {
        // The key for "fred1" expiring at E signs the same string as "fred"
        // expiring at "1E": the cap must refuse the latter.
        let now = EXP - 60;
        let fred1 = generate(API_KEY, 72, "fred1", EXP);
        let sig = fred1.rsplit('$').next().expect("sig");
        let forged = format!("$1$1{EXP}${sig}");
        assert_eq!(
            verify(&forged, API_KEY, 72, "fred", now, 86_400),
            Err(LoginKeyError::TooFarInFuture)
        );
    }

    #[test]
    fn refuses_wrong_secrets_users_and_groups() {
        let now = EXP - 60;
        assert_eq!(
            verify(KNOWN, b"other-api-key-123", 72, "fred", now, 86_400),
            Err(LoginKeyError::BadSignature)
        );
        assert_eq!(
            verify(KNOWN, API_KEY, 72, "fre", now, 86_400),
            Err(LoginKeyError::BadSignature)
        );
        assert_eq!(
            verify(KNOWN, API_KEY, 73, "fred", now, 86_400),
            Err(LoginKeyError::BadSignature)
        );
    }

    #[test]
    fn malformed_keys_are_refused_without_panicking() {
        let now = EXP - 60;
        let sig = "8hwsGeuhRBzMKTqH9PMJpyyLPLqIrzocP1i6dh_DUjs";
        let long = "x".repeat(200);
        let cases = [
            String::new(),
            "$2$1767225600$".to_owned() + sig,
            format!("$1$1767225600${sig}="),
            format!("$1$1767225600${}", &sig[..42]),
            format!("$1$1767225600${}", sig.replace('_', "/")),
            format!("$1$1767225600${}", sig.replace('_', "+")),
            format!("$1$+1767225600${sig}"),
            format!("$1$01767225600${sig}"),
            format!("$1$${sig}"),
            format!("$1$99999999999999999999${sig}"),
            format!("$1$1767225600${sig}$"),
            format!("1$1767225600${sig}"),
            // Non-canonical last character (trailing bits set).
            format!("$1$1767225600${}t", &sig[..42]),
            long,
        ];
        for key in cases {
            assert_eq!(
                verify(&key, API_KEY, 72, "fred", now, 86_400),
                Err(LoginKeyError::Malformed),
                "{key}"
            );
        }
    }
}
