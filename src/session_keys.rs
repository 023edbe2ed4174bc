//! Session keys: the "read me the code on your screen" flow. A visitor asks
//! for a 6-digit code (CSPRNG, unique within its group, lasting
//! `session_key_ttl_secs`); an agent of the group looks the visitor up by
//! it. A visitor holds one key at a time: asking again replaces it.
//!
//! A million codes is a small space, so lookups that miss are limited per
//! token and per client (see [`crate::auth::Lockout`]).

use dashmap::DashMap;

use crate::clock::SharedClock;
use crate::ids::{fill_random, GroupId, VisitorKey};

/// Draws before giving up on finding an unused code.
const MAX_DRAWS: usize = 32;

/// A code handed to a visitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionKey {
    pub key: String,
    /// Unix seconds.
    pub expires: u64,
}

struct Entry {
    visitor: VisitorKey,
    expires: u64,
}

/// Live session keys.
pub struct SessionKeys {
    clock: SharedClock,
    ttl_secs: u64,
    by_code: DashMap<(GroupId, String), Entry>,
    by_visitor: DashMap<VisitorKey, String>,
}

/// A uniform 6-digit code from the OS CSPRNG (rejection sampling, so no
/// code is likelier than another).
fn draw() -> String {
    const LIMIT: u32 = u32::MAX - u32::MAX % 1_000_000;
    loop {
        let mut bytes = [0u8; 4];
        fill_random(&mut bytes);
        let n = u32::from_le_bytes(bytes);
        if n < LIMIT {
            return format!("{:06}", n % 1_000_000);
        }
    }
}

/// Whether `key` has the shape of a session key.
pub fn well_formed(key: &str) -> bool {
    key.len() == 6 && key.bytes().all(|b| b.is_ascii_digit())
}

impl SessionKeys {
    pub fn new(clock: SharedClock, ttl_secs: u64) -> Self {
        Self {
            clock,
            ttl_secs,
            by_code: DashMap::new(),
            by_visitor: DashMap::new(),
        }
    }

    /// A fresh code for `visitor`, replacing any it had. `None` only if no
    /// unused code turned up in [`MAX_DRAWS`] draws (a group with hundreds
    /// of thousands of live codes).
    pub fn issue(&self, visitor: &VisitorKey) -> Option<SessionKey> {
        let now = self.clock.now_secs();
        let expires = now + self.ttl_secs;
        if let Some((_, old)) = self.by_visitor.remove(visitor) {
            self.by_code.remove(&(visitor.group, old));
        }
        for _ in 0..MAX_DRAWS {
            let code = draw();
            let slot = (visitor.group, code.clone());
            let mut fresh = false;
            self.by_code
                .entry(slot)
                .and_modify(|e| {
                    // An expired code may be reused.
                    if e.expires <= now {
                        *e = Entry {
                            visitor: visitor.clone(),
                            expires,
                        };
                        fresh = true;
                    }
                })
                .or_insert_with(|| {
                    fresh = true;
                    Entry {
                        visitor: visitor.clone(),
                        expires,
                    }
                });
            if fresh {
                self.by_visitor.insert(visitor.clone(), code.clone());
                return Some(SessionKey { key: code, expires });
            }
        }
        None
    }

    /// The visitor holding `key` in `group`, if the key is live.
    pub fn find(&self, group: GroupId, key: &str) -> Option<VisitorKey> {
        let now = self.clock.now_secs();
        let entry = self.by_code.get(&(group, key.to_owned()))?;
        (entry.expires > now).then(|| entry.visitor.clone())
    }

    /// Drops expired keys; returns how many.
    pub fn sweep(&self) -> usize {
        let now = self.clock.now_secs();
        let before = self.by_code.len();
        self.by_code.retain(|_, e| e.expires > now);
        self.by_visitor
            .retain(|v, code| self.by_code.contains_key(&(v.group, code.clone())));
        before - self.by_code.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::ids::VisitorId;
    use std::sync::Arc;
    use std::time::Duration;

    fn visitor(group: u64, id: &str) -> VisitorKey {
        VisitorKey::new(group, VisitorId::parse(id).expect("id"))
    }

    #[test]
    fn codes_are_six_digits_and_find_their_visitor_until_they_expire() {
        let clock = Arc::new(ManualClock::new(1_800_000_000_000));
        let keys = SessionKeys::new(clock.clone(), 1200);
        let v = visitor(72, "v-1");
        let code = keys.issue(&v).expect("code");
        assert!(well_formed(&code.key), "{code:?}");
        assert_eq!(code.expires, 1_800_000_000 + 1200);
        assert_eq!(keys.find(72, &code.key), Some(v.clone()));
        assert_eq!(keys.find(73, &code.key), None, "keys are per group");
        clock.advance(Duration::from_secs(1200));
        assert_eq!(keys.find(72, &code.key), None);
        assert_eq!(keys.sweep(), 1);
    }

    #[test]
    fn a_new_code_replaces_the_old_one() {
        let clock = Arc::new(ManualClock::new(0));
        let keys = SessionKeys::new(clock, 1200);
        let v = visitor(72, "v-1");
        let first = keys.issue(&v).expect("code");
        let second = keys.issue(&v).expect("code");
        if first.key != second.key {
            assert_eq!(keys.find(72, &first.key), None);
        }
        assert_eq!(keys.find(72, &second.key), Some(v));
    }

    #[test]
    fn codes_are_unique_within_a_group() {
        let clock = Arc::new(ManualClock::new(0));
        let keys = SessionKeys::new(clock, 1200);
        let mut seen = std::collections::HashSet::new();
        for i in 0..2000 {
            let code = keys.issue(&visitor(72, &format!("v-{i}"))).expect("code");
            assert!(seen.insert(code.key), "duplicate code");
        }
    }

    #[test]
    fn shape_check() {
        for ok in ["000000", "482913"] {
            assert!(well_formed(ok));
        }
        for bad in ["", "12345", "1234567", "12a456", "١٢٣٤٥٦"] {
            assert!(!well_formed(bad), "{bad}");
        }
    }
}
