//! Cluster mode's failed-attempt limits: one sliding window per account
//! and per client for the whole cluster, in Redis, so that N nodes do not
//! allow N times the guesses.
//!
//! Layout: `{prefix}:lockout:{scope}:{account|client}:{key}`, a sorted set
//! of reserved (or failed) slots, member `{at}:{nonce}`, scored by Unix ms,
//! trimmed to the window and expiring one window after its newest entry.
//! `scope` keeps the users apart: `sign_in` for credentials, `session_key`
//! for session-key lookups.
//!
//! The asynchronous methods are exact: [`BEGIN`] trims, checks and
//! reserves in both sets in one script, so racing attempts on several nodes
//! cannot overrun a limit, and the slot's position says which failure
//! filled the window. The synchronous ones (see the trait's doc) answer
//! from this node's memory and count failures in the background
//! ([`RECORD`]); a failure that fills the cluster-wide window is broadcast
//! as `lockout:{scope}` `{"key", "until"}` so every node refuses at once.

use std::sync::{Arc, LazyLock};

use dashmap::DashMap;
use redis::Script;
use serde_json::json;

use super::lockout::{filled, Attempt, InMemoryLockout, Locked, LockoutCounters, Pending};
use crate::infra::clock::SharedClock;
use crate::infra::ids::fill_random;
use crate::store::cluster::ClusterLink;

/// KEYS: account set, client set. ARGV: now, window ms, member, account
/// limit, client limit, account used (0/1), client used (0/1). Returns
/// `{0, account position, client position}` once reserved, or `{1|2, ms
/// until a slot frees}` when the account (1) or client (2) is locked.
static BEGIN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limits = {tonumber(ARGV[4]), tonumber(ARGV[5])}
local used = {ARGV[6] == '1', ARGV[7] == '1'}
for i = 1, 2 do
  if used[i] then
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
    local n = redis.call('ZCARD', KEYS[i])
    if n >= limits[i] then
      local oldest = redis.call('ZRANGE', KEYS[i], n - limits[i], n - limits[i], 'WITHSCORES')
      return {i, tonumber(oldest[2]) + window - now}
    end
  end
end
local pos = {0, 0}
for i = 1, 2 do
  if used[i] then
    redis.call('ZADD', KEYS[i], now, ARGV[3])
    redis.call('PEXPIRE', KEYS[i], window)
    pos[i] = redis.call('ZCARD', KEYS[i])
  end
end
return {0, pos[1], pos[2]}
",
    )
});

/// KEYS: one set. ARGV: now, window ms, member, limit. Counts a failure;
/// returns when the window's lock ends (Unix ms), or 0 if it is not full.
static RECORD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
local n = redis.call('ZCARD', KEYS[1])
if n < limit then
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], n - limit, n - limit, 'WITHSCORES')
return tonumber(oldest[2]) + window
",
    )
});

/// The cluster-wide failure windows of one scope.
pub struct RedisLockout {
    link: ClusterLink,
    clock: SharedClock,
    scope: &'static str,
    account_limit: usize,
    client_limit: usize,
    window_ms: u64,
    /// The synchronous path's floor: this node's own failures.
    local: InMemoryLockout,
    /// The synchronous path's view of cluster-wide locks: `account:{key}`
    /// or `client:{key}` → until (Unix ms).
    locked: Arc<DashMap<String, u64>>,
}

fn nonce() -> u64 {
    let mut bytes = [0u8; 8];
    fill_random(&mut bytes);
    u64::from_be_bytes(bytes)
}

fn member(attempt: &Attempt) -> String {
    format!("{}:{:016x}", attempt.at, attempt.nonce)
}

fn retry_after(ms: u64, what: &'static str) -> Locked {
    Locked {
        retry_after_secs: ms.div_ceil(1000).max(1),
        what,
    }
}

impl RedisLockout {
    /// Windows of `window_secs` in `scope` (`sign_in`, `session_key`);
    /// registers the scope's lock broadcasts, so call it before the link
    /// starts.
    pub fn new(
        link: &ClusterLink,
        clock: SharedClock,
        scope: &'static str,
        limits: (usize, usize),
        window_secs: u64,
    ) -> Self {
        let locked: Arc<DashMap<String, u64>> = Arc::default();
        let heard = locked.clone();
        link.on_control(
            &format!("lockout:{scope}"),
            Arc::new(move |_from, body| {
                let (Some(key), Some(until)) = (body["key"].as_str(), body["until"].as_u64())
                else {
                    return;
                };
                let mut entry = heard.entry(key.to_owned()).or_insert(until);
                *entry = (*entry).max(until);
            }),
        );
        Self {
            link: link.clone(),
            local: InMemoryLockout::new(clock.clone(), limits.0, limits.1, window_secs),
            clock,
            scope,
            account_limit: limits.0,
            client_limit: limits.1,
            window_ms: window_secs * 1000,
            locked,
        }
    }

    fn key(&self, what: &str, key: &str) -> String {
        self.link
            .key(&format!("lockout:{}:{what}:{key}", self.scope))
    }

    /// A lock this node heard of for `what:key`, if it still holds.
    fn heard_lock(&self, what: &'static str, key: Option<&str>, now: u64) -> Option<Locked> {
        let until = *self.locked.get(&format!("{what}:{key}", key = key?))?;
        (until > now).then(|| retry_after(until - now, what))
    }

    /// Counts a failure of the synchronous path in Redis, in the
    /// background; broadcasts the lock if it filled the window.
    fn record_failure(&self, what: &'static str, key: &str, member: String, limit: usize) {
        let (link, set) = (self.link.clone(), self.key(what, key));
        let (now, window) = (self.clock.now_ms(), self.window_ms);
        let (kind, lock) = (format!("lockout:{}", self.scope), format!("{what}:{key}"));
        self.link.runtime().spawn(async move {
            let until = link
                .run("lockout failure", move |mut conn| async move {
                    RECORD
                        .key(set)
                        .arg(now)
                        .arg(window)
                        .arg(member)
                        .arg(limit)
                        .invoke_async::<u64>(&mut conn)
                        .await
                })
                .await;
            match until {
                Ok(0) => {}
                Ok(until) => {
                    let _ = link
                        .broadcast(&kind, json!({"key": lock, "until": until}))
                        .await;
                }
                // The local floor still holds; the link logged it.
                Err(_) => {}
            }
        });
    }
}

impl LockoutCounters for RedisLockout {
    fn begin(&self, account: Option<&str>, client: Option<&str>) -> Result<Attempt, Locked> {
        let now = self.clock.now_ms();
        if let Some(locked) = self
            .heard_lock("account", account, now)
            .or_else(|| self.heard_lock("client", client, now))
        {
            return Err(locked);
        }
        let mut attempt = self.local.begin(account, client)?;
        attempt.nonce = nonce();
        Ok(attempt)
    }

    fn succeeded(&self, attempt: Attempt) {
        self.local.succeeded(attempt);
    }

    fn failed(&self, attempt: Attempt) -> Vec<&'static str> {
        let member = member(&attempt);
        if let Some((key, _)) = &attempt.account {
            self.record_failure("account", key, member.clone(), self.account_limit);
        }
        if let Some((key, _)) = &attempt.client {
            self.record_failure("client", key, member, self.client_limit);
        }
        self.local.failed(attempt)
    }

    fn sweep(&self) -> usize {
        let now = self.clock.now_ms();
        let before = self.locked.len();
        self.locked.retain(|_, until| *until > now);
        self.local.sweep() + (before - self.locked.len())
    }

    fn begin_async(
        &self,
        account: Option<&str>,
        client: Option<&str>,
    ) -> Pending<Result<Attempt, Locked>> {
        let account = account.map(str::to_owned);
        let client = client.map(str::to_owned);
        let keys = (
            self.key("account", account.as_deref().unwrap_or_default()),
            self.key("client", client.as_deref().unwrap_or_default()),
        );
        let (at, nonce) = (self.clock.now_ms(), nonce());
        let member = format!("{at}:{nonce:016x}");
        let (limits, window) = ((self.account_limit, self.client_limit), self.window_ms);
        let used = (account.is_some(), client.is_some());
        let reserved = self.link.run("lockout begin", move |mut conn| async move {
            BEGIN
                .key(keys.0)
                .key(keys.1)
                .arg(at)
                .arg(window)
                .arg(member)
                .arg(limits.0)
                .arg(limits.1)
                .arg(u8::from(used.0))
                .arg(u8::from(used.1))
                .invoke_async::<Vec<i64>>(&mut conn)
                .await
        });
        Box::pin(async move {
            let answer = reserved.await?;
            let field = |i: usize| answer.get(i).copied().unwrap_or(0).max(0) as u64;
            Ok(match field(0) {
                1 => Err(retry_after(field(1), "account")),
                2 => Err(retry_after(field(1), "client")),
                _ => Ok(Attempt {
                    at,
                    nonce,
                    account: account.map(|a| (a, field(1) as usize)),
                    client: client.map(|c| (c, field(2) as usize)),
                }),
            })
        })
    }

    fn succeeded_async(&self, attempt: Attempt) -> Pending<()> {
        let member = member(&attempt);
        let sets: Vec<String> = [
            attempt
                .account
                .as_ref()
                .map(|(a, _)| self.key("account", a)),
            attempt.client.as_ref().map(|(c, _)| self.key("client", c)),
        ]
        .into_iter()
        .flatten()
        .collect();
        let released = self
            .link
            .run("lockout release", move |mut conn| async move {
                let mut pipe = redis::pipe();
                for set in sets {
                    pipe.cmd("ZREM").arg(set).arg(&member).ignore();
                }
                pipe.query_async::<()>(&mut conn).await
            });
        Box::pin(released)
    }

    fn failed_async(&self, attempt: Attempt) -> Pending<Vec<&'static str>> {
        // The slot is already counted; its position says what it filled.
        let locked = filled(&attempt, self.account_limit, self.client_limit);
        Box::pin(std::future::ready(Ok(locked)))
    }
}
