//! The delivery order: one lane per (receiver, group, visitor), holding
//! that lane's outbox sequences oldest first. Only a lane's head is ever
//! in flight, so a later event for a visitor is never delivered before an
//! earlier one; while the head retries, the rest of its lane waits, and
//! other lanes go on. Idle lanes wait in `ready`, ordered by the time
//! their head may be tried. At most `per_receiver` heads of one receiver
//! URL are in flight, so a receiver that hangs holds only its share of the
//! delivery slots while every other receiver's lanes go on.

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

pub(super) struct Lanes {
    lanes: HashMap<LaneKey, Lane>,
    /// Idle, non-empty lanes by when their head may go.
    ready: BTreeSet<(u64, LaneKey)>,
    depth: usize,
    /// Heads in flight, by receiver URL.
    in_flight: HashMap<String, usize>,
    per_receiver: usize,
}

impl Lanes {
    pub(super) fn new(per_receiver: usize) -> Self {
        Self {
            lanes: HashMap::new(),
            ready: BTreeSet::new(),
            depth: 0,
            in_flight: HashMap::new(),
            per_receiver: per_receiver.max(1),
        }
    }

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
        let mut chosen = Vec::new();
        // Oldest first; a lane whose receiver is at its share waits in
        // place (it keeps its turn) and later lanes of others go.
        let mut taking: HashMap<&str, usize> = HashMap::new();
        for entry in &self.ready {
            if out.len() + chosen.len() >= max || entry.0 > now_ms {
                break;
            }
            let url = entry.1.url.as_str();
            let busy = self.in_flight.get(url).copied().unwrap_or(0);
            let taken = taking.entry(url).or_insert(0);
            if busy + *taken < self.per_receiver {
                *taken += 1;
                chosen.push(entry.clone());
            }
        }
        for entry in chosen {
            self.ready.remove(&entry);
            let (_, key) = entry;
            let Some(lane) = self.lanes.get_mut(&key) else {
                continue;
            };
            let Some(&head) = lane.queue.front() else {
                continue;
            };
            lane.busy = true;
            *self.in_flight.entry(key.url.clone()).or_insert(0) += 1;
            out.push((key, head));
        }
        out
    }

    /// A head of `url` is no longer in flight.
    fn landed(&mut self, url: &str) {
        if let Some(count) = self.in_flight.get_mut(url) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.in_flight.remove(url);
            }
        }
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
        let was_busy = std::mem::take(&mut lane.busy);
        if was_busy {
            self.landed(&key.url);
        }
        let Some(lane) = self.lanes.get_mut(key) else {
            return;
        };
        if lane.queue.is_empty() {
            self.lanes.remove(key);
        } else {
            self.ready.insert((now_ms, key.clone()));
        }
    }

    /// The head of `key` failed and stays: it goes again at `at_ms`.
    pub(super) fn retry_at(&mut self, key: &LaneKey, at_ms: u64) {
        if let Some(lane) = self.lanes.get_mut(key) {
            let was_busy = std::mem::take(&mut lane.busy);
            self.ready.insert((at_ms, key.clone()));
            if was_busy {
                self.landed(&key.url);
            }
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
        let mut lanes = Lanes::new(usize::MAX);
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

    fn at(url: &str, v: &str) -> LaneKey {
        LaneKey {
            url: url.into(),
            group: 1,
            visitor: v.into(),
        }
    }

    #[test]
    fn a_receiver_holds_at_most_its_share_and_the_others_go_on() {
        let mut lanes = Lanes::new(2);
        for v in ["a", "b", "c", "d"] {
            lanes.push(at("stuck", v), 1, 0);
        }
        lanes.push(at("healthy", "e"), 2, 5);
        let first = lanes.take_ready(10, 16);
        assert_eq!(
            first,
            vec![
                (at("stuck", "a"), 1),
                (at("stuck", "b"), 1),
                (at("healthy", "e"), 2)
            ],
            "two of the stuck receiver's lanes, then the healthy one's"
        );
        assert!(lanes.take_ready(10, 16).is_empty(), "stuck is at its share");
        // One stuck attempt fails: its lane waits, and a waiting one of the
        // same receiver takes the freed slot, oldest first.
        lanes.retry_at(&at("stuck", "a"), 100);
        assert_eq!(lanes.take_ready(10, 16), vec![(at("stuck", "c"), 1)]);
        lanes.finished(&at("stuck", "b"), 20);
        lanes.finished(&at("stuck", "c"), 20);
        assert_eq!(lanes.take_ready(20, 16), vec![(at("stuck", "d"), 1)]);
        assert_eq!(lanes.take_ready(100, 16), vec![(at("stuck", "a"), 1)]);
    }
}
