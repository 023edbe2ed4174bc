//! Argon2id password hashing and checking.
//!
//! A failed sign-in must look the same whether or not the user exists, so
//! [`PasswordChecker`] verifies unknown users against a dummy hash made with
//! the same parameters as real ones: the timing and the answer match.
//!
//! Each check costs ~19 MiB and a core for tens of milliseconds, so checks
//! run on the blocking pool, at most one per core at a time; a flood of
//! sign-ins queues briefly and is then refused with 503 instead of starving
//! the presence path or exhausting memory.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

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

/// How long a sign-in waits for a free hashing slot before 503.
pub const QUEUE_WAIT: Duration = Duration::from_secs(5);

/// Why a password could not be checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckError {
    /// Every hashing slot stayed busy for [`QUEUE_WAIT`].
    Busy,
    /// The blocking pool failed to run the check.
    Failed,
}

/// Checks passwords in constant work per attempt.
pub struct PasswordChecker {
    dummy_hash: String,
    slots: Arc<Semaphore>,
    queue_wait: Duration,
}

impl PasswordChecker {
    /// Prepares the dummy hash (one argon2 run at start-up), allowing one
    /// concurrent check per core.
    pub fn new() -> Result<Self, argon2::password_hash::Error> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::with_slots(cores)
    }

    /// As [`PasswordChecker::new`], with `slots` concurrent checks.
    pub fn with_slots(slots: usize) -> Result<Self, argon2::password_hash::Error> {
        Self::with_limits(slots.max(1), QUEUE_WAIT)
    }

    /// `slots` concurrent checks, each waiting at most `queue_wait` for one.
    pub fn with_limits(
        slots: usize,
        queue_wait: Duration,
    ) -> Result<Self, argon2::password_hash::Error> {
        Ok(Self {
            dummy_hash: hash_password("presence-server dummy password")?,
            slots: Arc::new(Semaphore::new(slots)),
            queue_wait,
        })
    }

    /// Checks on the blocking pool, waiting a bounded time for a slot.
    pub async fn check_off_thread(
        self: Arc<Self>,
        password: String,
        phc: Option<String>,
    ) -> Result<bool, CheckError> {
        let permit = tokio::time::timeout(self.queue_wait, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| CheckError::Busy)?
            .map_err(|_| CheckError::Failed)?;
        actix_web::web::block(move || {
            let _permit = permit;
            self.check(&password, phc.as_deref())
        })
        .await
        .map_err(|_| CheckError::Failed)
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

    #[actix_web::test]
    async fn checks_run_off_thread_and_refuse_when_no_slot_frees() {
        let hash = hash_password("pw").expect("hash");
        let checker = Arc::new(PasswordChecker::with_slots(1).expect("checker"));
        let ok = checker
            .clone()
            .check_off_thread("pw".into(), Some(hash.clone()))
            .await;
        assert_eq!(ok, Ok(true));
        let full =
            Arc::new(PasswordChecker::with_limits(0, Duration::from_millis(10)).expect("checker"));
        assert_eq!(
            full.check_off_thread("pw".into(), Some(hash)).await,
            Err(CheckError::Busy)
        );
    }

    #[test]
    fn garbage_hashes_do_not_panic() {
        let checker = PasswordChecker::new().expect("checker");
        assert!(!checker.check("x", Some("not a phc string")));
    }
}
