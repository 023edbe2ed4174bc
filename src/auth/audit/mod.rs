//! The token audit log: one record for every token issued and every
//! refused attempt (with the reason, never a secret), written durably before
//! the client hears the outcome, kept for `audit_retention_days`, and
//! queried newest first by a group's administrators. What refusals may
//! write is bounded by [`throttle`].

mod survey;
mod throttle;

use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

use crate::auth::sign_in::CredentialKind;
use crate::infra::clock::SharedClock;
use crate::infra::config::Role;
use crate::infra::ids::{fill_random, GroupId};
use crate::infra::metrics::Metrics;
use crate::store::cluster::ClusterLink;
use crate::store::{Store, StoreError};
pub use survey::Found;
pub use throttle::{RefusalThrottle, Suppressed, REFUSALS_PER_CLIENT_PER_MINUTE};

/// Longest user agent kept, in characters.
pub const MAX_USER_AGENT: usize = 256;
/// Longest username kept, in characters.
pub const MAX_USERNAME: usize = 128;
/// Ends a field that was cut to its cap.
pub const TRUNCATED: &str = "…[truncated]";
/// Most records one query returns.
pub const MAX_PAGE: usize = 1000;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Issued,
    Refused,
    Revoked,
    /// An account or client was locked after too many failures.
    Lockout,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Issued => "issued",
            Outcome::Refused => "refused",
            Outcome::Revoked => "revoked",
            Outcome::Lockout => "lockout",
        }
    }
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditRecord {
    /// Unix milliseconds.
    pub at: u64,
    pub outcome: Outcome,
    #[schema(value_type = Option<u64>)]
    pub groupid: Option<GroupId>,
    pub username: Option<String>,
    pub credential: Option<CredentialKind>,
    pub role: Option<Role>,
    pub jti: Option<String>,
    pub iat: Option<u64>,
    pub exp: Option<u64>,
    pub remote: Option<String>,
    pub user_agent: Option<String>,
    /// Why an attempt was refused (or who revoked a token).
    pub reason: Option<String>,
}

impl AuditRecord {
    /// A record of `outcome` now, with everything else empty.
    pub fn new(outcome: Outcome, at: u64) -> Self {
        Self {
            at,
            outcome,
            groupid: None,
            username: None,
            credential: None,
            role: None,
            jti: None,
            iat: None,
            exp: None,
            remote: None,
            user_agent: None,
            reason: None,
        }
    }

    /// Sets the client's address and user agent.
    pub fn with_client(mut self, remote: Option<String>, user_agent: Option<&str>) -> Self {
        self.remote = remote;
        self.user_agent = user_agent.map(str::to_owned);
        self
    }

    /// The record with every client-supplied field cut to its cap, with a
    /// marker, so no request can make a record large.
    fn capped(&self) -> std::borrow::Cow<'_, Self> {
        let long = |field: &Option<String>, max: usize| {
            field.as_ref().is_some_and(|f| f.chars().count() > max)
        };
        if !long(&self.username, MAX_USERNAME) && !long(&self.user_agent, MAX_USER_AGENT) {
            return std::borrow::Cow::Borrowed(self);
        }
        let mut capped = self.clone();
        capped.username = capped.username.map(|u| cap(u, MAX_USERNAME));
        capped.user_agent = capped.user_agent.map(|u| cap(u, MAX_USER_AGENT));
        std::borrow::Cow::Owned(capped)
    }

    /// The record standing for refusals that were not written.
    pub fn summary(suppressed: &Suppressed, at: u64) -> Self {
        let mut record = Self::new(Outcome::Refused, at);
        record.groupid = Some(suppressed.groupid);
        record.remote = Some(suppressed.client.clone());
        record.reason = Some(format!(
            "suppressed {} refusals from this client (over {REFUSALS_PER_CLIENT_PER_MINUTE} \
             a minute, or while locked out) since {}",
            suppressed.count, suppressed.since_ms
        ));
        record
    }
}

/// `field` cut to `max` characters with [`TRUNCATED`] at the end.
fn cap(field: String, max: usize) -> String {
    if field.chars().count() <= max {
        return field;
    }
    let keep = max - TRUNCATED.chars().count();
    let mut cut: String = field.chars().take(keep).collect();
    cut.push_str(TRUNCATED);
    cut
}

/// A query over one group's records.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub since: Option<u64>,
    pub until: Option<u64>,
    pub username: Option<String>,
    pub limit: usize,
    pub cursor: Option<String>,
}

/// One page of results, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page {
    pub records: Vec<AuditRecord>,
    /// Pass back as `cursor` for the next (older) page; null at the end.
    pub next_cursor: Option<String>,
}

/// The audit log.
pub struct Audit {
    store: Arc<Store>,
    clock: SharedClock,
    retention_days: u64,
    metrics: Arc<Metrics>,
    throttle: RefusalThrottle,
    /// Cluster mode: the link queries are merged over (`survey`).
    cluster: OnceLock<ClusterLink>,
}

fn key(at_ms: u64) -> Vec<u8> {
    let mut key = at_ms.to_be_bytes().to_vec();
    let mut id = [0u8; 8];
    fill_random(&mut id);
    key.extend_from_slice(&id);
    key
}

fn encode_cursor(key: &[u8]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_cursor(cursor: &str) -> Option<Vec<u8>> {
    if cursor.len() != 32 || !cursor.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..16)
        .map(|i| u8::from_str_radix(&cursor[2 * i..2 * i + 2], 16).ok())
        .collect()
}

impl Audit {
    pub fn new(
        store: Arc<Store>,
        clock: SharedClock,
        retention_days: u64,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            store,
            clock,
            retention_days,
            metrics,
            throttle: RefusalThrottle::default(),
            cluster: OnceLock::new(),
        }
    }

    /// The limits on refusal records.
    pub fn throttle(&self) -> &RefusalThrottle {
        &self.throttle
    }

    /// Counts a refusal that writes no record, by the rule that dropped it.
    pub fn not_recorded(&self, rule: &'static str) {
        self.metrics.audit_suppressed(rule);
    }

    /// The current time, for building records.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Writes a record durably, its client-supplied fields capped.
    pub fn record(&self, record: &AuditRecord) -> Result<(), StoreError> {
        self.store.put_audit(&key(record.at), &*record.capped())?;
        self.metrics.audit_recorded(record.outcome.as_str());
        Ok(())
    }

    /// Writes the "suppressed N" records of client windows that ended;
    /// the housekeeping timer calls it.
    pub fn write_ended_summaries(&self) -> Result<usize, StoreError> {
        let now = self.clock.now_ms();
        let summaries = self.throttle.drain(now);
        for suppressed in &summaries {
            self.record(&AuditRecord::summary(suppressed, now))?;
        }
        Ok(summaries.len())
    }

    /// One group's records matching `query`, newest first. `None` if the
    /// cursor is not one this server issued.
    pub fn query(&self, group: GroupId, query: &Query) -> Result<Option<Page>, StoreError> {
        let before = match &query.cursor {
            Some(cursor) => match decode_cursor(cursor) {
                Some(after) => Some(after),
                None => return Ok(None),
            },
            None => None,
        };
        let limit = query.limit.clamp(1, MAX_PAGE);
        let mut found = self.scan(group, query, before.as_deref(), limit + 1)?;
        let next_cursor = if found.len() > limit {
            found.truncate(limit);
            found.last().map(|(key, _)| encode_cursor(key))
        } else {
            None
        };
        Ok(Some(Page {
            records: found.into_iter().map(|(_, r)| r).collect(),
            next_cursor,
        }))
    }

    /// Up to `n` of one group's records matching `query`'s time window and
    /// username, newest first, with keys below `before` (the cursor is not
    /// read), each with its key.
    fn scan(
        &self,
        group: GroupId,
        query: &Query,
        before: Option<&[u8]>,
        n: usize,
    ) -> Result<Vec<(Vec<u8>, AuditRecord)>, StoreError> {
        let lower = query
            .since
            .map_or(0, |s| s.saturating_mul(1000))
            .to_be_bytes()
            .to_vec();
        let mut upper = query
            .until
            .map_or(u64::MAX, |u| u.saturating_mul(1000))
            .to_be_bytes()
            .to_vec();
        if let Some(before) = before {
            upper = upper.min(before.to_vec());
        }
        let username = query.username.as_deref();
        self.store
            .audit_newest_first::<AuditRecord>(&lower, &upper, n, |r| {
                r.groupid == Some(group)
                    && username.is_none_or(|u| r.username.as_deref() == Some(u))
            })
    }

    /// Deletes records older than the retention period.
    pub fn sweep(&self) -> Result<usize, StoreError> {
        let cutoff = self
            .clock
            .now_ms()
            .saturating_sub(self.retention_days * 86_400_000);
        self.store.remove_audit_before(&cutoff.to_be_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infra::clock::ManualClock;
    use std::time::Duration;

    fn audit() -> (tempfile::TempDir, Arc<ManualClock>, Audit) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(dir.path()).expect("store"));
        let clock = Arc::new(ManualClock::new(1_800_000_000_000));
        let audit = Audit::new(store, clock.clone(), 90, Arc::new(Metrics::new()));
        (dir, clock, audit)
    }

    fn record(audit: &Audit, group: u64, user: &str) {
        let mut r = AuditRecord::new(Outcome::Issued, audit.now_ms());
        r.groupid = Some(group);
        r.username = Some(user.to_owned());
        audit.record(&r).expect("record");
    }

    #[test]
    fn pages_newest_first_with_a_cursor_and_filters() {
        let (_dir, clock, audit) = audit();
        for i in 0..5 {
            record(&audit, 72, if i % 2 == 0 { "fred" } else { "ada" });
            record(&audit, 73, "olga");
            clock.advance(Duration::from_secs(1));
        }
        let q = Query {
            limit: 2,
            ..Query::default()
        };
        let first = audit.query(72, &q).expect("query").expect("page");
        assert_eq!(first.records.len(), 2);
        assert!(first.records[0].at > first.records[1].at);
        let mut seen = first.records.clone();
        let mut cursor = first.next_cursor;
        while let Some(c) = cursor {
            let page = audit
                .query(
                    72,
                    &Query {
                        cursor: Some(c),
                        ..q.clone()
                    },
                )
                .expect("query")
                .expect("page");
            seen.extend(page.records);
            cursor = page.next_cursor;
        }
        assert_eq!(seen.len(), 5);
        assert!(seen.windows(2).all(|w| w[0].at >= w[1].at));
        assert!(seen.iter().all(|r| r.groupid == Some(72)));

        let fred = Query {
            username: Some("fred".into()),
            limit: 10,
            ..Query::default()
        };
        assert_eq!(
            audit.query(72, &fred).expect("q").expect("p").records.len(),
            3
        );
        let window = Query {
            since: Some(1_800_000_001),
            until: Some(1_800_000_003),
            limit: 10,
            ..Query::default()
        };
        assert_eq!(
            audit
                .query(72, &window)
                .expect("q")
                .expect("p")
                .records
                .len(),
            2
        );
        assert!(audit
            .query(
                72,
                &Query {
                    cursor: Some("zz".into()),
                    ..q
                }
            )
            .expect("q")
            .is_none());
    }

    #[test]
    fn client_fields_are_capped_with_a_marker() {
        let (_dir, _clock, audit) = audit();
        let mut r = AuditRecord::new(Outcome::Refused, audit.now_ms())
            .with_client(None, Some(&"u".repeat(5000)));
        r.groupid = Some(72);
        r.username = Some("n".repeat(1024));
        audit.record(&r).expect("record");
        let page = audit
            .query(
                72,
                &Query {
                    limit: 1,
                    ..Query::default()
                },
            )
            .expect("q")
            .expect("p");
        let stored = &page.records[0];
        let username = stored.username.as_deref().expect("username");
        assert_eq!(username.chars().count(), MAX_USERNAME);
        assert!(username.ends_with(TRUNCATED));
        let agent = stored.user_agent.as_deref().expect("user agent");
        assert_eq!(agent.chars().count(), MAX_USER_AGENT);
        assert!(agent.ends_with(TRUNCATED));
        assert_eq!(cap("short".into(), MAX_USERNAME), "short");
    }

    #[test]
    fn the_sweeper_keeps_only_the_retention_period() {
        let (_dir, clock, audit) = audit();
        record(&audit, 72, "old");
        clock.advance(Duration::from_secs(89 * 86_400));
        record(&audit, 72, "recent");
        clock.advance(Duration::from_secs(2 * 86_400));
        assert_eq!(audit.sweep().expect("sweep"), 1);
        let all = audit
            .query(
                72,
                &Query {
                    limit: 10,
                    ..Query::default()
                },
            )
            .expect("q")
            .expect("p");
        assert_eq!(all.records.len(), 1);
        assert_eq!(all.records[0].username.as_deref(), Some("recent"));
    }
}
