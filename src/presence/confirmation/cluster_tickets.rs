//! Ticket holders across the cluster. Each node owns the holdings of its
//! own visitor connections: it writes them to `{prefix}:tickets:{node}`
//! (hash: connection id → JSON array of grant keys) and broadcasts every
//! change on the control channel (`confirm_tickets`: `hold`, `replace`,
//! `drop`, `release`). Holds and replaces are awaited before the hello
//! registers the connection (or before the answer is announced), so the
//! holding reaches every node before the connection's presence or the
//! outcome does. Every node keeps a replica of the others' holdings,
//! reloaded from the hashes after every (re)connection of the subscriber
//! (its own hash is rewritten first, for a Redis that lost its data);
//! a node that dies or leaves loses its holdings everywhere, and its hash
//! is deleted by the node that reaps it; a node that joins (or comes back)
//! has its hash read.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use redis::AsyncCommands;
use serde_json::{json, Value};

use super::tickets::{Shared, TicketHolders};
use crate::infra::error::SharedStateUnavailable;
use crate::store::cluster::{ClusterLink, NodeEvent};

/// Control broadcast kind of holding changes.
const KIND: &str = "confirm_tickets";
/// How long a closed remote connection is remembered.
const RELEASED_FOR: std::time::Duration = std::time::Duration::from_secs(60);
/// Remembered connections at which old ones are dropped.
const RELEASED_PRUNE_AT: usize = 4096;

/// The link a node shares its holdings through.
pub(super) struct TicketSync {
    pub(super) link: ClusterLink,
}

impl TicketHolders {
    /// Shares this node's holdings through `link` and keeps the replica of
    /// the other nodes'. Call before the link starts.
    pub fn join_cluster(self: &Arc<Self>, link: &ClusterLink) {
        if self.cluster.set(TicketSync { link: link.clone() }).is_err() {
            return;
        }
        let me = link.node_id().to_owned();
        let weak = Arc::downgrade(self);
        link.on_control(
            KIND,
            Arc::new(move |from, body| {
                if let Some(this) = weak.upgrade() {
                    if from != me {
                        this.remote(from, body);
                    }
                }
            }),
        );
        let weak = Arc::downgrade(self);
        link.on_node_event(Arc::new(move |event| {
            let Some(this) = weak.upgrade() else { return };
            match event {
                NodeEvent::Died(node) | NodeEvent::Left(node) => this.forget_node(node),
                // A node (back) in the table: read what it holds, in case
                // it was declared dead while it went on holding.
                NodeEvent::Joined(node) => this.load_node(node.clone()),
            }
        }));
        let weak = Arc::downgrade(self);
        link.on_connected(Arc::new(move |_first| {
            let Some(this) = weak.upgrade() else { return };
            let Some(sync) = this.cluster.get() else {
                return;
            };
            let runtime = sync.link.runtime().clone();
            runtime.spawn(async move {
                if let Err(e) = this.reload().await {
                    tracing::warn!(error = %e.0, "cannot reload confirmation ticket holders");
                }
            });
        }));
        let reaping = link.clone();
        link.on_reap(Arc::new(move |node| {
            let key = reaping.key(&format!("tickets:{node}"));
            reaping
                .run("tickets reap", move |mut conn| async move {
                    conn.del::<_, ()>(key).await
                })
                .boxed()
        }));
    }

    /// A change made on another node.
    fn remote(&self, from: &str, body: &Value) {
        let text = |name: &str| body.get(name).and_then(Value::as_str).unwrap_or_default();
        let (grant, connection) = (text("grant"), text("conn"));
        let touched = match text("op") {
            "hold" => {
                self.insert(grant, connection, Some(from));
                return;
            }
            "replace" => {
                let touched = self.remove_grant(grant);
                self.insert(grant, connection, Some(from));
                touched
            }
            "drop" => self.remove_grant(grant),
            "release" => {
                self.remove_connection(connection);
                self.remember_released(connection);
                return;
            }
            _ => return,
        };
        if let (Some(sync), false) = (self.cluster.get(), touched.is_empty()) {
            // Our connections lost a grant: our hash says so too.
            let write = self.persist(&touched);
            sync.link.runtime().spawn(async move {
                if let Err(e) = write.await {
                    tracing::warn!(error = %e.0, "cannot write confirmation ticket holders");
                }
            });
        }
    }

    /// Remembers a closed remote connection for a while (ids are never
    /// reused); bounded by dropping entries older than [`RELEASED_FOR`].
    fn remember_released(&self, connection: &str) {
        if self.released.len() >= RELEASED_PRUNE_AT {
            self.released.retain(|_, at| at.elapsed() < RELEASED_FOR);
        }
        self.released
            .insert(connection.to_owned(), std::time::Instant::now());
    }

    /// A holding read back from a node's hash, unless it closed meanwhile.
    fn insert_loaded(&self, grant: &str, connection: &str, node: &str) {
        if !self.released.contains_key(connection) {
            self.insert(grant, connection, Some(node));
        }
    }

    fn forget_node(&self, node: &str) {
        let gone: Vec<String> = self
            .by_connection
            .iter()
            .filter(|h| h.node.as_deref() == Some(node))
            .map(|h| h.key().clone())
            .collect();
        for connection in gone {
            self.remove_connection(&connection);
        }
    }

    /// Reads `node`'s hash into the replica, in the background.
    fn load_node(self: Arc<Self>, node: String) {
        let Some(sync) = self.cluster.get() else {
            return;
        };
        let key = sync.link.key(&format!("tickets:{node}"));
        let read = sync.link.run("tickets load", move |mut conn| async move {
            conn.hgetall::<_, HashMap<String, String>>(key).await
        });
        let runtime = sync.link.runtime().clone();
        runtime.spawn(async move {
            match read.await {
                Ok(entries) => {
                    for (connection, grants) in entries {
                        let grants: Vec<String> = serde_json::from_str(&grants).unwrap_or_default();
                        for grant in grants {
                            self.insert_loaded(&grant, &connection, &node);
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e.0, "cannot read a node's ticket holders"),
            }
        });
    }

    /// Writes the holdings of this node's `connections` to its hash.
    fn persist(
        &self,
        connections: &[String],
    ) -> BoxFuture<'static, Result<(), SharedStateUnavailable>> {
        let Some(sync) = self.cluster.get() else {
            return async { Ok(()) }.boxed();
        };
        let writes: Vec<(String, Option<String>)> = connections
            .iter()
            .map(|c| {
                let grants = self
                    .by_connection
                    .get(c)
                    .filter(|h| h.node.is_none() && !h.grants.is_empty())
                    .map(|h| json!(h.grants.iter().collect::<Vec<_>>()).to_string());
                (c.clone(), grants)
            })
            .collect();
        let key = sync.link.key(&format!("tickets:{}", sync.link.node_id()));
        sync.link
            .run("tickets write", move |mut conn| async move {
                let mut pipe = redis::pipe();
                for (connection, grants) in writes {
                    match grants {
                        Some(g) => pipe.hset(&key, connection, g).ignore(),
                        None => pipe.hdel(&key, connection).ignore(),
                    };
                }
                pipe.query_async::<()>(&mut conn).await
            })
            .boxed()
    }

    /// Writes this node's `touched` holdings, then tells the other nodes.
    pub(super) fn share(
        &self,
        op: &str,
        grant: &str,
        connection: &str,
        touched: Vec<String>,
    ) -> Shared {
        let Some(sync) = self.cluster.get() else {
            return async {}.boxed();
        };
        let write = self.persist(&touched);
        let tell = sync.link.broadcast(
            KIND,
            json!({ "op": op, "grant": grant, "conn": connection }),
        );
        async move {
            let outcome = match write.await {
                Ok(()) => tell.await.map(|_| ()),
                Err(e) => Err(e),
            };
            if let Err(e) = outcome {
                tracing::warn!(error = %e.0, "cannot share a confirmation ticket holding");
            }
        }
        .boxed()
    }

    /// Rewrites this node's hash, then replaces the replica of the other
    /// nodes' holdings with what their hashes say.
    async fn reload(&self) -> Result<(), SharedStateUnavailable> {
        let Some(sync) = self.cluster.get() else {
            return Ok(());
        };
        let link = sync.link.clone();
        let mine: Vec<(String, String)> = self
            .by_connection
            .iter()
            .filter(|h| h.node.is_none() && !h.grants.is_empty())
            .map(|h| {
                let grants = json!(h.grants.iter().collect::<Vec<_>>()).to_string();
                (h.key().clone(), grants)
            })
            .collect();
        let own_key = link.key(&format!("tickets:{}", link.node_id()));
        let pattern = link.key("tickets:*");
        let prefix = link.key("tickets:");
        let found: Vec<(String, HashMap<String, String>)> = link
            .run("tickets reload", move |mut conn| async move {
                let mut pipe = redis::pipe();
                pipe.atomic().del(&own_key).ignore();
                for (connection, grants) in &mine {
                    pipe.hset(&own_key, connection, grants).ignore();
                }
                pipe.query_async::<()>(&mut conn).await?;
                let mut keys: Vec<String> = Vec::new();
                {
                    let mut iter = conn.scan_match::<_, String>(pattern).await?;
                    while let Some(key) = futures_util::StreamExt::next(&mut iter).await {
                        let key = key?;
                        if key != own_key {
                            keys.push(key);
                        }
                    }
                }
                let mut out = Vec::new();
                for key in keys {
                    let entries: HashMap<String, String> = conn.hgetall(&key).await?;
                    out.push((key, entries));
                }
                Ok(out)
            })
            .await?;
        let remote: Vec<String> = self
            .by_connection
            .iter()
            .filter(|h| h.node.is_some())
            .map(|h| h.key().clone())
            .collect();
        for connection in remote {
            self.remove_connection(&connection);
        }
        for (key, entries) in found {
            let Some(node) = key.strip_prefix(&prefix) else {
                continue;
            };
            for (connection, grants) in entries {
                let grants: Vec<String> = serde_json::from_str(&grants).unwrap_or_default();
                for grant in grants {
                    self.insert_loaded(&grant, &connection, node);
                }
            }
        }
        Ok(())
    }
}
