//! Cluster harness: a real `redis-server` on a free loopback port with its
//! own temporary directory (append-only file, `appendfsync always`), and
//! several nodes of the real server sharing it, each with its own data
//! directory and port.
//!
//! `redis-server` must be installed (`.ci/run` installs it); without it
//! these tests fail loudly, never pass silently.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use presence_server::config::{ClusterMode, Config};
use secrecy::SecretString;
use serde_json::Value;
use tempfile::TempDir;

use super::{TestServer, WAIT};

/// A `redis-server` of its own.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    pub dir: TempDir,
}

impl RedisServer {
    /// Starts on a free port and waits until it answers `PING`.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let mut redis = Self {
            child: None,
            port,
            dir,
        };
        redis.spawn();
        redis
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .arg("--dir")
            .arg(self.dir.path())
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .args(["--daemonize", "no", "--protected-mode", "yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): cluster tests need it installed \
                     (apt-get install redis-server; .ci/run does this)"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        while !self.answers() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING"
            );
            std::thread::yield_now();
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Whether it answers `PING` now.
    pub fn answers(&self) -> bool {
        self.command(&["PING"])
            .is_some_and(|r| r.starts_with("+PONG"))
    }

    /// Sends one command (inline protocol); the raw reply.
    pub fn command(&self, args: &[&str]) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        stream.write_all(request.as_bytes()).ok()?;
        let mut buf = [0u8; 65536];
        let n = stream.read(&mut buf).ok()?;
        (n > 0).then(|| String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// Stops it answering (SIGSTOP): a Redis that hangs.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused Redis go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let status = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status()
                .expect("kill");
            assert!(status.success());
        }
    }

    /// Kills it (SIGKILL) and waits for it to go.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port; `empty` removes its data first
    /// (a Redis that comes back with nothing).
    pub fn restart(&mut self, empty: bool) {
        self.kill();
        if empty {
            for entry in std::fs::read_dir(self.dir.path()).expect("redis dir") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    std::fs::remove_dir_all(&path).expect("remove");
                } else {
                    std::fs::remove_file(&path).expect("remove");
                }
            }
        }
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A free loopback port (for Redis, which cannot report a port 0 bind).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Makes `config` a node of the cluster on `redis`.
pub fn join(config: &mut Config, redis_url: &str, lease_ms: u64) {
    config.cluster.mode = ClusterMode::Redis;
    config.cluster.redis_url = SecretString::from(redis_url.to_owned());
    config.cluster.node_lease_ms = lease_ms;
    config.cluster.redis_timeout_ms = TEST_REDIS_TIMEOUT_MS;
}

/// The default lease of test nodes: short, so deaths are seen quickly.
pub const TEST_LEASE_MS: u64 = 3_000;
/// The Redis command deadline of test nodes: generous, so a loaded CI
/// machine does not turn slow answers into 503s.
pub const TEST_REDIS_TIMEOUT_MS: u64 = 1_500;

/// Redis and `n` in-process nodes on it.
pub struct Cluster {
    pub redis: RedisServer,
    pub nodes: Vec<TestServer>,
}

impl Cluster {
    pub async fn start(n: usize) -> Self {
        Self::start_with(n, |_, _| {}).await
    }

    /// Starts `n` nodes, each with the base config tuned by `tune(index,
    /// config)`, and waits until every node counts all of them.
    pub async fn start_with(n: usize, tune: impl Fn(usize, &mut Config)) -> Self {
        let redis = RedisServer::start();
        let url = redis.url();
        let mut nodes = Vec::new();
        for i in 0..n {
            nodes.push(
                TestServer::start_with(|config| {
                    join(config, &url, TEST_LEASE_MS);
                    tune(i, config);
                })
                .await,
            );
        }
        let cluster = Self { redis, nodes };
        for node in &cluster.nodes {
            wait_for_nodes(node, n).await;
        }
        cluster
    }

    pub fn node(&self, i: usize) -> &TestServer {
        &self.nodes[i]
    }
}

/// The lookup document of `visitor` in group 72, as `node` answers it
/// (with a token that node mints).
pub async fn lookup(node: &TestServer, visitor: &str) -> Value {
    let token = node.token("fred.demo", 72);
    let (status, body) = node
        .get(
            &format!("/presence/72/visitors/{visitor}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// `GET /healthz` of `node`.
pub async fn health(node: &TestServer) -> (u16, Value) {
    node.get("/healthz", None, None).await
}

/// Waits until `node` reports `n` live nodes with status ok.
pub async fn wait_for_nodes(node: &TestServer, n: usize) {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = health(node).await;
        if status == 200 && body["nodes"] == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node never counted {n} nodes: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `probe` until it returns `Some`, failing after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A node of the real binary in a process of its own (for SIGKILL and
/// SIGTERM), on port 0, its address read from its log.
pub struct ProcessNode {
    pub child: Child,
    pub addr: SocketAddr,
    pub dir: Arc<TempDir>,
    pub log: PathBuf,
}

impl ProcessNode {
    /// Starts `presence-server serve` with `config_toml` (whose data_dir
    /// and bind this sets) and `env` overrides, and waits for its
    /// "listening" line.
    pub fn start(config_toml: &str, env: &[(&str, String)]) -> Self {
        Self::start_as(config_toml, &[], env)
    }

    /// [`ProcessNode::start`] with more `serve` arguments (`--role auth`).
    pub fn start_as(config_toml: &str, args: &[&str], env: &[(&str, String)]) -> Self {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        let config_path = dir.path().join("config.toml");
        std::fs::write(&config_path, config_toml).expect("write config");
        let log = dir.path().join("server.log");
        let out = std::fs::File::create(&log).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_presence-server"))
            .args(["serve", "--config"])
            .arg(&config_path)
            .args(args)
            .env("PRESENCE__SERVER__BIND", "127.0.0.1:0")
            .env("PRESENCE__SERVER__METRICS_BIND", "")
            .env(
                "PRESENCE__SERVER__DATA_DIR",
                dir.path().join("data").display().to_string(),
            )
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("start presence-server");
        let deadline = Instant::now() + WAIT;
        let addr = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(addr) = listening_addr(&text) {
                break addr;
            }
            assert!(
                Instant::now() < deadline,
                "node did not start; its log:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Self {
            child,
            addr,
            dir,
            log,
        }
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.send_term();
        self.wait()
    }

    /// SIGSTOP: the process stalls (as in a long pause of its VM), its
    /// sockets stay open.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`ProcessNode::freeze`].
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal}");
    }

    /// SIGTERM, without waiting.
    pub fn send_term(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// Waits for the process to exit.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().expect("wait")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A client of this node with the usual helpers (those that need the
    /// server in-process, like minting tokens, are not available).
    pub fn client(&self) -> TestServer {
        TestServer {
            server: None,
            addr: self.addr,
            dir: self.dir.clone(),
            http: super::http_client(),
            spread: None,
        }
    }
}

/// The base config as a cluster node on `redis_url`, as TOML.
pub fn node_toml(redis_url: &str, lease_ms: u64) -> String {
    let mut toml = super::config_toml(std::path::Path::new("unused"));
    toml.push_str(&format!(
        "\n[cluster]\nmode = \"redis\"\nredis_url = \"{redis_url}\"\nnode_lease_ms = {lease_ms}\nredis_timeout_ms = {TEST_REDIS_TIMEOUT_MS}\n"
    ));
    toml
}

impl Drop for ProcessNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The address in the server's `listening` log line.
fn listening_addr(log: &str) -> Option<SocketAddr> {
    let line = log.lines().find(|l| l.contains("listening"))?;
    let start = line.find("addr=")? + "addr=".len();
    let rest = &line[start..];
    let end = rest.find(' ').unwrap_or(rest.len());
    rest[..end].trim_matches('"').parse().ok()
}
