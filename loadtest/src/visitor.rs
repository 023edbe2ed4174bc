//! The visitor scenario: one real WebSocket per goose user, to its home
//! node, hello, then answer every invoke, send presence now and then, and
//! sometimes navigate (close and reconnect at once, as a page change
//! does). With `--reconnect`, a socket that closes or fails is opened
//! again on the next node with backoff, as the visitor script does.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use goose::prelude::*;
use rand::Rng;
use serde_json::{json, Value};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::backoff::Retry;
use crate::options::{self, Options};
use crate::report::{lock, Stats};

type Socket = WebSocketStream<TcpStream>;

static CONTEXT: OnceLock<(Arc<Options>, Arc<Stats>)> = OnceLock::new();
static NEXT_VISITOR: AtomicUsize = AtomicUsize::new(0);
static NEXT_SOURCE: AtomicUsize = AtomicUsize::new(0);

/// How long one `serve` transaction listens before goose gets control
/// back, at most: each transaction costs goose a metrics record, and
/// 100,000 idle visitors on 1 s slices spent most of a core on them.
const SERVE_SLICE: Duration = Duration::from_secs(15);

/// One visitor's slice: 1 s when it may navigate (a chance per second),
/// else up to the presence interval, capped at [`SERVE_SLICE`].
fn serve_slice(options: &Options) -> Duration {
    if options.navigate_prob > 0.0 {
        return Duration::from_secs(1);
    }
    match options.presence_every_secs {
        0 => SERVE_SLICE,
        secs => Duration::from_secs(secs).min(SERVE_SLICE),
    }
}

pub fn configure(options: Arc<Options>, stats: Arc<Stats>) {
    let _ = CONTEXT.set((options, stats));
}

fn context() -> &'static (Arc<Options>, Arc<Stats>) {
    // Set in main before the attack starts.
    CONTEXT
        .get()
        .expect("visitor::configure runs before the attack")
}

pub fn scenario(visitors: usize) -> Result<Scenario, GooseError> {
    Ok(scenario!("visitor")
        .set_weight(visitors)?
        .register_transaction(transaction!(connect).set_on_start().set_name("connect"))
        .register_transaction(transaction!(serve).set_name("serve")))
}

/// A visitor's socket and id, kept in the goose user's session data.
#[derive(Clone)]
struct Visitor {
    id: String,
    socket: Arc<Mutex<Option<Socket>>>,
    next_presence: Arc<Mutex<Instant>>,
    retry: Arc<Mutex<Retry>>,
    /// The last round of large updates this visitor sent.
    large_rounds: Arc<AtomicUsize>,
}

/// Rounds of `--large-update-bytes` asked for (one per SIGUSR1), and the
/// wake-up of every visitor listening when one is.
static LARGE_UPDATE_ROUND: AtomicUsize = AtomicUsize::new(0);
static LARGE_UPDATE: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Starts a round of large updates: each visitor sends one.
pub fn ask_for_large_updates() {
    LARGE_UPDATE_ROUND.fetch_add(1, Ordering::SeqCst);
    LARGE_UPDATE.notify_waiters();
}

/// Sends this visitor's large update if a round is due.
async fn large_update_if_due(
    socket: &mut Socket,
    visitor: &Visitor,
    options: &Options,
    stats: &Stats,
) {
    let round = LARGE_UPDATE_ROUND.load(Ordering::SeqCst);
    if options.large_update_bytes == 0
        || visitor.large_rounds.swap(round, Ordering::SeqCst) >= round
    {
        return;
    }
    let update = json!({"type": "presence",
                        "data": {"blob": "x".repeat(options.large_update_bytes)}});
    match socket.send(Message::text(update.to_string())).await {
        Ok(()) => Stats::count(&stats.large_updates),
        Err(e) => stats.error(format!("large update: {e}")),
    }
}

fn ws_config() -> WebSocketConfig {
    // Small buffers: thousands of sockets per process.
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(4 * 1024)
        .max_write_buffer_size(64 * 1024)
}

/// Opens a socket to the node at `base` from the next source address and
/// says hello.
async fn open(options: &Options, base: &str, id: &str) -> Result<Socket, String> {
    let url = options::socket_url(base, "/visitor/ws");
    let parsed = url::Url::parse(&url).map_err(|e| e.to_string())?;
    let host = parsed.host_str().ok_or("no host")?.to_owned();
    let port = parsed.port_or_known_default().ok_or("no port")?;
    let remote: SocketAddr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("host did not resolve")?;
    let sources = &options.source_addrs;
    let source: IpAddr = sources[NEXT_SOURCE.fetch_add(1, Ordering::Relaxed) % sources.len()];
    let tcp = if remote.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| e.to_string())?;
    tcp.bind(SocketAddr::new(source, 0))
        .map_err(|e| format!("bind {source}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let stream = tcp.connect(remote).await.map_err(|e| e.to_string())?;
    let (mut socket, _) =
        tokio_tungstenite::client_async_with_config(url.as_str(), stream, Some(ws_config()))
            .await
            .map_err(|e| e.to_string())?;
    let hello = json!({"type": "hello", "groupid": options.group, "visitorid": id,
                       "data": {"url": "https://shop.example/loadtest", "title": "load test"}});
    socket
        .send(Message::text(hello.to_string()))
        .await
        .map_err(|e| e.to_string())?;
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => {
                let frame: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
                return match frame["type"].as_str() {
                    Some("welcome") => Ok(socket),
                    _ => Err(format!("hello refused: {frame}")),
                };
            }
            Some(Ok(Message::Close(close))) => return Err(format!("closed on hello: {close:?}")),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("closed on hello".into()),
        }
    }
}

async fn connect(user: &mut GooseUser) -> TransactionResult {
    let (options, stats) = context();
    let n = NEXT_VISITOR.fetch_add(1, Ordering::Relaxed);
    let id = format!("lt-{}-{n}", options.shard);
    let home = options.home_node(options.shard, n);
    let started = Instant::now();
    let opened = open(options, options.nodes()[home], &id).await;
    let ok = opened.is_ok();
    user.record_custom_request_duration(
        "WS",
        "connect",
        started.elapsed(),
        ok,
        None,
        opened.as_ref().err().map(String::as_str),
    )
    .await?;
    let mut retry = Retry::new(home);
    let socket = match opened {
        Ok(socket) => {
            Stats::count(&stats.connects);
            stats.socket_opened();
            stats.first_connect(&id);
            Some(socket)
        }
        Err(e) => {
            Stats::count(&stats.connect_failures);
            if options.reconnect {
                retry.move_on(options.nodes().len());
            } else {
                stats.error(format!("connect: {e}"));
            }
            None
        }
    };
    let first_presence = Instant::now() + jitter(options.presence_every_secs);
    user.set_session_data(Visitor {
        id,
        socket: Arc::new(Mutex::new(socket)),
        next_presence: Arc::new(Mutex::new(first_presence)),
        retry: Arc::new(Mutex::new(retry)),
        large_rounds: Arc::new(AtomicUsize::new(LARGE_UPDATE_ROUND.load(Ordering::SeqCst))),
    });
    Ok(())
}

/// A socket that closed or failed: with `--reconnect` a drop, retried on
/// the next node; otherwise an error.
async fn lost_socket(visitor: &Visitor, what: String) {
    let (options, stats) = context();
    stats.socket_dropped();
    if options.reconnect {
        Stats::count(&stats.drops);
        visitor.retry.lock().await.move_on(options.nodes().len());
    } else {
        stats.error(what);
    }
}

/// With `--reconnect`, an attempt to open the socket again once it is due.
async fn reconnect(
    user: &mut GooseUser,
    visitor: &Visitor,
    guard: &mut Option<Socket>,
) -> TransactionResult {
    let (options, stats) = context();
    let mut retry = visitor.retry.lock().await;
    if !options.reconnect || Instant::now() < retry.at {
        let wait = retry.at.saturating_duration_since(Instant::now());
        drop(retry);
        // The connection failed for good, or is not due yet: idle rather
        // than spin.
        tokio::time::sleep(wait.clamp(Duration::from_millis(20), Duration::from_secs(1))).await;
        return Ok(());
    }
    let started = Instant::now();
    let opened = open(options, options.nodes()[retry.node], &visitor.id).await;
    let ok = opened.is_ok();
    match opened {
        Ok(socket) => {
            *guard = Some(socket);
            retry.succeeded();
            Stats::count(&stats.connects);
            Stats::count(&stats.reconnects);
            stats.socket_opened();
        }
        Err(e) => {
            Stats::count(&stats.reconnect_attempts_failed);
            // The cause without what varies per attempt (ports, ids).
            let cause: String = e.chars().take(60).collect();
            *lock(&stats.retry_causes).entry(cause).or_default() += 1;
            retry.move_on(options.nodes().len());
        }
    }
    drop(retry);
    user.record_custom_request_duration("WS", "reconnect", started.elapsed(), ok, None, None)
        .await?;
    Ok(())
}

fn jitter(every_secs: u64) -> Duration {
    if every_secs == 0 {
        return Duration::from_secs(365 * 24 * 3600);
    }
    Duration::from_millis(rand::rng().random_range(0..every_secs * 1000))
}

/// Listens for one slice: answers invokes, sends presence when due, and
/// maybe navigates.
async fn serve(user: &mut GooseUser) -> TransactionResult {
    let (options, stats) = context();
    let Some(visitor) = user.get_session_data::<Visitor>().cloned() else {
        return Ok(());
    };
    let mut guard = visitor.socket.lock().await;
    if guard.is_none() {
        return reconnect(user, &visitor, &mut guard).await;
    }
    let Some(socket) = guard.as_mut() else {
        return Ok(());
    };
    let slice_end = tokio::time::Instant::now() + serve_slice(options);
    let mut served = Vec::new();
    loop {
        // Listening before the round is checked: a round started between
        // the check and the select still wakes this visitor.
        let round_started = LARGE_UPDATE.notified();
        tokio::pin!(round_started);
        round_started.as_mut().enable();
        large_update_if_due(socket, &visitor, options, stats).await;
        let polled = tokio::select! {
            polled = tokio::time::timeout_at(slice_end, socket.next()) => Some(polled),
            _ = &mut round_started, if options.large_update_bytes > 0 => None,
        };
        let Some(polled) = polled else {
            continue;
        };
        let frame = match polled {
            Err(_) => break,
            Ok(Some(Ok(Message::Text(text)))) => text,
            Ok(Some(Ok(Message::Close(close)))) => {
                *guard = None;
                lost_socket(&visitor, format!("visitor closed by server: {close:?}")).await;
                return Ok(());
            }
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(e))) => {
                *guard = None;
                lost_socket(&visitor, format!("visitor socket: {e}")).await;
                return Ok(());
            }
            Ok(None) => {
                *guard = None;
                lost_socket(&visitor, "visitor socket ended".to_owned()).await;
                return Ok(());
            }
        };
        let Ok(frame) = serde_json::from_str::<Value>(&frame) else {
            continue;
        };
        if frame["type"] == "invoke" {
            let started = Instant::now();
            if let Some(tag) = frame["args"]["n"].as_str() {
                stats.served_once(tag);
            }
            if options.think_ms > 0 {
                tokio::time::sleep(Duration::from_millis(options.think_ms)).await;
            }
            let result = json!({"type": "result", "id": frame["id"], "ok": true,
                                "value": {"echo": frame["func"]}});
            if let Err(e) = socket.send(Message::text(result.to_string())).await {
                // With --reconnect the next read sees the drop; the agent
                // gets a clean error from the server.
                if !options.reconnect {
                    stats.error(format!("visitor send: {e}"));
                }
            }
            Stats::count(&stats.invokes_served);
            served.push(started.elapsed());
        }
    }
    {
        let mut due = visitor.next_presence.lock().await;
        if Instant::now() >= *due {
            let update =
                json!({"type": "presence", "data": {"scroll": rand::rng().random_range(0..100)}});
            let _ = socket.send(Message::text(update.to_string())).await;
            *due = Instant::now() + Duration::from_secs(options.presence_every_secs.max(1));
        }
    }
    let navigate =
        options.navigate_prob > 0.0 && rand::rng().random_bool(options.navigate_prob.min(1.0));
    if navigate {
        let _ = socket.close(None).await;
        stats.socket_dropped();
        Stats::count(&stats.navigations);
        let started = Instant::now();
        let node = visitor.retry.lock().await.node;
        let reopened = open(options, options.nodes()[node], &visitor.id).await;
        let error = reopened.as_ref().err().cloned();
        *guard = reopened.ok();
        if let Some(e) = &error {
            Stats::count(&stats.connect_failures);
            if options.reconnect {
                visitor.retry.lock().await.move_on(options.nodes().len());
            } else {
                stats.error(format!("reconnect: {e}"));
            }
        } else {
            visitor.retry.lock().await.succeeded();
            Stats::count(&stats.connects);
            stats.socket_opened();
        }
        drop(guard);
        user.record_custom_request_duration(
            "WS",
            "reconnect",
            started.elapsed(),
            error.is_none(),
            None,
            error.as_deref(),
        )
        .await?;
    } else {
        drop(guard);
    }
    for elapsed in served {
        user.record_custom_request_duration(
            "WS",
            "invoke (visitor service)",
            elapsed,
            true,
            None,
            None,
        )
        .await?;
    }
    Ok(())
}
