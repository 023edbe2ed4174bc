//! The event bus in cluster mode. Sockets, watches and revocation closes
//! stay node-local (the [`LocalEventBus`](crate::presence::events::LocalEventBus)
//! underneath); watch events are derived by the cluster directory on the
//! watching node; confirmation outcomes are broadcast on the control
//! channel (`settled`) so the asking agent's sockets hear on whichever
//! node they are.
//!
//! [`MutedBus`] is what the local registry gets in cluster mode: its own
//! view of a visitor is only this node's portion, so its watch events are
//! not the cluster's and go nowhere.

use std::sync::Arc;

use actix::Recipient;

use crate::infra::ids::{GroupId, VisitorKey};
use crate::presence::events::{AgentEvent, AgentSocketId, EventBus};
use crate::presence::visitor::{VisitorEvent, VisitorState};
use crate::store::cluster::ClusterLink;
use crate::store::ConfirmationRecord;

/// Node-local sockets, cluster-wide confirmation outcomes.
pub struct ClusterEventBus {
    local: Arc<dyn EventBus>,
    link: ClusterLink,
}

impl ClusterEventBus {
    /// Registers the `settled` broadcast on `link` (before `link.start()`).
    pub fn new(local: Arc<dyn EventBus>, link: ClusterLink) -> Self {
        let deliver = local.clone();
        link.on_control(
            "settled",
            Arc::new(move |_from, body| {
                match serde_json::from_value::<ConfirmationRecord>(body.clone()) {
                    Ok(record) => deliver.confirmation_settled(&record),
                    Err(e) => tracing::warn!(error = %e, "unreadable confirmation outcome"),
                }
            }),
        );
        Self { local, link }
    }
}

impl EventBus for ClusterEventBus {
    fn subscribe(
        &self,
        jti: &str,
        group: GroupId,
        username: &str,
        socket: AgentSocketId,
        events: Recipient<AgentEvent>,
    ) {
        self.local.subscribe(jti, group, username, socket, events);
    }

    fn unsubscribe(&self, jti: &str, group: GroupId, username: &str, socket: AgentSocketId) {
        self.local.unsubscribe(jti, group, username, socket);
    }

    fn revoke(&self, jti: &str) -> usize {
        self.local.revoke(jti)
    }

    fn revoke_agents(&self, removed: &dyn Fn(GroupId, &str) -> bool) -> usize {
        self.local.revoke_agents(removed)
    }

    fn confirmation_settled(&self, record: &ConfirmationRecord) {
        let Ok(body) = serde_json::to_value(record) else {
            return self.local.confirmation_settled(record);
        };
        let sent = self.link.broadcast("settled", body);
        let local = self.local.clone();
        let record = record.clone();
        self.link.runtime().spawn(async move {
            // Redis away: at least this node's sockets hear.
            if sent.await.is_err() {
                local.confirmation_settled(&record);
            }
        });
    }

    fn watch(
        &self,
        key: VisitorKey,
        socket: AgentSocketId,
        events: Recipient<AgentEvent>,
        current: VisitorState,
    ) {
        self.local.watch(key, socket, events, current);
    }

    fn unwatch(&self, key: &VisitorKey, socket: AgentSocketId) {
        self.local.unwatch(key, socket);
    }

    fn unwatch_all(&self, socket: AgentSocketId) {
        self.local.unwatch_all(socket);
    }

    fn visitor_event(&self, key: &VisitorKey, event: VisitorEvent) {
        self.local.visitor_event(key, event);
    }

    fn watch_count(&self) -> usize {
        self.local.watch_count()
    }
}

/// The local registry's bus in cluster mode: watch events and watches go
/// nowhere (the cluster directory keeps them); counts are the real bus's.
pub struct MutedBus(pub Arc<dyn EventBus>);

impl EventBus for MutedBus {
    fn subscribe(
        &self,
        jti: &str,
        group: GroupId,
        username: &str,
        socket: AgentSocketId,
        events: Recipient<AgentEvent>,
    ) {
        self.0.subscribe(jti, group, username, socket, events);
    }

    fn unsubscribe(&self, jti: &str, group: GroupId, username: &str, socket: AgentSocketId) {
        self.0.unsubscribe(jti, group, username, socket);
    }

    fn revoke(&self, jti: &str) -> usize {
        self.0.revoke(jti)
    }

    fn revoke_agents(&self, removed: &dyn Fn(GroupId, &str) -> bool) -> usize {
        self.0.revoke_agents(removed)
    }

    fn confirmation_settled(&self, record: &ConfirmationRecord) {
        self.0.confirmation_settled(record);
    }

    fn watch(&self, _: VisitorKey, _: AgentSocketId, _: Recipient<AgentEvent>, _: VisitorState) {}

    fn unwatch(&self, _: &VisitorKey, _: AgentSocketId) {}

    fn unwatch_all(&self, _: AgentSocketId) {}

    fn visitor_event(&self, _: &VisitorKey, _: VisitorEvent) {}

    fn watch_count(&self) -> usize {
        self.0.watch_count()
    }
}
