//! The audit tree: token audit records under a big-endian ms timestamp
//! and 8 random bytes, so a range scan walks them in time order.

use serde::Serialize;

use super::{decode, encode, Store, StoreError, TREE_AUDIT};

impl Store {
    /// Appends an audit record under `key` and flushes before returning.
    pub fn put_audit<T: Serialize>(&self, key: &[u8], record: &T) -> Result<(), StoreError> {
        let bytes = encode(TREE_AUDIT, record)?;
        self.with(|t| {
            t.audit.insert(key, bytes)?;
            t.audit.flush()?;
            Ok(())
        })
    }

    /// Walks audit records with `lower <= key < upper` newest first, keeping
    /// those `keep` accepts, until `limit` are kept.
    pub fn audit_newest_first<T: serde::de::DeserializeOwned>(
        &self,
        lower: &[u8],
        upper: &[u8],
        limit: usize,
        mut keep: impl FnMut(&T) -> bool,
    ) -> Result<Vec<(Vec<u8>, T)>, StoreError> {
        self.with(|t| {
            let mut out = Vec::new();
            if lower >= upper {
                return Ok(out);
            }
            for item in t.audit.range(lower..upper).rev() {
                let (key, value) = item?;
                let record: T = decode(TREE_AUDIT, &value)?;
                if keep(&record) {
                    out.push((key.to_vec(), record));
                    if out.len() >= limit {
                        break;
                    }
                }
            }
            Ok(out)
        })
    }

    /// Deletes audit records with keys before `cutoff`; returns how many.
    pub fn remove_audit_before(&self, cutoff: &[u8]) -> Result<usize, StoreError> {
        self.with(|t| {
            let mut removed = 0;
            for key in t.audit.range(..cutoff).keys() {
                t.audit.remove(key?)?;
                removed += 1;
            }
            t.audit.flush()?;
            Ok(removed)
        })
    }
}
