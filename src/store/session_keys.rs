//! The `session_keys` tree: big-endian group id + the 6-digit code →
//! [`StoredSessionKey`]. A key is written and flushed before the visitor
//! is shown it, so a code read out to a caller survives a crash.

use serde::{Deserialize, Serialize};

use super::{decode, encode, Store, StoreError, TREE_SESSION_KEYS};
use crate::infra::ids::GroupId;

/// A visitor's session key as persisted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSessionKey {
    /// The holder's visitor id (checked again when it is loaded).
    pub visitorid: String,
    /// Unix ms at which the holder's online period began.
    pub online_since: u64,
    /// Unix seconds.
    pub expires: u64,
}

fn tree_key(group: GroupId, code: &str) -> Vec<u8> {
    let mut key = group.to_be_bytes().to_vec();
    key.extend_from_slice(code.as_bytes());
    key
}

impl Store {
    /// Writes the key `code` of `group` and flushes: the visitor is about
    /// to be shown it.
    pub fn put_session_key(
        &self,
        group: GroupId,
        code: &str,
        key: &StoredSessionKey,
    ) -> Result<(), StoreError> {
        let bytes = encode(TREE_SESSION_KEYS, key)?;
        self.with(|t| {
            t.session_keys.insert(tree_key(group, code), bytes)?;
            t.session_keys.flush()?;
            Ok(())
        })
    }

    /// Deletes the key `code` of `group`. Not flushed: nobody is told, and
    /// a key that comes back after a crash is checked against its
    /// visitor's online period again.
    pub fn remove_session_key(&self, group: GroupId, code: &str) -> Result<(), StoreError> {
        self.with(|t| {
            t.session_keys.remove(tree_key(group, code))?;
            Ok(())
        })
    }

    /// Every key that expires after `now` (Unix seconds); expired and
    /// unreadable entries are deleted on the way.
    pub fn live_session_keys(
        &self,
        now: u64,
    ) -> Result<Vec<(GroupId, String, StoredSessionKey)>, StoreError> {
        self.with(|t| {
            let mut live = Vec::new();
            for item in t.session_keys.iter() {
                let (key, value) = item?;
                let parsed = (key.len() > 8)
                    .then(|| {
                        let group = u64::from_be_bytes(key[..8].try_into().ok()?);
                        let code = std::str::from_utf8(&key[8..]).ok()?.to_owned();
                        let stored: StoredSessionKey = decode(TREE_SESSION_KEYS, &value).ok()?;
                        Some((group, code, stored))
                    })
                    .flatten();
                match parsed {
                    Some(entry) if entry.2.expires > now => live.push(entry),
                    _ => {
                        t.session_keys.remove(key)?;
                    }
                }
            }
            Ok(live)
        })
    }

    /// Deletes the keys that expired by `now` (Unix seconds) and flushes,
    /// with any removals before it; returns how many.
    pub fn remove_expired_session_keys(&self, now: u64) -> Result<usize, StoreError> {
        self.with(|t| {
            let mut removed = 0;
            for item in t.session_keys.iter() {
                let (key, value) = item?;
                let expired = decode::<StoredSessionKey>(TREE_SESSION_KEYS, &value)
                    .map_or(true, |k| k.expires <= now);
                if expired {
                    t.session_keys.remove(key)?;
                    removed += 1;
                }
            }
            t.session_keys.flush()?;
            Ok(removed)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(expires: u64) -> StoredSessionKey {
        StoredSessionKey {
            visitorid: "v-1".into(),
            online_since: 5,
            expires,
        }
    }

    #[test]
    fn keys_survive_a_reopen_until_they_expire() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            store.put_session_key(72, "482913", &key(100)).expect("put");
            store.put_session_key(73, "482913", &key(50)).expect("put");
            store.put_session_key(72, "000001", &key(200)).expect("put");
            store.remove_session_key(72, "000001").expect("remove");
            store.close().expect("close");
        }
        let store = Store::open(dir.path()).expect("reopen");
        let mut live = store.live_session_keys(60).expect("load");
        live.sort_by_key(|(g, c, _)| (*g, c.clone()));
        assert_eq!(live, vec![(72, "482913".to_owned(), key(100))]);
        assert_eq!(
            store.live_session_keys(0).expect("load").len(),
            1,
            "73's expired key went"
        );
        assert_eq!(store.remove_expired_session_keys(100).expect("sweep"), 1);
        assert!(store.live_session_keys(0).expect("load").is_empty());
    }
}
