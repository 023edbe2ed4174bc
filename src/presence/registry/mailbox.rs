//! The depth of the registry actor's mailbox: messages sent to it and not
//! yet handled, now and at most since start. The registry is the single
//! writer of presence, so this is where it would show as the serial
//! bottleneck (a connection storm queues every hello's `Connect` here).

use std::sync::atomic::{AtomicUsize, Ordering};

/// Counted by the handle as it sends and by the actor as it handles.
#[derive(Debug, Default)]
pub struct MailboxDepth {
    queued: AtomicUsize,
    peak: AtomicUsize,
}

impl MailboxDepth {
    /// A message is on its way to the registry.
    pub fn queued(&self) {
        let now = self.queued.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }

    /// The registry took a message off its mailbox.
    pub fn handled(&self) {
        let _ = self
            .queued
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// Messages waiting now.
    pub fn depth(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// The most that have waited at once since start.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::MailboxDepth;

    #[test]
    fn depth_follows_sends_and_handling_and_the_peak_stays() {
        let depth = MailboxDepth::default();
        depth.queued();
        depth.queued();
        depth.queued();
        depth.handled();
        assert_eq!((depth.depth(), depth.peak()), (2, 3));
        depth.handled();
        depth.handled();
        depth.handled();
        assert_eq!((depth.depth(), depth.peak()), (0, 3));
    }
}
