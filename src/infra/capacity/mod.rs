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
//!
//! Under that one limit sit the per-client caps: one client address holds
//! at most `server.max_sockets_per_ip` sockets, and a group at most its
//! `max_visitors` visitor sockets; over either, an upgrade gets 429
//! `too_many_connections` before it upgrades.

mod keyed;

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::infra::error::DomainError;
use crate::infra::ids::GroupId;
use crate::infra::metrics::{Metrics, SocketKind};
pub use keyed::{KeyedSlot, KeyedSlots};

/// Descriptors kept back from sockets for everything else the process opens.
pub const FD_RESERVE: u64 = 512;
/// Of the descriptors left for connections, those sockets never take, so
/// that plain HTTP (health checks, sign-ins) still has room at the socket
/// limit.
pub const HTTP_RESERVE: usize = 256;

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

    /// Connections (HTTP and WebSocket) this limit leaves room for.
    pub fn connection_room(self) -> usize {
        usize::try_from(self.soft.saturating_sub(FD_RESERVE)).unwrap_or(usize::MAX)
    }

    /// WebSockets this limit leaves room for: the connection room less
    /// [`HTTP_RESERVE`].
    pub fn socket_room(self) -> usize {
        self.connection_room().saturating_sub(HTTP_RESERVE).max(1)
    }

    /// actix-web's per-worker connection cap: the connection room split
    /// across `workers`, so that together they never exceed it.
    pub fn per_worker_connections(self, workers: usize) -> usize {
        (self.connection_room() / workers.max(1)).max(1)
    }
}

/// Cluster mode: what the other nodes hold of each group, so that
/// `max_visitors` counts over the whole cluster (the presence layer's
/// group census implements it and documents its slack).
pub trait VisitorsElsewhere: Send + Sync {
    /// Visitor sockets of `group` on the other live nodes, as last heard;
    /// an error when that count is too old to admit on.
    fn of(&self, group: GroupId) -> Result<usize, DomainError>;
}

/// Counts open WebSocket connections against one limit, across workers,
/// and per client address and per group under it.
pub struct ConnectionGate {
    limit: usize,
    open: AtomicUsize,
    metrics: Arc<Metrics>,
    per_client_cap: usize,
    per_client: Arc<KeyedSlots<IpAddr>>,
    per_group: Arc<KeyedSlots<GroupId>>,
    elsewhere: std::sync::OnceLock<Arc<dyn VisitorsElsewhere>>,
}

/// A group's visitor socket slot, held while the socket is open.
pub type GroupSlot = KeyedSlot<GroupId>;

impl ConnectionGate {
    /// A gate of `limit` sockets, at most `per_client_cap` per address.
    pub fn new(limit: usize, per_client_cap: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            limit,
            open: AtomicUsize::new(0),
            metrics,
            per_client_cap,
            per_client: KeyedSlots::new(),
            per_group: KeyedSlots::new(),
            elsewhere: std::sync::OnceLock::new(),
        })
    }

    /// Cluster mode: group caps also count the other nodes' visitors.
    pub fn count_elsewhere(&self, elsewhere: Arc<dyn VisitorsElsewhere>) {
        let _ = self.elsewhere.set(elsewhere);
    }

    /// Visitor sockets of each group this node holds now.
    pub fn group_visitors(&self) -> Vec<(GroupId, usize)> {
        self.per_group.counts()
    }

    /// Takes a visitor slot of `group`, capped at `max_visitors`. Every
    /// group's sockets are counted, capped or not, so a cap a config
    /// reload adds counts the sockets already open.
    pub fn admit_to_group(
        &self,
        group: GroupId,
        max_visitors: Option<usize>,
    ) -> Result<Option<GroupSlot>, DomainError> {
        let Some(cap) = max_visitors else {
            return Ok(self.per_group.take(group, usize::MAX));
        };
        let elsewhere = match self.elsewhere.get() {
            Some(counts) => counts.of(group)?,
            None => 0,
        };
        self.per_group
            .take(group, cap.saturating_sub(elsewhere))
            .map(Some)
            .ok_or_else(|| {
                self.metrics.connection_limited("group_visitors");
                DomainError::TooManyConnections(format!(
                    "group {group} holds its maximum of {cap} visitor connections"
                ))
            })
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Takes a slot for a new socket of `client`, or refuses with
    /// `too_many_connections` (the client's cap) or `at_capacity`.
    pub fn admit(
        self: &Arc<Self>,
        kind: SocketKind,
        client: Option<IpAddr>,
    ) -> Result<ConnectionPermit, DomainError> {
        let client_slot =
            match client {
                Some(ip) => Some(self.per_client.take(ip, self.per_client_cap).ok_or_else(
                    || {
                        self.metrics.connection_limited("sockets_per_ip");
                        DomainError::TooManyConnections(format!(
                            "this address already holds {} sockets (server.max_sockets_per_ip)",
                            self.per_client_cap
                        ))
                    },
                )?),
                None => None,
            };
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
                    client_slot,
                })
            }
            Err(_) => {
                self.metrics.connection_refused(kind);
                Err(DomainError::AtCapacity(self.limit))
            }
        }
    }
}

/// One socket's slot (and its client's); given back on `release` or drop.
pub struct ConnectionPermit {
    gate: Option<Arc<ConnectionGate>>,
    kind: SocketKind,
    client_slot: Option<KeyedSlot<IpAddr>>,
}

impl ConnectionPermit {
    /// Gives the slot back now (when the close starts, so a client that saw
    /// the close can connect again at once).
    pub fn release(&mut self) {
        if let Some(slot) = &mut self.client_slot {
            slot.release();
        }
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
        let gate = ConnectionGate::new(2, 10, Arc::new(Metrics::new()));
        let first = gate.admit(SocketKind::Visitor, None).expect("room");
        let mut second = gate.admit(SocketKind::Agent, None).expect("room");
        assert_eq!(gate.open(), 2);
        let refused = gate.admit(SocketKind::Visitor, None).err().expect("full");
        assert_eq!(refused.code(), "at_capacity");
        assert_eq!(
            crate::transport::http::error_response::status(&refused).as_u16(),
            503
        );
        second.release();
        second.release();
        assert_eq!(gate.open(), 1, "a permit is given back once");
        drop(second);
        let _third = gate.admit(SocketKind::Visitor, None).expect("room again");
        drop(first);
        assert_eq!(gate.open(), 1);
    }

    #[test]
    fn concurrent_admissions_never_overshoot() {
        let gate = ConnectionGate::new(100, 1000, Arc::new(Metrics::new()));
        let permits: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let gate = gate.clone();
                    scope.spawn(move || {
                        (0..50)
                            .filter_map(|_| gate.admit(SocketKind::Visitor, None).ok())
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
        assert_eq!(limit.connection_room() as u64, limit.soft - FD_RESERVE);
        assert_eq!(limit.socket_room(), limit.connection_room() - HTTP_RESERVE);
    }

    #[test]
    fn workers_together_stay_within_the_connection_room() {
        let limit = FileLimit {
            soft: 20_000,
            hard: 20_000,
        };
        for workers in 1..=16 {
            let each = limit.per_worker_connections(workers);
            assert!(each * workers <= limit.connection_room(), "{workers}");
        }
        assert_eq!(limit.per_worker_connections(2), 9_744);
    }

    #[test]
    fn one_client_and_one_group_are_capped_below_the_server() {
        let gate = ConnectionGate::new(100, 2, Arc::new(Metrics::new()));
        let ip: IpAddr = "203.0.113.5".parse().expect("ip");
        let mut a = gate.admit(SocketKind::Visitor, Some(ip)).expect("room");
        let _b = gate.admit(SocketKind::Agent, Some(ip)).expect("room");
        let refused = gate
            .admit(SocketKind::Visitor, Some(ip))
            .err()
            .expect("capped");
        assert_eq!(
            (
                refused.code(),
                crate::transport::http::error_response::status(&refused).as_u16()
            ),
            ("too_many_connections", 429)
        );
        assert_eq!(gate.open(), 2, "a refusal takes no server slot");
        a.release();
        let _c = gate
            .admit(SocketKind::Visitor, Some(ip))
            .expect("room again");
        let slot = gate.admit_to_group(72, Some(1)).expect("room");
        assert!(slot.is_some());
        assert!(gate.admit_to_group(72, Some(1)).is_err());
        let uncapped = gate.admit_to_group(72, None).expect("no cap");
        assert!(uncapped.is_some(), "counted even without a cap");
        drop(slot);
        assert!(
            gate.admit_to_group(72, Some(1)).is_err(),
            "a socket admitted without a cap counts under one a reload adds"
        );
        drop(uncapped);
        assert!(gate.admit_to_group(72, Some(1)).is_ok());
    }
}
