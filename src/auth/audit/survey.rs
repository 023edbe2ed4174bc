//! Cluster mode's audit query: every node keeps its own records in its own
//! sled (written before the token is returned), and a query on any node
//! merges the records of every live node, newest first.
//!
//! The node asked reads its own records and asks every other live node for
//! its page (`audit_page`, over the link) with `cluster.survey_timeout_ms`
//! to answer. A node that does not answer in time (or dies meanwhile) is
//! named in `missing`, with `partial: true`; if Redis itself does not
//! answer the query fails with `cluster_unavailable`.
//!
//! **Order and cursor.** Records are ordered by their key (Unix ms, then 8
//! random bytes) and then by node id, both descending: one total order over
//! the cluster. The merged cursor is the position of the last record of the
//! page, `{32 hex digits of its key}.{node id}`; the next page is the
//! records strictly after that position, so each node is asked for keys
//! below the cursor's key (and, for node ids below the cursor's, equal to
//! it). Paging is exact whatever nodes join meanwhile; a page that was
//! partial skips, for good, the missing node's records above its cursor.
//! Each node returns at most `limit + 1` records, so the merge knows
//! whether there is a next page without reading further.
//!
//! Single-node queries keep their own cursor (32 hex digits) and shape.

use std::sync::Arc;

use futures_core::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{decode_cursor, encode_cursor, Audit, AuditRecord, Page, Query, MAX_PAGE};
use crate::infra::error::{off_thread, DomainError};
use crate::infra::ids::GroupId;
use crate::store::cluster::{ClusterLink, RequestError, WireError};

/// The request kind nodes serve their pages under.
const KIND: &str = "audit_page";

/// A merged page: the single-node page, and whether a node was missing.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MergedPage {
    pub records: Vec<AuditRecord>,
    pub next_cursor: Option<String>,
    pub partial: bool,
    /// The live nodes that did not answer in time.
    pub missing: Vec<String>,
}

/// What an audit query found: this node's page, or the cluster's.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Found {
    Local(Page),
    Merged(MergedPage),
}

/// One node's part of a merged query.
#[derive(Serialize, Deserialize)]
struct PageRequest {
    group: GroupId,
    since: Option<u64>,
    until: Option<u64>,
    username: Option<String>,
    limit: usize,
    /// Only keys below this one (hex), if given.
    before: Option<String>,
}

/// A record with its key, on the wire.
#[derive(Serialize, Deserialize)]
struct Keyed {
    key: String,
    record: AuditRecord,
}

/// Where a merged page ended.
struct Position {
    key: Vec<u8>,
    node: String,
}

impl Position {
    fn parse(cursor: &str) -> Option<Self> {
        let (key, node) = cursor.split_once('.')?;
        let valid_node = (1..=64).contains(&node.len())
            && node
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        valid_node.then_some(())?;
        Some(Self {
            key: decode_cursor(key)?,
            node: node.to_owned(),
        })
    }

    fn encode(&self) -> String {
        format!("{}.{}", encode_cursor(&self.key), self.node)
    }

    /// The exclusive upper key for `node`'s records after this position.
    fn bound_for(&self, node: &str) -> Vec<u8> {
        let mut bound = self.key.clone();
        if node < self.node.as_str() {
            // Keys are 16 bytes: nothing lies between a key and itself + 0.
            bound.push(0);
        }
        bound
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() > 64 {
        return None;
    }
    (0..text.len() / 2)
        .map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

fn bad_cursor() -> DomainError {
    DomainError::BadRequest("cursor is not one this server issued".into())
}

fn wire(code: &str, message: impl std::fmt::Display) -> WireError {
    WireError {
        code: code.to_owned(),
        message: message.to_string(),
    }
}

/// How one node's part went.
enum Part {
    Found(Vec<(Vec<u8>, AuditRecord)>),
    Missing,
    Unavailable(String),
    Failed(DomainError),
}

impl Audit {
    /// Cluster mode: answers other nodes' `audit_page` requests, and merges
    /// this node's queries over the cluster. Call before the link starts.
    pub fn join_cluster(self: &Arc<Self>, link: &ClusterLink) {
        if self.cluster.set(link.clone()).is_err() {
            return;
        }
        let audit = Arc::downgrade(self);
        link.serve(
            KIND,
            Arc::new(move |_from, body| {
                let audit = audit.clone();
                Box::pin(async move {
                    let audit = audit
                        .upgrade()
                        .ok_or_else(|| wire("shutting_down", "the node is stopping"))?;
                    let request: PageRequest =
                        serde_json::from_value(body).map_err(|e| wire("bad_request", e))?;
                    let found = tokio::task::spawn_blocking(move || audit.part(&request))
                        .await
                        .map_err(|e| wire("internal", e))?
                        .map_err(|e| wire("internal", e))?;
                    Ok(json!({ "records": found }))
                })
            }),
        );
    }

    /// This node's records for a part of a merged query.
    fn part(&self, request: &PageRequest) -> Result<Vec<Keyed>, String> {
        let before = match &request.before {
            Some(hex) => Some(unhex(hex).ok_or("bad bound")?),
            None => None,
        };
        let query = Query {
            since: request.since,
            until: request.until,
            username: request.username.clone(),
            limit: request.limit,
            cursor: None,
        };
        let n = request.limit.clamp(1, MAX_PAGE + 1);
        let found = self
            .scan(request.group, &query, before.as_deref(), n)
            .map_err(|e| e.to_string())?;
        Ok(found
            .into_iter()
            .map(|(key, record)| Keyed {
                key: hex(&key),
                record,
            })
            .collect())
    }

    /// One group's records matching `query`, newest first: this node's on
    /// one node, the cluster's in cluster mode.
    pub async fn search(
        self: Arc<Self>,
        group: GroupId,
        query: Query,
    ) -> Result<Found, DomainError> {
        let Some(link) = self.cluster.get().cloned() else {
            let page = off_thread("audit log", move || self.query(group, &query))
                .await?
                .ok_or_else(bad_cursor)?;
            return Ok(Found::Local(page));
        };
        self.merged(&link, group, query).await.map(Found::Merged)
    }

    async fn merged(
        self: Arc<Self>,
        link: &ClusterLink,
        group: GroupId,
        query: Query,
    ) -> Result<MergedPage, DomainError> {
        let position = match &query.cursor {
            Some(cursor) => Some(Position::parse(cursor).ok_or_else(bad_cursor)?),
            None => None,
        };
        if !link.is_reachable() {
            return Err(DomainError::ClusterUnavailable(
                "Redis is unreachable".into(),
            ));
        }
        let limit = query.limit.clamp(1, MAX_PAGE);
        let timeout = link.config().survey_timeout();
        let parts = link.live_nodes().into_iter().map(|node| {
            let request = PageRequest {
                group,
                since: query.since,
                until: query.until,
                username: query.username.clone(),
                limit: limit + 1,
                before: position.as_ref().map(|p| hex(&p.bound_for(&node))),
            };
            let part: BoxFuture<'static, Part> = if node == link.node_id() {
                let audit = self.clone();
                Box::pin(async move {
                    match off_thread("audit log", move || audit.part(&request).map_err(Failure))
                        .await
                    {
                        Ok(found) => keyed(found),
                        Err(e) => Part::Failed(e),
                    }
                })
            } else {
                let body = serde_json::to_value(&request).unwrap_or(Value::Null);
                let asked = link.request(&node, KIND, body, timeout);
                Box::pin(async move {
                    match asked.await {
                        Ok(answer) => {
                            serde_json::from_value::<Vec<Keyed>>(answer["records"].clone())
                                .map_or(Part::Missing, keyed)
                        }
                        Err(RequestError::Unavailable(e)) => Part::Unavailable(e.0),
                        Err(_) => Part::Missing,
                    }
                })
            };
            async move { (node, part.await) }
        });
        let mut found = Vec::new();
        let mut missing = Vec::new();
        for (node, part) in futures_util::future::join_all(parts).await {
            match part {
                Part::Found(records) => {
                    found.extend(records.into_iter().map(|(k, r)| (k, node.clone(), r)));
                }
                Part::Missing => missing.push(node),
                Part::Unavailable(e) => return Err(DomainError::ClusterUnavailable(e)),
                Part::Failed(e) => return Err(e),
            }
        }
        found.sort_by(|a, b| (&b.0, &b.1).cmp(&(&a.0, &a.1)));
        let next_cursor = if found.len() > limit {
            found.truncate(limit);
            found.last().map(|(key, node, _)| {
                Position {
                    key: key.clone(),
                    node: node.clone(),
                }
                .encode()
            })
        } else {
            None
        };
        Ok(MergedPage {
            records: found.into_iter().map(|(_, _, r)| r).collect(),
            next_cursor,
            partial: !missing.is_empty(),
            missing,
        })
    }
}

/// A local read failure, as an error for `off_thread`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Failure(String);

/// A part's records with their keys decoded; a key that does not decode
/// makes the part missing.
fn keyed(records: Vec<Keyed>) -> Part {
    records
        .into_iter()
        .map(|k| unhex(&k.key).map(|key| (key, k.record)))
        .collect::<Option<Vec<_>>>()
        .map_or(Part::Missing, Part::Found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_merged_cursor_round_trips_and_bounds_each_node_exactly() {
        let key: Vec<u8> = (1..=16).collect();
        let at = Position {
            key: key.clone(),
            node: "nodeB".into(),
        };
        let cursor = at.encode();
        assert_eq!(cursor, format!("{}.nodeB", encode_cursor(&key)));
        let back = Position::parse(&cursor).expect("parses");
        assert_eq!((back.key, back.node.as_str()), (key.clone(), "nodeB"));
        // After (key, nodeB) come: keys below `key` on every node, and
        // `key` itself only on nodes ordered below nodeB.
        assert_eq!(at.bound_for("nodeB"), key);
        assert_eq!(at.bound_for("nodeC"), key);
        let below = at.bound_for("nodeA");
        assert!(below.as_slice() > key.as_slice() && below.starts_with(&key));
        for bad in [
            "",
            "00",
            &encode_cursor(&key),
            &format!("{}.", encode_cursor(&key)),
        ] {
            assert!(Position::parse(bad).is_none(), "{bad:?}");
        }
        assert!(Position::parse(&format!("{}.a b", encode_cursor(&key))).is_none());
        assert_eq!(unhex(&hex(&below)), Some(below));
        assert_eq!(unhex("0g"), None);
    }
}
