//! Glance login keys, as a partner's server signs them for an agent.

use std::time::{SystemTime, UNIX_EPOCH};

/// A Glance login key for `puid`, valid for `ttl` seconds.
pub fn login_key(api_key: &str, partner_id: u64, puid: &str, ttl: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    login_key_until(api_key, partner_id, puid, now + ttl)
}

/// The login key that expires at `exp` (Unix seconds).
fn login_key_until(api_key: &str, partner_id: u64, puid: &str, exp: u64) -> String {
    use base64::Engine as _;
    use hmac::{Hmac, Mac};
    // HMAC accepts keys of any length.
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(api_key.as_bytes()).expect("any key length");
    mac.update(format!("{partner_id}{puid}1{exp}").as_bytes());
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("$1${exp}${}", &sig[..43])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_keys_match_the_documented_known_answer() {
        assert_eq!(
            login_key_until("demo-api-key-7f3a", 72, "fred", 1_767_225_600),
            "$1$1767225600$8hwsGeuhRBzMKTqH9PMJpyyLPLqIrzocP1i6dh_DUjs"
        );
    }
}
