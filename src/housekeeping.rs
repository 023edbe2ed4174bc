//! Periodic housekeeping: signing-key rotation and purge, and sweeping idle
//! website sessions. The `Housekeeper` actor runs a pass on a timer; the
//! same pass is callable directly, so tests drive it after moving the
//! injectable clock instead of waiting for the timer.

use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, AsyncContext, Context};

use crate::auth::Authenticator;
use crate::store::StoreError;
use crate::token::{KeyMaintenance, TokenService};

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Housekeeping {
    pub keys: KeyMaintenance,
    pub sessions_swept: usize,
}

/// Runs one pass.
pub fn run_once(tokens: &TokenService, auth: &Authenticator) -> Result<Housekeeping, StoreError> {
    let keys = tokens.keys().maintain()?;
    if let Some(kid) = &keys.rotated_to {
        tracing::info!(%kid, "signing key rotated");
    }
    for kid in &keys.purged {
        tracing::info!(%kid, "retired signing key purged");
    }
    let sessions_swept = auth.sessions().sweep()?;
    Ok(Housekeeping {
        keys,
        sessions_swept,
    })
}

/// How often the timer runs: often enough that rotation is never more than
/// a tenth of its period late, and at least once a minute.
pub fn interval(key_rotation_secs: u64) -> Duration {
    Duration::from_secs((key_rotation_secs / 10).clamp(1, 60))
}

/// The timer actor.
pub struct Housekeeper {
    tokens: Arc<TokenService>,
    auth: Arc<Authenticator>,
    every: Duration,
}

impl Housekeeper {
    pub fn new(tokens: Arc<TokenService>, auth: Arc<Authenticator>, every: Duration) -> Self {
        Self {
            tokens,
            auth,
            every,
        }
    }
}

impl Actor for Housekeeper {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.every, |keeper, _| {
            if let Err(e) = run_once(&keeper.tokens, &keeper.auth) {
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
