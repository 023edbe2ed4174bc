//! The wire form of cluster signing keys, and the Lua scripts that write
//! them: the one place that knows how `{prefix}:signing_keys` is encoded
//! (see `redis_keys.rs` for the protocol).

use std::sync::Arc;
use std::sync::LazyLock;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::keyring::{SigningKey, SECRET_BYTES};
use crate::infra::ids::{fill_random, random_id};

/// Writes `ARGV[2]` as `ARGV[1]` only if the hash is empty (the first key
/// of a new cluster).
pub(super) static BOOTSTRAP: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"if redis.call('HLEN', KEYS[1]) == 0 then
            redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) return 1 end
          return 0",
    )
});

/// Writes key `ARGV[3]` = `ARGV[4]` only if no key was created within the
/// rotation period (`ARGV[2]` ms before now, `ARGV[1]`).
pub(super) static ROTATE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"local newest = -1
          for _, v in ipairs(redis.call('HVALS', KEYS[1])) do
            local ok, k = pcall(cjson.decode, v)
            if ok and type(k) == 'table' then
              local c = tonumber(k.created_at_ms)
              if c and c > newest then newest = c end
            end
          end
          if newest >= 0 and newest + tonumber(ARGV[2]) > tonumber(ARGV[1]) then return 0 end
          redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
          return 1",
    )
});

/// A key as the hash holds it.
#[derive(Serialize, Deserialize)]
pub(super) struct WireKey {
    secret: String,
    created_at_ms: u64,
    active_at_ms: u64,
}

/// A cached key.
pub(super) struct Entry {
    pub(super) key: Arc<SigningKey>,
    pub(super) secret: Vec<u8>,
    pub(super) active_at_ms: u64,
}

impl Entry {
    pub(super) fn from_wire(kid: &str, wire: &WireKey) -> Option<Self> {
        let secret = B64.decode(&wire.secret).ok()?;
        if secret.len() < SECRET_BYTES {
            return None;
        }
        Some(Self {
            key: Arc::new(SigningKey::new(kid.to_owned(), wire.created_at_ms, &secret)),
            secret,
            active_at_ms: wire.active_at_ms,
        })
    }

    pub(super) fn wire(&self) -> String {
        let wire = WireKey {
            secret: B64.encode(&self.secret),
            created_at_ms: self.key.created_at_ms,
            active_at_ms: self.active_at_ms,
        };
        serde_json::to_string(&wire).unwrap_or_default()
    }
}

/// A fresh 256-bit key, created at `now_ms`, signing `delay_ms` later.
pub(super) fn generate(now_ms: u64, delay_ms: u64) -> Entry {
    let mut secret = vec![0u8; SECRET_BYTES];
    fill_random(&mut secret);
    let kid = random_id(9);
    Entry {
        key: Arc::new(SigningKey::new(kid, now_ms, &secret)),
        secret,
        active_at_ms: now_ms.saturating_add(delay_ms),
    }
}
