//! The agent scenario: a token once per token lifetime (password or login
//! key), then invokes to random online visitors at this agent's share of
//! the total rate, with a lookup and a signal every tenth tick. Over REST
//! (to a random node other than the visitor's home, or to its home with
//! `--same-node`), or over one agent socket with `--agent-socket`. Every
//! invoke carries a unique tag in `args.n`, so that a visitor can tell an
//! invoke run twice.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use goose::prelude::*;
use rand::Rng;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::options::{self, Options};
use crate::report::{lock, Stats};

type AgentSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

static CONTEXT: OnceLock<(Arc<Options>, Arc<Stats>)> = OnceLock::new();
static NEXT_INVOKE: AtomicU64 = AtomicU64::new(0);

/// A tag no other invoke of this run carries: this process and a count.
fn invoke_tag() -> String {
    let n = NEXT_INVOKE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}-{n}", std::process::id())
}

/// The base URL of the node an agent request about `visitorid` goes to.
fn node_for(options: &Options, visitorid: &str) -> String {
    let nodes = options.nodes();
    let index = match options::parse_visitor(visitorid) {
        Some((shard, n)) => options.agent_node(shard, n, &mut rand::rng()),
        None => rand::rng().random_range(0..nodes.len()),
    };
    nodes[index].trim_end_matches('/').to_owned()
}

/// The agent token this process's agents share, and when to renew it: one
/// sign-in per token lifetime, as a console does, rather than one per
/// simulated agent (which the account lockout would rightly refuse).
static TOKEN: Mutex<Option<(String, Instant)>> = Mutex::const_new(None);

pub fn configure(options: Arc<Options>, stats: Arc<Stats>) {
    let _ = CONTEXT.set((options, stats));
}

fn context() -> &'static (Arc<Options>, Arc<Stats>) {
    // Set in main before the attack starts.
    CONTEXT
        .get()
        .expect("agent::configure runs before the attack")
}

pub fn scenario(agents: usize, options: &Options) -> Result<Scenario, GooseError> {
    let name = if options.agent_socket {
        "agent (socket)"
    } else {
        "agent (REST)"
    };
    Ok(scenario!(name)
        .set_weight(agents)?
        .register_transaction(transaction!(sign_in).set_on_start().set_name("token"))
        .register_transaction(transaction!(tick).set_name("tick")))
}

#[derive(Clone)]
struct Agent {
    next_tick: Arc<Mutex<tokio::time::Instant>>,
    ticks: Arc<std::sync::atomic::AtomicU64>,
    socket: Arc<Mutex<Option<AgentSocket>>>,
}

async fn fetch_token(user: &mut GooseUser) -> Result<(String, Instant), String> {
    let (options, _) = context();
    let credentials = match &options.api_key {
        Some(key) => json!({"partnerid": options.group, "partneruserid": options.partner_user_id,
                            "loginkey": crate::login_key::login_key(key, options.group, &options.partner_user_id, 600)}),
        None => json!({"username": options.username, "password": options.password}),
    };
    let body = json!({"groupid": options.group, "duration": options.token_secs, "credentials": credentials});
    let response = user
        .post_json("/auth/token", &body)
        .await
        .map_err(|e| e.to_string())?;
    let response = response.response.map_err(|e| e.to_string())?;
    let status = response.status();
    let answer: Value = response.json().await.map_err(|e| e.to_string())?;
    let token = answer["token"]
        .as_str()
        .ok_or_else(|| format!("token refused ({status}): {answer}"))?;
    // Renew a minute before the end.
    let renew_at =
        Instant::now() + Duration::from_secs(options.token_secs.saturating_sub(60).max(1));
    Ok((token.to_owned(), renew_at))
}

/// The shared token, fetched when there is none or it is due for renewal.
/// A failure is counted once per attempt; the agent skips its tick.
async fn shared_token(user: &mut GooseUser) -> Option<String> {
    let (_, stats) = context();
    let mut shared = TOKEN.lock().await;
    if let Some((token, renew_at)) = shared.as_ref() {
        if Instant::now() < *renew_at {
            return Some(token.clone());
        }
    }
    match fetch_token(user).await {
        Ok(fresh) => {
            let token = fresh.0.clone();
            *shared = Some(fresh);
            Some(token)
        }
        Err(e) => {
            stats.error(format!("token: {e}"));
            None
        }
    }
}

async fn open_agent_socket(options: &Options, token: &str) -> Result<AgentSocket, String> {
    let nodes = options.nodes();
    let node = nodes[rand::rng().random_range(0..nodes.len())];
    let (mut socket, _) = tokio_tungstenite::connect_async(options::socket_url(node, "/agent/ws"))
        .await
        .map_err(|e| e.to_string())?;
    socket
        .send(Message::text(
            json!({"type": "auth", "token": token}).to_string(),
        ))
        .await
        .map_err(|e| e.to_string())?;
    match socket.next().await {
        Some(Ok(Message::Text(text))) if text.contains("\"ready\"") => Ok(socket),
        other => Err(format!("agent auth failed: {other:?}")),
    }
}

async fn sign_in(user: &mut GooseUser) -> TransactionResult {
    let (options, stats) = context();
    let token = shared_token(user).await.unwrap_or_default();
    let wants_socket = options.agent_socket || options.idle_agent_sockets > 0;
    let socket = if wants_socket && !token.is_empty() {
        match open_agent_socket(options, &token).await {
            Ok(socket) => {
                Stats::count(&stats.agent_sockets);
                Some(socket)
            }
            Err(e) => {
                stats.error(format!("agent socket: {e}"));
                None
            }
        }
    } else {
        None
    };
    // Pooled connections are dropped before a node's keep-alive (5 s)
    // could close one under a request being sent on it.
    user.set_client_builder(
        reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_idle_timeout(Duration::from_secs(2)),
    )
    .await?;
    user.set_session_data(Agent {
        next_tick: Arc::new(Mutex::new(tokio::time::Instant::now())),
        ticks: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        socket: Arc::new(Mutex::new(socket)),
    });
    Ok(())
}

/// A visitor to act on: from the configured shards, or one welcomed here.
fn pick_visitor(options: &Options, stats: &Stats) -> Option<String> {
    let mut rng = rand::rng();
    match options.target_shards {
        Some(shards) if shards > 0 && options.target_per_shard > 0 => Some(format!(
            "lt-{}-{}",
            rng.random_range(0..shards),
            rng.random_range(0..options.target_per_shard)
        )),
        _ => {
            let online = lock(&stats.online);
            (!online.is_empty()).then(|| online[rng.random_range(0..online.len())].clone())
        }
    }
}

async fn tick(user: &mut GooseUser) -> TransactionResult {
    let (options, stats) = context();
    let Some(agent) = user.get_session_data::<Agent>().cloned() else {
        return Ok(());
    };
    if options.invoke_rate <= 0.0 {
        hold_idle_socket(&agent, stats).await;
        return Ok(());
    }
    {
        // Fixed pacing per agent; after a stall, start again from now
        // rather than bursting to catch up.
        let mut next = agent.next_tick.lock().await;
        tokio::time::sleep_until(*next).await;
        let now = tokio::time::Instant::now();
        *next = (*next + options.agent_period()).max(now);
    }
    let Some(token) = shared_token(user).await else {
        return Ok(());
    };
    let Some(visitorid) = pick_visitor(options, stats) else {
        return Ok(());
    };
    let n = agent
        .ticks
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if options.agent_socket {
        socket_invoke(&agent, &visitorid, n, stats).await;
    } else {
        rest_invoke(user, &token, &visitorid, stats).await?;
        if n % 10 == 9 {
            rest_side_requests(user, &token, options.group, &visitorid, stats).await?;
        }
    }
    Ok(())
}

/// An idle agent (`--idle-agent-sockets`): reads its socket for a while,
/// so pings are answered, and notes a socket the server closed.
async fn hold_idle_socket(agent: &Agent, stats: &Stats) {
    let mut guard = agent.socket.lock().await;
    let Some(socket) = guard.as_mut() else {
        drop(guard);
        tokio::time::sleep(Duration::from_secs(1)).await;
        return;
    };
    let until = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        match tokio::time::timeout_at(until, socket.next()).await {
            Err(_) => return,
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_))) | Ok(None) => {
                *guard = None;
                stats.agent_socket_closed();
                stats.error("agent socket closed while idle".to_owned());
                return;
            }
        }
    }
}

async fn rest_invoke(
    user: &mut GooseUser,
    token: &str,
    visitorid: &str,
    stats: &Stats,
) -> TransactionResult {
    let (options, _) = context();
    let path = format!("/presence/{}/visitors/{visitorid}/invoke", options.group);
    let url = format!("{}{path}", node_for(options, visitorid));
    let body = json!({"func": "showTerms", "args": {"n": invoke_tag()}});
    Stats::count(&stats.invokes_sent);
    let started = Instant::now();
    let builder = user
        .get_request_builder(&GooseMethod::Post, &url)?
        .bearer_auth(token)
        .json(&body);
    let request = GooseRequest::builder()
        .method(GooseMethod::Post)
        .path(path.as_str())
        .name("invoke")
        .set_request_builder(builder)
        .build();
    let response = user.request(request).await?.response;
    classify_invoke(response, started, stats).await;
    Ok(())
}

async fn classify_invoke(
    response: Result<reqwest::Response, reqwest::Error>,
    started: Instant,
    stats: &Stats,
) {
    let response = match response {
        Ok(response) => response,
        Err(e) => {
            Stats::count(&stats.lost);
            let what = transport_error(&e);
            eprintln!(
                "loadtest: invoke lost after {} ms at {:?}: {what}",
                started.elapsed().as_millis(),
                std::time::SystemTime::now()
            );
            stats.error(what);
            return;
        }
    };
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    stats.round_trip(started.elapsed());
    note_if_late(started, stats);
    match (status, body["ok"].as_bool()) {
        (200, Some(true)) => Stats::count(&stats.invokes_ok),
        (200, Some(false)) => Stats::count(&stats.invokes_failed_in_page),
        _ => stats.error(format!(
            "invoke:{status} {}",
            body["error"].as_str().unwrap_or("(no JSON error)")
        )),
    }
}

/// Names a failed request by what failed (timeout, connect, request or
/// body) and its innermost cause, without the URL, so that the summary
/// groups them.
fn transport_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() {
        "body"
    } else if e.is_request() {
        "request"
    } else {
        "other"
    };
    let mut cause = None;
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        cause = Some(inner.to_string());
        source = inner.source();
    }
    let cause = cause.unwrap_or_else(|| e.to_string());
    format!("transport:{kind}: {cause}")
}

/// Counts an answer that came later than the server's invoke deadline
/// plus a second: the server promised to answer (or fail) by then.
fn note_if_late(started: Instant, stats: &Stats) {
    let (options, _) = context();
    if started.elapsed() > Duration::from_millis(options.invoke_deadline_ms + 1000) {
        Stats::count(&stats.late);
    }
}

async fn rest_side_requests(
    user: &mut GooseUser,
    token: &str,
    group: u64,
    visitorid: &str,
    stats: &Stats,
) -> TransactionResult {
    let (options, _) = context();
    let node = node_for(options, visitorid);
    let path = format!("/presence/{group}/visitors/{visitorid}");
    let builder = user
        .get_request_builder(&GooseMethod::Get, &format!("{node}{path}"))?
        .bearer_auth(token);
    let request = GooseRequest::builder()
        .method(GooseMethod::Get)
        .path(path.as_str())
        .name("lookup")
        .set_request_builder(builder)
        .build();
    Stats::count(&stats.lookups);
    if let Ok(response) = user.request(request).await?.response {
        if response.status().as_u16() != 200 {
            stats.error(format!("lookup:{}", response.status().as_u16()));
        }
    }
    let path = format!("/presence/{group}/visitors/{visitorid}/signal");
    let builder = user
        .get_request_builder(&GooseMethod::Post, &format!("{node}{path}"))?
        .bearer_auth(token)
        .json(&json!({"data": {"hint": "load test"}}));
    let request = GooseRequest::builder()
        .method(GooseMethod::Post)
        .path(path.as_str())
        .name("signal")
        .set_request_builder(builder)
        .build();
    Stats::count(&stats.signals);
    if let Ok(response) = user.request(request).await?.response {
        let status = response.status().as_u16();
        // 404 when the visitor is not online is a clean answer.
        if status != 202 && status != 404 {
            stats.error(format!("signal:{status}"));
        }
    }
    Ok(())
}

async fn socket_invoke(agent: &Agent, visitorid: &str, n: u64, stats: &Stats) {
    let mut guard = agent.socket.lock().await;
    let Some(socket) = guard.as_mut() else {
        return;
    };
    let id = format!("i{n}");
    let frame = json!({"type": "invoke", "id": id, "visitorid": visitorid, "func": "showTerms", "args": {"n": invoke_tag()}});
    Stats::count(&stats.invokes_sent);
    let started = Instant::now();
    if let Err(e) = socket.send(Message::text(frame.to_string())).await {
        Stats::count(&stats.lost);
        stats.error(format!("agent socket send: {e}"));
        *guard = None;
        stats.agent_socket_closed();
        return;
    }
    let answer = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(message) = socket.next().await {
            if let Ok(Message::Text(text)) = message {
                let frame: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                if frame["id"] == id.as_str() {
                    return Some(frame);
                }
            } else if message.is_err() {
                return None;
            }
        }
        None
    })
    .await;
    match answer {
        Ok(Some(frame)) => {
            stats.round_trip(started.elapsed());
            note_if_late(started, stats);
            match (frame["type"].as_str(), frame["ok"].as_bool()) {
                (Some("result"), Some(true)) => Stats::count(&stats.invokes_ok),
                (Some("result"), Some(false)) => Stats::count(&stats.invokes_failed_in_page),
                _ => stats.error(format!(
                    "invoke:{}",
                    frame["code"].as_str().unwrap_or("unknown")
                )),
            }
        }
        _ => {
            Stats::count(&stats.lost);
            stats.error("agent socket: no answer");
            *guard = None;
            stats.agent_socket_closed();
        }
    }
}
