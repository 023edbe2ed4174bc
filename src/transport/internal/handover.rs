//! The key handover, both ends' loops.
//!
//! Presence side ([`start`]): one task per auth node sends every key that
//! may still verify (`POST /internal/keys`) whenever the set changes, and
//! again every [`RESEND`] (an auth node that lost its disk, or a new one,
//! catches up); a failure is retried with backoff from 1 s to 60 s. Each
//! `kid` an auth node confirms is recorded (sled `key_handovers`), and the
//! key ring keeps a retired key until its successor has been confirmed for
//! a whole token lifetime, so the old key verifies for as long as an auth
//! node may still sign with it.
//!
//! Auth side ([`watch_received`]): once a minute, an error line while no
//! new key has arrived for `key_rotation_secs` + 5 min.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{SignedCaller, KEYS_PATH};
use crate::auth::token::handover::{HandoverReceipt, KeyHandover};
use crate::auth::token::{ReceivedKeys, SigningKeySource};
use crate::infra::clock::SharedClock;
use crate::infra::error::on_blocking_pool;
use crate::infra::metrics::Metrics;
use crate::store::Store;

/// Keys are sent again this often even when unchanged.
pub const RESEND: Duration = Duration::from_secs(60);
/// How often a sender looks for a changed key set.
const CHECK: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// An auth node's keys are stale this long past a rotation period.
pub const STALE_AFTER_ROTATION_MS: u64 = 5 * 60 * 1000;

/// One auth node, as `/healthz` shows it (no URL: it may be private).
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct TargetStatus {
    /// When it last confirmed the keys (Unix ms).
    pub last_ok_ms: Option<u64>,
    /// Why the last attempt failed, if it did.
    pub error: Option<String>,
    /// Whether it holds this node's newest key.
    pub current: bool,
}

/// Every auth node's handover, in `server.auth_internal_urls` order.
#[derive(Default)]
pub struct HandoverStatus {
    targets: Mutex<Vec<TargetStatus>>,
}

impl HandoverStatus {
    pub fn snapshot(&self) -> Vec<TargetStatus> {
        self.targets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn update(&self, i: usize, f: impl FnOnce(&mut TargetStatus)) {
        if let Some(t) = self
            .targets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(i)
        {
            f(t);
        }
    }
}

/// What a sender needs.
#[derive(Clone)]
pub struct Sender {
    pub caller: SignedCaller,
    pub keys: Arc<dyn SigningKeySource>,
    pub store: Arc<Store>,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
}

/// Presence side: holds retired keys until their successors are handed
/// over, and starts a sender per auth node.
pub fn start(sender: Sender, urls: &[String]) -> Arc<HandoverStatus> {
    let ledger_store = sender.store.clone();
    sender
        .keys
        .hold_retired_until_handed_over(Arc::new(move |kid| {
            ledger_store.key_handover(kid).ok().flatten()
        }));
    let status = Arc::new(HandoverStatus {
        targets: Mutex::new(vec![TargetStatus::default(); urls.len()]),
    });
    for (i, url) in urls.iter().enumerate() {
        actix_web::rt::spawn(send_loop(sender.clone(), url.clone(), i, status.clone()));
    }
    status
}

async fn send_loop(s: Sender, url: String, i: usize, status: Arc<HandoverStatus>) {
    let mut confirmed: Vec<String> = Vec::new();
    let mut last_sent: Option<tokio::time::Instant> = None;
    let mut backoff = Duration::from_secs(1);
    loop {
        let handover = KeyHandover::of(s.keys.as_ref());
        let kids: Vec<String> = handover.keys.iter().map(|k| k.kid.clone()).collect();
        let due = kids != confirmed || last_sent.is_none_or(|at| at.elapsed() >= RESEND);
        let mut wait = CHECK;
        if due && !kids.is_empty() {
            match deliver(&s, &url, &handover, &kids).await {
                Ok(current) => {
                    s.metrics.roles.key_handover(true);
                    let now = s.clock.now_ms();
                    status.update(i, |t| {
                        t.last_ok_ms = Some(now);
                        t.error = None;
                        t.current = current;
                    });
                    confirmed = kids;
                    last_sent = Some(tokio::time::Instant::now());
                    backoff = Duration::from_secs(1);
                }
                Err(e) => {
                    s.metrics.roles.key_handover(false);
                    tracing::warn!(target_index = i, error = %e, retry_in_s = backoff.as_secs(), "signing key handover failed");
                    status.update(i, |t| t.error = Some(e));
                    wait = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        tokio::select! {
            _ = s.shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// One handover; records each confirmed `kid`. `Ok(true)` if the auth node
/// holds the newest key.
async fn deliver(
    s: &Sender,
    url: &str,
    handover: &KeyHandover,
    kids: &[String],
) -> Result<bool, String> {
    let body = serde_json::to_vec(handover).map_err(|e| e.to_string())?;
    let receipt: HandoverReceipt = s.caller.post(url, KEYS_PATH, body).await?;
    let held: Vec<String> = kids
        .iter()
        .filter(|k| receipt.held.contains(k))
        .cloned()
        .collect();
    let (store, now, all) = (s.store.clone(), s.clock.now_ms(), kids.to_vec());
    let newest = kids.last().is_some_and(|k| held.contains(k));
    on_blocking_pool("record key handover", move || {
        for kid in &held {
            store.record_key_handover(kid, now)?;
        }
        store.retain_key_handovers(&all)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    if !newest {
        return Err("the auth node did not confirm the newest key".into());
    }
    Ok(newest)
}

/// Whether keys last received at `last_ms` are stale at `now_ms`.
pub fn is_stale(last_ms: Option<u64>, now_ms: u64, rotation_secs: u64) -> bool {
    let limit = rotation_secs.saturating_mul(1000) + STALE_AFTER_ROTATION_MS;
    last_ms.is_none_or(|last| now_ms.saturating_sub(last) > limit)
}

/// Auth side: an error line a minute while no new key has arrived for
/// `rotation_secs` + 5 min (or none ever did).
pub fn watch_received(
    keys: Arc<ReceivedKeys>,
    clock: SharedClock,
    rotation_secs: u64,
    started_ms: u64,
    shutdown: CancellationToken,
) {
    actix_web::rt::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = every.tick() => {}
            }
            let status = keys.status();
            let now = clock.now_ms();
            if is_stale(
                status.last_received_ms.or(Some(started_ms)),
                now,
                rotation_secs,
            ) {
                tracing::error!(
                    last_received_ms = ?status.last_received_ms,
                    signing = ?status.signing,
                    "no signing key has arrived from a presence node for longer than key_rotation_secs + 5 min"
                );
            }
        }
    });
}
