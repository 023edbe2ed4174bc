//! Split-role helpers: configs of auth and presence nodes that find each
//! other on fixed loopback ports (each internal URL must be known before
//! its node starts), and signed internal calls.

use presence_server::config::{Config, ServerRole};
use secrecy::SecretString;
use serde_json::Value;

use super::cluster::free_port;
use super::{TestServer, WAIT};

/// The internal secret of every test pair.
pub const INTERNAL_SECRET: &str = "internal-secret-of-the-test-pair-0123456789";

/// Two loopback internal listeners: the auth node's and the presence node's.
pub struct InternalPorts {
    pub auth: u16,
    pub presence: u16,
}

impl InternalPorts {
    pub fn new() -> Self {
        Self {
            auth: free_port(),
            presence: free_port(),
        }
    }

    pub fn auth_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.auth)
    }

    pub fn presence_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.presence)
    }
}

/// Makes `config` an auth node on `port`, sending revocations to
/// `presence_urls` (none in cluster mode).
pub fn auth_role(config: &mut Config, port: u16, presence_urls: &[String]) {
    config.server.role = ServerRole::Auth;
    config.server.internal_bind = format!("127.0.0.1:{port}");
    config.server.internal_secret = SecretString::from(INTERNAL_SECRET.to_owned());
    config.server.presence_internal_urls = presence_urls.to_vec();
    config.server.console_url = "http://console.test".into();
}

/// Makes `config` a presence node on `port`, handing keys to `auth_urls`.
pub fn presence_role(config: &mut Config, port: u16, auth_urls: &[String]) {
    config.server.role = ServerRole::Presence;
    config.server.internal_bind = format!("127.0.0.1:{port}");
    config.server.internal_secret = SecretString::from(INTERNAL_SECRET.to_owned());
    config.server.auth_internal_urls = auth_urls.to_vec();
    config.server.auth_url = "http://auth.test".into();
}

/// A signed `POST` to an internal listener at `base`, with `headers`
/// (from `presence_server::internal_auth::sign`, or forged).
pub async fn internal_post(
    base: &str,
    path: &str,
    headers: &presence_server::internal_auth::SignedHeaders,
    body: &[u8],
) -> (u16, Value) {
    use presence_server::internal_auth::{NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
    let client = super::http_client();
    let mut resp = client
        .post(format!("{base}{path}"))
        .insert_header((TIMESTAMP_HEADER, headers.timestamp.as_str()))
        .insert_header((NONCE_HEADER, headers.nonce.as_str()))
        .insert_header((SIGNATURE_HEADER, headers.signature.as_str()))
        .insert_header(("content-type", "application/json"))
        .send_body(body.to_vec())
        .await
        .expect("response");
    let status = resp.status().as_u16();
    let bytes = resp.body().limit(1 << 20).await.expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// A password token of `user` in group 72 from the auth node, answered
/// with its status and body.
pub async fn password_token(auth: &TestServer, user: &str) -> (u16, Value) {
    auth.post(
        "/auth/token",
        None,
        None,
        &serde_json::json!({"groupid":72,"credentials":{"username":user,"password":super::PASSWORD}}),
    )
    .await
}

/// The `kid` a token names.
pub fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .expect("header")
        .kid
        .expect("kid")
}

/// Waits until the auth node issues tokens, and returns one of `user`'s.
pub async fn first_token(auth: &TestServer, user: &str) -> String {
    super::cluster::eventually(WAIT, "the auth node to receive a key", || async {
        let (status, body) = password_token(auth, user).await;
        (status == 200).then(|| body["token"].as_str().expect("token").to_owned())
    })
    .await
}
