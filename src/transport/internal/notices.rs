//! Auth role without Redis: revocations reach the presence node through
//! `POST /internal/revoked`.
//!
//! A revocation is queued in sled (`revocation_outbox`, flushed) on the
//! revoking thread, before the revoke is acknowledged; one task sends
//! everything queued in one notice at once, drops what the presence node
//! confirmed, and retries the rest with backoff (1 s to 30 s), across
//! restarts. A queued token that has expired is dropped unsent: no
//! presence node accepts it any more.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{NoticeEntry, RevocationNotice, SignedCaller, MAX_NOTICE_JTIS, REVOKED_PATH};
use crate::auth::token::{RevocationForwarder, LEEWAY_SECS};
use crate::infra::clock::SharedClock;
use crate::infra::error::on_blocking_pool;
use crate::infra::metrics::Metrics;
use crate::store::Store;

const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The queue is looked at this often even without a new revocation.
const RECHECK: Duration = Duration::from_secs(30);

/// What queues a revocation and wakes the sender.
pub fn forwarder(store: Arc<Store>, wake: Arc<Notify>) -> RevocationForwarder {
    Arc::new(move |jti, exp| {
        store.queue_revocations(&[(jti.to_owned(), exp)])?;
        wake.notify_one();
        Ok(())
    })
}

/// What the sender needs.
pub struct NoticeSender {
    pub caller: SignedCaller,
    pub url: String,
    pub store: Arc<Store>,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
    pub wake: Arc<Notify>,
    pub shutdown: CancellationToken,
}

/// Starts the sender (it sends what a previous run left queued first).
pub fn start(sender: NoticeSender) {
    actix_web::rt::spawn(async move {
        let mut backoff = Duration::from_secs(1);
        loop {
            let wait = match send_queued(&sender).await {
                Ok(()) => {
                    backoff = Duration::from_secs(1);
                    None
                }
                Err(e) => {
                    sender.metrics.roles.revocation_notice(false);
                    tracing::warn!(error = %e, retry_in_s = backoff.as_secs(), "revocation notice failed");
                    let wait = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    Some(wait)
                }
            };
            match wait {
                Some(wait) => tokio::select! {
                    _ = sender.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                },
                None => tokio::select! {
                    _ = sender.shutdown.cancelled() => return,
                    _ = sender.wake.notified() => {}
                    _ = tokio::time::sleep(RECHECK) => {}
                },
            }
        }
    });
}

async fn send_queued(s: &NoticeSender) -> Result<(), String> {
    let store = s.store.clone();
    let queued = on_blocking_pool("read revocation outbox", move || store.queued_revocations())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let now = s.clock.now_secs();
    let (live, expired): (Vec<_>, Vec<_>) = queued
        .into_iter()
        .partition(|(_, exp)| exp.saturating_add(LEEWAY_SECS) >= now);
    dequeue(s, expired.into_iter().map(|(jti, _)| jti).collect()).await?;
    for chunk in live.chunks(MAX_NOTICE_JTIS) {
        let notice = RevocationNotice {
            revoked: chunk
                .iter()
                .map(|(jti, exp)| NoticeEntry {
                    jti: jti.clone(),
                    exp: *exp,
                })
                .collect(),
        };
        let body = serde_json::to_vec(&notice).map_err(|e| e.to_string())?;
        let _: serde_json::Value = s.caller.post(&s.url, REVOKED_PATH, body).await?;
        s.metrics.roles.revocation_notice(true);
        dequeue(s, chunk.iter().map(|(jti, _)| jti.clone()).collect()).await?;
    }
    Ok(())
}

async fn dequeue(s: &NoticeSender, jtis: Vec<String>) -> Result<(), String> {
    if jtis.is_empty() {
        return Ok(());
    }
    let store = s.store.clone();
    on_blocking_pool("trim revocation outbox", move || {
        store.dequeue_revocations(&jtis)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())
}
