//! The delivery order: one lane per (receiver, group, visitor), holding
//! that lane's outbox sequences oldest first. Only a lane's head is ever
//! in flight, so a later event for a visitor is never delivered before an
//! earlier one; while the head retries, the rest of its lane waits, and
//! other lanes go on. Idle lanes wait in `ready`, ordered by the time
//! their head may be tried.

use std::collections::{BTreeSet, HashMap, VecDeque};

use crate::infra::ids::GroupId;

/// (receiver URL, group, visitor).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LaneKey {
    pub url: String,
    pub group: GroupId,
    pub visitor: String,
}

#[derive(Default)]
struct Lane {
    queue: VecDeque<u64>,
    busy: bool,
}

#[derive(Default)]
pub(super) struct Lanes {
    lanes: HashMap<LaneKey, Lane>,
    /// Idle, non-empty lanes by when their head may go.
    ready: BTreeSet<(u64, LaneKey)>,
    depth: usize,
}

impl Lanes {
    /// Deliveries queued (in flight included).
    pub(super) fn depth(&self) -> usize {
        self.depth
    }

    /// Appends `seq` to its lane; a lane that was empty may go at `at_ms`.
    pub(super) fn push(&mut self, key: LaneKey, seq: u64, at_ms: u64) {
        self.depth += 1;
        let lane = self.lanes.entry(key.clone()).or_default();
        lane.queue.push_back(seq);
        if lane.queue.len() == 1 && !lane.busy {
            self.ready.insert((at_ms, key));
        }
    }

    /// Up to `max` lanes whose head may go at `now_ms`, marked busy, with
    /// their head.
    pub(super) fn take_ready(&mut self, now_ms: u64, max: usize) -> Vec<(LaneKey, u64)> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some(first) = self.ready.first() else {
                break;
            };
            if first.0 > now_ms {
                break;
            }
            let Some((_, key)) = self.ready.pop_first() else {
                break;
            };
            let Some(lane) = self.lanes.get_mut(&key) else {
                continue;
            };
            let Some(&head) = lane.queue.front() else {
                continue;
            };
            lane.busy = true;
            out.push((key, head));
        }
        out
    }

    /// When the next idle lane may go.
    pub(super) fn next_ready_ms(&self) -> Option<u64> {
        self.ready.first().map(|(at, _)| *at)
    }

    /// The head of `key` left the outbox (delivered or dead-lettered): the
    /// next in its lane may go at `now_ms`.
    pub(super) fn finished(&mut self, key: &LaneKey, now_ms: u64) {
        let Some(lane) = self.lanes.get_mut(key) else {
            return;
        };
        if lane.queue.pop_front().is_some() {
            self.depth = self.depth.saturating_sub(1);
        }
        lane.busy = false;
        if lane.queue.is_empty() {
            self.lanes.remove(key);
        } else {
            self.ready.insert((now_ms, key.clone()));
        }
    }

    /// The head of `key` failed and stays: it goes again at `at_ms`.
    pub(super) fn retry_at(&mut self, key: &LaneKey, at_ms: u64) {
        if let Some(lane) = self.lanes.get_mut(key) {
            lane.busy = false;
            self.ready.insert((at_ms, key.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(v: &str) -> LaneKey {
        LaneKey {
            url: "u".into(),
            group: 1,
            visitor: v.into(),
        }
    }

    #[test]
    fn a_lane_sends_one_at_a_time_in_order_and_waits_for_a_retry() {
        let mut lanes = Lanes::default();
        lanes.push(key("a"), 1, 0);
        lanes.push(key("a"), 2, 0);
        lanes.push(key("b"), 3, 0);
        let first = lanes.take_ready(10, 10);
        assert_eq!(first, vec![(key("a"), 1), (key("b"), 3)]);
        assert!(lanes.take_ready(10, 10).is_empty(), "heads in flight");
        lanes.retry_at(&key("a"), 50);
        assert!(lanes.take_ready(49, 10).is_empty(), "2 waits behind 1");
        assert_eq!(lanes.take_ready(50, 10), vec![(key("a"), 1)]);
        lanes.finished(&key("a"), 60);
        assert_eq!(lanes.take_ready(60, 10), vec![(key("a"), 2)]);
        lanes.finished(&key("a"), 61);
        lanes.finished(&key("b"), 61);
        assert_eq!(lanes.depth(), 0);
        assert_eq!(lanes.next_ready_ms(), None);
    }
}
