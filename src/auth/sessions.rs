//! Website sessions (`gssnid`): created by `POST /auth/login`, used as a
//! credential for `POST /auth/token` (body or cookie), ended by
//! `POST /auth/logout` or by `session_idle_secs` without use.
//!
//! Only a SHA-256 of the session id is stored, so the database never holds a
//! usable session id.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::clock::SharedClock;
use crate::ids::random_id;
use crate::store::{Store, StoreError, StoredSession};

/// Bytes of entropy in a session id.
const SESSION_ID_BYTES: usize = 32;

pub struct Sessions {
    store: Arc<Store>,
    clock: SharedClock,
    idle_secs: u64,
}

/// A new session.
pub struct NewSession {
    pub id: String,
    pub expires: u64,
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    pub fn new(store: Arc<Store>, clock: SharedClock, idle_secs: u64) -> Self {
        Self {
            store,
            clock,
            idle_secs,
        }
    }

    /// Idle lifetime of a session, in seconds.
    pub fn idle_secs(&self) -> u64 {
        self.idle_secs
    }

    /// Starts a session for `username`; durable before it returns.
    pub fn create(&self, username: &str) -> Result<NewSession, StoreError> {
        let id = random_id(SESSION_ID_BYTES);
        let now = self.clock.now_secs();
        self.store.put_session(
            &digest(&id),
            &StoredSession {
                username: username.to_owned(),
                created_at: now,
                last_used: now,
            },
        )?;
        Ok(NewSession {
            id,
            expires: now + self.idle_secs,
        })
    }

    /// The session's user if it is live, extending its idle timeout; an
    /// expired session is deleted.
    pub fn touch(&self, id: &str) -> Result<Option<String>, StoreError> {
        let key = digest(id);
        let Some(mut session) = self.store.session(&key)? else {
            return Ok(None);
        };
        let now = self.clock.now_secs();
        if now >= session.last_used.saturating_add(self.idle_secs) {
            self.store.remove_session(&key)?;
            return Ok(None);
        }
        session.last_used = now;
        self.store.put_session(&key, &session)?;
        Ok(Some(session.username))
    }

    /// Ends a session; true if it existed.
    pub fn end(&self, id: &str) -> Result<bool, StoreError> {
        self.store.remove_session(&digest(id))
    }

    /// Deletes sessions idle past their timeout; returns how many.
    pub fn sweep(&self) -> Result<usize, StoreError> {
        let cutoff = self.clock.now_secs().saturating_sub(self.idle_secs);
        self.store.remove_sessions_idle_since(cutoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::time::Duration;

    #[test]
    fn sessions_expire_when_idle_and_are_stored_hashed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(dir.path()).expect("store"));
        let clock = Arc::new(ManualClock::new(1_800_000_000_000));
        let sessions = Sessions::new(store.clone(), clock.clone(), 100);
        let new = sessions.create("fred.demo").expect("create");
        assert_eq!(new.expires, 1_800_000_000 + 100);
        assert!(
            store.session(new.id.as_bytes()).expect("read").is_none(),
            "stored by hash only"
        );

        clock.advance(Duration::from_secs(99));
        assert_eq!(
            sessions.touch(&new.id).expect("touch").as_deref(),
            Some("fred.demo")
        );
        clock.advance(Duration::from_secs(99));
        assert_eq!(
            sessions.touch(&new.id).expect("touch").as_deref(),
            Some("fred.demo"),
            "use extends it"
        );
        clock.advance(Duration::from_secs(100));
        assert_eq!(sessions.touch(&new.id).expect("touch"), None);
        assert_eq!(sessions.touch("made-up").expect("touch"), None);
    }

    #[test]
    fn ending_and_sweeping_remove_sessions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(dir.path()).expect("store"));
        let clock = Arc::new(ManualClock::new(1_800_000_000_000));
        let sessions = Sessions::new(store, clock.clone(), 100);
        let a = sessions.create("a").expect("create");
        let b = sessions.create("b").expect("create");
        assert!(sessions.end(&a.id).expect("end"));
        assert!(!sessions.end(&a.id).expect("end twice"));
        clock.advance(Duration::from_secs(150));
        assert_eq!(sessions.sweep().expect("sweep"), 1);
        assert_eq!(sessions.touch(&b.id).expect("touch"), None);
    }
}
