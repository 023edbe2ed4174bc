//! Cluster mode's website sessions and used SSO token ids, in Redis, so a
//! `gssnid` works on every node, a logout on any node ends it everywhere,
//! and an SSO token signs in once in the whole cluster.
//!
//! Layout (every key under `{prefix}:`):
//! - `website_session:{hex digest}`: a hash `g` (group), `u` (username),
//!   `c` (created, Unix s), `l` (last used), expiring `session_idle_secs`
//!   after its last use (set by `create`, renewed by `touch`), so idle
//!   sessions end by themselves on Redis's clock. Reads also compare `l`
//!   with the node's clock (the rule the embedded store keeps: idle once
//!   `now >= l + idle`), so both clocks end a session, whichever is first;
//! - `website_session:{hex digest}:tokens`: a hash `jti` → `exp` of the
//!   tokens the session issued, expiring with the last of them; `end`
//!   deletes the session and takes this hash in one `MULTI`;
//! - `sso_jti:{group}/{jti}`: `SET NX` with an expiry at the token's `exp`
//!   plus the leeway, so of two racing claims one wins and nothing is left
//!   to sweep.
//!
//! Every method waits on Redis: they are called on the blocking pool (see
//! [`WebsiteSessions`]), so they use `run_blocking`.

use std::collections::HashMap;
use std::sync::LazyLock;

use redis::Script;

use super::sessions::{digest, NewSession, SessionDigest, SessionUser, WebsiteSessions};
use super::single_sign_on::UsedSsoTokens;
use crate::auth::token::LEEWAY_SECS;
use crate::infra::clock::SharedClock;
use crate::infra::ids::{random_id, GroupId};
use crate::store::cluster::ClusterLink;
use crate::store::StoreError;

/// KEYS: session. ARGV: now, idle secs, renew (1 or 0). A live session's
/// group and username, or nil; a session idle on the node's clock is
/// deleted. With renew, its last use becomes now.
static READ: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local last = tonumber(redis.call('HGET', KEYS[1], 'l'))
if not last then
  return false
end
if tonumber(ARGV[1]) >= last + tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[1])
  return false
end
if ARGV[3] == '0' then
  return redis.call('HMGET', KEYS[1], 'g', 'u')
end
redis.call('HSET', KEYS[1], 'l', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return redis.call('HMGET', KEYS[1], 'g', 'u')
",
    )
});

/// KEYS: token links. ARGV: jti, exp. Files the token; the hash lives
/// until its last token expires.
static RECORD_TOKEN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if redis.call('EXPIRETIME', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('EXPIREAT', KEYS[1], ARGV[2])
end
return 1
",
    )
});

/// Website sessions shared by every node.
pub struct RedisWebsiteSessions {
    link: ClusterLink,
    clock: SharedClock,
    idle_secs: u64,
}

fn hex(digest: &SessionDigest) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl RedisWebsiteSessions {
    pub fn new(link: &ClusterLink, clock: SharedClock, idle_secs: u64) -> Self {
        Self {
            link: link.clone(),
            clock,
            idle_secs,
        }
    }

    fn session_key(&self, digest: &SessionDigest) -> String {
        self.link.key(&format!("website_session:{}", hex(digest)))
    }

    fn tokens_key(&self, digest: &SessionDigest) -> String {
        self.link
            .key(&format!("website_session:{}:tokens", hex(digest)))
    }

    /// The user of a session's `g` and `u` fields, if both read well.
    fn user(fields: Option<Vec<Option<String>>>, digest: SessionDigest) -> Option<SessionUser> {
        let mut fields = fields?.into_iter();
        let groupid = fields.next()??.parse().ok()?;
        let username = fields.next()??;
        Some(SessionUser {
            groupid,
            username,
            digest,
        })
    }
}

impl RedisWebsiteSessions {
    /// The session's user if it is live on both clocks; `renew` extends it.
    fn read(&self, id: &str, renew: bool) -> Result<Option<SessionUser>, StoreError> {
        let digest = digest(id);
        let (key, now, idle) = (
            self.session_key(&digest),
            self.clock.now_secs(),
            self.idle_secs,
        );
        let what = if renew {
            "website session touch"
        } else {
            "website session read"
        };
        let fields = self.link.run_blocking(what, move |mut conn| async move {
            READ.key(key)
                .arg(now)
                .arg(idle)
                .arg(u8::from(renew))
                .invoke_async::<Option<Vec<Option<String>>>>(&mut conn)
                .await
        })?;
        Ok(Self::user(fields, digest))
    }
}

impl WebsiteSessions for RedisWebsiteSessions {
    fn create(&self, groupid: GroupId, username: &str) -> Result<NewSession, StoreError> {
        let id = random_id(super::sessions::SESSION_ID_BYTES);
        let now = self.clock.now_secs();
        let (key, username, idle) = (
            self.session_key(&digest(&id)),
            username.to_owned(),
            self.idle_secs,
        );
        self.link
            .run_blocking("website session create", move |mut conn| async move {
                redis::pipe()
                    .atomic()
                    .cmd("HSET")
                    .arg(&key)
                    .arg("g")
                    .arg(groupid)
                    .arg("u")
                    .arg(username)
                    .arg("c")
                    .arg(now)
                    .arg("l")
                    .arg(now)
                    .ignore()
                    .cmd("EXPIRE")
                    .arg(&key)
                    .arg(idle)
                    .ignore()
                    .query_async::<()>(&mut conn)
                    .await
            })?;
        Ok(NewSession {
            id,
            expires: now + self.idle_secs,
        })
    }

    fn peek(&self, id: &str) -> Result<Option<SessionUser>, StoreError> {
        self.read(id, false)
    }

    fn touch(&self, id: &str) -> Result<Option<SessionUser>, StoreError> {
        self.read(id, true)
    }

    fn record_token(&self, session: &SessionDigest, jti: &str, exp: u64) -> Result<(), StoreError> {
        let (key, jti) = (self.tokens_key(session), jti.to_owned());
        self.link
            .run_blocking("website session token", move |mut conn| async move {
                RECORD_TOKEN
                    .key(key)
                    .arg(jti)
                    .arg(exp)
                    .invoke_async::<i64>(&mut conn)
                    .await
            })?;
        Ok(())
    }

    fn end(&self, id: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let digest = digest(id);
        let (session, tokens) = (self.session_key(&digest), self.tokens_key(&digest));
        // Session first, in one transaction: a token filed from now on
        // finds it gone (`still_live`); one filed before is taken here.
        let (taken,) =
            self.link
                .run_blocking("website session end", move |mut conn| async move {
                    redis::pipe()
                        .atomic()
                        .cmd("DEL")
                        .arg(&session)
                        .ignore()
                        .cmd("HGETALL")
                        .arg(&tokens)
                        .cmd("DEL")
                        .arg(&tokens)
                        .ignore()
                        .query_async::<(HashMap<String, u64>,)>(&mut conn)
                        .await
                })?;
        let mut taken: Vec<(String, u64)> = taken.into_iter().collect();
        taken.sort();
        Ok(taken)
    }

    fn still_live(&self, digest: &SessionDigest) -> Result<bool, StoreError> {
        let key = self.session_key(digest);
        Ok(self
            .link
            .run_blocking("website session check", move |mut conn| async move {
                redis::cmd("EXISTS")
                    .arg(key)
                    .query_async::<bool>(&mut conn)
                    .await
            })?)
    }

    /// Nothing to do: sessions and token links expire in Redis.
    fn sweep(&self) -> Result<usize, StoreError> {
        Ok(0)
    }
}

/// Used SSO token ids shared by every node.
pub struct RedisUsedSsoTokens {
    link: ClusterLink,
    clock: SharedClock,
}

impl RedisUsedSsoTokens {
    pub fn new(link: &ClusterLink, clock: SharedClock) -> Self {
        Self {
            link: link.clone(),
            clock,
        }
    }
}

impl UsedSsoTokens for RedisUsedSsoTokens {
    fn claim(&self, group: GroupId, jti: &str, exp: u64) -> Result<bool, StoreError> {
        let key = self.link.key(&format!("sso_jti:{group}/{jti}"));
        let ttl = exp
            .saturating_add(LEEWAY_SECS)
            .saturating_sub(self.clock.now_secs())
            .max(1);
        let set = self
            .link
            .run_blocking("sso token id claim", move |mut conn| async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(exp)
                    .arg("NX")
                    .arg("EX")
                    .arg(ttl)
                    .query_async::<Option<String>>(&mut conn)
                    .await
            })?;
        Ok(set.is_some())
    }

    /// Nothing to do: claims expire in Redis.
    fn forget_expired(&self, _now: u64) -> Result<usize, StoreError> {
        Ok(0)
    }
}
