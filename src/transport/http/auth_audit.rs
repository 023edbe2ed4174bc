//! Audit and lockout plumbing shared by the sign-in endpoints
//! (`/auth/token`, `/auth/login`): the refusal type, lockout-counted
//! attempts, and writing records within the audit throttle's limits.
//!
//! Audit writes (fsyncs) run on the blocking pool, off the request threads.

use actix_web::HttpRequest;

use super::AuthDeps;
use crate::auth::audit::{AuditRecord, Outcome};
use crate::auth::sign_in::lockout::Attempt;
use crate::infra::error::{off_thread, DomainError};

/// A refused attempt: the client's error, the audit reason, and, when the
/// refusal is a lockout's 429, which lockout (its key and end, Unix ms).
pub(super) struct Refusal {
    pub error: DomainError,
    pub reason: String,
    pub locked: Option<(String, u64)>,
}

impl Refusal {
    pub fn new(error: DomainError, reason: impl Into<String>) -> Self {
        Self {
            error,
            reason: reason.into(),
            locked: None,
        }
    }
}

/// A refusal whose audit reason is its error code.
pub(super) fn refuse(error: DomainError) -> Refusal {
    let reason = error.code();
    Refusal::new(error, reason)
}

/// The client's address and user agent, for audit records.
pub(super) fn client_of(req: &HttpRequest) -> (Option<String>, Option<&str>) {
    (
        super::client_ip(req),
        req.headers()
            .get(actix_web::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok()),
    )
}

/// Writes audit records on the blocking pool.
pub(super) async fn write_audit(
    app: &AuthDeps,
    records: Vec<AuditRecord>,
) -> Result<(), DomainError> {
    if records.is_empty() {
        return Ok(());
    }
    let audit = app.audit.clone();
    off_thread("audit log unavailable", move || {
        records.iter().try_for_each(|r| audit.record(r))
    })
    .await
}

/// Writes a refusal's audit records within the throttle's limits: the
/// refusal `record` (once per lockout window while locked out, and at most
/// [`crate::auth::audit::REFUSALS_PER_CLIENT_PER_MINUTE`] a minute per client),
/// preceded by the summary of what the client's last window suppressed,
/// and followed by `lockouts` (bounded by the lockout itself). A record
/// without a group (no group was asked for, or it does not exist) is not
/// written. A failure to write is logged, and the refusal stands.
pub(super) async fn write_refusal(
    app: &AuthDeps,
    record: AuditRecord,
    locked: Option<&(String, u64)>,
    lockouts: Vec<AuditRecord>,
) {
    let mut records = Vec::new();
    if let Some(group) = record.groupid {
        let throttle = app.audit.throttle();
        let client = record
            .remote
            .clone()
            .unwrap_or_else(|| "unknown".to_owned());
        let now = record.at;
        let (write, summary) = match locked {
            Some((key, until)) if !throttle.first_while_locked(key, now, *until) => {
                app.audit.not_recorded("locked_out");
                (false, throttle.suppress(&client, group, now))
            }
            _ => {
                let admission = throttle.admit(&client, group, now);
                if !admission.write {
                    app.audit.not_recorded("client_rate");
                }
                (admission.write, admission.summary)
            }
        };
        records.extend(summary.map(|s| AuditRecord::summary(&s, now)));
        if write {
            records.push(record);
        }
    } else {
        app.audit.not_recorded("no_group");
    }
    records.extend(lockouts);
    if let Err(e) = write_audit(app, records).await {
        tracing::error!(error = %e, "could not record a refused attempt");
    }
}

/// Starts a lockout-counted attempt, or refuses it while locked (or, in
/// cluster mode, while the shared counters are unreachable: 503).
pub(super) async fn begin_attempt(
    app: &AuthDeps,
    account: Option<&str>,
    client: Option<&str>,
) -> Result<Attempt, Refusal> {
    let begun = app
        .auth
        .lockout()
        .begin_async(account, client)
        .await
        .map_err(|e| refuse(DomainError::ClusterUnavailable(e.0)))?;
    begun.map_err(|locked| {
        let who = if locked.what == "account" {
            account
        } else {
            client
        };
        let key = format!("{}:{}", locked.what, who.unwrap_or_default());
        let until = app.audit.now_ms() + locked.retry_after_secs * 1000;
        Refusal {
            error: DomainError::TooManyAttempts(locked.retry_after_secs),
            reason: format!("locked_out ({})", locked.what),
            locked: Some((key, until)),
        }
    })
}

/// Gives back the slot of an attempt that does not count. A release the
/// shared counters did not take is logged: the slot expires with its
/// window.
pub(super) async fn forgive_attempt(app: &AuthDeps, attempt: Attempt) {
    if let Err(e) = app.auth.lockout().succeeded_async(attempt).await {
        tracing::warn!(error = %e, "could not release a lockout slot");
    }
}

/// Settles a failed attempt; returns the lockout records it causes.
pub(super) async fn failed_attempt(
    app: &AuthDeps,
    attempt: Attempt,
    base: &AuditRecord,
) -> Vec<AuditRecord> {
    let locked = match app.auth.lockout().failed_async(attempt).await {
        Ok(locked) => locked,
        Err(e) => {
            tracing::warn!(error = %e, "could not settle a failed attempt");
            Vec::new()
        }
    };
    locked
        .into_iter()
        .map(|what| {
            let limit = if what == "account" {
                app.config.load().auth.lockout_failures
            } else {
                app.config.load().auth.lockout_client_failures
            };
            tracing::warn!(what, "lockout");
            let mut record = base.clone();
            record.outcome = Outcome::Lockout;
            record.at = app.audit.now_ms();
            record.reason = Some(format!(
                "{what} locked after {limit} failures in {} s",
                app.config.load().auth.lockout_window_secs
            ));
            record
        })
        .collect()
}
