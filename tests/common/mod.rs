//! Test harness: starts the real server on 127.0.0.1:0 with a temporary
//! data directory, and speaks real HTTP and WebSocket to it.
//!
//! Every wait here is for an event (a frame, a response, a close), bounded
//! by [`WAIT`] only so that a broken server fails the test instead of
//! hanging it. Nothing sleeps to synchronise.

#![allow(dead_code)]

pub mod cluster;
pub mod confirm;
pub mod raw_ws;
pub mod reload;
pub mod roles;
pub mod spread;
pub mod tools;
pub mod webhook_receiver;

use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix_codec::Framed;
use awc::ws::{CloseCode, Codec, Frame, Message};
use awc::BoxedSocket;
use futures_util::{SinkExt, StreamExt};
use presence_server::clock::{ManualClock, SharedClock, SystemClock};
use presence_server::config::{Config, Role};
use presence_server::RunningServer;
use serde_json::{json, Value};
use tempfile::TempDir;

/// Upper bound on any single wait; generous so slow CI never flakes.
pub const WAIT: Duration = Duration::from_secs(20);

/// The HTTP client every test helper uses. It drops a pooled connection
/// after 2 s idle, well before the server's 5 s keep-alive closes it: a
/// request written into a connection the server closes at that instant
/// fails with `Connect(Disconnected)`, and tests that wait about 5 s on
/// something else hit that race.
pub fn http_client() -> awc::Client {
    awc::Client::builder()
        .connector(awc::Connector::new().conn_keep_alive(Duration::from_secs(2)))
        .timeout(WAIT)
        .finish()
}

/// The password of every test user.
pub const PASSWORD: &str = "test-pass-123";
/// An origin group 72 allows.
pub const ORIGIN_72: &str = "http://allowed.test";
/// An origin only group 73 allows.
pub const ORIGIN_73: &str = "https://other.test:8443";
/// Login-key secrets of groups 72, 73 and 74.
pub const API_KEY_72: &str = "api-key-of-group-72";
pub const API_KEY_73: &str = "api-key-of-group-73";
pub const API_KEY_74: &str = "api-key-of-group-74";
/// Visitor identity secrets and issuers of groups 72 and 73.
pub const IDENTITY_SECRET_72: &str = "identity-secret-of-group-72-0123456789";
pub const IDENTITY_SECRET_73: &str = "identity-secret-of-group-73-0123456789";
pub const IDENTITY_ISSUER_72: &str = "shop-72.example";
pub const IDENTITY_ISSUER_73: &str = "shop-73.example";

fn password_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| presence_server::password::hash_password(PASSWORD).expect("hash"))
}

/// The base test config: group 72 (Presence: fred.demo, ada.admin, multi),
/// group 73 (Presence, another origin: olga, multi) and group 74 (no
/// Presence: nick). `multi` belongs to 72 and 73.
pub fn config(data_dir: &std::path::Path) -> Config {
    Config::from_toml_str(&config_toml(data_dir)).expect("test config")
}

/// The base test config as TOML (for nodes started as processes).
pub fn config_toml(data_dir: &std::path::Path) -> String {
    let hash = password_hash();
    format!(
        r#"
[server]
bind = "127.0.0.1:0"
metrics_bind = "127.0.0.1:0"
data_dir = "{dir}"
workers = 2
shutdown_timeout_secs = 5

[presence]
hello_timeout_ms = 10000
ping_interval_ms = 10000
client_timeout_ms = 30000
reconnect_grace_ms = 10000

[[groups]]
id = 72
name = "demo"
presence = true
api_key = "{API_KEY_72}"
visitor_identity_secret = "{IDENTITY_SECRET_72}"
visitor_identity_issuer = "{IDENTITY_ISSUER_72}"
origins = ["{ORIGIN_72}", "http://localhost:8080"]

[[groups.users]]
username = "fred.demo"
password_hash = "{hash}"
partner_user_id = "fred"
name = "Fred Agent"

[[groups.users]]
username = "ada.admin"
password_hash = "{hash}"
role = "administrator"

[[groups.users]]
username = "multi"
password_hash = "{hash}"
partner_user_id = "multi-72"

[[groups]]
id = 73
name = "other"
presence = true
api_key = "{API_KEY_73}"
visitor_identity_secret = "{IDENTITY_SECRET_73}"
visitor_identity_issuer = "{IDENTITY_ISSUER_73}"
origins = ["{ORIGIN_73}"]

[[groups.users]]
username = "olga"
password_hash = "{hash}"
partner_user_id = "olga"

[[groups.users]]
username = "multi"
password_hash = "{hash}"
partner_user_id = "multi-73"
role = "administrator"

[[groups]]
id = 74
name = "no-presence"
presence = false
api_key = "{API_KEY_74}"
origins = ["http://nopresence.test"]

[[groups.users]]
username = "nick"
password_hash = "{hash}"
partner_user_id = "nick"
"#,
        dir = data_dir.display()
    )
}

/// Raises the failed-attempt limits, for tests that fail on purpose many
/// times and are not about lockout.
pub fn without_lockout(config: &mut Config) {
    config.auth.lockout_failures = 1000;
    config.auth.lockout_client_failures = 100_000;
}

/// A running server and its data directory.
pub struct TestServer {
    pub server: Option<RunningServer>,
    pub addr: SocketAddr,
    pub dir: Arc<TempDir>,
    pub http: awc::Client,
    /// With `PRESENCE_TEST_CLUSTER=3`: the server is a 3-node cluster and
    /// visitor sockets, REST calls and agent sockets land on different
    /// nodes (see [`spread::Spread`]).
    pub spread: Option<Box<spread::Spread>>,
}

impl TestServer {
    /// Starts with the base config.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts with the base config adjusted by `tune`.
    pub async fn start_with(tune: impl FnOnce(&mut Config)) -> Self {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        Self::start_in(dir, tune, Arc::new(SystemClock)).await
    }

    /// Starts on an existing data directory (for restart tests).
    pub async fn start_in(
        dir: Arc<TempDir>,
        tune: impl FnOnce(&mut Config),
        clock: SharedClock,
    ) -> Self {
        if std::env::var_os("RUST_LOG").is_some() {
            presence_server::telemetry::init(presence_server::config::LogFormat::Text);
        }
        let mut config = config(dir.path());
        tune(&mut config);
        let spread = match spread::spread_requested(&config) {
            true => Some(Box::new(
                spread::Spread::start(&mut config, dir.path(), clock.clone()).await,
            )),
            false => None,
        };
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let server = presence_server::run_with_clock(config, listener, clock)
            .await
            .expect("server starts");
        let addr = server.local_addr();
        let http = http_client();
        let server = Self {
            server: Some(server),
            addr,
            dir,
            http,
            spread,
        };
        if let Some(spread) = &server.spread {
            spread.wait_until_joined(&server).await;
        }
        server
    }

    /// Starts from the config file at `path` (which a live reload reads
    /// again), on `dir`; never spread over a cluster.
    pub async fn start_from_file(dir: Arc<TempDir>, path: &std::path::Path) -> Self {
        if std::env::var_os("RUST_LOG").is_some() {
            presence_server::telemetry::init(presence_server::config::LogFormat::Text);
        }
        let config = Config::load(path).expect("config file loads");
        let source = presence_server::config::ConfigSource {
            path: path.to_owned(),
            role: None,
        };
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let server = presence_server::run_with_source(config, listener, source)
            .await
            .expect("server starts");
        Self {
            addr: server.local_addr(),
            server: Some(server),
            dir,
            http: http_client(),
            spread: None,
        }
    }

    /// What `probe` reads after a change made through a socket (a close, a
    /// presence update). On one node the first read already sees it;
    /// spread over a cluster, the change reaches the other nodes with its
    /// announcement (README, "Cluster mode": lookups and routing follow a
    /// change on another node once it arrives, and an event seen on one
    /// node may arrive before it on another), so this waits for it, within
    /// 5 s.
    pub async fn once_seen<T, F, Fut>(&self, what: &str, mut probe: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        match self.spread {
            Some(_) => cluster::eventually(Duration::from_secs(5), what, probe).await,
            None => probe()
                .await
                .unwrap_or_else(|| panic!("not seen at once: {what}")),
        }
    }

    /// Starts with a manual clock.
    pub async fn start_with_clock(clock: Arc<ManualClock>) -> Self {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        Self::start_in(dir, |_| {}, clock).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn running(&self) -> &RunningServer {
        self.server.as_ref().expect("server running")
    }

    /// Graceful shutdown.
    pub async fn shutdown(mut self) -> Arc<TempDir> {
        if let Some(server) = self.server.take() {
            server.shutdown().await.expect("clean shutdown");
        }
        if let Some(spread) = self.spread.take() {
            spread.shutdown().await;
        }
        self.dir.clone()
    }

    /// A token minted in-process (skips argon2; for tests about other things).
    pub fn token(&self, username: &str, group: u64) -> String {
        self.running()
            .tokens()
            .issue(username, group, Role::Agent, 3600)
            .expect("issue")
            .token
    }

    /// An administrator token minted in-process.
    pub fn admin_token(&self, username: &str, group: u64) -> String {
        self.running()
            .tokens()
            .issue(username, group, Role::Administrator, 3600)
            .expect("issue")
            .token
    }

    /// `POST` JSON with an optional bearer token and Origin.
    pub async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        origin: Option<&str>,
        body: &Value,
    ) -> (u16, Value) {
        let mut req = self.http.post(self.url(path));
        if let Some(token) = token {
            req = req.insert_header(("Authorization", format!("Bearer {token}")));
        }
        if let Some(origin) = origin {
            req = req.insert_header(("Origin", origin));
        }
        let mut resp = req.send_json(body).await.expect("response");
        let status = resp.status().as_u16();
        let bytes = resp.body().limit(1 << 20).await.expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// `DELETE` with a bearer token.
    pub async fn delete(&self, path: &str, token: &str) -> (u16, Value) {
        let mut resp = self
            .http
            .delete(self.url(path))
            .insert_header(("Authorization", format!("Bearer {token}")))
            .send()
            .await
            .expect("response");
        let status = resp.status().as_u16();
        let bytes = resp.body().limit(1 << 20).await.expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// `GET` with an optional bearer token and Origin; the raw response,
    /// for tests that read headers.
    pub async fn get_response(
        &self,
        path: &str,
        token: Option<&str>,
        origin: Option<&str>,
    ) -> awc::ClientResponse<actix_web::dev::Decompress<actix_http::Payload>> {
        let mut req = self.http.get(self.url(path));
        if let Some(token) = token {
            req = req.insert_header(("Authorization", format!("Bearer {token}")));
        }
        if let Some(origin) = origin {
            req = req.insert_header(("Origin", origin));
        }
        req.send().await.expect("response")
    }

    /// `GET` with an optional bearer token and Origin.
    pub async fn get(&self, path: &str, token: Option<&str>, origin: Option<&str>) -> (u16, Value) {
        let mut resp = self.get_response(path, token, origin).await;
        let status = resp.status().as_u16();
        let bytes = resp.body().limit(1 << 20).await.expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// The status of an unauthenticated `GET`.
    pub async fn status_of(&self, path: &str) -> u16 {
        self.get_response(path, None, None).await.status().as_u16()
    }

    /// The status of a `GET` with a bearer token.
    pub async fn status(&self, path: &str, token: &str) -> u16 {
        self.get_response(path, Some(token), None)
            .await
            .status()
            .as_u16()
    }

    /// Invokes over REST.
    pub async fn invoke(&self, token: &str, visitor: &str, body: Value) -> (u16, Value) {
        self.post(
            &format!("/presence/72/visitors/{visitor}/invoke"),
            Some(token),
            None,
            &body,
        )
        .await
    }

    /// Opens a socket at `path` (optionally with an Origin).
    pub async fn socket(
        &self,
        path: &str,
        origin: Option<&str>,
    ) -> Result<WsClient, awc::error::WsClientError> {
        let mut req = self
            .http
            .ws(format!("ws://{}{}", self.socket_addr(path), path))
            .max_frame_size(4 << 20);
        if let Some(origin) = origin {
            req = req.origin(origin);
        }
        let (_resp, framed) = req.connect().await?;
        Ok(WsClient { framed })
    }

    /// Where a socket at `path` connects: in a spread cluster, visitor
    /// sockets go to one node and agent sockets to another.
    pub fn socket_addr(&self, path: &str) -> SocketAddr {
        match &self.spread {
            Some(spread) => spread.addr_for(path).unwrap_or(self.addr),
            None => self.addr,
        }
    }

    /// A visitor socket that has said hello and been welcomed.
    pub async fn visitor(&self, id: &str, data: Value) -> WsClient {
        let mut ws = self.socket("/visitor/ws", None).await.expect("connect");
        ws.send(json!({"type": "hello", "groupid": 72, "visitorid": id, "data": data}))
            .await;
        let welcome = ws.recv().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        assert_eq!(welcome["visitorid"], id);
        ws
    }

    /// A visitor socket whose hello says `receipts: true`, welcomed.
    pub async fn receipts_visitor(&self, id: &str) -> WsClient {
        let mut ws = self.socket("/visitor/ws", None).await.expect("connect");
        ws.send(json!({"type": "hello", "groupid": 72, "visitorid": id, "receipts": true}))
            .await;
        let welcome = ws.recv().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        ws
    }

    /// A visitor socket whose hello presents confirmation `tickets`.
    pub async fn visitor_with_tickets(&self, id: &str, data: Value, tickets: &[&str]) -> WsClient {
        let mut ws = self.socket("/visitor/ws", None).await.expect("connect");
        ws.send(json!({"type": "hello", "groupid": 72, "visitorid": id, "data": data, "tickets": tickets}))
            .await;
        let welcome = ws.recv().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        ws
    }

    /// An agent socket that has authenticated.
    pub async fn agent(&self, token: &str) -> WsClient {
        let mut ws = self.socket("/agent/ws", None).await.expect("connect");
        ws.send(json!({"type": "auth", "token": token})).await;
        let ready = ws.recv().await;
        assert_eq!(ready["type"], "ready", "{ready}");
        ws
    }
}

/// A WebSocket test client.
pub struct WsClient {
    framed: Framed<BoxedSocket, Codec>,
}

/// How a socket ended.
#[derive(Debug, Default)]
pub struct Closed {
    /// Error frames received before the close.
    pub errors: Vec<Value>,
    pub code: Option<CloseCode>,
}

impl Closed {
    /// Takes in one frame of a socket read to its end: error frames are
    /// kept; true once the close frame (or the end of the stream) came.
    pub fn take(&mut self, frame: Option<Frame>) -> bool {
        match frame {
            Some(Frame::Text(bytes)) => {
                let v: Value = serde_json::from_slice(&bytes).expect("json frame");
                if v["type"] == "error" {
                    self.errors.push(v);
                }
                false
            }
            Some(Frame::Close(reason)) => {
                self.code = reason.map(|r| r.code);
                true
            }
            Some(_) => false,
            None => true,
        }
    }
}

impl WsClient {
    /// Wraps a socket connected some other way (another client, headers).
    pub fn from_framed(framed: Framed<BoxedSocket, Codec>) -> Self {
        Self { framed }
    }

    pub async fn send(&mut self, frame: Value) {
        self.send_text(&frame.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.framed
            .send(Message::Text(text.to_owned().into()))
            .await
            .expect("send");
    }

    pub async fn send_message(&mut self, message: Message) {
        self.framed.send(message).await.expect("send");
    }

    async fn next_frame(&mut self) -> Option<Frame> {
        tokio::time::timeout(WAIT, self.framed.next())
            .await
            .expect("timed out waiting for a frame")
            .map(|f| f.expect("frame"))
    }

    /// The next JSON text frame, answering pings on the way.
    pub async fn recv(&mut self) -> Value {
        let wait = async {
            loop {
                match self.framed.next().await.map(|f| f.expect("frame")) {
                    Some(Frame::Text(bytes)) => {
                        return serde_json::from_slice(&bytes).expect("json frame")
                    }
                    Some(Frame::Ping(p)) => self.framed.send(Message::Pong(p)).await.expect("pong"),
                    Some(Frame::Pong(_)) => {}
                    other => panic!("expected a text frame, got {other:?}"),
                }
            }
        };
        tokio::time::timeout(WAIT, wait)
            .await
            .expect("timed out waiting for a text frame")
    }

    /// Receives the next frame, which must be an invoke, answers it with
    /// `ok:true` and `value`, and returns the invoke.
    pub async fn answer(&mut self, value: Value) -> Value {
        let invoke = self.recv().await;
        assert_eq!(invoke["type"], "invoke", "{invoke}");
        self.send(json!({"type": "result", "id": invoke["id"], "ok": true, "value": value}))
            .await;
        invoke
    }

    /// Waits for the next ping and answers it.
    pub async fn next_ping(&mut self) {
        loop {
            match self.next_frame().await {
                Some(Frame::Ping(p)) => {
                    self.framed.send(Message::Pong(p)).await.expect("pong");
                    return;
                }
                Some(Frame::Pong(_)) => {}
                other => panic!("expected a ping, got {other:?}"),
            }
        }
    }

    /// Reads until the server closes, without answering pings; returns the
    /// error frames seen and the close code.
    pub async fn closed(&mut self) -> Closed {
        tokio::time::timeout(WAIT, self.closed_inner())
            .await
            .expect("timed out waiting for the close")
    }

    async fn closed_inner(&mut self) -> Closed {
        let mut closed = Closed::default();
        while !closed.take(self.next_frame().await) {}
        closed
    }

    /// Closes from the client side and waits for the server's answer.
    pub async fn close(mut self) {
        self.framed
            .send(Message::Close(Some(CloseCode::Normal.into())))
            .await
            .expect("send close");
        loop {
            match self.next_frame().await {
                Some(Frame::Close(_)) | None => return,
                Some(_) => {}
            }
        }
    }
}

impl WsClient {
    /// Closes from the client side and returns every text frame that came
    /// before the server's close.
    pub async fn close_collecting(mut self) -> Vec<Value> {
        self.framed
            .send(Message::Close(Some(CloseCode::Normal.into())))
            .await
            .expect("send close");
        let mut texts = Vec::new();
        loop {
            match self.next_frame().await {
                Some(Frame::Close(_)) | None => return texts,
                Some(Frame::Text(bytes)) => {
                    texts.push(serde_json::from_slice(&bytes).expect("json frame"))
                }
                Some(_) => {}
            }
        }
    }
}

/// Asserts that `closed` ended with `code` after an error frame `error`.
pub fn assert_closed(closed: &Closed, code: CloseCode, error: &str) {
    assert_eq!(closed.code, Some(code), "{closed:?}");
    assert!(
        closed.errors.iter().any(|e| e["code"] == error),
        "expected an error frame {error:?}, got {closed:?}"
    );
}

/// The value of the sample `name` (with its labels, as exported) in a
/// `/metrics` text; 0 if absent.
pub fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            (series == name).then(|| value.parse().expect("number"))
        })
        .unwrap_or(0.0)
}

/// The `/metrics` text of a server, checked to be OpenMetrics.
pub async fn scrape(server: &TestServer) -> String {
    let addr = server.running().metrics_addr().expect("metrics on");
    let mut resp = server
        .http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(resp.status().as_u16(), 200);
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let body = resp.body().await.expect("body");
    String::from_utf8(body.to_vec()).expect("utf-8")
}

/// A WebSocket upgrade request by `client` to `url` with extra `headers`,
/// read as a plain response (for refusals): the status, `Retry-After` and
/// the JSON body.
pub async fn upgrade_request(
    client: &awc::Client,
    url: &str,
    headers: &[(&str, &str)],
) -> (u16, Option<String>, Value) {
    let mut req = client
        .get(url)
        .insert_header(("connection", "Upgrade"))
        .insert_header(("upgrade", "websocket"))
        .insert_header(("sec-websocket-version", "13"))
        .insert_header(("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="));
    for (name, value) in headers {
        req = req.insert_header((*name, *value));
    }
    let mut resp = req.send().await.expect("response");
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    (resp.status().as_u16(), retry_after, body)
}
