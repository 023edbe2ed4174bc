//! Cluster mode's [`PromptFailureLocks`]: failure counts and locks in
//! Redis, so failures on every node count together and a lock set on one
//! node applies on all.
//!
//! `{prefix}:confirm_failures:{group}/{visitor}` is a sorted set of failure
//! times (Unix ms, on the server's clock) trimmed to the window and
//! expiring with it; `{prefix}:confirm_lock:{group}/{visitor}` holds the
//! lock's end (Unix ms) with a TTL of [`LOCK_MS`]. One script records a
//! failure, trims the window and sets the lock when the limit is reached.

use std::sync::LazyLock;

use futures_util::FutureExt;
use redis::AsyncCommands;

use super::failures::{Checked, PromptFailureLocks, FAILURE_LIMIT, FAILURE_WINDOW_MS, LOCK_MS};
use crate::infra::ids::{random_id, VisitorKey};
use crate::store::cluster::ClusterLink;
use crate::store::StoreError;

/// KEYS failures, lock; ARGV now, window, limit, lock ms, member.
static RECORD: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('ZADD', KEYS[1], now, ARGV[5])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], now + tonumber(ARGV[4]), 'PX', tonumber(ARGV[4]))
  return 1
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 0
",
    )
});

/// Failure counts and locks shared through Redis.
pub struct RedisFailureLocks {
    link: ClusterLink,
}

impl RedisFailureLocks {
    pub fn new(link: ClusterLink) -> Self {
        Self { link }
    }

    fn keys(&self, visitor: &VisitorKey) -> (String, String) {
        let pair = format!("{}/{}", visitor.group, visitor.visitor.as_str());
        (
            self.link.key(&format!("confirm_failures:{pair}")),
            self.link.key(&format!("confirm_lock:{pair}")),
        )
    }
}

impl PromptFailureLocks for RedisFailureLocks {
    fn locked_for(&self, visitor: &VisitorKey, now_ms: u64) -> Checked<Option<u64>> {
        let (_, lock) = self.keys(visitor);
        let read = self.link.run("confirm lock", move |mut conn| async move {
            conn.get::<_, Option<u64>>(lock).await
        });
        async move {
            let until = read.await.map_err(StoreError::from)?;
            Ok(until.filter(|u| *u > now_ms).map(|u| u - now_ms))
        }
        .boxed()
    }

    fn record(&self, visitor: &VisitorKey, now_ms: u64) -> Checked<bool> {
        let (failures, lock) = self.keys(visitor);
        let run = self
            .link
            .run("confirm failure", move |mut conn| async move {
                RECORD
                    .key(failures)
                    .key(lock)
                    .arg(now_ms)
                    .arg(FAILURE_WINDOW_MS)
                    .arg(FAILURE_LIMIT)
                    .arg(LOCK_MS)
                    .arg(random_id(8))
                    .invoke_async::<u8>(&mut conn)
                    .await
            });
        async move { Ok(run.await.map_err(StoreError::from)? == 1) }.boxed()
    }

    fn sweep(&self, _now_ms: u64) -> usize {
        0
    }
}
