//! How many sockets the server holds: the open-file limit raised at
//! start-up, and the gate every WebSocket upgrade passes.
//!
//! Each socket costs one file descriptor, and on these machines the hard
//! limit (20,000) cannot be raised, so the server raises its soft limit to
//! the hard one and caps sockets at that less a reserve for its own files
//! (sled, listeners, REST connections, refusals in progress). At the cap a
//! new upgrade gets a clean 503 `at_capacity` before the upgrade, never a
//! connection left hanging in the backlog, and room comes back the moment
//! a socket closes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::error::ApiError;
use crate::metrics::{Metrics, SocketKind};

/// Descriptors kept back from sockets for everything else the process opens.
pub const FD_RESERVE: u64 = 512;

/// The process's open-file limits after raising the soft one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileLimit {
    pub soft: u64,
    pub hard: u64,
}

impl FileLimit {
    /// Raises the soft open-file limit to the hard limit (where the OS has
    /// one) and reports both.
    pub fn raise() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            let (_, hard) = rlimit::Resource::NOFILE.get()?;
            let soft = rlimit::increase_nofile_limit(hard)?;
            Ok(Self { soft, hard })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {
                soft: u64::MAX,
                hard: u64::MAX,
            })
        }
    }

    /// Sockets this limit leaves room for.
    pub fn socket_room(self) -> usize {
        usize::try_from(self.soft.saturating_sub(FD_RESERVE)).unwrap_or(usize::MAX)
    }
}

/// Counts open WebSocket connections against one limit, across workers.
pub struct ConnectionGate {
    limit: usize,
    open: AtomicUsize,
    metrics: Arc<Metrics>,
}

impl ConnectionGate {
    pub fn new(limit: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            limit,
            open: AtomicUsize::new(0),
            metrics,
        })
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Takes a slot for a new socket, or refuses with `at_capacity`.
    pub fn admit(self: &Arc<Self>, kind: SocketKind) -> Result<ConnectionPermit, ApiError> {
        let taken = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.limit).then_some(open + 1)
            });
        match taken {
            Ok(_) => {
                self.metrics.connection_opened(kind);
                Ok(ConnectionPermit {
                    gate: Some(self.clone()),
                    kind,
                })
            }
            Err(_) => {
                self.metrics.connection_refused(kind);
                Err(ApiError::AtCapacity(self.limit))
            }
        }
    }
}

/// One socket's slot; given back on `release` or drop.
pub struct ConnectionPermit {
    gate: Option<Arc<ConnectionGate>>,
    kind: SocketKind,
}

impl ConnectionPermit {
    /// Gives the slot back now (when the close starts, so a client that saw
    /// the close can connect again at once).
    pub fn release(&mut self) {
        if let Some(gate) = self.gate.take() {
            gate.open.fetch_sub(1, Ordering::AcqRel);
            gate.metrics.connection_closed(self.kind);
        }
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_refuses_at_the_limit_and_recovers() {
        let gate = ConnectionGate::new(2, Arc::new(Metrics::new()));
        let first = gate.admit(SocketKind::Visitor).expect("room");
        let mut second = gate.admit(SocketKind::Agent).expect("room");
        assert_eq!(gate.open(), 2);
        let refused = gate.admit(SocketKind::Visitor).err().expect("full");
        assert_eq!(refused.code(), "at_capacity");
        assert_eq!(refused.status().as_u16(), 503);
        second.release();
        second.release();
        assert_eq!(gate.open(), 1, "a permit is given back once");
        drop(second);
        let _third = gate.admit(SocketKind::Visitor).expect("room again");
        drop(first);
        assert_eq!(gate.open(), 1);
    }

    #[test]
    fn concurrent_admissions_never_overshoot() {
        let gate = ConnectionGate::new(100, Arc::new(Metrics::new()));
        let permits: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let gate = gate.clone();
                    scope.spawn(move || {
                        (0..50)
                            .filter_map(|_| gate.admit(SocketKind::Visitor).ok())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("thread"))
                .collect()
        });
        assert_eq!(permits.len(), 100);
        assert_eq!(gate.open(), 100);
        drop(permits);
        assert_eq!(gate.open(), 0);
    }

    #[test]
    fn the_raised_limit_is_the_hard_limit() {
        let (before, _) = rlimit::Resource::NOFILE.get().expect("getrlimit");
        let limit = FileLimit::raise().expect("setrlimit");
        assert!(
            limit.soft >= before && limit.soft <= limit.hard,
            "{limit:?}"
        );
        assert_eq!(limit.socket_room() as u64, limit.soft - FD_RESERVE);
    }
}
