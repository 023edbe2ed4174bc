//! Group admission, the one check every visitor hello and every agent
//! request starts with: the group exists (`unknown_group`), it has Presence
//! (`presence_not_subscribed`) and the Origin is on its list
//! (`origin_not_allowed`), in that order. In cluster mode,
//! [`GroupCensus`] makes `max_visitors` count over every node.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use dashmap::DashMap;
use futures_util::FutureExt;

use crate::infra::capacity::{ConnectionGate, VisitorsElsewhere};
use crate::infra::config::{Config, GroupConfig, LiveConfig, PresenceConfig};
use crate::infra::error::DomainError;
use crate::infra::ids::GroupId;
use crate::presence::origin::{OriginPolicy, RequestOrigin};
use crate::store::cluster::ClusterLink;

/// The configured groups and their Origin rules, as in force now (a
/// reload replaces both).
pub struct GroupAccess {
    live: Arc<LiveConfig>,
    origins: Arc<OriginPolicy>,
    /// The presence settings: restart-only, read from the start-up config.
    presence: Arc<PresenceConfig>,
}

/// One group of the config in force when it was looked up; holding it
/// keeps that config alive, so a reload in between never changes it.
#[derive(Clone)]
pub struct GroupRef {
    config: Arc<Config>,
    index: usize,
}

impl GroupRef {
    fn find(config: Arc<Config>, group: GroupId) -> Option<Self> {
        let index = config.groups.iter().position(|g| g.id == group)?;
        Some(Self { config, index })
    }
}

impl std::ops::Deref for GroupRef {
    type Target = GroupConfig;

    fn deref(&self) -> &GroupConfig {
        &self.config.groups[self.index]
    }
}

impl GroupAccess {
    pub fn new(live: Arc<LiveConfig>, origins: Arc<OriginPolicy>) -> Self {
        let presence = Arc::new(live.load().presence.clone());
        Self {
            live,
            origins,
            presence,
        }
    }

    /// The group's config, if a request from `origin` may use it.
    pub fn admit(&self, group: GroupId, origin: &RequestOrigin) -> Result<GroupRef, DomainError> {
        let config =
            GroupRef::find(self.live.current(), group).ok_or(DomainError::UnknownGroup(group))?;
        if !config.presence {
            return Err(DomainError::PresenceNotSubscribed(group));
        }
        self.origins.check_group(group, origin)?;
        Ok(config)
    }

    /// The group's config, checks aside (tokens can outlive a config change).
    pub fn group(&self, group: GroupId) -> Option<GroupRef> {
        GroupRef::find(self.live.current(), group)
    }

    /// The presence settings (limits and timeouts; restart-only).
    pub fn presence(&self) -> &PresenceConfig {
        &self.presence
    }
}

fn capped_groups(config: &Config) -> Vec<GroupId> {
    config
        .groups
        .iter()
        .filter(|g| g.max_visitors.is_some())
        .map(|g| g.id)
        .collect()
}

/// Cluster mode's count of `groups[].max_visitors` over every node.
///
/// Each node writes its own visitor sockets per capped group to
/// `{prefix}:group_visitors:{group}` (hash: node id → count) every
/// heartbeat (`node_lease_ms / 4`), and reads back the other live nodes'
/// counts; a hello is admitted while this node's count plus the cached
/// sum of the others' stays under the cap. A dead node's field is ignored
/// at once (only live nodes count) and deleted by the node that reaps it.
///
/// **Slack:** the others' sum is up to one refresh interval old, so the
/// cluster may overshoot the cap by what the other nodes admitted during
/// the last interval (never more than (nodes − 1) × cap in the worst
/// burst; about admission rate × `node_lease_ms / 4` in practice). A
/// group never exceeds its cap on one node. When the count could not be
/// refreshed for a whole lease (Redis unreachable), capped groups refuse
/// new visitors with `cluster_unavailable` rather than admit blindly.
pub struct GroupCensus {
    link: ClusterLink,
    elsewhere: DashMap<GroupId, usize>,
    refreshed: Mutex<Instant>,
}

impl VisitorsElsewhere for GroupCensus {
    fn of(&self, group: GroupId) -> Result<usize, DomainError> {
        let age = self
            .refreshed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed();
        if age > self.link.config().node_lease() {
            return Err(DomainError::ClusterUnavailable(
                "the cluster's visitor counts are out of date".into(),
            ));
        }
        Ok(self.elsewhere.get(&group).map_or(0, |n| *n))
    }
}

impl GroupCensus {
    /// Starts counting the groups of the config in force that have
    /// `max_visitors` (read again every beat, so a reload that adds or
    /// drops a cap applies), and makes `gate` admit on the cluster-wide
    /// count.
    pub fn start(link: &ClusterLink, gate: &Arc<ConnectionGate>, live: Arc<LiveConfig>) {
        let census = Arc::new(Self {
            link: link.clone(),
            elsewhere: DashMap::new(),
            refreshed: Mutex::new(Instant::now()),
        });
        gate.count_elsewhere(census.clone());
        let reaping = link.clone();
        let reaped = live.clone();
        link.on_reap(Arc::new(move |node| {
            let keys: Vec<String> = capped_groups(&reaped.load())
                .iter()
                .map(|g| reaping.key(&format!("group_visitors:{g}")))
                .collect();
            reaping
                .run("group visitors reap", move |mut conn| async move {
                    if keys.is_empty() {
                        return Ok(());
                    }
                    let mut pipe = redis::pipe();
                    for key in keys {
                        pipe.hdel(key, &node).ignore();
                    }
                    pipe.query_async::<()>(&mut conn).await
                })
                .boxed()
        }));
        let gate = Arc::downgrade(gate);
        let every = link.config().heartbeat();
        link.runtime().spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let Some(gate) = gate.upgrade() else { return };
                let capped = capped_groups(&live.load());
                if capped.is_empty() {
                    *census.refreshed.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
                    continue;
                }
                if census.refresh(&gate, &capped).await.is_ok() {
                    *census.refreshed.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
                }
            }
        });
    }

    async fn refresh(&self, gate: &ConnectionGate, capped: &[GroupId]) -> Result<(), ()> {
        let mine: HashMap<GroupId, usize> = gate.group_visitors().into_iter().collect();
        let me = self.link.node_id().to_owned();
        let ttl_ms = self.link.config().node_lease_ms.saturating_mul(2).max(1);
        let writes: Vec<(GroupId, String, usize)> = capped
            .iter()
            .map(|g| {
                let key = self.link.key(&format!("group_visitors:{g}"));
                (*g, key, mine.get(g).copied().unwrap_or(0))
            })
            .collect();
        let node = me.clone();
        let read: Vec<(GroupId, HashMap<String, usize>)> = self
            .link
            .run("group visitors", move |mut conn| async move {
                let mut pipe = redis::pipe();
                for (_, key, count) in &writes {
                    pipe.hset(key, &node, *count)
                        .ignore()
                        .pexpire(key, ttl_ms as i64)
                        .ignore();
                }
                for (_, key, _) in &writes {
                    pipe.hgetall(key);
                }
                let counts: Vec<HashMap<String, usize>> = pipe.query_async(&mut conn).await?;
                Ok(writes.iter().map(|w| w.0).zip(counts).collect())
            })
            .await
            .map_err(|_| ())?;
        for (group, by_node) in read {
            let others = by_node
                .iter()
                .filter(|(node, _)| **node != me && self.link.is_live(node))
                .map(|(_, n)| *n)
                .sum();
            self.elsewhere.insert(group, others);
        }
        Ok(())
    }
}
