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
//! filled the window. Nothing is kept on the node: every answer is
//! Redis's, and the sets expire by themselves.

use std::sync::LazyLock;

use redis::Script;

use super::lockout::{filled, Attempt, Locked, LockoutCounters, Pending};
use crate::infra::clock::SharedClock;
use crate::infra::error::SharedStateUnavailable;
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

/// The cluster-wide failure windows of one scope.
pub struct RedisLockout {
    link: ClusterLink,
    clock: SharedClock,
    scope: &'static str,
    account_limit: usize,
    client_limit: usize,
    window_ms: u64,
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
    /// Windows of `window_secs` in `scope` (`sign_in`, `session_key`).
    pub fn new(
        link: &ClusterLink,
        clock: SharedClock,
        scope: &'static str,
        limits: (usize, usize),
        window_secs: u64,
    ) -> Self {
        Self {
            link: link.clone(),
            clock,
            scope,
            account_limit: limits.0,
            client_limit: limits.1,
            window_ms: window_secs * 1000,
        }
    }

    fn key(&self, what: &str, key: &str) -> String {
        self.link
            .key(&format!("lockout:{}:{what}:{key}", self.scope))
    }
}

impl LockoutCounters for RedisLockout {
    /// Nothing to forget: the sets expire in Redis.
    fn sweep(&self) -> usize {
        0
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
        let sets = keys.clone();
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
        // The answer goes through a task of its own: if the caller went
        // away meanwhile (a cancelled request), the slot it reserved is
        // given back after the reservation, never before it.
        let (tell, told) = tokio::sync::oneshot::channel();
        let link = self.link.clone();
        self.link.runtime().spawn(async move {
            let answer = reserved.await;
            if let Err(Ok(unread)) = tell.send(answer) {
                if unread.first() == Some(&0) {
                    let member = format!("{at}:{nonce:016x}");
                    let release = link.run("lockout release", move |mut conn| async move {
                        let mut pipe = redis::pipe();
                        for (set, used) in [(sets.0, used.0), (sets.1, used.1)] {
                            if used {
                                pipe.cmd("ZREM").arg(set).arg(&member).ignore();
                            }
                        }
                        pipe.query_async::<()>(&mut conn).await
                    });
                    let _ = release.await;
                }
            }
        });
        Box::pin(async move {
            let answer = told
                .await
                .map_err(|_| SharedStateUnavailable("the Redis runtime stopped".to_owned()))??;
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
