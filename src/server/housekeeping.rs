//! Periodic housekeeping: signing-key rotation and purge, sweeping idle
//! website sessions and stale failed-attempt counters, deleting audit
//! records past retention (and writing the "suppressed N" records of
//! throttled clients), forgetting expired revocations, and dropping
//! ended confirmations. The `Housekeeper` actor runs a pass on a timer; the
//! same pass is callable directly, so tests drive it after moving the
//! injectable clock instead of waiting for the timer.

use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, AsyncContext, Context};

use crate::auth::audit::Audit;
use crate::auth::sign_in::{Authenticator, LockoutCounters};
use crate::auth::token::{KeyMaintenance, TokenService};
use crate::presence::confirmation::Confirmations;
use crate::presence::session_keys::SessionKeys;
use crate::store::StoreError;

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Housekeeping {
    pub keys: KeyMaintenance,
    pub sessions_swept: usize,
    pub lockout_keys_swept: usize,
    pub session_keys_swept: usize,
    pub audit_swept: usize,
    /// "suppressed N" audit records written for client windows that ended.
    pub audit_summaries_written: usize,
    pub expired_tokens_forgotten: usize,
    pub confirmations_swept: usize,
}

/// The services housekeeping tends.
#[derive(Clone)]
pub struct Chores {
    pub tokens: Arc<TokenService>,
    pub auth: Arc<Authenticator>,
    pub audit: Arc<Audit>,
    pub session_keys: Arc<dyn SessionKeys>,
    pub session_key_misses: Arc<dyn LockoutCounters>,
    pub confirmations: Arc<Confirmations>,
}

impl Chores {
    /// Runs one pass.
    pub fn run_once(&self) -> Result<Housekeeping, StoreError> {
        let keys = self.tokens.keys().maintain()?;
        if let Some(kid) = &keys.rotated_to {
            tracing::info!(%kid, "signing key rotated");
        }
        for kid in &keys.purged {
            tracing::info!(%kid, "retired signing key purged");
        }
        Ok(Housekeeping {
            keys,
            sessions_swept: self.auth.sessions().sweep()?,
            lockout_keys_swept: self.auth.lockout().sweep() + self.session_key_misses.sweep(),
            session_keys_swept: self.session_keys.sweep(),
            audit_swept: self.audit.sweep()?,
            audit_summaries_written: self.audit.write_ended_summaries()?,
            expired_tokens_forgotten: self
                .tokens
                .revocations()
                .purge(self.audit.now_ms() / 1000)?
                + self.auth.forget_used_sso_tokens()?,
            confirmations_swept: self.confirmations.sweep()?,
        })
    }
}

/// How often the timer runs: often enough that rotation is never more than
/// a tenth of its period late, and at least once a minute.
pub fn interval(key_rotation_secs: u64) -> Duration {
    Duration::from_secs((key_rotation_secs / 10).clamp(1, 60))
}

/// The timer actor.
pub struct Housekeeper {
    chores: Chores,
    every: Duration,
}

impl Housekeeper {
    pub fn new(chores: Chores, every: Duration) -> Self {
        Self { chores, every }
    }
}

impl Actor for Housekeeper {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.every, |keeper, _| {
            if let Err(e) = keeper.chores.run_once() {
                tracing::error!(error = %e, "housekeeping failed; retrying next pass");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timer_is_bounded() {
        assert_eq!(interval(7200), Duration::from_secs(60));
        assert_eq!(interval(60), Duration::from_secs(6));
        assert_eq!(interval(5), Duration::from_secs(1));
    }
}
