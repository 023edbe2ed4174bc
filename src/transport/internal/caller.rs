//! The client side of the internal calls: a signed `POST` with a deadline,
//! over http or https (rustls, the platform's trust store, so a private CA
//! installed on the host is trusted).

use std::time::Duration;

use crate::infra::clock::SharedClock;
use crate::infra::internal_auth::{self, NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};

/// Deadline of one internal call, connection included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Signs and sends internal calls; one connection pool for all of them.
#[derive(Clone)]
pub struct SignedCaller {
    client: reqwest::Client,
    secret: std::sync::Arc<[u8]>,
    clock: SharedClock,
}

impl SignedCaller {
    pub fn new(secret: &[u8], clock: SharedClock) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .connect_timeout(Duration::from_secs(2))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("internal HTTP client: {e}"))?;
        Ok(Self {
            client,
            secret: secret.into(),
            clock,
        })
    }

    /// `POST {base}{path}` with `body`, signed now; the answer's JSON on a
    /// 2xx, else why not.
    pub async fn post<T: serde::de::DeserializeOwned>(
        &self,
        base: &str,
        path: &str,
        body: Vec<u8>,
    ) -> Result<T, String> {
        let url = format!("{}{path}", base.trim_end_matches('/'));
        let signed = internal_auth::sign(&self.secret, "POST", path, &body, self.clock.now_ms());
        let response = self
            .client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, signed.timestamp)
            .header(NONCE_HEADER, signed.nonce)
            .header(SIGNATURE_HEADER, signed.signature)
            .body(body)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| format!("{url}: {e}"))?;
        if !status.is_success() {
            let shown: String = text.chars().take(300).collect();
            return Err(format!("{url}: {status}: {shown}"));
        }
        serde_json::from_str(&text).map_err(|e| format!("{url}: unreadable answer: {e}"))
    }
}
