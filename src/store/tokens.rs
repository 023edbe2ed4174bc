//! The agent-token trees: `signing_keys` (the key ring, `kid` →
//! [`StoredSigningKey`]), `issued_tokens` (`jti` → [`IssuedToken`], the
//! owner, until the token expires) and `revoked_tokens` (`jti` →
//! big-endian `exp`, the denylist).

use serde::{Deserialize, Serialize};

use super::{
    decode, encode, remove_expired_before, Store, StoreError, TREE_ISSUED, TREE_REVOKED,
    TREE_SIGNING_KEYS,
};

/// Who a token was issued to, kept until it expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedToken {
    pub sub: String,
    pub groupid: u64,
    pub exp: u64,
}

/// A signing key as persisted. The secret is stored raw: the data directory
/// is as sensitive as the config file and must be protected the same way.
#[derive(Clone, Serialize, Deserialize)]
pub struct StoredSigningKey {
    pub kid: String,
    pub secret: Vec<u8>,
    pub created_at_ms: u64,
}

impl std::fmt::Debug for StoredSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSigningKey")
            .field("kid", &self.kid)
            .field("secret", &"[REDACTED]")
            .field("created_at_ms", &self.created_at_ms)
            .finish()
    }
}

impl Store {
    /// Every stored signing key, in no particular order.
    pub fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError> {
        self.with(|t| {
            t.signing_keys
                .iter()
                .values()
                .map(|value| decode(TREE_SIGNING_KEYS, &value?))
                .collect()
        })
    }

    /// Persists a signing key and flushes it to disk before returning.
    pub fn put_signing_key(&self, key: &StoredSigningKey) -> Result<(), StoreError> {
        let bytes = encode(TREE_SIGNING_KEYS, key)?;
        self.with(|t| {
            t.signing_keys.insert(key.kid.as_bytes(), bytes)?;
            t.signing_keys.flush()?;
            Ok(())
        })
    }

    /// Deletes a signing key and flushes.
    pub fn remove_signing_key(&self, kid: &str) -> Result<(), StoreError> {
        self.with(|t| {
            t.signing_keys.remove(kid.as_bytes())?;
            t.signing_keys.flush()?;
            Ok(())
        })
    }

    /// Records who a token was issued to, flushed.
    pub fn put_issued(&self, jti: &str, token: &IssuedToken) -> Result<(), StoreError> {
        let bytes = encode(TREE_ISSUED, token)?;
        self.with(|t| {
            t.issued.insert(jti.as_bytes(), bytes)?;
            t.issued.flush()?;
            Ok(())
        })
    }

    /// Who a token was issued to, if it is still indexed.
    pub fn issued(&self, jti: &str) -> Result<Option<IssuedToken>, StoreError> {
        self.with(|t| {
            t.issued
                .get(jti.as_bytes())?
                .map(|v| decode(TREE_ISSUED, &v))
                .transpose()
        })
    }

    /// Every indexed token of `sub` in `groupid` that expires after `now`.
    pub fn issued_to(
        &self,
        groupid: u64,
        sub: &str,
        now: u64,
    ) -> Result<Vec<(String, IssuedToken)>, StoreError> {
        self.with(|t| {
            let mut out = Vec::new();
            for item in t.issued.iter() {
                let (key, value) = item?;
                let token: IssuedToken = decode(TREE_ISSUED, &value)?;
                if token.groupid == groupid && token.sub == sub && token.exp > now {
                    out.push((String::from_utf8_lossy(&key).into_owned(), token));
                }
            }
            Ok(out)
        })
    }

    /// Adds a token to the denylist until `exp`, flushed.
    pub fn put_revoked(&self, jti: &str, exp: u64) -> Result<(), StoreError> {
        self.with(|t| {
            t.revoked.insert(jti.as_bytes(), &exp.to_be_bytes())?;
            t.revoked.flush()?;
            Ok(())
        })
    }

    /// The whole denylist, `(jti, exp)`.
    pub fn revoked(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.with(|t| {
            t.revoked
                .iter()
                .map(|item| {
                    let (k, v) = item?;
                    let exp = <[u8; 8]>::try_from(v.as_ref()).map_err(|_| StoreError::Corrupt {
                        tree: TREE_REVOKED,
                        reason: "exp is not 8 bytes".into(),
                    })?;
                    Ok((
                        String::from_utf8_lossy(&k).into_owned(),
                        u64::from_be_bytes(exp),
                    ))
                })
                .collect()
        })
    }

    /// Drops index and denylist entries of tokens expired before `now`
    /// (Unix seconds); returns how many.
    pub fn remove_expired_tokens(&self, now: u64) -> Result<usize, StoreError> {
        self.with(|t| {
            let mut removed = 0;
            for item in t.issued.iter() {
                let (key, value) = item?;
                let token: IssuedToken = decode(TREE_ISSUED, &value)?;
                if token.exp < now {
                    t.issued.remove(key)?;
                    removed += 1;
                }
            }
            t.issued.flush()?;
            Ok(removed + remove_expired_before(&t.revoked, now)?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_keys_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = StoredSigningKey {
            kid: "k1".into(),
            secret: vec![7; 32],
            created_at_ms: 42,
        };
        {
            let store = Store::open(dir.path()).expect("open");
            store.put_signing_key(&key).expect("put");
        }
        let store = Store::open(dir.path()).expect("reopen");
        let keys = store.signing_keys().expect("read");
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid, "k1");
        assert_eq!(keys[0].secret, vec![7; 32]);
        store.remove_signing_key("k1").expect("remove");
        assert!(store.signing_keys().expect("read").is_empty());
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let key = StoredSigningKey {
            kid: "k1".into(),
            secret: b"super-secret-bytes".to_vec(),
            created_at_ms: 1,
        };
        let shown = format!("{key:?}");
        assert!(!shown.contains("115"), "{shown}");
        assert!(shown.contains("REDACTED"));
    }
}
