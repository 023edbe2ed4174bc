//! Cluster mode's presence webhooks: exactly one node emits each
//! `visitor_online` and `visitor_offline`, decided in Redis.
//!
//! Each node's registry reports its local transitions (a visitor's first
//! connection here; its grace period here ending). The node records its
//! membership in the visitor's set `{p}:wh_online:{group}:{visitor}` (node
//! ids) with one script per transition, in order, on one task:
//! - the node whose `SADD` makes the set go from empty to one member emits
//!   `visitor_online` (a visitor arriving on a second node, or moving
//!   there within the grace, finds the set non-empty);
//! - the node whose `SREM` empties it emits `visitor_offline`.
//!
//! A node that dies never ends its graces: the node that reaps it removes
//! it from every set it was in (`{p}:wh_node:{node}` indexes them) and
//! emits `visitor_offline` (reason `node_died`) for each set it empties.
//! A node that stops gracefully leaves its visitors in grace on the others
//! and records `{p}:wh_leaving` (node → end of that grace); after it, any
//! node runs the same removal (reason `node_left`). The scripts are atomic
//! and the removal deletes the index, so two nodes running it emit once.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::infra::clock::SharedClock;
use crate::infra::ids::{GroupId, VisitorKey};
use crate::presence::registry::{RegistryHandle, Transition, TransitionListener};
use crate::presence::visitor::VisitorState;
use crate::presence::webhooks::{Outbox, WebhookEvent};
use crate::store::cluster::ClusterLink;

/// Transitions waiting for Redis at most; beyond, refused (`queue_full`).
const QUEUE: usize = 65_536;
/// How often left nodes' graces are checked.
const LEAVING_TICK: Duration = Duration::from_secs(1);
/// Between two tries of a script while Redis is away.
const RETRY: Duration = Duration::from_millis(200);

/// KEYS[1]: the visitor's set; KEYS[2]: the node's index. ARGV[1]: the
/// node; ARGV[2]: `{group}\n{visitor}`. 1 if the set went from empty to
/// this node.
static JOIN: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local added = redis.call('SADD', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
if added == 1 and redis.call('SCARD', KEYS[1]) == 1 then return 1 end
return 0
",
    )
});

/// As [`JOIN`]; 1 if removing this node emptied the set.
static PART: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local removed = redis.call('SREM', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[2], ARGV[2])
if removed == 1 and redis.call('SCARD', KEYS[1]) == 0 then return 1 end
return 0
",
    )
});

/// KEYS[1]: a gone node's index. ARGV[1]: the key prefix; ARGV[2]: the
/// node. Removes the node from every set it was in and deletes the index;
/// returns the `{group}\n{visitor}` members whose set it emptied.
static REMOVE_NODE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local members = redis.call('SMEMBERS', KEYS[1])
local emptied = {}
for _, member in ipairs(members) do
  local cut = string.find(member, '\n', 1, true)
  if cut then
    local key = ARGV[1] .. ':wh_online:' .. string.sub(member, 1, cut - 1) .. ':' .. string.sub(member, cut + 1)
    if redis.call('SREM', key, ARGV[2]) == 1 and redis.call('SCARD', key) == 0 then
      table.insert(emptied, member)
    end
  end
end
redis.call('DEL', KEYS[1])
return emptied
",
    )
});

/// This node's side of the cluster's webhook decisions.
pub(super) struct ClusterWebhooks {
    link: ClusterLink,
    outbox: Arc<Outbox>,
    clock: SharedClock,
    transitions: mpsc::Sender<(VisitorKey, Transition)>,
}

fn member(key: &VisitorKey) -> String {
    format!("{}\n{}", key.group, key.visitor.as_str())
}

impl ClusterWebhooks {
    /// Hooks into the local registry and the link's reapers (before
    /// `link.start()`), and starts the task that decides.
    pub(super) fn start(
        link: &ClusterLink,
        local: &RegistryHandle,
        outbox: Arc<Outbox>,
        clock: SharedClock,
    ) -> Arc<Self> {
        let (transitions, incoming) = mpsc::channel(QUEUE);
        let this = Arc::new(Self {
            link: link.clone(),
            outbox,
            clock,
            transitions,
        });
        let listener: Arc<dyn TransitionListener> = this.clone();
        let _ = local.hooks().transition.set(listener);
        link.runtime().spawn(this.clone().decide(incoming));
        let me = this.clone();
        link.on_reap(Arc::new(move |node| {
            let me = me.clone();
            Box::pin(async move {
                me.remove_node(&node, "node_died").await?;
                Ok(())
            })
        }));
        link.runtime().spawn(this.clone().watch_leaving());
        this
    }

    async fn decide(self: Arc<Self>, mut incoming: mpsc::Receiver<(VisitorKey, Transition)>) {
        while let Some((key, transition)) = incoming.recv().await {
            let (script, online) = match &transition {
                Transition::Online(_) => (&*JOIN, true),
                Transition::Offline(_) => (&*PART, false),
            };
            let emits = loop {
                match self.run(script, &key).await {
                    Ok(emits) => break emits,
                    // Redis is away: the order per visitor matters more
                    // than the delay, so this transition waits.
                    Err(e) => {
                        tracing::debug!(error = %e, online, "webhook decision deferred");
                        tokio::time::sleep(RETRY).await;
                    }
                }
            };
            if emits {
                let now = self.clock.now_ms();
                self.outbox.emit(match &transition {
                    Transition::Online(state) => WebhookEvent::visitor_online(state, now),
                    Transition::Offline(last) => WebhookEvent::visitor_offline(last, now),
                });
            }
        }
    }

    async fn run(
        &self,
        script: &'static redis::Script,
        key: &VisitorKey,
    ) -> Result<bool, crate::infra::error::SharedStateUnavailable> {
        let set = self
            .link
            .key(&format!("wh_online:{}:{}", key.group, key.visitor.as_str()));
        let index = self.link.key(&format!("wh_node:{}", self.link.node_id()));
        let (node, member) = (self.link.node_id().to_owned(), member(key));
        self.link
            .run("webhook decision", move |mut conn| async move {
                script
                    .key(set)
                    .key(index)
                    .arg(node)
                    .arg(member)
                    .invoke_async::<i64>(&mut conn)
                    .await
            })
            .await
            .map(|n| n == 1)
    }

    /// Removes a gone node from its visitors' sets and emits
    /// `visitor_offline` for each it was the last node of.
    async fn remove_node(
        &self,
        node: &str,
        reason: &'static str,
    ) -> Result<(), crate::infra::error::SharedStateUnavailable> {
        let index = self.link.key(&format!("wh_node:{node}"));
        let prefix = self.link.key("").trim_end_matches(':').to_owned();
        let node = node.to_owned();
        let emptied: Vec<String> = self
            .link
            .run("webhook node removal", move |mut conn| async move {
                REMOVE_NODE
                    .key(index)
                    .arg(prefix)
                    .arg(node)
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        let now = self.clock.now_ms();
        for member in emptied {
            let Some((group, visitor)) = member.split_once('\n') else {
                continue;
            };
            let (Ok(group), Ok(visitor)) = (
                group.parse::<GroupId>(),
                crate::infra::ids::VisitorId::parse(visitor),
            ) else {
                continue;
            };
            let key = VisitorKey::new(group, visitor);
            let mut event = WebhookEvent::visitor_offline(&VisitorState::offline(&key), now);
            event.data["reason"] = reason.into();
            self.outbox.emit(event);
        }
        Ok(())
    }

    /// The node stops: once its visitors' grace on the other nodes ends
    /// (`until_ms`), whichever node looks first removes it.
    pub(super) async fn leaving(&self, until_ms: u64) {
        let (key, node) = (self.link.key("wh_leaving"), self.link.node_id().to_owned());
        let _ = self
            .link
            .run("webhook leave", move |mut conn| async move {
                redis::cmd("ZADD")
                    .arg(key)
                    .arg(until_ms)
                    .arg(node)
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await;
    }

    async fn watch_leaving(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(LEAVING_TICK);
        loop {
            ticks.tick().await;
            let (key, now) = (self.link.key("wh_leaving"), self.clock.now_ms());
            let due: Result<Vec<String>, _> = self
                .link
                .run("webhook leavers", move |mut conn| async move {
                    redis::cmd("ZRANGEBYSCORE")
                        .arg(key)
                        .arg("-inf")
                        .arg(now)
                        .query_async(&mut conn)
                        .await
                })
                .await;
            for node in due.unwrap_or_default() {
                if self.remove_node(&node, "node_left").await.is_ok() {
                    let key = self.link.key("wh_leaving");
                    let _ = self
                        .link
                        .run("webhook leaver done", move |mut conn| async move {
                            redis::cmd("ZREM")
                                .arg(key)
                                .arg(node)
                                .query_async::<()>(&mut conn)
                                .await
                        })
                        .await;
                }
            }
        }
    }
}

impl TransitionListener for ClusterWebhooks {
    /// Groups that want neither event cost no Redis round trip.
    fn wants(&self, key: &VisitorKey, _online: bool) -> bool {
        self.outbox.wants_presence(key.group, true) || self.outbox.wants_presence(key.group, false)
    }

    fn transition(&self, key: &VisitorKey, transition: Transition) {
        if self
            .transitions
            .try_send((key.clone(), transition))
            .is_err()
        {
            self.outbox.refused("queue_full");
            tracing::error!(visitor = %key, "webhook transition queue full: event dropped");
        }
    }
}
