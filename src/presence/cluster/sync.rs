//! Keeping the replica whole: the other nodes' announcements as they come,
//! and a re-read of every group's portions after each (re)connection of
//! the subscriber (pub/sub is at-most-once), pruning only after a complete
//! re-read once the others have had time to re-publish.

use super::{writer, ClusterPresence, PRUNE_AFTER};
use crate::infra::ids::{GroupId, VisitorId, VisitorKey};
use crate::presence::registry::Portion;

/// One `HSCAN` reply: the next cursor and `(field, value)` pairs.
type ScanPage = (u64, Vec<(String, Vec<u8>)>);

impl ClusterPresence {
    /// The subscriber (re)connected: re-publish every local visitor (Redis
    /// may have lost them) and re-read the others (announcements may have
    /// been lost); after a reconnection, drop what the others no longer
    /// hold once they have had time to re-publish.
    pub(super) fn reconnected(&self, first: bool) {
        self.inner.writer.mark_all(self.inner.local.keys());
        let me = self.clone();
        self.inner.link.runtime().spawn(async move {
            let generation = me.inner.replica.next_generation();
            me.reload(generation).await;
            if first {
                return;
            }
            tokio::time::sleep(PRUNE_AFTER).await;
            let generation = me.inner.replica.next_generation();
            // Only a complete re-read may prune: a failed one found nothing.
            if me.reload(generation).await {
                for key in me.inner.replica.prune_before(generation) {
                    me.changed(&key);
                }
            }
        });
    }

    /// Reads every group's portions from Redis into the replica; whether
    /// it read them all.
    pub(super) async fn reload(&self, _generation: u64) -> bool {
        let mut complete = true;
        let me = self.inner.link.node_id().to_owned();
        let groups: Vec<GroupId> = self.inner.live.load().groups.iter().map(|g| g.id).collect();
        for group in groups {
            let hash = self.inner.link.key(&format!("presence:{group}"));
            let mut cursor = 0u64;
            loop {
                let hash = hash.clone();
                let page: Result<ScanPage, _> = self
                    .inner
                    .link
                    .run("presence read", move |mut conn| async move {
                        redis::cmd("HSCAN")
                            .arg(hash)
                            .arg(cursor)
                            .arg("COUNT")
                            .arg(1000)
                            .query_async(&mut conn)
                            .await
                    })
                    .await;
                let Ok((next, entries)) = page else {
                    tracing::warn!(group, "cannot read the cluster's presence");
                    complete = false;
                    break;
                };
                for (field, json) in entries {
                    let Some((visitor, node)) = field.split_once('\n') else {
                        continue;
                    };
                    if node == me || self.inner.link.is_dead(node) {
                        continue;
                    }
                    let (Ok(visitor), Ok(portion)) = (
                        VisitorId::parse(visitor),
                        serde_json::from_slice::<Portion>(&json),
                    ) else {
                        continue;
                    };
                    let key = VisitorKey::new(group, visitor);
                    if self
                        .inner
                        .replica
                        .apply(&key, node, portion.seq, Some(portion))
                    {
                        self.changed(&key);
                    }
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        complete
    }

    /// Another node's announcement (or this node's own, ignored).
    pub(super) fn announced(&self, payload: &[u8]) {
        let Ok(announcement) = serde_json::from_slice::<writer::Announcement>(payload) else {
            tracing::warn!("unreadable presence announcement");
            return;
        };
        if announcement.node == self.inner.link.node_id()
            || self.inner.link.is_dead(&announcement.node)
        {
            return;
        }
        // A node that announces is alive: requests to it may go now.
        self.inner.link.heard_from(&announcement.node);
        for update in announcement.updates {
            let Ok(visitor) = VisitorId::parse(&update.v) else {
                continue;
            };
            let key = VisitorKey::new(update.g, visitor);
            if self
                .inner
                .replica
                .apply(&key, &announcement.node, update.seq, update.p)
            {
                self.changed(&key);
            }
        }
    }
}
