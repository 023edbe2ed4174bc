//! `keys list` and `keys rotate`: the signing key ring as the tools open
//! it (`token_tools.rs`), never with a secret byte.
//!
//! A key's state: `current` signs new tokens; `pending` (cluster mode) was
//! rotated in and signs once its activation time passes (every node has
//! read it by then); `verify-only` was retired by its successor and still
//! verifies the tokens it signed; `expiring` is retired and is purged by
//! the next housekeeping pass (its purge time, retirement plus
//! `auth.token_max_secs` plus leeway, is past or within one pass).

use serde::Serialize;

use super::token_tools::{TokenTools, ToolError};
use crate::auth::token::LEEWAY_SECS;
use crate::infra::config::ServerRole;

/// One key of the ring, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListedKey {
    pub kid: String,
    pub state: &'static str,
    /// Unix ms.
    pub created_at_ms: u64,
    /// When it started (or starts) signing, Unix ms.
    pub active_at_ms: u64,
    pub age_secs: u64,
    /// When its successor took over, Unix ms (none while it is the newest).
    pub retired_at_ms: Option<u64>,
    /// When housekeeping may purge it, Unix ms.
    pub purge_after_ms: Option<u64>,
}

/// The ring, oldest first.
pub fn list(tools: &TokenTools) -> Vec<ListedKey> {
    let now = tools.clock.now_ms();
    let keys = tools.keys();
    let signer = keys.signing_key().map(|k| k.kid.clone());
    let mut ring: Vec<_> = keys.listed_keys();
    ring.sort_by(|(a, a_active), (b, b_active)| {
        (a_active, a.created_at_ms, &a.kid).cmp(&(b_active, b.created_at_ms, &b.kid))
    });
    let auth = &tools.config.auth;
    let keep_ms = (auth.token_max_secs + LEEWAY_SECS) * 1000;
    let pass_ms = crate::server::housekeeping::interval(auth.key_rotation_secs).as_millis() as u64;
    let mut listed = Vec::with_capacity(ring.len());
    for (i, (key, active_at_ms)) in ring.iter().enumerate() {
        let retired_at_ms = ring.get(i + 1).map(|(_, next_active)| *next_active);
        let purge_after_ms = retired_at_ms.map(|r| r.saturating_add(keep_ms));
        let state = if signer.as_deref() == Some(key.kid.as_str()) {
            "current"
        } else if *active_at_ms > now {
            "pending"
        } else if purge_after_ms.is_some_and(|p| p <= now.saturating_add(pass_ms)) {
            "expiring"
        } else {
            "verify-only"
        };
        listed.push(ListedKey {
            kid: key.kid.clone(),
            state,
            created_at_ms: key.created_at_ms,
            active_at_ms: *active_at_ms,
            age_secs: now.saturating_sub(key.created_at_ms) / 1000,
            retired_at_ms,
            purge_after_ms,
        });
    }
    listed
}

/// The ring as a table, one key a line.
pub fn table(keys: &[ListedKey]) -> String {
    let mut out = format!(
        "{:<14} {:<12} {:<20} {:<20} {:>9} {:<20} {:<20}\n",
        "KID", "STATE", "CREATED", "ACTIVE FROM", "AGE", "RETIRED", "PURGE AFTER"
    );
    let time = |ms: Option<u64>| ms.map_or_else(|| "-".to_owned(), utc);
    for key in keys {
        out.push_str(&format!(
            "{:<14} {:<12} {:<20} {:<20} {:>9} {:<20} {:<20}\n",
            key.kid,
            key.state,
            utc(key.created_at_ms),
            utc(key.active_at_ms),
            age(key.age_secs),
            time(key.retired_at_ms),
            time(key.purge_after_ms),
        ));
    }
    out
}

/// What `keys rotate` did.
pub struct Rotated {
    pub kid: String,
    pub previous: Option<String>,
    /// When the new key signs, Unix ms.
    pub active_at_ms: u64,
}

/// `keys rotate`: a fresh key now, through the ring's own rotation.
pub fn rotate(tools: &TokenTools) -> Result<Rotated, ToolError> {
    let previous = tools.keys().signing_key().map(|k| k.kid.clone());
    if let Some(ring) = &tools.ring {
        let kid = ring.rotate_now()?;
        return Ok(Rotated {
            kid,
            previous,
            active_at_ms: tools.clock.now_ms(),
        });
    }
    if let Some((shared, runtime)) = &tools.shared {
        let (kid, active_at_ms) = runtime.block_on(shared.rotate_now())?;
        return Ok(Rotated {
            kid,
            previous,
            active_at_ms,
        });
    }
    debug_assert_eq!(tools.config.server.role, ServerRole::Auth);
    Err(ToolError::Refused(
        "this is an auth-role data dir: it holds only the keys the presence node hands over; rotate on the presence node's data dir (or in cluster mode)".into(),
    ))
}

/// `secs` as `1d02h`, `3h04m`, `5m06s` or `7s`.
fn age(secs: u64) -> String {
    match secs {
        s if s >= 86_400 => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// Unix ms as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days, for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_796_425_199_000), "2026-12-04T22:59:59Z");
        assert_eq!(age(59), "59s");
        assert_eq!(age(3_725), "1h02m");
        assert_eq!(age(90_000), "1d01h");
    }
}
