//! What a run counts, and the summary printed at its end.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::options::Options;

/// Counters shared by every simulated user of this process.
pub struct Stats {
    pub connects: AtomicU64,
    pub connect_failures: AtomicU64,
    pub navigations: AtomicU64,
    pub invokes_served: AtomicU64,
    pub invokes_sent: AtomicU64,
    pub invokes_ok: AtomicU64,
    /// The page's function answered `ok:false` (a result, not an error).
    pub invokes_failed_in_page: AtomicU64,
    /// Requests that got no answer at all (transport error, client timeout).
    pub lost: AtomicU64,
    pub lookups: AtomicU64,
    pub signals: AtomicU64,
    /// Visitor sockets open and welcomed right now.
    pub connected: AtomicU64,
    /// With `--reconnect`: sockets the server closed or that failed, the
    /// reconnects that worked, and the attempts that did not (retried).
    pub drops: AtomicU64,
    pub reconnects: AtomicU64,
    pub reconnect_attempts_failed: AtomicU64,
    /// Invokes a visitor of this process ran a second time (each agent
    /// invoke carries a unique `args.n`; a visitor lives in one process).
    pub duplicates: AtomicU64,
    seen_invokes: Mutex<HashSet<String>>,
    /// Invokes answered later than the server's invoke deadline allows.
    pub late: AtomicU64,
    /// `--large-update-bytes` updates sent, and agent sockets open now.
    pub large_updates: AtomicU64,
    pub agent_sockets: AtomicU64,
    /// With `--reconnect`: why attempts to reconnect failed, by cause.
    pub retry_causes: Mutex<BTreeMap<String, u64>>,
    /// Clean error answers by code (status and JSON body).
    pub errors: Mutex<BTreeMap<String, u64>>,
    /// Agent-side invoke round trip, microseconds.
    pub round_trip_us: Mutex<Histogram<u64>>,
    /// First and last visitor connection of the ramp-up.
    ramp: Mutex<(Option<Instant>, Option<Instant>)>,
    /// For `--status-file` readers that add up the setup rate of several
    /// processes, as Unix milliseconds: the first visitor's first
    /// connection, and the latest socket opened (a first connection or a
    /// reconnect after a failed first attempt).
    ramp_wall_ms: Mutex<(Option<u64>, Option<u64>)>,
    /// Visitor ids welcomed by the server, for agents that pick locally.
    pub online: Mutex<Vec<String>>,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            connects: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            navigations: AtomicU64::new(0),
            invokes_served: AtomicU64::new(0),
            invokes_sent: AtomicU64::new(0),
            invokes_ok: AtomicU64::new(0),
            invokes_failed_in_page: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            lookups: AtomicU64::new(0),
            signals: AtomicU64::new(0),
            connected: AtomicU64::new(0),
            drops: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            reconnect_attempts_failed: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            seen_invokes: Mutex::new(HashSet::new()),
            late: AtomicU64::new(0),
            large_updates: AtomicU64::new(0),
            agent_sockets: AtomicU64::new(0),
            retry_causes: Mutex::new(BTreeMap::new()),
            errors: Mutex::new(BTreeMap::new()),
            // 1 µs to 60 s, 3 significant figures: always valid bounds.
            round_trip_us: Mutex::new(
                Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds"),
            ),
            ramp: Mutex::new((None, None)),
            ramp_wall_ms: Mutex::new((None, None)),
            online: Mutex::new(Vec::new()),
        }
    }
}

/// Locks a mutex even if a panicking user poisoned it: the counts stay usable.
pub fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Stats {
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A visitor's first connection (not a navigation's reconnect).
    pub fn first_connect(&self, visitorid: &str) {
        let now = Instant::now();
        let mut ramp = lock(&self.ramp);
        ramp.0.get_or_insert(now);
        ramp.1 = Some(now);
        drop(ramp);
        lock(&self.ramp_wall_ms).0.get_or_insert(unix_ms());
        lock(&self.online).push(visitorid.to_owned());
    }

    /// A visitor ran the invoke tagged `tag`; false (and counted) when it
    /// already had.
    pub fn served_once(&self, tag: &str) -> bool {
        let first = lock(&self.seen_invokes).insert(tag.to_owned());
        if !first {
            Self::count(&self.duplicates);
        }
        first
    }

    pub fn socket_opened(&self) {
        Self::count(&self.connected);
        lock(&self.ramp_wall_ms).1 = Some(unix_ms());
    }

    pub fn socket_dropped(&self) {
        let _ = self
            .connected
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// An agent socket counted in `agent_sockets` was closed or given up.
    pub fn agent_socket_closed(&self) {
        let _ = self
            .agent_sockets
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// The live counts as one JSON object (for `--status-file`).
    pub fn status_json(&self, options: &Options) -> serde_json::Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let errors: u64 = lock(&self.errors).values().sum();
        let (first_connect_ms, last_open_ms) = *lock(&self.ramp_wall_ms);
        serde_json::json!({
            "shard": options.shard,
            "visitors": options.visitors,
            "connected": get(&self.connected),
            "connects": get(&self.connects),
            "connect_failures": get(&self.connect_failures),
            "drops": get(&self.drops),
            "reconnects": get(&self.reconnects),
            "reconnect_attempts_failed": get(&self.reconnect_attempts_failed),
            "invokes_served": get(&self.invokes_served),
            "duplicates": get(&self.duplicates),
            "invokes_sent": get(&self.invokes_sent),
            "invokes_ok": get(&self.invokes_ok),
            "lost": get(&self.lost),
            "late": get(&self.late),
            "large_updates": get(&self.large_updates),
            "agent_sockets": get(&self.agent_sockets),
            "retry_causes": lock(&self.retry_causes).clone(),
            "errors": errors,
            "first_connect_ms": first_connect_ms,
            "last_open_ms": last_open_ms,
        })
    }

    /// Writes [`Self::status_json`] to `path` every 200 ms (through a
    /// temporary file and a rename, so a reader never sees half of it).
    pub fn write_status_forever(
        self: std::sync::Arc<Self>,
        options: std::sync::Arc<Options>,
        path: std::path::PathBuf,
    ) {
        tokio::spawn(async move {
            let partial = path.with_extension("partial");
            loop {
                let json = self.status_json(&options).to_string();
                if std::fs::write(&partial, json).is_ok() {
                    let _ = std::fs::rename(&partial, &path);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }

    pub fn error(&self, code: impl Into<String>) {
        *lock(&self.errors).entry(code.into()).or_default() += 1;
    }

    pub fn round_trip(&self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let _ = lock(&self.round_trip_us).record(micros.min(60_000_000));
    }

    /// Prints the summary; true when nothing failed or went unanswered.
    pub fn print(&self, options: &Options) -> bool {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let connects = get(&self.connects);
        let (first, last) = *lock(&self.ramp);
        let setup_rate = match (first, last) {
            (Some(a), Some(b)) if b > a => {
                let firsts = lock(&self.online).len() as f64;
                format!("{:.0}/s", firsts / (b - a).as_secs_f64())
            }
            _ => "n/a".to_owned(),
        };
        let hist = lock(&self.round_trip_us);
        let errors = lock(&self.errors).clone();
        let error_total: u64 = errors.values().sum();
        let sent = get(&self.invokes_sent);
        let answered = get(&self.invokes_ok) + get(&self.invokes_failed_in_page);
        let lost = get(&self.lost);
        println!("== presence loadtest summary (shard {})", options.shard);
        println!("visitors: {} connects ({} first), {} connect failures, {} navigations, setup rate {setup_rate}",
            connects, lock(&self.online).len(), get(&self.connect_failures), get(&self.navigations));
        let causes = lock(&self.retry_causes).clone();
        if !causes.is_empty() {
            println!("reconnect attempts that failed, by cause: {causes:?}");
        }
        println!(
            "visitor side: {} invokes served, {} large updates sent; {} agent sockets open",
            get(&self.invokes_served),
            get(&self.large_updates),
            get(&self.agent_sockets)
        );
        println!(
            "agents: {sent} invokes sent, {} ok, {} failed in the page, {} clean errors, {lost} lost; {} lookups, {} signals",
            get(&self.invokes_ok),
            get(&self.invokes_failed_in_page),
            error_total,
            get(&self.lookups),
            get(&self.signals)
        );
        if !hist.is_empty() {
            println!(
                "invoke round trip (µs, agent side): p50 {} p90 {} p99 {} p99.9 {} max {} (n={})",
                hist.value_at_quantile(0.50),
                hist.value_at_quantile(0.90),
                hist.value_at_quantile(0.99),
                hist.value_at_quantile(0.999),
                hist.max(),
                hist.len()
            );
        }
        let offline = (options.visitors as u64).saturating_sub(get(&self.connected));
        if options.reconnect {
            println!(
                "reconnects: {} drops, {} reconnects, {} failed attempts (retried), {offline} visitors offline at the end",
                get(&self.drops),
                get(&self.reconnects),
                get(&self.reconnect_attempts_failed)
            );
        }
        println!(
            "invokes run twice by a visitor: {}; answered past the deadline: {}",
            get(&self.duplicates),
            get(&self.late)
        );
        for (code, count) in &errors {
            println!("error {code}: {count}");
        }
        let unanswered = sent.saturating_sub(answered + invoke_errors(&errors) + lost);
        if unanswered > 0 {
            println!("invokes without any answer: {unanswered}");
        }
        let connections_clean = if options.reconnect {
            offline == 0
        } else {
            get(&self.connect_failures) == 0
        };
        error_total == 0
            && lost == 0
            && connections_clean
            && unanswered == 0
            && get(&self.duplicates) == 0
            && get(&self.late) == 0
    }
}

/// Errors counted against invokes (their keys start with `invoke:`).
fn invoke_errors(errors: &BTreeMap<String, u64>) -> u64 {
    errors
        .iter()
        .filter(|(code, _)| code.starts_with("invoke:"))
        .map(|(_, n)| n)
        .sum()
}

/// Now, in milliseconds since the Unix epoch.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
