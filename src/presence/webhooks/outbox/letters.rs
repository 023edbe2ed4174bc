//! The dead letters as the administrator sees them: named, paged, and
//! replayed, on one node or across a cluster.
//!
//! On one node a letter's id is its outbox sequence. In cluster mode each
//! node keeps its own letters (in its sled), so a letter is named
//! `{sequence}@{node}`, a list on any node merges every live node's letters
//! (ordered by node, then sequence; the cursor is the last letter's id),
//! and a replay is carried out by the node holding each letter. A node that
//! does not answer within `cluster.survey_timeout_ms` is named in
//! `missing` (`partial: true`); a dead node's letters wait in its data
//! directory until it is started again.

use std::sync::Arc;

use futures_core::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::Outbox;
use crate::infra::error::DomainError;
use crate::infra::ids::GroupId;
use crate::store::cluster::{ClusterLink, RequestError, WireError};
use crate::store::DeadLetter;

const LIST: &str = "webhook_letters";
const REPLAY: &str = "webhook_replay";

/// A letter with the id the administrator names it by.
pub struct NamedLetter {
    pub id: String,
    pub letter: DeadLetter,
}

/// One page of letters.
pub struct LettersPage {
    pub letters: Vec<NamedLetter>,
    pub next_cursor: Option<String>,
    /// Cluster mode: the live nodes that did not answer in time.
    pub missing: Vec<String>,
}

/// What a replay did.
pub struct Replayed {
    pub replayed: usize,
    pub more: bool,
    pub missing: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct ListPart {
    group: GroupId,
    after: Option<u64>,
    limit: usize,
}

#[derive(Serialize, Deserialize)]
struct ReplayPart {
    group: GroupId,
    only: Option<Vec<u64>>,
}

fn bad_id(what: &str) -> DomainError {
    DomainError::BadRequest(format!("{what} is not a dead letter id this server issued"))
}

/// A single node's id, `{seq}`. An id in the cluster's form, `{seq}@{node}`,
/// is well formed here too; it names no letter of this node's (`None`).
fn parse_single_id(id: &str) -> Option<Option<u64>> {
    match id.contains('@') {
        true => parse_cluster_id(id).map(|_| None),
        false => Some(Some(id.parse().ok()?)),
    }
}

/// `{seq}@{node}`.
fn parse_cluster_id(id: &str) -> Option<(u64, String)> {
    let (seq, node) = id.split_once('@')?;
    let valid = (1..=64).contains(&node.len())
        && node
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    valid.then_some(())?;
    Some((seq.parse().ok()?, node.to_owned()))
}

fn wire(code: &str, message: impl std::fmt::Display) -> WireError {
    WireError {
        code: code.to_owned(),
        message: message.to_string(),
    }
}

/// How one node's part went.
enum Part<T> {
    Done(T),
    Missing,
}

impl Outbox {
    /// Cluster mode: serves other nodes' letter requests and merges this
    /// node's. Call before the link starts.
    pub fn join_cluster(self: &Arc<Self>, link: &ClusterLink) {
        if self.cluster.set(link.clone()).is_err() {
            return;
        }
        let me = Arc::downgrade(self);
        link.serve(
            LIST,
            Arc::new(move |_from, body| {
                let me = me.clone();
                Box::pin(async move {
                    let outbox = me
                        .upgrade()
                        .ok_or_else(|| wire("shutting_down", "stopping"))?;
                    let part: ListPart =
                        serde_json::from_value(body).map_err(|e| wire("bad_request", e))?;
                    let (letters, _) = outbox
                        .dead_letters(part.group, part.after, part.limit)
                        .await
                        .map_err(|e| wire("internal", e))?;
                    Ok(json!({ "letters": letters }))
                })
            }),
        );
        let me = Arc::downgrade(self);
        link.serve(
            REPLAY,
            Arc::new(move |_from, body| {
                let me = me.clone();
                Box::pin(async move {
                    let outbox = me
                        .upgrade()
                        .ok_or_else(|| wire("shutting_down", "stopping"))?;
                    let part: ReplayPart =
                        serde_json::from_value(body).map_err(|e| wire("bad_request", e))?;
                    let (replayed, more) = outbox
                        .replay(part.group, part.only)
                        .await
                        .map_err(|e| wire("internal", e))?;
                    Ok(json!({ "replayed": replayed, "more": more }))
                })
            }),
        );
    }

    /// The group's letters after `cursor`, at most `limit`.
    pub async fn letters(
        &self,
        group: GroupId,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<LettersPage, DomainError> {
        let Some(link) = self.cluster.get().cloned() else {
            let after = cursor
                .map(|c| {
                    // A cluster-form cursor resumes after its sequence.
                    let seq = parse_cluster_id(c).map(|(seq, _)| seq);
                    seq.or_else(|| c.parse::<u64>().ok())
                        .ok_or_else(|| bad_id("cursor"))
                })
                .transpose()?;
            let (letters, more) = self.dead_letters(group, after, limit).await?;
            let named: Vec<NamedLetter> = letters
                .into_iter()
                .map(|letter| NamedLetter {
                    id: letter.delivery.seq.to_string(),
                    letter,
                })
                .collect();
            let next_cursor = more.then(|| named.last().map(|l| l.id.clone())).flatten();
            return Ok(LettersPage {
                letters: named,
                next_cursor,
                missing: Vec::new(),
            });
        };
        let position = cursor
            .map(|c| parse_cluster_id(c).ok_or_else(|| bad_id("cursor")))
            .transpose()?;
        let timeout = link.config().survey_timeout();
        let parts = link
            .live_nodes()
            .into_iter()
            .filter_map(|node| {
                // Order: by node, then sequence; the cursor's node resumes
                // after its sequence, nodes before it are done.
                let after = match &position {
                    None => None,
                    Some((_, at)) if node < *at => return None,
                    Some((seq, at)) if node == *at => Some(*seq),
                    Some(_) => None,
                };
                let part = ListPart {
                    group,
                    after,
                    limit: limit + 1,
                };
                Some(self.ask_part(&link, node, LIST, part, timeout, |v| {
                    serde_json::from_value::<Vec<DeadLetter>>(v["letters"].clone()).ok()
                }))
            })
            .collect::<Vec<_>>();
        let mut found = Vec::new();
        let mut missing = Vec::new();
        for (node, part) in futures_util::future::join_all(parts).await {
            match part? {
                Part::Done(letters) => {
                    found.extend(letters.into_iter().map(|l| (node.clone(), l)));
                }
                Part::Missing => missing.push(node),
            }
        }
        found.sort_by(|a, b| (&a.0, a.1.delivery.seq).cmp(&(&b.0, b.1.delivery.seq)));
        let more = found.len() > limit;
        found.truncate(limit);
        let named: Vec<NamedLetter> = found
            .into_iter()
            .map(|(node, letter)| NamedLetter {
                id: format!("{}@{node}", letter.delivery.seq),
                letter,
            })
            .collect();
        let next_cursor = more.then(|| named.last().map(|l| l.id.clone())).flatten();
        Ok(LettersPage {
            letters: named,
            next_cursor,
            missing,
        })
    }

    /// Replays the group's letters named by `ids` (all when `None`).
    pub async fn replay_letters(
        &self,
        group: GroupId,
        ids: Option<Vec<String>>,
    ) -> Result<Replayed, DomainError> {
        let Some(link) = self.cluster.get().cloned() else {
            let only = ids
                .map(|ids| {
                    let parsed = ids
                        .iter()
                        .map(|id| parse_single_id(id).ok_or_else(|| bad_id("ids[]")));
                    parsed
                        .filter_map(Result::transpose)
                        .collect::<Result<Vec<u64>, _>>()
                })
                .transpose()?;
            let (replayed, more) = self.replay(group, only).await?;
            return Ok(Replayed {
                replayed,
                more,
                missing: Vec::new(),
            });
        };
        let mut by_node: std::collections::BTreeMap<String, Option<Vec<u64>>> = match ids {
            None => link.live_nodes().into_iter().map(|n| (n, None)).collect(),
            Some(ids) => {
                let mut by_node = std::collections::BTreeMap::new();
                for id in ids {
                    let (seq, node) = parse_cluster_id(&id).ok_or_else(|| bad_id("ids[]"))?;
                    by_node
                        .entry(node)
                        .or_insert_with(|| Some(Vec::new()))
                        .get_or_insert_with(Vec::new)
                        .push(seq);
                }
                by_node
            }
        };
        let timeout = link.config().survey_timeout();
        let parts: Vec<_> = std::mem::take(&mut by_node)
            .into_iter()
            .map(|(node, only)| {
                let part = ReplayPart { group, only };
                self.ask_part(&link, node, REPLAY, part, timeout, |v| {
                    Some((v["replayed"].as_u64()? as usize, v["more"].as_bool()?))
                })
            })
            .collect();
        let mut outcome = Replayed {
            replayed: 0,
            more: false,
            missing: Vec::new(),
        };
        for (node, part) in futures_util::future::join_all(parts).await {
            match part? {
                Part::Done((replayed, more)) => {
                    outcome.replayed += replayed;
                    outcome.more |= more;
                }
                Part::Missing => outcome.missing.push(node),
            }
        }
        Ok(outcome)
    }

    /// Asks `node` (this one locally) for its part.
    fn ask_part<P: Serialize, T: Send + 'static>(
        &self,
        link: &ClusterLink,
        node: String,
        kind: &'static str,
        part: P,
        timeout: std::time::Duration,
        read: fn(&Value) -> Option<T>,
    ) -> BoxFuture<'static, (String, Result<Part<T>, DomainError>)> {
        let body = serde_json::to_value(&part).unwrap_or(Value::Null);
        // Every node, this one too, answers through the link: one path.
        let asked = link.request(&node, kind, body, timeout);
        Box::pin(async move {
            let part = match asked.await {
                Ok(answer) => Ok(read(&answer).map_or(Part::Missing, Part::Done)),
                Err(RequestError::Unavailable(e)) => Err(DomainError::ClusterUnavailable(e.0)),
                Err(_) => Ok(Part::Missing),
            };
            (node, part)
        })
    }
}
