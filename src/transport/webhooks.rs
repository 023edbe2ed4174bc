//! Webhook delivery: takes ready deliveries from the presence core's
//! [`Outbox`], POSTs each to its receiver signed with the subscription's
//! secret, and reports how it went. At most `webhooks.max_concurrency`
//! requests are in flight (and `max_concurrency_per_receiver` to one
//! receiver: the outbox's lanes keep that share); each has
//! `webhooks.timeout_ms`; redirects are not followed (a 3xx is a failure).
//!
//! `Presence-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
//! t + "." + body)>`, Stripe's shape; `t` is the attempt's time, so a retry
//! is signed afresh over the same body.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use sha2::Sha256;
use tokio::sync::Semaphore;

use crate::presence::webhooks::{Attempt, Outbox, ReadyDelivery};

/// The signature header.
pub const SIGNATURE_HEADER: &str = "Presence-Signature";
/// The event id header (also in the body).
pub const EVENT_ID_HEADER: &str = "Presence-Event-Id";
/// Longest wait between two looks at the outbox when nothing wakes it.
const IDLE_LOOK: Duration = Duration::from_secs(1);

/// `t=<unix>,v1=<hex>` for `body` signed at `unix_secs`.
pub fn signature(secret: &[u8], unix_secs: u64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(unix_secs.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={unix_secs},v1={hex}")
}

/// Starts delivery on the outbox's runtime.
pub fn start(outbox: Arc<Outbox>) -> Result<(), String> {
    let config = outbox.config().clone();
    let client = reqwest::Client::builder()
        .timeout(config.timeout())
        .connect_timeout(config.timeout().min(Duration::from_secs(5)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!(
            "presence-server/",
            env!("CARGO_PKG_VERSION"),
            " webhooks"
        ))
        .build()
        .map_err(|e| format!("webhook HTTP client: {e}"))?;
    let permits = Arc::new(Semaphore::new(config.max_concurrency));
    let runtime = outbox.runtime().clone();
    runtime.clone().spawn(async move {
        loop {
            let free = permits.available_permits();
            for (lane, seq) in outbox.ready(free) {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let (outbox, client) = (outbox.clone(), client.clone());
                runtime.spawn(async move {
                    if let Some(ready) = outbox.prepare(lane, seq).await {
                        let attempt = post(&client, &ready, outbox.now_ms() / 1000).await;
                        outbox.record(ready, attempt).await;
                    }
                    drop(permit);
                });
            }
            let wait = outbox
                .next_ready_in()
                .map_or(IDLE_LOOK, |d| d.min(IDLE_LOOK));
            tokio::select! {
                () = outbox.woken() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    });
    Ok(())
}

/// One attempt.
async fn post(client: &reqwest::Client, ready: &ReadyDelivery, unix_secs: u64) -> Attempt {
    let d = &ready.delivery;
    let signed = signature(
        ready.receiver.secret.expose_secret().as_bytes(),
        unix_secs,
        &d.body,
    );
    let sent = client
        .post(&d.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signed)
        .header(EVENT_ID_HEADER, &d.event_id)
        .body(d.body.clone())
        .send()
        .await;
    match sent {
        Ok(response) if response.status().is_success() => Attempt::Delivered,
        Ok(response) => Attempt::Failed {
            reason: "status",
            error: format!("HTTP {}", response.status().as_u16()),
        },
        Err(e) if e.is_timeout() => Attempt::Failed {
            reason: "timeout",
            error: "timed out".to_owned(),
        },
        Err(e) => Attempt::Failed {
            reason: "connect",
            error: error_chain(&e),
        },
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_over_t_dot_body() {
        // Python: hmac.new(b"whsec_test_secret_1", b"1700000000.{}", sha256).hexdigest()
        let signed = signature(b"whsec_test_secret_1", 1_700_000_000, "{}");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"whsec_test_secret_1").expect("key");
        mac.update(b"1700000000.{}");
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(signed, format!("t=1700000000,v1={hex}"));
        assert_ne!(
            signed,
            signature(b"whsec_test_secret_1", 1_700_000_000, "{ }")
        );
        assert_ne!(
            signed,
            signature(b"whsec_test_secret_2", 1_700_000_000, "{}")
        );
        assert_ne!(
            signed,
            signature(b"whsec_test_secret_1", 1_700_000_001, "{}")
        );
    }
}
