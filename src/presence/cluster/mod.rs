//! Cluster mode's presence directory: this node's registry for its own
//! sockets, a replica of every other node's portions, and Redis between
//! them. It implements [`PresenceDirectory`] with the single-node
//! contract, whichever node holds the visitor's sockets.
//!
//! - Lookups, pages and routing decisions read memory only: the local
//!   registry's published snapshots and the replica (`replica.rs`).
//! - Local changes are written to Redis and announced by one task
//!   (`writer.rs`); every node applies the announcements to its replica.
//! - An invoke or signal goes to the visitor's most recently active
//!   connection on any node: locally through the registry, elsewhere over
//!   that node's channel (`remote.rs`). A visitor between sockets on every
//!   node has its commands parked on the routing node (`room.rs`) until a
//!   socket opens anywhere or the visitor goes offline.
//! - Watch events are derived on the watching node from the merged state
//!   (`watchers.rs`).
//! - A node that dies has its portions dropped by every node at once and
//!   its Redis entries reaped by one; a node that stops announces its
//!   visitors in grace and deletes its entries; after Redis comes back
//!   every node re-publishes its visitors and re-reads the others'.

mod bus;
mod remote;
mod replica;
mod room;
mod stored_portion;
mod sync;
mod watchers;
mod webhooks;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use actix::Recipient;
use futures_core::future::LocalBoxFuture;

use crate::infra::clock::SharedClock;
use crate::infra::config::{LiveConfig, PresenceConfig};
use crate::infra::error::DomainError;
use crate::infra::ids::{GroupId, VisitorId, VisitorKey};
use crate::presence::data::PresenceData;
use crate::presence::events::{AgentEvent, AgentSocketId, EventBus};
use crate::presence::registry::{
    merged_state, most_recent_first, LiveConnection, Portion, PresenceDirectory, RegistryHandle,
    RegistryStats, VisitorCommand,
};
use crate::presence::visitor::VisitorState;
use crate::store::cluster::{ClusterLink, NodeEvent};

pub use bus::{ClusterEventBus, MutedBus};

/// How often remote grace periods are checked and abandoned commands swept.
const TICK: Duration = Duration::from_millis(100);
/// After Redis came back, how long the other nodes get to re-publish
/// before entries no re-read found are dropped.
const PRUNE_AFTER: Duration = Duration::from_secs(2);
/// How often a command is routed again after its connection moved.
const MAX_MOVES: usize = 3;

/// The cluster-wide presence directory of one node.
#[derive(Clone)]
pub struct ClusterPresence {
    inner: Arc<Inner>,
}

struct Inner {
    link: ClusterLink,
    local: RegistryHandle,
    replica: replica::Replica,
    writer: Arc<writer::Writer>,
    room: room::Room,
    watchers: watchers::Watchers,
    clock: SharedClock,
    limits: Arc<PresenceConfig>,
    /// Who emits presence webhooks (set once, before `link.start()`).
    webhooks: std::sync::OnceLock<Arc<webhooks::ClusterWebhooks>>,
    /// The config in force: its groups are the ones re-read (a reload may
    /// add or remove some).
    live: Arc<LiveConfig>,
}

impl ClusterPresence {
    /// Wraps this node's registry (started with a [`MutedBus`]); `bus` is
    /// the one agent sockets subscribe to. Reads the other nodes' portions
    /// before it returns, and registers its channels on `link` (so call it
    /// before `link.start()`).
    pub async fn start(
        link: ClusterLink,
        local: RegistryHandle,
        bus: Arc<dyn EventBus>,
        clock: SharedClock,
        live: Arc<LiveConfig>,
    ) -> Self {
        let limits = Arc::new(live.load().presence.clone());
        let presence = Self {
            inner: Arc::new(Inner {
                room: room::Room::new(limits.max_pending_invokes),
                watchers: watchers::Watchers::new(bus),
                replica: replica::Replica::default(),
                writer: Arc::new(writer::Writer::new()),
                live,
                link,
                local,
                clock,
                limits,
                webhooks: std::sync::OnceLock::new(),
            }),
        };
        presence.install();
        let generation = presence.inner.replica.next_generation();
        presence.reload(generation).await;
        presence
    }

    fn install(&self) {
        let inner = &self.inner;
        let me = self.clone();
        let _ = inner.local.hooks().changed.set(Arc::new(move |key| {
            me.inner.writer.mark(key);
            me.changed(key);
        }));
        let me = self.clone();
        let _ = inner
            .local
            .hooks()
            .park
            .set(Arc::new(move |key, command| me.park(key, command)));
        inner.writer.start(inner.link.clone(), inner.local.clone());
        remote::serve(
            &inner.link,
            inner.local.clone(),
            inner.limits.max_pending_invokes,
        );
        let me = self.clone();
        inner
            .link
            .subscribe("presence", Arc::new(move |payload| me.announced(payload)));
        let me = self.clone();
        inner.link.on_node_event(Arc::new(move |event| match event {
            NodeEvent::Died(node) => {
                for key in me.inner.replica.remove_node(node) {
                    me.changed(&key);
                }
            }
            // Its first announcements may have gone out before this node
            // listened: read what it wrote.
            NodeEvent::Joined(_) => {
                let me = me.clone();
                me.inner.link.runtime().clone().spawn(async move {
                    let generation = me.inner.replica.next_generation();
                    me.reload(generation).await;
                });
            }
            // Its withdrawal announced its visitors as between sockets;
            // any it did not (lost announcements) go into grace here.
            NodeEvent::Left(node) => {
                let until = me.inner.clock.now_ms() + me.inner.limits.reconnect_grace_ms;
                for key in me.inner.replica.node_left(node, until) {
                    me.changed(&key);
                }
            }
        }));
        let link = inner.link.clone();
        inner
            .link
            .on_reap(Arc::new(move |node| Box::pin(writer::reap(&link, node))));
        let me = self.clone();
        inner
            .link
            .on_connected(Arc::new(move |first| me.reconnected(first)));
        let me = self.clone();
        inner.link.runtime().spawn(async move {
            let mut ticks = tokio::time::interval(TICK);
            let mut round = 0u64;
            loop {
                ticks.tick().await;
                round += 1;
                for key in me.inner.replica.expire(me.inner.clock.now_ms()) {
                    me.changed(&key);
                }
                if round.is_multiple_of(50) {
                    me.inner.room.sweep();
                    me.inner.replica.purge_tombstones();
                }
            }
        });
    }

    /// The visitor's live portions, this node's included, most recently
    /// active first.
    fn portions(&self, key: &VisitorKey) -> Vec<Portion> {
        let now = self.inner.clock.now_ms();
        let mut portions = self.inner.replica.get(key, now);
        if let Some(local) = self.inner.local.portion(key, self.inner.link.node_id(), 0) {
            portions.push(local);
        }
        most_recent_first(&mut portions);
        portions
    }

    /// Something about `key` changed: tell watchers, and route what waits.
    fn changed(&self, key: &VisitorKey) {
        self.inner
            .watchers
            .changed(key, || merged_state(key, &self.portions(key)));
        if self.inner.room.holds(key) {
            let portions = self.portions(key);
            let open = portions.iter().any(|p| !p.connections.is_empty());
            if portions.is_empty() {
                for command in self.inner.room.take(key) {
                    command.fail(DomainError::went_offline());
                }
            } else if open {
                for command in self.inner.room.take(key) {
                    self.route_with(key.clone(), command, 0);
                }
            }
        }
    }

    /// A command for a visitor with no open connection anywhere.
    fn park(&self, key: VisitorKey, command: VisitorCommand) {
        let portions = self.portions(&key);
        if portions.is_empty() {
            return command.fail(DomainError::not_present());
        }
        if portions.iter().any(|p| !p.connections.is_empty()) {
            // A socket opened elsewhere meanwhile.
            return self.route_with(key, command, 0);
        }
        self.inner.room.park(key.clone(), command);
        // It may have opened between the look and the park.
        if self
            .portions(&key)
            .iter()
            .any(|p| !p.connections.is_empty())
        {
            self.changed(&key);
        }
    }

    fn route_with(&self, key: VisitorKey, command: VisitorCommand, moves: usize) {
        let portions = self.portions(&key);
        if portions.is_empty() {
            return command.fail(DomainError::not_present());
        }
        let me = self.inner.link.node_id();
        let target = portions.iter().find_map(|p| {
            p.connections
                .iter()
                .rev()
                .find(|c| command.accepts(&c.id))
                .map(|c| (p.node.clone(), c.id.clone()))
        });
        let Some((node, connection)) = target else {
            if portions.iter().any(|p| !p.connections.is_empty()) {
                return command.fail(DomainError::ConfirmationRequired);
            }
            return self.park(key, command);
        };
        if node == me {
            return self.inner.local.route(key, command);
        }
        if moves >= MAX_MOVES {
            return command.fail(DomainError::not_present());
        }
        let me = self.clone();
        let retry_key = key.clone();
        remote::send(
            &self.inner.link,
            &node,
            &key,
            &connection,
            command,
            self.inner.limits.max_pending_invokes,
            Arc::new(move |command| me.route_with(retry_key.clone(), command, moves + 1)),
        );
    }

    /// `change`, then (while Redis answers, and for at most a command
    /// deadline) until every node can see it: a visitor welcomed on one
    /// node is visible on all, an update acknowledged on one is read on all.
    fn then_published(
        &self,
        key: VisitorKey,
        change: LocalBoxFuture<'static, Result<(), DomainError>>,
    ) -> LocalBoxFuture<'static, Result<(), DomainError>> {
        let writer = self.inner.writer.clone();
        let link = self.inner.link.clone();
        Box::pin(async move {
            change.await?;
            if link.is_reachable() {
                let within = link.config().redis_timeout();
                // On the link's runtime: the writer's waiters live there.
                let _ = link
                    .runtime()
                    .spawn(async move { writer.written(&key, within).await })
                    .await;
            }
            Ok(())
        })
    }

    /// Emits this node's share of the presence webhooks into `outbox`
    /// (README "Webhooks", cluster mode). Call before `link.start()`.
    pub fn emit_webhooks(&self, outbox: Arc<crate::presence::webhooks::Outbox>) {
        let inner = &self.inner;
        let webhooks = webhooks::ClusterWebhooks::start(
            &inner.link,
            &inner.local,
            outbox,
            inner.clock.clone(),
        );
        let _ = inner.webhooks.set(webhooks);
    }

    /// The node is stopping (its sockets are closed): announce every local
    /// visitor in grace and delete this node's entries; the webhook
    /// memberships go once that grace has ended.
    pub async fn withdraw(&self) {
        if let Some(webhooks) = self.inner.webhooks.get() {
            let until = self.inner.clock.now_ms() + self.inner.limits.reconnect_grace_ms;
            webhooks.leaving(until).await;
        }
        self.inner.writer.drained(Duration::from_secs(1)).await;
        self.inner
            .writer
            .withdraw(
                &self.inner.link,
                &self.inner.local,
                self.inner.clock.now_ms(),
                self.inner.limits.reconnect_grace_ms,
            )
            .await;
    }
}

impl PresenceDirectory for ClusterPresence {
    fn connect(
        &self,
        key: VisitorKey,
        connection: LiveConnection,
        data: PresenceData,
    ) -> LocalBoxFuture<'static, Result<(), DomainError>> {
        let connected = self.inner.local.connect(key.clone(), connection, data);
        self.then_published(key, connected)
    }

    fn disconnect(&self, key: VisitorKey, connection_id: &str, held: Option<PresenceData>) {
        self.inner.local.disconnect(key, connection_id, held);
    }

    fn repark(&self, key: VisitorKey, commands: Vec<VisitorCommand>) {
        for command in commands {
            self.route_with(key.clone(), command, 0);
        }
    }

    fn presence_update(
        &self,
        key: VisitorKey,
        connection_id: &str,
        data: PresenceData,
    ) -> LocalBoxFuture<'static, Result<(), DomainError>> {
        let updated = self
            .inner
            .local
            .presence_update(key.clone(), connection_id, data);
        self.then_published(key, updated)
    }

    fn watch(&self, key: VisitorKey, socket: AgentSocketId, events: Recipient<AgentEvent>) {
        let current = || merged_state(&key, &self.portions(&key));
        let state = current();
        self.inner.watchers.watch(key, socket, events, || state);
    }

    fn unwatch(&self, key: VisitorKey, socket: AgentSocketId) {
        self.inner.watchers.unwatch(&key, socket);
    }

    fn unwatch_all(&self, socket: AgentSocketId) {
        self.inner.watchers.unwatch_all(socket);
    }

    fn stats(&self) -> LocalBoxFuture<'static, Result<RegistryStats, DomainError>> {
        self.inner.local.stats()
    }

    fn lookup(&self, key: &VisitorKey) -> VisitorState {
        merged_state(key, &self.portions(key))
    }

    fn page(
        &self,
        group: GroupId,
        after: Option<&str>,
        limit: usize,
        keep: &mut dyn FnMut(&VisitorState) -> bool,
    ) -> (Vec<VisitorState>, bool) {
        let mut ids = self.inner.replica.visitors_of(group, after);
        ids.extend(
            self.inner
                .local
                .keys()
                .into_iter()
                .filter(|k| k.group == group && after.is_none_or(|a| k.visitor.as_str() > a))
                .map(|k| k.visitor.as_str().to_owned()),
        );
        ids.sort_unstable();
        ids.dedup();
        let mut page = Vec::new();
        for id in ids {
            let Ok(visitor) = VisitorId::parse(&id) else {
                continue;
            };
            let key = VisitorKey::new(group, visitor);
            let state = self.lookup(&key);
            if state.online && keep(&state) {
                if page.len() == limit {
                    return (page, true);
                }
                page.push(state);
            }
        }
        (page, false)
    }

    fn route(&self, key: VisitorKey, command: VisitorCommand) {
        self.route_with(key, command, 0);
    }

    fn broadcast(&self, key: &VisitorKey, command: &dyn Fn() -> VisitorCommand) {
        let me = self.inner.link.node_id();
        for portion in self.portions(key) {
            if portion.connections.is_empty() {
                continue;
            }
            if portion.node == me {
                self.inner.local.deliver_to_all(key, command);
            } else {
                remote::show(&self.inner.link, &portion.node, key, command());
            }
        }
    }
}
