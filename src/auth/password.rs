//! Argon2id password hashing and checking.
//!
//! A failed sign-in must look the same whether or not the user exists, so
//! [`PasswordChecker`] verifies unknown users against a dummy hash made with
//! the costliest parameters among the configured hashes (never cheaper than
//! the crate's recommended ones): an unknown user costs as much as the
//! costliest known one. "Costliest" is by work, `m × t` (memory blocks
//! filled times passes; lanes run one after another here, so `p` splits the
//! same work rather than adding to it), then more lanes, then the longer
//! output. Hashes whose parameters differ from the recommended ones are
//! reported by [`hash_warnings`] (at start-up and by `check-config`), since
//! their users still answer in a different time than the rest.
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
use argon2::{Algorithm, Argon2, Params, Version};

use crate::infra::config::Config;
use crate::infra::ids::GroupId;

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

/// The argon2 parameters of a hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    pub m_cost: u32,
    pub t_cost: u32,
    pub p_cost: u32,
    pub output_len: usize,
    pub version: Version,
}

impl HashParams {
    /// The crate's recommended parameters, which `hash-password` uses.
    pub const RECOMMENDED: HashParams = HashParams {
        m_cost: Params::DEFAULT_M_COST,
        t_cost: Params::DEFAULT_T_COST,
        p_cost: Params::DEFAULT_P_COST,
        output_len: Params::DEFAULT_OUTPUT_LEN,
        version: Version::V0x13,
    };

    /// The parameters of an argon2 PHC string (any variant), if it parses.
    pub fn of(phc: &str) -> Option<HashParams> {
        let hash = PasswordHash::new(phc).ok()?;
        let params = Params::try_from(&hash).ok()?;
        let version = match hash.version {
            None => Version::default(),
            Some(v) => Version::try_from(v).ok()?,
        };
        Some(HashParams {
            m_cost: params.m_cost(),
            t_cost: params.t_cost(),
            p_cost: params.p_cost(),
            output_len: params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN),
            version,
        })
    }

    /// What one check costs, for choosing the dummy (see the module docs).
    fn cost(&self) -> (u64, u32, usize) {
        (
            u64::from(self.m_cost) * u64::from(self.t_cost),
            self.p_cost,
            self.output_len,
        )
    }
}

impl std::fmt::Display for HashParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "v={} m={},t={},p={}, {}-byte output",
            self.version as u32, self.m_cost, self.t_cost, self.p_cost, self.output_len
        )
    }
}

/// The dummy hash's parameters: the costliest of `hashes` (unparsable ones
/// are skipped), never cheaper than [`HashParams::RECOMMENDED`].
pub fn dummy_params<'a>(hashes: impl IntoIterator<Item = &'a str>) -> HashParams {
    hashes.into_iter().filter_map(HashParams::of).fold(
        HashParams::RECOMMENDED,
        |costliest, params| {
            if params.cost() > costliest.cost() {
                params
            } else {
                costliest
            }
        },
    )
}

/// A configured password hash and whose it is.
pub struct ConfiguredHash<'a> {
    /// Index in `groups`, for naming the config key.
    pub group_index: usize,
    pub group: GroupId,
    pub user_index: usize,
    pub username: &'a str,
    pub phc: &'a str,
}

/// Every `groups[].users[].password_hash` of `config`.
pub fn configured_hashes(config: &Config) -> Vec<ConfiguredHash<'_>> {
    use secrecy::ExposeSecret;
    let mut hashes = Vec::new();
    for (group_index, group) in config.groups.iter().enumerate() {
        for (user_index, user) in group.users.iter().enumerate() {
            if let Some(hash) = &user.password_hash {
                hashes.push(ConfiguredHash {
                    group_index,
                    group: group.id,
                    user_index,
                    username: &user.username,
                    phc: hash.expose_secret(),
                });
            }
        }
    }
    hashes
}

/// A configured hash that is not argon2id with the recommended parameters.
/// Its text names the group and user and the parameters, never the hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashWarning {
    pub group: GroupId,
    pub username: String,
    pub message: String,
}

impl std::fmt::Display for HashWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The configured hashes whose parameters differ from the recommended ones
/// (or that are not argon2id): their users' wrong passwords answer in a
/// different time than other users', so they should be rehashed.
pub fn hash_warnings(config: &Config) -> Vec<HashWarning> {
    let recommended = HashParams::RECOMMENDED;
    configured_hashes(config)
        .into_iter()
        .filter_map(|h| {
            let algorithm = PasswordHash::new(h.phc).map(|p| p.algorithm.to_string());
            let found = match (algorithm, HashParams::of(h.phc)) {
                (Ok(alg), Some(params)) if alg == "argon2id" && params == recommended => {
                    return None
                }
                (Ok(alg), Some(params)) => format!("{alg} {params}"),
                _ => "an unreadable hash".to_owned(),
            };
            Some(HashWarning {
                group: h.group,
                username: h.username.to_owned(),
                message: format!(
                    "groups[{}].users[{}].password_hash (group {}, user {:?}) uses {found}, \
                     not the recommended argon2id {recommended}: that user's sign-ins take \
                     a different time than other users'; rehash it with \
                     `presence-server hash-password`",
                    h.group_index, h.user_index, h.group, h.username
                ),
            })
        })
        .collect()
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
    dummy_params: HashParams,
    slots: Arc<Semaphore>,
    queue_wait: Duration,
}

impl PasswordChecker {
    /// Prepares the dummy hash with the recommended parameters (one argon2
    /// run at start-up), allowing one concurrent check per core.
    pub fn new() -> Result<Self, argon2::password_hash::Error> {
        Self::for_hashes([])
    }

    /// As [`PasswordChecker::new`], with the dummy made with the costliest
    /// parameters among `hashes` (see [`dummy_params`]).
    pub fn for_hashes<'a>(
        hashes: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, argon2::password_hash::Error> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::build(dummy_params(hashes), cores, QUEUE_WAIT)
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
        Self::build(HashParams::RECOMMENDED, slots, queue_wait)
    }

    fn build(
        dummy_params: HashParams,
        slots: usize,
        queue_wait: Duration,
    ) -> Result<Self, argon2::password_hash::Error> {
        let params = Params::new(
            dummy_params.m_cost,
            dummy_params.t_cost,
            dummy_params.p_cost,
            Some(dummy_params.output_len),
        )?;
        let salt = SaltString::generate(&mut OsRng);
        let dummy_hash = Argon2::new(Algorithm::Argon2id, dummy_params.version, params)
            .hash_password(b"presence-server dummy password", &salt)?
            .to_string();
        Ok(Self {
            dummy_hash,
            dummy_params,
            slots: Arc::new(Semaphore::new(slots)),
            queue_wait,
        })
    }

    /// The parameters unknown users are checked with.
    pub fn dummy_params(&self) -> HashParams {
        self.dummy_params
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

    fn hash_with(m: u32, t: u32, p: u32) -> String {
        let params = Params::new(m, t, p, None).expect("params");
        let salt = SaltString::generate(&mut OsRng);
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(b"pw", &salt)
            .expect("hash")
            .to_string()
    }

    #[test]
    fn the_dummy_hash_has_the_costliest_configured_parameters() {
        let standard = hash_password("pw").expect("hash");
        let costly = hash_with(24 * 1024, 3, 2);
        let wide = hash_with(19 * 1024, 2, 4);
        let checker =
            PasswordChecker::for_hashes([standard.as_str(), costly.as_str(), wide.as_str()])
                .expect("checker");
        assert_eq!(
            checker.dummy_params(),
            HashParams::of(&costly).expect("params")
        );
        let dummy = PasswordHash::new(&checker.dummy_hash).expect("phc");
        assert_eq!(dummy.algorithm.as_str(), "argon2id");
        assert_eq!(
            HashParams::of(&checker.dummy_hash),
            Some(checker.dummy_params()),
            "the dummy is verified with its own parameters"
        );
        assert!(!checker.check("pw", None));
        // Lanes share the work: 4 lanes of the same m and t cost no more.
        assert_eq!(
            dummy_params([standard.as_str(), wide.as_str()]),
            HashParams::of(&wide).expect("params"),
            "ties go to more lanes"
        );
        assert_eq!(
            dummy_params([hash_with(40 * 1024, 1, 1).as_str(), wide.as_str()]).m_cost,
            40 * 1024,
            "m × t decides before p"
        );
    }

    #[test]
    fn the_dummy_hash_is_never_cheaper_than_the_recommended_parameters() {
        let cheap = hash_with(8 * 1024, 1, 1);
        assert_eq!(
            dummy_params([cheap.as_str(), "not a phc string"]),
            HashParams::RECOMMENDED
        );
        assert_eq!(
            PasswordChecker::new().expect("checker").dummy_params(),
            HashParams::RECOMMENDED
        );
    }

    #[test]
    fn hashes_other_than_the_recommended_kind_are_warned_about_without_the_hash() {
        let costly = hash_with(24 * 1024, 3, 2);
        let toml = format!(
            r#"
[[groups]]
id = 72
name = "demo"
[[groups.users]]
username = "fine"
password_hash = "{fine}"
[[groups.users]]
username = "costly"
password_hash = "{costly}"
"#,
            fine = hash_password("pw").expect("hash"),
        );
        let config = Config::from_toml_str(&toml).expect("config");
        let warnings = hash_warnings(&config);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let warning = &warnings[0];
        assert_eq!((warning.group, warning.username.as_str()), (72, "costly"));
        let text = warning.to_string();
        assert!(text.contains("groups[0].users[1].password_hash"), "{text}");
        assert!(text.contains("m=24576,t=3,p=2"), "{text}");
        let digest = costly.rsplit('$').next().expect("digest");
        assert!(!text.contains(digest), "never the hash: {text}");
    }

    #[test]
    fn garbage_hashes_do_not_panic() {
        let checker = PasswordChecker::new().expect("checker");
        assert!(!checker.check("x", Some("not a phc string")));
    }
}
