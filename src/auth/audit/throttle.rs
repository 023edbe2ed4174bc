//! What refusals may cost the audit log. Anyone can send a refused token
//! request, so refusals are the one kind of record an attacker writes at
//! will; these rules bound that:
//!
//! - while an account or client is locked out, one refusal record is
//!   written per lockout window ([`RefusalThrottle::first_while_locked`]);
//! - each client address writes at most [`REFUSALS_PER_CLIENT_PER_MINUTE`]
//!   refusal records per group per minute; the rest are counted, and one
//!   "suppressed N" record per minute says how many
//!   ([`RefusalThrottle::admit`], [`RefusalThrottle::drain`]).
//!
//! Unknown groups write no record at all (the caller's rule), and every
//! audited field has a capped size (see [`super::AuditRecord::capped`]).

use dashmap::DashMap;

use crate::infra::ids::GroupId;

/// Refusal records one client address writes per group per minute.
pub const REFUSALS_PER_CLIENT_PER_MINUTE: u32 = 10;
/// The window of the per-client limit.
pub const CLIENT_WINDOW_MS: u64 = 60_000;

/// A client's window: when it began, records written, refusals suppressed.
#[derive(Debug, Clone, Copy)]
struct ClientWindow {
    started_ms: u64,
    written: u32,
    suppressed: u64,
}

/// Refusals of one client and group that were not written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppressed {
    pub client: String,
    pub groupid: GroupId,
    pub count: u64,
    /// When the window began (Unix ms).
    pub since_ms: u64,
}

/// Whether a refusal record is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// Write the refusal's own record.
    pub write: bool,
    /// The previous window of this client ended with refusals suppressed:
    /// write its summary first.
    pub summary: Option<Suppressed>,
}

/// The rate limits on refusal records.
#[derive(Default)]
pub struct RefusalThrottle {
    clients: DashMap<(String, GroupId), ClientWindow>,
    /// Locked key → the end of the lockout a record was written for.
    lockouts: DashMap<String, u64>,
}

impl RefusalThrottle {
    /// True for the first refusal of `key` (an account or a client) in a
    /// lockout lasting until `until_ms`; false for the rest of it.
    pub fn first_while_locked(&self, key: &str, now_ms: u64, until_ms: u64) -> bool {
        let mut recorded = self.lockouts.entry(key.to_owned()).or_insert(0);
        if *recorded > now_ms {
            return false;
        }
        *recorded = until_ms;
        true
    }

    /// Counts a refusal from `client` for `group` that is not written
    /// (locked out), so the next summary includes it.
    pub fn suppress(&self, client: &str, group: GroupId, now_ms: u64) -> Option<Suppressed> {
        let (summary, mut window) = self.window(client, group, now_ms);
        window.suppressed += 1;
        self.clients.insert((client.to_owned(), group), window);
        summary
    }

    /// Whether a refusal from `client` for `group` may be written now.
    pub fn admit(&self, client: &str, group: GroupId, now_ms: u64) -> Admission {
        let (summary, mut window) = self.window(client, group, now_ms);
        let write = window.written < REFUSALS_PER_CLIENT_PER_MINUTE;
        if write {
            window.written += 1;
        } else {
            window.suppressed += 1;
        }
        self.clients.insert((client.to_owned(), group), window);
        Admission { write, summary }
    }

    /// The client's live window, and the summary of the one it replaced.
    fn window(
        &self,
        client: &str,
        group: GroupId,
        now_ms: u64,
    ) -> (Option<Suppressed>, ClientWindow) {
        let fresh = ClientWindow {
            started_ms: now_ms,
            written: 0,
            suppressed: 0,
        };
        let key = (client.to_owned(), group);
        match self.clients.get(&key).map(|w| *w) {
            Some(w) if now_ms < w.started_ms + CLIENT_WINDOW_MS => (None, w),
            Some(w) => (summary_of(client, group, w), fresh),
            None => (None, fresh),
        }
    }

    /// Ends the windows over a minute old (and lockouts that are over);
    /// returns the summaries to write for those that suppressed refusals.
    pub fn drain(&self, now_ms: u64) -> Vec<Suppressed> {
        let mut summaries = Vec::new();
        self.clients.retain(|(client, group), w| {
            if now_ms < w.started_ms + CLIENT_WINDOW_MS {
                return true;
            }
            summaries.extend(summary_of(client, *group, *w));
            false
        });
        self.lockouts.retain(|_, until| *until > now_ms);
        summaries
    }
}

fn summary_of(client: &str, group: GroupId, w: ClientWindow) -> Option<Suppressed> {
    (w.suppressed > 0).then(|| Suppressed {
        client: client.to_owned(),
        groupid: group,
        count: w.suppressed,
        since_ms: w.started_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_writes_ten_a_minute_then_one_summary() {
        let throttle = RefusalThrottle::default();
        let written = (0..25)
            .filter(|i| throttle.admit("203.0.113.9", 72, 1_000 + i).write)
            .count();
        assert_eq!(written, 10);
        assert!(
            throttle.admit("203.0.113.10", 72, 2_000).write,
            "per client"
        );
        assert!(throttle.admit("203.0.113.9", 73, 2_000).write, "per group");
        let next = throttle.admit("203.0.113.9", 72, 61_000);
        assert!(next.write);
        assert_eq!(next.summary.map(|s| s.count), Some(15));
        // The new window has 1 written and none suppressed: nothing to drain.
        assert!(throttle.drain(200_000).is_empty());
    }

    #[test]
    fn the_sweeper_writes_summaries_of_ended_windows() {
        let throttle = RefusalThrottle::default();
        for i in 0..12 {
            throttle.admit("198.51.100.1", 72, i);
        }
        assert!(throttle.drain(59_999).is_empty(), "window still open");
        let summaries = throttle.drain(60_000);
        assert_eq!(summaries.len(), 1);
        assert_eq!((summaries[0].count, summaries[0].groupid), (2, 72));
        assert!(throttle.drain(120_000).is_empty(), "written once");
    }

    #[test]
    fn one_record_per_lockout_window() {
        let throttle = RefusalThrottle::default();
        assert!(throttle.first_while_locked("account:72/fred", 0, 900_000));
        assert!(!throttle.first_while_locked("account:72/fred", 10, 900_000));
        assert!(throttle.first_while_locked("account:72/ada", 10, 900_000));
        assert!(throttle.first_while_locked("account:72/fred", 900_000, 1_800_000));
    }
}
