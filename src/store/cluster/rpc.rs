//! Messages between nodes: broadcasts on the control channel
//! (`{prefix}:ctl`), and requests to one node on its own channel
//! (`{prefix}:node:{id}`) whose replies come back on the asker's channel
//! (SignalR's per-server return channel). A request fails at once when
//! nobody is subscribed to the target's channel (`PUBLISH` returns 0: the
//! node is gone) and as soon as the target is declared dead or leaves, not
//! at its deadline; a late reply finds no waiter and is dropped.
//!
//! Every message is JSON: `{"t": kind, "from": node, "body": ...}` on the
//! control channel; `{"t":"req","id":n,"from":node,"kind":kind,"body":...}`
//! and `{"t":"res","id":n,"ok":...}` or `{"t":"res","id":n,"err":{"code",
//! "message"}}` on node channels.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_core::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::oneshot;

use super::{ClusterLink, NodeEvent};
use crate::infra::error::SharedStateUnavailable;

/// A failure carried back from another node: a domain error code and its
/// message, for the asking layer to map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    pub code: String,
    pub message: String,
}

/// What a request handler answers.
pub type RpcReply = Result<Value, WireError>;

/// Answers requests of one kind: `(asking node, body)`.
pub type RpcHandler = Arc<dyn Fn(String, Value) -> BoxFuture<'static, RpcReply> + Send + Sync>;

/// Handles one kind of control broadcast: `(sending node, body)`; must not
/// wait.
pub type ControlHandler = Arc<dyn Fn(&str, &Value) + Send + Sync>;

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// The target node is gone (nobody on its channel, or declared dead).
    NodeGone,
    /// No reply before the deadline.
    Timeout,
    /// Redis did not take the request.
    Unavailable(SharedStateUnavailable),
    /// The target answered with an error.
    Remote(WireError),
}

struct Pending {
    node: String,
    reply: oneshot::Sender<Result<Value, RequestError>>,
}

/// Removes a request's [`Pending`] entry when its future goes.
struct PendingEntry {
    link: ClusterLink,
    id: u64,
}

impl Drop for PendingEntry {
    fn drop(&mut self) {
        lock(&self.link.inner.rpc.pending).remove(&self.id);
    }
}

#[derive(Default)]
pub(super) struct Requests {
    next_id: AtomicU64,
    pending: Mutex<HashMap<u64, Pending>>,
    handlers: Mutex<HashMap<String, RpcHandler>>,
    control: Mutex<HashMap<String, ControlHandler>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Serialize, Deserialize)]
struct ControlMessage {
    t: String,
    from: String,
    #[serde(default)]
    body: Value,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "lowercase")]
enum NodeMessage {
    Req {
        id: u64,
        from: String,
        kind: String,
        #[serde(default)]
        body: Value,
    },
    Res {
        id: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ok: Option<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        err: Option<WireError>,
    },
}

impl ClusterLink {
    /// Handles control broadcasts of `kind`. Register before `start`.
    pub fn on_control(&self, kind: &str, handler: ControlHandler) {
        lock(&self.inner.rpc.control).insert(kind.to_owned(), handler);
    }

    /// Answers requests of `kind` from other nodes. Register before `start`.
    pub fn serve(&self, kind: &str, handler: RpcHandler) {
        lock(&self.inner.rpc.handlers).insert(kind.to_owned(), handler);
    }

    /// Tells every node (this one too); how many subscribers got it.
    pub fn broadcast(
        &self,
        kind: &str,
        body: Value,
    ) -> impl std::future::Future<Output = Result<u64, SharedStateUnavailable>> + Send + 'static
    {
        let message = ControlMessage {
            t: kind.to_owned(),
            from: self.node_id().to_owned(),
            body,
        };
        let payload = serde_json::to_vec(&message).unwrap_or_default();
        self.publish("ctl", payload)
    }

    /// Asks `node` to handle `body` as `kind`, waiting at most `timeout`.
    pub fn request(
        &self,
        node: &str,
        kind: &str,
        body: Value,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<Value, RequestError>> + Send + 'static {
        let id = self.inner.rpc.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        let known = self.is_live(node);
        if known {
            lock(&self.inner.rpc.pending).insert(
                id,
                Pending {
                    node: node.to_owned(),
                    reply,
                },
            );
        }
        let message = NodeMessage::Req {
            id,
            from: self.node_id().to_owned(),
            kind: kind.to_owned(),
            body,
        };
        let payload = serde_json::to_vec(&message).unwrap_or_default();
        // Never sent to a node not known live: "gone" must mean "not run".
        let sent = known.then(|| self.publish(&format!("node:{node}"), payload));
        // Dropped with the future, answered or not, so a caller that gives
        // up (or never polls) leaves no entry behind.
        let entry = known.then(|| PendingEntry {
            link: self.clone(),
            id,
        });
        async move {
            let _entry = entry;
            let Some(sent) = sent else {
                return Err(RequestError::NodeGone);
            };
            match sent.await {
                Ok(0) => return Err(RequestError::NodeGone),
                Ok(_) => {}
                Err(e) => return Err(RequestError::Unavailable(e)),
            }
            match tokio::time::timeout(timeout, answer).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err(RequestError::NodeGone),
                Err(_) => Err(RequestError::Timeout),
            }
        }
    }

    fn on_node_message(&self, payload: &[u8]) {
        let Ok(message) = serde_json::from_slice::<NodeMessage>(payload) else {
            tracing::warn!("unreadable message on this node's channel");
            return;
        };
        match message {
            NodeMessage::Res { id, ok, err } => {
                if let Some(pending) = lock(&self.inner.rpc.pending).remove(&id) {
                    let result = match (ok, err) {
                        (_, Some(err)) => Err(RequestError::Remote(err)),
                        (ok, None) => Ok(ok.unwrap_or(Value::Null)),
                    };
                    let _ = pending.reply.send(result);
                }
            }
            NodeMessage::Req {
                id,
                from,
                kind,
                body,
            } => {
                let handler = lock(&self.inner.rpc.handlers).get(&kind).cloned();
                let link = self.clone();
                self.inner.handle.spawn(async move {
                    let reply = match handler {
                        Some(handler) => handler(from.clone(), body).await,
                        None => Err(WireError {
                            code: "internal".into(),
                            message: format!("this node does not handle {kind:?}"),
                        }),
                    };
                    let (ok, err) = match reply {
                        Ok(value) => (Some(value), None),
                        Err(e) => (None, Some(e)),
                    };
                    let payload =
                        serde_json::to_vec(&NodeMessage::Res { id, ok, err }).unwrap_or_default();
                    // The asker gone, or Redis down: its own deadline answers.
                    let _ = link.publish(&format!("node:{from}"), payload).await;
                });
            }
        }
    }

    fn on_control_message(&self, payload: &[u8]) {
        let Ok(message) = serde_json::from_slice::<ControlMessage>(payload) else {
            tracing::warn!("unreadable message on the control channel");
            return;
        };
        let handler = lock(&self.inner.rpc.control).get(&message.t).cloned();
        if let Some(handler) = handler {
            handler(&message.from, &message.body);
        }
    }

    /// Fails at once the requests waiting on a node that is gone.
    fn fail_requests_to(&self, node: &str) {
        let gone: Vec<Pending> = {
            let mut pending = lock(&self.inner.rpc.pending);
            let ids: Vec<u64> = pending
                .iter()
                .filter(|(_, p)| p.node == node)
                .map(|(id, _)| *id)
                .collect();
            ids.into_iter()
                .filter_map(|id| pending.remove(&id))
                .collect()
        };
        for pending in gone {
            let _ = pending.reply.send(Err(RequestError::NodeGone));
        }
    }
}

/// Subscribes the node and control channels and fails requests to nodes
/// that go.
pub(super) fn install(link: &ClusterLink) {
    let node = link.clone();
    link.subscribe(
        &format!("node:{}", link.node_id()),
        Arc::new(move |payload| node.on_node_message(payload)),
    );
    let control = link.clone();
    link.subscribe(
        "ctl",
        Arc::new(move |payload| control.on_control_message(payload)),
    );
    let deaths = link.clone();
    link.on_node_event(Arc::new(move |event| match event {
        NodeEvent::Left(node) | NodeEvent::Died(node) => deaths.fail_requests_to(node),
        NodeEvent::Joined(_) => {}
    }));
}
