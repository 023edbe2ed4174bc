//! Periodic housekeeping: signing-key rotation and purge, sweeping idle
//! website sessions and stale failed-attempt counters, deleting audit
//! records past retention (and writing the "suppressed N" records of
//! throttled clients), forgetting expired revocations, and dropping
//! ended confirmations. The `Housekeeper` actor runs a pass on a timer; the
//! same pass is callable directly, so tests drive it after moving the
//! injectable clock instead of waiting for the timer.
//!
//! The timer runs on an arbiter of its own ([`HousekeepingThread`]), and a
//! pass runs there from start to end, blocking only that thread: a long
//! sweep never stalls the registry or any other actor. Passes never
//! overlap, whoever starts them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::{Actor, Arbiter, AsyncContext, Context};

use crate::auth::audit::Audit;
use crate::auth::sign_in::{Authenticator, LockoutCounters};
use crate::auth::token::{KeyMaintenance, TokenService};
use crate::presence::confirmation::Confirmations;
use crate::presence::registry::PresenceDirectory;
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
    tokens: Arc<TokenService>,
    auth: Arc<Authenticator>,
    audit: Arc<Audit>,
    session_keys: Arc<dyn SessionKeys>,
    session_key_misses: Arc<dyn LockoutCounters>,
    confirmations: Arc<Confirmations>,
    /// Whose online periods have ended (for the session-key sweep).
    registry: Arc<dyn PresenceDirectory>,
    /// Held for a whole pass, so that a pass run directly (start-up, tests)
    /// and the timer's never interleave (two rotations at once, say).
    pass: Arc<Mutex<()>>,
}

impl Chores {
    pub fn new(
        tokens: Arc<TokenService>,
        auth: Arc<Authenticator>,
        audit: Arc<Audit>,
        session_keys: Arc<dyn SessionKeys>,
        session_key_misses: Arc<dyn LockoutCounters>,
        confirmations: Arc<Confirmations>,
        registry: Arc<dyn PresenceDirectory>,
    ) -> Self {
        Self {
            tokens,
            auth,
            audit,
            session_keys,
            session_key_misses,
            confirmations,
            registry,
            pass: Arc::default(),
        }
    }

    /// Runs one pass, on the calling thread (it blocks on sled), after any
    /// pass in progress.
    pub fn run_once(&self) -> Result<Housekeeping, StoreError> {
        // A pass that panicked left nothing half-done that the next pass
        // cannot redo.
        let _pass = self.pass.lock().unwrap_or_else(|p| p.into_inner());
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
            session_keys_swept: self.session_keys.sweep(&|holder| {
                let state = self.registry.lookup(&holder.visitor);
                state.online
                    && state
                        .connected_at
                        .is_some_and(|at| holder.period.includes(at))
            }),
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

/// The timer actor. Started by [`HousekeepingThread::start`], on its own
/// arbiter.
struct Housekeeper {
    pass: Box<dyn FnMut() + Send>,
    every: Duration,
}

impl Actor for Housekeeper {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.every, |keeper, _| (keeper.pass)());
    }
}

/// The arbiter the housekeeping timer and its passes run on. Stopped by
/// [`HousekeepingThread::stop`], or when dropped.
pub struct HousekeepingThread {
    arbiter: Option<Arbiter>,
}

impl HousekeepingThread {
    /// Starts a new arbiter (a thread of its own) running a pass every
    /// `every`. Must be called inside an actix system.
    pub fn start(chores: Chores, every: Duration) -> Self {
        Self::run_every(every, move || {
            if let Err(e) = chores.run_once() {
                tracing::error!(error = %e, "housekeeping failed; retrying next pass");
            }
        })
    }

    /// Runs `pass` every `every` on a new arbiter.
    fn run_every(every: Duration, pass: impl FnMut() + Send + 'static) -> Self {
        let arbiter = Arbiter::new();
        let pass = Box::new(pass);
        Housekeeper::start_in_arbiter(&arbiter.handle(), move |_| Housekeeper { pass, every });
        Self {
            arbiter: Some(arbiter),
        }
    }

    /// Stops the timer and waits, off the async workers, for a pass in
    /// progress to end, so that nothing touches the store after this.
    pub async fn stop(mut self) {
        let Some(arbiter) = self.arbiter.take() else {
            return;
        };
        arbiter.stop();
        if let Err(e) = tokio::task::spawn_blocking(move || arbiter.join()).await {
            tracing::warn!(error = %e, "housekeeping thread did not stop cleanly");
        }
    }
}

impl Drop for HousekeepingThread {
    fn drop(&mut self) {
        if let Some(arbiter) = self.arbiter.take() {
            arbiter.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::mpsc;
    use std::time::Instant;

    #[actix_web::test]
    async fn passes_run_on_their_own_thread_and_stop_with_it() {
        let (ran_on, passes) = mpsc::channel();
        let keeper = HousekeepingThread::run_every(Duration::from_millis(10), move || {
            let _ = ran_on.send(std::thread::current().id());
            // A long pass: it must hold up nothing but its own thread.
            std::thread::sleep(Duration::from_millis(200));
        });
        let waiting = Instant::now();
        let thread = loop {
            if let Ok(thread) = passes.try_recv() {
                break thread;
            }
            assert!(waiting.elapsed() < Duration::from_secs(5), "no pass ran");
            actix::clock::sleep(Duration::from_millis(5)).await;
        };
        assert_ne!(thread, std::thread::current().id());
        let mid_pass = Instant::now();
        actix::clock::sleep(Duration::from_millis(10)).await;
        assert!(
            mid_pass.elapsed() < Duration::from_millis(150),
            "this arbiter ran on during the pass"
        );
        keeper.stop().await;
        // Stopped means joined: the timer and its pass are gone.
        while passes.try_recv().is_ok() {}
        assert_eq!(
            passes.recv_timeout(Duration::from_millis(100)),
            Err(mpsc::RecvTimeoutError::Disconnected)
        );
    }

    #[test]
    fn the_timer_is_bounded() {
        assert_eq!(interval(7200), Duration::from_secs(60));
        assert_eq!(interval(60), Duration::from_secs(6));
        assert_eq!(interval(5), Duration::from_secs(1));
    }
}
