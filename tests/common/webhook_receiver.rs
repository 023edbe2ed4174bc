//! A real HTTP receiver for webhook tests, on 127.0.0.1:0: it records every
//! request (headers, body) and answers as scripted: 200, another status,
//! or never (it holds the connection until the sender gives up).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use super::WAIT;

/// How the receiver answers one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Status(u16),
    /// No answer: the connection is held open.
    Stall,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Lower-case names.
    pub headers: HashMap<String, String>,
    pub body: String,
    pub answer: Answer,
}

impl Recorded {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("JSON body")
    }

    pub fn delivered(&self) -> bool {
        self.answer == Answer::Status(200)
    }
}

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<Recorded>>,
    script: Mutex<VecDeque<Answer>>,
    default: Mutex<Option<Answer>>,
    changed: Notify,
    /// Requests received and not yet answered (or given up), now and at
    /// most.
    in_flight: AtomicUsize,
    peak: AtomicUsize,
}

pub struct Receiver {
    pub url: String,
    shared: Arc<Shared>,
}

impl Receiver {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let shared = Arc::new(Shared::default());
        let serving = shared.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, serving.clone()));
            }
        });
        Self { url, shared }
    }

    /// The next answers, in order; after them, the default (200).
    pub fn script(&self, answers: &[Answer]) {
        self.shared.script.lock().unwrap().extend(answers);
    }

    /// The answer once the script is used up.
    pub fn answer_by_default(&self, answer: Answer) {
        *self.shared.default.lock().unwrap() = Some(answer);
    }

    /// The most requests that were open at once.
    pub fn peak_in_flight(&self) -> usize {
        self.shared.peak.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Waits (at most [`WAIT`]) until `done` holds for the requests so far.
    pub async fn wait_for(&self, what: &str, done: impl Fn(&[Recorded]) -> bool) -> Vec<Recorded> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let notified = self.shared.changed.notified();
            let seen = self.requests();
            if done(&seen) {
                return seen;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("receiver: timed out waiting for {what}; saw {seen:#?}");
            }
        }
    }
}

async fn serve(mut stream: TcpStream, shared: Arc<Shared>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head_end, length) = loop {
        let Ok(n) = stream.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let length = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0usize);
            break (end + 4, length);
        }
    };
    while buf.len() < head_end + length {
        let Ok(n) = stream.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).to_string();
    let answer = shared
        .script
        .lock()
        .unwrap()
        .pop_front()
        .or(*shared.default.lock().unwrap())
        .unwrap_or(Answer::Status(200));
    let open = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    shared.peak.fetch_max(open, Ordering::SeqCst);
    shared.requests.lock().unwrap().push(Recorded {
        headers,
        body,
        answer,
    });
    shared.changed.notify_waiters();
    match answer {
        Answer::Status(code) => {
            let reply =
                format!("HTTP/1.1 {code} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = stream.write_all(reply.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
        Answer::Stall => {
            // Until the sender gives up and closes.
            let _ = tokio::time::timeout(WAIT, stream.read(&mut chunk)).await;
        }
    }
    shared.in_flight.fetch_sub(1, Ordering::SeqCst);
}

/// Verifies `Presence-Signature` over `body` as a receiver would: the
/// HMAC-SHA256 of `t + "." + body` under `secret`, and `t` within
/// `tolerance_secs` of now.
pub fn verify(secret: &str, header: &str, body: &str, tolerance_secs: u64) -> bool {
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = value.parse::<u64>().ok(),
            Some(("v1", value)) => v1.push(value.to_owned()),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    if now.abs_diff(t) > tolerance_secs {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(format!("{t}.{body}").as_bytes());
    let expected = mac.finalize().into_bytes();
    v1.iter().any(|hex| {
        hex.len() == 64
            && (0..32)
                .all(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok() == Some(expected[i]))
    })
}
