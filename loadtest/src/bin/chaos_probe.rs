//! The chaos run's bookkeeper (`loadtest/chaos.sh`): it makes acknowledged
//! changes through the load balancer while faults happen, journals each one
//! only once the server has answered it, and later checks every journaled
//! change on every live node directly.
//!
//! - `work`: confirmation grants (a probe visitor confirms an agent) and
//!   revocations (a fresh token revokes itself), alternately, at a fixed
//!   rate. A change whose answer never came, or came as a clean error, is
//!   not journaled: the checks neither demand nor forbid it.
//! - `check`: every journaled grant is `confirmed` and every journaled
//!   revoked token gets 401, on each node. Exits 1 naming what was lost.
//! - `forwarded`: through the balancer, from chosen source addresses, the
//!   audit log records the client's address (not the balancer's) and the
//!   per-client lockout counts each client apart.
#![forbid(unsafe_code)]

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const GROUP: u64 = 72;
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Parser)]
#[command(about = "acknowledged changes through a balancer, checked on every node")]
struct Options {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make grants and revocations through `--url` for `--secs` seconds.
    Work {
        #[arg(long)]
        url: String,
        #[arg(long)]
        journal: PathBuf,
        #[arg(long, default_value_t = 20)]
        secs: u64,
        /// Changes per second (grants and revocations alternate).
        #[arg(long, default_value_t = 4.0)]
        rate: f64,
    },
    /// Check every journaled change on each of `--nodes`.
    Check {
        #[arg(long, value_delimiter = ',')]
        nodes: Vec<String>,
        #[arg(long)]
        journal: PathBuf,
    },
    /// Check that the nodes see the client's address through `--url`.
    Forwarded {
        #[arg(long)]
        url: String,
        /// The balancer's own address (which must never be recorded).
        #[arg(long)]
        balancer: IpAddr,
        /// Two client addresses to send from.
        #[arg(long, value_delimiter = ',')]
        clients: Vec<IpAddr>,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let outcome = match Options::parse().command {
        Command::Work {
            url,
            journal,
            secs,
            rate,
        } => work(&url, &journal, Duration::from_secs(secs), rate).await,
        Command::Check { nodes, journal } => check(&nodes, &journal).await,
        Command::Forwarded {
            url,
            balancer,
            clients,
        } => forwarded(&url, balancer, &clients).await,
    };
    match outcome {
        Ok(summary) => {
            println!("{summary}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("chaos_probe: FAILED: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

fn client(source: Option<IpAddr>) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(CALL_TIMEOUT)
        .local_address(source)
        .build()
        .map_err(|e| e.to_string())
}

/// One call; `Err` when no answer came, else the status and JSON body.
async fn call(
    http: &reqwest::Client,
    url: String,
    body: Option<Value>,
    bearer: Option<&str>,
) -> Result<(u16, Value), String> {
    let mut request = match &body {
        Some(body) => http
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_string()),
        None => http.get(url),
    };
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await.map_err(|e| e.to_string())?;
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

async fn agent_token(http: &reqwest::Client, url: &str) -> Result<String, String> {
    let body = json!({"groupid": GROUP, "duration": 3600,
        "credentials": {"username": "fred.demo", "password": "fred-demo-pass"}});
    let (status, answer) = call(http, format!("{url}/auth/token"), Some(body), None).await?;
    answer["token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("token: {status} {answer}"))
}

fn claim(token: &str, name: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims[name].as_str().map(str::to_owned)
}

/// A probe visitor confirms the agent; the journal entry once the visitor
/// was told the confirmation is settled.
async fn grant(http: &reqwest::Client, url: &str, agent: &str, id: &str) -> Result<Value, String> {
    let ws = format!("{}/visitor/ws", url.replacen("http", "ws", 1));
    let (mut socket, _) = tokio_tungstenite::connect_async(ws)
        .await
        .map_err(|e| e.to_string())?;
    let hello =
        json!({"type": "hello", "groupid": GROUP, "visitorid": id, "data": {"url": "/chaos"}});
    socket
        .send(Message::text(hello.to_string()))
        .await
        .map_err(|e| e.to_string())?;
    next_frame(&mut socket, "welcome").await?;
    let path = format!("{url}/presence/{GROUP}/visitors/{id}/confirm");
    let (status, started) = call(http, path, Some(json!({})), Some(agent)).await?;
    let (Some(cid), Some(answer)) = (started["confirmation"].as_str(), started["answer"].as_str())
    else {
        return Err(format!("confirm: {status} {started}"));
    };
    next_frame(&mut socket, "confirm").await?;
    let reply = json!({"type": "confirm_answer", "id": cid, "choice": answer});
    socket
        .send(Message::text(reply.to_string()))
        .await
        .map_err(|e| e.to_string())?;
    let closed = next_frame(&mut socket, "confirm_closed").await?;
    let _ = socket.close(None).await;
    if closed["status"] != "confirmed" {
        return Err(format!("confirm_closed: {closed}"));
    }
    Ok(json!({"kind": "grant", "visitor": id, "cid": cid}))
}

async fn next_frame<S>(socket: &mut S, kind: &str) -> Result<Value, String>
where
    S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let wait = async {
        while let Some(message) = socket.next().await {
            match message.map_err(|e| e.to_string())? {
                Message::Text(text) => {
                    let frame: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    match frame["type"].as_str() {
                        Some(t) if t == kind => return Ok(frame),
                        Some("error") => return Err(format!("error frame {frame}")),
                        _ => {}
                    }
                }
                Message::Close(close) => return Err(format!("closed: {close:?}")),
                _ => {}
            }
        }
        Err("socket ended".to_owned())
    };
    tokio::time::timeout(CALL_TIMEOUT, wait)
        .await
        .map_err(|_| format!("no {kind} frame"))?
}

/// A fresh token revokes itself; the entry once `/auth/revoke` said so.
async fn revocation(http: &reqwest::Client, url: &str) -> Result<Value, String> {
    let token = agent_token(http, url).await?;
    let jti = claim(&token, "jti").ok_or("token without jti")?;
    let path = format!("{url}/auth/revoke");
    let (status, answer) = call(http, path, Some(json!({"jti": jti})), Some(&token)).await?;
    if status != 200 || answer["revoked"] != jti.as_str() {
        return Err(format!("revoke: {status} {answer}"));
    }
    Ok(json!({"kind": "revoked", "token": token}))
}

async fn work(url: &str, journal: &PathBuf, secs: Duration, rate: f64) -> Result<Value, String> {
    let http = client(None)?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(journal)
        .map_err(|e| format!("{}: {e}", journal.display()))?;
    let period = Duration::from_secs_f64(1.0 / rate.max(0.01));
    let end = Instant::now() + secs;
    let mut agent = None;
    let (mut grants, mut revocations, mut unacknowledged) = (0u64, 0u64, 0u64);
    let mut errors = std::collections::BTreeMap::<String, u64>::new();
    let mut tick = tokio::time::interval(period);
    for n in 0u64.. {
        tick.tick().await;
        if Instant::now() >= end {
            break;
        }
        let done = if n % 2 == 0 {
            if agent.is_none() {
                agent = agent_token(&http, url).await.ok();
            }
            match &agent {
                Some(token) => {
                    let id = format!("chaos-{}-{n}", std::process::id());
                    grant(&http, url, token, &id).await
                }
                None => Err("no agent token".to_owned()),
            }
        } else {
            revocation(&http, url).await
        };
        match done {
            Ok(entry) => {
                writeln!(file, "{entry}")
                    .and_then(|()| file.flush())
                    .map_err(|e| e.to_string())?;
                if entry["kind"] == "grant" {
                    grants += 1;
                } else {
                    revocations += 1;
                }
            }
            Err(e) => {
                unacknowledged += 1;
                let head: String = e.chars().take(60).collect();
                *errors.entry(head).or_default() += 1;
            }
        }
    }
    Ok(json!({"grants": grants, "revocations": revocations,
              "unacknowledged": unacknowledged, "errors": errors}))
}

async fn check(nodes: &[String], journal: &PathBuf) -> Result<Value, String> {
    let http = client(None)?;
    let text = std::fs::read_to_string(journal).map_err(|e| e.to_string())?;
    let entries: Vec<Value> = text
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let agent = agent_token(&http, &nodes[0]).await?;
    let (mut grants, mut revocations) = (0u64, 0u64);
    let mut lost = Vec::new();
    for node in nodes {
        for entry in &entries {
            if entry["kind"] == "grant" {
                let (visitor, cid) = (entry["visitor"].as_str(), entry["cid"].as_str());
                let path = format!(
                    "{node}/presence/{GROUP}/visitors/{}/confirm/{}",
                    visitor.unwrap_or_default(),
                    cid.unwrap_or_default()
                );
                let (status, body) = call(&http, path, None, Some(&agent)).await?;
                grants += 1;
                if status != 200 || body["status"] != "confirmed" {
                    lost.push(format!("{node}: grant {entry}: {status} {body}"));
                }
            } else {
                let token = entry["token"].as_str().unwrap_or_default();
                let path = format!("{node}/presence/{GROUP}/visitors/chaos-nobody");
                let (status, body) = call(&http, path, None, Some(token)).await?;
                revocations += 1;
                if status != 401 {
                    lost.push(format!("{node}: revoked token accepted: {status} {body}"));
                }
            }
        }
    }
    if !lost.is_empty() {
        return Err(format!("{} lost:\n{}", lost.len(), lost.join("\n")));
    }
    Ok(json!({"grants_checked": grants, "revocations_checked": revocations, "lost": 0}))
}

async fn forwarded(url: &str, balancer: IpAddr, clients: &[IpAddr]) -> Result<Value, String> {
    let [first, second] = clients else {
        return Err("--clients takes two addresses".into());
    };
    // 1. A sign-in from `first` is audited with `first` as its remote.
    let from_first = client(Some(*first))?;
    let token = agent_token(&from_first, url).await?;
    let jti = claim(&token, "jti").ok_or("token without jti")?;
    let admin_body = json!({"groupid": GROUP, "duration": 600,
        "credentials": {"username": "ada.admin", "password": "ada-admin-pass"}});
    let (_, admin) = call(
        &from_first,
        format!("{url}/auth/token"),
        Some(admin_body),
        None,
    )
    .await?;
    let admin = admin["token"].as_str().ok_or("admin token")?.to_owned();
    let path = format!("{url}/admin/{GROUP}/audit?username=fred.demo&limit=1000");
    let (status, audit) = call(&from_first, path, None, Some(&admin)).await?;
    let record = audit["records"]
        .as_array()
        .and_then(|records| records.iter().find(|r| r["jti"] == jti.as_str()))
        .ok_or_else(|| format!("no audit record of the sign-in: {status}"))?;
    let remote = record["remote"].as_str().unwrap_or_default();
    if remote.parse::<IpAddr>().ok() != Some(*first) {
        return Err(format!(
            "audit remote {remote:?}, expected {first} (balancer {balancer})"
        ));
    }
    // 2. Failed sign-ins from `first` lock out `first` only.
    let bad = |user: String| json!({"groupid": GROUP, "credentials": {"username": user, "password": "wrong"}});
    let mut locked_after = None;
    for attempt in 1..=40 {
        let body = bad(format!("chaos-nobody-{attempt}"));
        let (status, _) = call(&from_first, format!("{url}/auth/token"), Some(body), None).await?;
        if status == 429 {
            locked_after = Some(attempt);
            break;
        }
    }
    let locked_after = locked_after.ok_or("40 failures from one client were never locked out")?;
    let from_second = client(Some(*second))?;
    let body = bad("chaos-nobody-0".to_owned());
    let (status, _) = call(&from_second, format!("{url}/auth/token"), Some(body), None).await?;
    if status != 401 {
        return Err(format!(
            "another client got {status} after {first} was locked out"
        ));
    }
    Ok(
        json!({"audit_remote": remote, "client_locked_out_after": locked_after,
              "other_client": status}),
    )
}
