//! Website sessions (`gssnid`): created by `POST /auth/login`, used as a
//! credential for `POST /auth/token` (body or cookie), ended by
//! `POST /auth/logout` or by `session_idle_secs` without use.
//!
//! Only a SHA-256 of the session id is stored, so the database never holds a
//! usable session id.
//!
//! A session is bound to the one (group, user) record whose password was
//! checked, and issues tokens for that group only. The tokens it issues are
//! filed under its digest, so logging out revokes them too.
//!
//! Handlers and the authenticator hold the [`WebsiteSessions`] seam;
//! [`SledWebsiteSessions`] is its single-node implementation and
//! `redis_sessions` the cluster one. Every method may write and flush (or
//! wait on Redis): callers run them on the blocking pool.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::infra::clock::SharedClock;
use crate::infra::ids::{random_id, GroupId};
use crate::store::{Store, StoreError, StoredSession};

/// Bytes of entropy in a session id.
pub(super) const SESSION_ID_BYTES: usize = 32;

/// Website sessions: started by a password, used (and kept alive) as a
/// credential, ended by logout or idleness, with the tokens each issued.
///
/// A Redis implementation keeps `website_session:{digest}` → the
/// [`StoredSession`] with a TTL of `session_idle_secs`, renewed by
/// [`WebsiteSessions::touch`] (so idle sessions expire by themselves), and
/// `website_session:{digest}:tokens`, a hash of `jti` → `exp` expiring with
/// the last of them; `end` deletes the session, then reads and deletes the
/// hash in one `MULTI`.
pub trait WebsiteSessions: Send + Sync {
    /// Starts a session for `username` of `groupid`; durable before it
    /// returns.
    fn create(&self, groupid: GroupId, username: &str) -> Result<NewSession, StoreError>;

    /// The session's user if it is live, without extending it. An expired
    /// session, or one stored before sessions were bound to a group, is
    /// deleted and reads as none.
    fn peek(&self, id: &str) -> Result<Option<SessionUser>, StoreError>;

    /// As [`WebsiteSessions::peek`], extending the session's idle timeout.
    fn touch(&self, id: &str) -> Result<Option<SessionUser>, StoreError>;

    /// Files a token issued from the session under its digest, durably,
    /// so that logging out can revoke it.
    fn record_token(&self, session: &SessionDigest, jti: &str, exp: u64) -> Result<(), StoreError>;

    /// Ends a session; returns the tokens issued from it, `(jti, exp)`,
    /// for the caller to revoke. Unknown sessions end with none.
    fn end(&self, id: &str) -> Result<Vec<(String, u64)>, StoreError>;

    /// Whether the session with `digest` still exists: checked after a
    /// token from it has been filed, so that a logout racing the issuance
    /// cannot miss the token.
    fn still_live(&self, digest: &SessionDigest) -> Result<bool, StoreError>;

    /// Deletes sessions idle past their timeout, and the token links of
    /// tokens that have expired; returns how many sessions went.
    fn sweep(&self) -> Result<usize, StoreError>;
}

/// Website sessions in the sled trees `sessions` and `session_tokens`.
pub struct SledWebsiteSessions {
    store: Arc<Store>,
    clock: SharedClock,
    idle_secs: u64,
}

/// A new session.
pub struct NewSession {
    pub id: String,
    pub expires: u64,
}

/// The SHA-256 of a session id: what the store keys a session by.
pub type SessionDigest = [u8; 32];

/// Who a live session signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionUser {
    pub groupid: GroupId,
    pub username: String,
    pub digest: SessionDigest,
}

pub(super) fn digest(id: &str) -> SessionDigest {
    Sha256::digest(id.as_bytes()).into()
}

impl SledWebsiteSessions {
    /// Sessions end after `idle_secs` without use.
    pub fn new(store: Arc<Store>, clock: SharedClock, idle_secs: u64) -> Self {
        Self {
            store,
            clock,
            idle_secs,
        }
    }

    fn live(&self, id: &str) -> Result<Option<(SessionUser, StoredSession)>, StoreError> {
        let key = digest(id);
        let Some(session) = self.store.session(&key)? else {
            return Ok(None);
        };
        let now = self.clock.now_secs();
        let expired = now >= session.last_used.saturating_add(self.idle_secs);
        let Some(groupid) = session.groupid.filter(|_| !expired) else {
            self.store.remove_session(&key)?;
            return Ok(None);
        };
        let user = SessionUser {
            groupid,
            username: session.username.clone(),
            digest: key,
        };
        Ok(Some((user, session)))
    }
}

impl WebsiteSessions for SledWebsiteSessions {
    fn create(&self, groupid: GroupId, username: &str) -> Result<NewSession, StoreError> {
        let id = random_id(SESSION_ID_BYTES);
        let now = self.clock.now_secs();
        self.store.put_session(
            &digest(&id),
            &StoredSession {
                groupid: Some(groupid),
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

    fn peek(&self, id: &str) -> Result<Option<SessionUser>, StoreError> {
        Ok(self.live(id)?.map(|(user, _)| user))
    }

    fn touch(&self, id: &str) -> Result<Option<SessionUser>, StoreError> {
        let Some((user, mut session)) = self.live(id)? else {
            return Ok(None);
        };
        session.last_used = self.clock.now_secs();
        self.store.put_session(&user.digest, &session)?;
        Ok(Some(user))
    }

    fn record_token(&self, session: &SessionDigest, jti: &str, exp: u64) -> Result<(), StoreError> {
        self.store.put_session_token(session, jti, exp)
    }

    fn end(&self, id: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let key = digest(id);
        // Session first: a token issued from it from now on finds it gone
        // (see `still_live`); one issued before is filed, and taken here.
        self.store.remove_session(&key)?;
        self.store.take_session_tokens(&key)
    }

    fn still_live(&self, digest: &SessionDigest) -> Result<bool, StoreError> {
        Ok(self.store.session(digest)?.is_some())
    }

    fn sweep(&self) -> Result<usize, StoreError> {
        let now = self.clock.now_secs();
        let cutoff = now.saturating_sub(self.idle_secs);
        self.store.remove_expired_session_tokens(now)?;
        self.store.remove_sessions_idle_since(cutoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infra::clock::ManualClock;
    use std::time::Duration;

    #[test]
    fn sessions_expire_when_idle_and_are_stored_hashed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(dir.path()).expect("store"));
        let clock = Arc::new(ManualClock::new(1_800_000_000_000));
        let sessions = SledWebsiteSessions::new(store.clone(), clock.clone(), 100);
        let new = sessions.create(72, "fred.demo").expect("create");
        assert_eq!(new.expires, 1_800_000_000 + 100);
        assert!(
            store.session(new.id.as_bytes()).expect("read").is_none(),
            "stored by hash only"
        );

        clock.advance(Duration::from_secs(99));
        let user = |s: Option<SessionUser>| s.map(|u| (u.groupid, u.username));
        assert_eq!(
            user(sessions.touch(&new.id).expect("touch")),
            Some((72, "fred.demo".to_owned()))
        );
        clock.advance(Duration::from_secs(99));
        assert_eq!(
            user(sessions.touch(&new.id).expect("touch")),
            Some((72, "fred.demo".to_owned())),
            "use extends it"
        );
        clock.advance(Duration::from_secs(100));
        assert_eq!(sessions.touch(&new.id).expect("touch"), None);
        assert_eq!(sessions.touch("made-up").expect("touch"), None);
    }

    #[test]
    fn sessions_stored_without_a_group_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(dir.path()).expect("store"));
        let clock = Arc::new(ManualClock::new(1_800_000_000_000));
        let sessions = SledWebsiteSessions::new(store.clone(), clock, 100);
        let old = StoredSession {
            groupid: None,
            username: "fred.demo".into(),
            created_at: 1_800_000_000,
            last_used: 1_800_000_000,
        };
        store
            .put_session(&digest("old-session"), &old)
            .expect("put");
        assert_eq!(sessions.touch("old-session").expect("touch"), None);
        assert!(store
            .session(&digest("old-session"))
            .expect("read")
            .is_none());
    }

    #[test]
    fn ending_and_sweeping_remove_sessions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(dir.path()).expect("store"));
        let clock = Arc::new(ManualClock::new(1_800_000_000_000));
        let sessions = SledWebsiteSessions::new(store, clock.clone(), 100);
        let a = sessions.create(72, "a").expect("create");
        let b = sessions.create(72, "b").expect("create");
        let linked = sessions.peek(&a.id).expect("peek").expect("live");
        sessions
            .record_token(&linked.digest, "jti-1", 1_800_000_500)
            .expect("link");
        assert_eq!(
            sessions.end(&a.id).expect("end"),
            vec![("jti-1".to_owned(), 1_800_000_500)]
        );
        assert!(sessions.peek(&a.id).expect("peek").is_none());
        assert!(sessions.end(&a.id).expect("end twice").is_empty());
        clock.advance(Duration::from_secs(150));
        assert_eq!(sessions.sweep().expect("sweep"), 1);
        assert_eq!(sessions.touch(&b.id).expect("touch"), None);
    }
}
