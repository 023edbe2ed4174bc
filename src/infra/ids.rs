//! Identifiers: group and visitor ids as clients send them, and random ids
//! (connection ids, token ids, key ids) drawn from the OS CSPRNG.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Serialize;

/// A tenant's numeric id, as in Glance's group ids.
pub type GroupId = u64;

/// Longest visitor id accepted, in characters.
pub const MAX_VISITOR_ID_LEN: usize = 128;

/// A visitor id: 1 to 128 characters from `A-Z a-z 0-9 . _ ~ @ + -`, so an
/// email address or a phone number can be used as is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct VisitorId(String);

impl VisitorId {
    /// Validates a visitor id.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() || raw.len() > MAX_VISITOR_ID_LEN {
            return Err(format!(
                "visitorid must be 1 to {MAX_VISITOR_ID_LEN} characters"
            ));
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || ".-_~@+".contains(c);
        if !raw.chars().all(allowed) {
            return Err("visitorid may only contain A-Z a-z 0-9 . _ ~ @ + -".to_owned());
        }
        Ok(Self(raw.to_owned()))
    }

    /// The id as sent by the client.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Lets sets of ids be searched by `&str`; the derived `Hash` and `Eq` are
/// the inner string's, so this is consistent.
impl std::borrow::Borrow<str> for VisitorId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for VisitorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a visitor lives: the routing key of the registry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VisitorKey {
    pub group: GroupId,
    pub visitor: VisitorId,
}

impl VisitorKey {
    pub fn new(group: GroupId, visitor: VisitorId) -> Self {
        Self { group, visitor }
    }
}

impl fmt::Display for VisitorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.group, self.visitor)
    }
}

/// Fills `buf` from the OS CSPRNG.
///
/// `getrandom(2)` cannot fail on a supported Linux kernel once the pool is
/// seeded (it blocks instead). [`crate::run`] draws once at start-up, so a
/// host without a working CSPRNG fails there, before serving anyone.
pub fn fill_random(buf: &mut [u8]) {
    // Justified expect: see above; continuing without secure randomness
    // would silently issue guessable secrets.
    getrandom::fill(buf).expect("the OS CSPRNG is unavailable");
}

/// Checks at start-up that the OS CSPRNG answers.
pub fn check_random_source() -> std::io::Result<()> {
    let mut probe = [0u8; 16];
    getrandom::fill(&mut probe).map_err(|e| std::io::Error::other(format!("OS CSPRNG: {e}")))
}

/// A random, URL-safe id carrying `bytes` bytes of entropy.
pub fn random_id(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    fill_random(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visitor_ids_accept_emails_and_phone_numbers() {
        for ok in ["v-123", "fred@example.com", "+15551234567", "a.b_c~d", "x"] {
            assert!(VisitorId::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn visitor_ids_reject_bad_characters_and_lengths() {
        let long = "a".repeat(MAX_VISITOR_ID_LEN + 1);
        for bad in [
            "",
            "has space",
            "slash/",
            "é",
            "a\"b",
            "<script>",
            long.as_str(),
        ] {
            assert!(VisitorId::parse(bad).is_err(), "{bad}");
        }
        assert!(VisitorId::parse(&"a".repeat(MAX_VISITOR_ID_LEN)).is_ok());
    }

    #[test]
    fn random_ids_are_distinct_and_url_safe() {
        let a = random_id(16);
        let b = random_id(16);
        assert_ne!(a, b);
        assert_eq!(a.len(), 22);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }
}
