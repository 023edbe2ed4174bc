//! HTTP and WebSocket calls the run makes, with their credentials: login
//! keys, customer-signed SSO tokens and visitor sockets.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::server::{API_KEY, ORIGIN, SSO_AUDIENCE, SSO_ISSUER};

/// The group every call is for.
pub const GROUP: u64 = 72;
/// How errors that the server did answer begin (an error frame, a body
/// that is not JSON), as against a call that got no answer.
pub const ANSWERED_WRONG: &str = "answered wrong: ";
/// How long one call may take before it counts as unanswered.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// One server's address and the credentials to reach it.
pub struct Ctx {
    pub url: String,
    http: reqwest::Client,
    sso_key: jsonwebtoken::EncodingKey,
}

/// An answered HTTP call.
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Ctx {
    pub fn new(url: String, sso_pem: Vec<u8>) -> Result<Self, String> {
        let sso_key =
            jsonwebtoken::EncodingKey::from_rsa_pem(&sso_pem).map_err(|e| e.to_string())?;
        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self { url, http, sso_key })
    }

    /// A call: `Err` when no answer came (the server died mid-call).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        bearer: Option<&str>,
    ) -> Result<Reply, String> {
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|e| e.to_string())?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .map_err(|e| format!("{ANSWERED_WRONG}{status}: not JSON: {e}"))?
        };
        Ok(Reply { status, body })
    }

    pub async fn post(
        &self,
        path: &str,
        body: &Value,
        bearer: Option<&str>,
    ) -> Result<Reply, String> {
        self.call(reqwest::Method::POST, path, Some(body), bearer)
            .await
    }

    pub async fn get(&self, path: &str, bearer: Option<&str>) -> Result<Reply, String> {
        self.call(reqwest::Method::GET, path, None, bearer).await
    }

    /// `POST /auth/token` with a partner login key for `puid`.
    pub async fn token_by_login_key(&self, puid: &str) -> Result<Reply, String> {
        let key = login_key(puid, 3600);
        let body = json!({"groupid": GROUP, "duration": 3600,
            "credentials": {"partnerid": GROUP, "partneruserid": puid, "loginkey": key}});
        self.post("/auth/token", &body, None).await
    }

    /// A fresh administrator token (for audit reads).
    pub async fn admin_token(&self) -> Result<String, String> {
        let reply = self.token_by_login_key("ada").await?;
        token_of(&reply).ok_or_else(|| format!("admin token: {} {}", reply.status, reply.body))
    }

    /// A customer-signed SSO token with id `jti`.
    pub fn sso_jwt(&self, jti: &str) -> Result<String, String> {
        let now = now_secs();
        let claims = json!({"iss": SSO_ISSUER, "aud": SSO_AUDIENCE, "sub": "sso.agent@crash.test",
            "iat": now, "exp": now + 1800, "jti": jti});
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &self.sso_key,
        )
        .map_err(|e| e.to_string())
    }

    /// Opens a visitor socket and says hello; `Ok` once welcomed.
    pub async fn visitor(&self, id: &str, tickets: &[String]) -> Result<Visitor, String> {
        let ws_url = format!(
            "{}/visitor/ws?groupid={GROUP}",
            self.url.replacen("http", "ws", 1)
        );
        let mut request = ws_url.into_client_request().map_err(|e| e.to_string())?;
        request
            .headers_mut()
            .insert("origin", ORIGIN.parse().map_err(|_| "origin header")?);
        let (socket, _) =
            tokio::time::timeout(CALL_TIMEOUT, tokio_tungstenite::connect_async(request))
                .await
                .map_err(|_| "visitor connect timed out".to_string())?
                .map_err(|e| e.to_string())?;
        let mut visitor = Visitor { socket };
        visitor
            .send(json!({"type": "hello", "groupid": GROUP, "visitorid": id,
                "data": {"url": "/crash"}, "tickets": tickets}))
            .await?;
        visitor.expect("welcome").await?;
        Ok(visitor)
    }
}

/// The `token` of a 200 reply from `/auth/token`.
pub fn token_of(reply: &Reply) -> Option<String> {
    (reply.status == 200)
        .then(|| reply.body["token"].as_str().map(str::to_owned))
        .flatten()
}

/// The `kid` header and `jti` claim of an agent token.
pub fn kid_and_jti(token: &str) -> Option<(String, String)> {
    let mut parts = token.split('.');
    let decode = |part: Option<&str>| -> Option<Value> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part?)
            .ok()?;
        serde_json::from_slice(&bytes).ok()
    };
    let header = decode(parts.next())?;
    let claims = decode(parts.next())?;
    Some((
        header["kid"].as_str()?.to_owned(),
        claims["jti"].as_str()?.to_owned(),
    ))
}

/// A Glance login key for `puid` of the group, valid `ttl` seconds.
fn login_key(puid: &str, ttl: u64) -> String {
    let exp = now_secs() + ttl;
    let mut mac = Hmac::<Sha256>::new_from_slice(API_KEY.as_bytes()).expect("any key length");
    mac.update(format!("{GROUP}{puid}1{exp}").as_bytes());
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("$1${exp}${}", &sig[..43])
}

/// A visitor's socket.
pub struct Visitor {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Visitor {
    pub async fn send(&mut self, frame: Value) -> Result<(), String> {
        self.socket
            .send(Message::text(frame.to_string()))
            .await
            .map_err(|e| e.to_string())
    }

    /// The next frame of type `kind` (others are skipped); an error frame
    /// or a close fails.
    pub async fn expect(&mut self, kind: &str) -> Result<Value, String> {
        let wait = async {
            loop {
                match self.socket.next().await {
                    Some(Ok(Message::Text(text))) => {
                        let frame: Value =
                            serde_json::from_str(&text).map_err(|e| e.to_string())?;
                        match frame["type"].as_str() {
                            Some(t) if t == kind => return Ok(frame),
                            Some("error") => {
                                return Err(format!("{ANSWERED_WRONG}error frame {frame}"))
                            }
                            _ => {}
                        }
                    }
                    Some(Ok(Message::Close(close))) => return Err(format!("closed: {close:?}")),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e.to_string()),
                    None => return Err("closed".into()),
                }
            }
        };
        tokio::time::timeout(CALL_TIMEOUT, wait)
            .await
            .map_err(|_| format!("no {kind} frame within {CALL_TIMEOUT:?}"))?
    }
}
