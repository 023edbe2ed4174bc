//! Open prompts across the cluster: every node keeps the open prompts of
//! every visitor, so a socket that opens on any node (a page navigation,
//! a reconnect elsewhere) shows the prompts started on other nodes. A node
//! broadcasts `confirm_prompt` (`open`, without the answer; `close`) and
//! awaits it before the prompt is shown or its outcome announced; after
//! every (re)connection of the subscriber the map is rebuilt from the
//! pending prompts in Redis.

use std::sync::{Arc, Weak};

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use serde_json::{json, Value};

use super::{key_of, prompt_of, Confirmations};
use crate::store::cluster::ClusterLink;
use crate::store::ConfirmationRecord;

/// Control broadcast kind of open and closed prompts.
const KIND: &str = "confirm_prompt";

impl Confirmations {
    /// Shares the open prompts, and the ticket holders, through `link`
    /// (cluster mode); call before the link starts.
    pub fn join_cluster(self: &Arc<Self>, link: &ClusterLink) {
        self.holders.join_cluster(link);
        if self.cluster.set(link.clone()).is_err() {
            return;
        }
        let me = link.node_id().to_owned();
        let weak = Arc::downgrade(self);
        link.on_control(
            KIND,
            Arc::new(move |from, body| {
                if let Some(this) = weak.upgrade() {
                    if from != me {
                        this.remote_prompt(body);
                    }
                }
            }),
        );
        let weak = Arc::downgrade(self);
        let runtime = link.runtime().clone();
        link.on_connected(Arc::new(move |_first| {
            let weak: Weak<Self> = weak.clone();
            runtime.spawn_blocking(move || {
                let Some(this) = weak.upgrade() else { return };
                match this.records.pending_prompts() {
                    Ok(pending) => this.reload_open(pending),
                    Err(e) => tracing::warn!(error = %e, "cannot reload open prompts"),
                }
            });
        }));
    }

    fn reload_open(&self, pending: Vec<ConfirmationRecord>) {
        let now = self.clock.now_ms();
        self.open.clear();
        for record in pending.into_iter().filter(|r| r.deadline_ms > now) {
            if let Ok(key) = key_of(&record) {
                self.open
                    .entry(key)
                    .or_default()
                    .push(Arc::new(prompt_of(&record)));
            }
        }
    }

    fn remote_prompt(&self, body: &Value) {
        let record = body
            .get("prompt")
            .cloned()
            .and_then(|p| serde_json::from_value::<ConfirmationRecord>(p).ok());
        let Some(record) = record else { return };
        let Ok(key) = key_of(&record) else { return };
        let id = record.id.clone();
        self.open.remove_if_mut(&key, |_, prompts| {
            prompts.retain(|p| p.id != id);
            prompts.is_empty()
        });
        if body.get("op").and_then(Value::as_str) == Some("open") {
            self.open
                .entry(key)
                .or_default()
                .push(Arc::new(prompt_of(&record)));
        }
    }

    /// Tells the other nodes that `record` opened (`open`) or closed;
    /// ready at once on one node.
    pub(super) fn share_prompt(
        &self,
        record: &ConfirmationRecord,
        open: bool,
    ) -> BoxFuture<'static, ()> {
        let Some(link) = self.cluster.get() else {
            return async {}.boxed();
        };
        let mut shown = record.clone();
        shown.answer.clear();
        let op = if open { "open" } else { "close" };
        let tell = link.broadcast(KIND, json!({ "op": op, "prompt": shown }));
        async move {
            if let Err(e) = tell.await {
                tracing::warn!(error = %e.0, "cannot share a confirmation prompt");
            }
        }
        .boxed()
    }
}
