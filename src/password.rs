//! Argon2id password hashing and checking.
//!
//! A failed sign-in must look the same whether or not the user exists, so
//! [`PasswordChecker`] verifies unknown users against a dummy hash made with
//! the same parameters as real ones: the timing and the answer match.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// Longest password accepted; longer ones are refused before any hashing so
/// that a huge body cannot buy expensive work.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Hashes `password` with argon2id (the crate's recommended parameters) and
/// a random salt, as a PHC string.
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
}

/// Checks passwords in constant work per attempt.
pub struct PasswordChecker {
    dummy_hash: String,
}

impl PasswordChecker {
    /// Prepares the dummy hash (one argon2 run at start-up).
    pub fn new() -> Result<Self, argon2::password_hash::Error> {
        Ok(Self {
            dummy_hash: hash_password("presence-server dummy password")?,
        })
    }

    /// Whether `password` matches `phc`; with `phc = None` (no such user, or a
    /// user without a password) the same work is done and the answer is no.
    pub fn check(&self, password: &str, phc: Option<&str>) -> bool {
        let (hash, real) = match phc {
            Some(phc) => (phc, true),
            None => (self.dummy_hash.as_str(), false),
        };
        let Ok(parsed) = PasswordHash::new(hash) else {
            return false;
        };
        let matches = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        matches && real
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_and_verify() {
        let hash = hash_password("correct horse").expect("hash");
        assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
        let checker = PasswordChecker::new().expect("checker");
        assert!(checker.check("correct horse", Some(&hash)));
        assert!(!checker.check("wrong horse", Some(&hash)));
    }

    #[test]
    fn unknown_users_never_match_even_with_the_dummy_password() {
        let checker = PasswordChecker::new().expect("checker");
        assert!(!checker.check("presence-server dummy password", None));
        assert!(!checker.check("anything", None));
    }

    #[test]
    fn garbage_hashes_do_not_panic() {
        let checker = PasswordChecker::new().expect("checker");
        assert!(!checker.check("x", Some("not a phc string")));
    }
}
