//! Confirmation tickets: a grant belongs to the connection whose user
//! pressed the right button, not to whoever shares the visitor id.
//!
//! A correct answer hands that connection alone an unguessable ticket
//! (`confirm_ticket`); only its SHA-256 is stored, with the grant. A hello
//! may present tickets, and a live one makes the new connection a holder
//! too, so the grant follows a navigation, a reconnect or a restart of
//! that tab. Gated invokes and signals go only to holders, and `confirmed`
//! is true only while a holder is connected. Holders live in memory; a
//! connection stops holding when it closes. In cluster mode every node
//! owns its connections' holdings and shares them (see
//! [`super::cluster_tickets`]).

use std::collections::HashSet;
use std::sync::OnceLock;

use futures_util::future::BoxFuture;

use dashmap::DashMap;
use sha2::{Digest, Sha256};

use crate::infra::ids::random_id;

/// Most tickets one hello may present.
pub const MAX_TICKETS_PER_HELLO: usize = 16;
/// Bytes of entropy in a ticket.
const TICKET_BYTES: usize = 24;

/// A new ticket and the digest stored in its place.
pub fn new_ticket() -> (String, String) {
    let ticket = random_id(TICKET_BYTES);
    let digest = digest(&ticket);
    (ticket, digest)
}

/// The stored form of a ticket.
pub fn digest(ticket: &str) -> String {
    Sha256::digest(ticket.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A connection's holdings: its node (`None`: this one) and its grants.
#[derive(Default)]
pub(super) struct Holding {
    pub(super) node: Option<String>,
    pub(super) grants: HashSet<String>,
}

/// Which connections hold which grant (by grant key): this node's own
/// connections and, in cluster mode, a replica of every other node's (see
/// [`super::cluster_tickets`]), so the gate's filters, evaluated on the
/// agent's node, see holders wherever they are connected.
#[derive(Default)]
pub struct TicketHolders {
    pub(super) by_grant: DashMap<String, HashSet<String>>,
    pub(super) by_connection: DashMap<String, Holding>,
    pub(super) cluster: OnceLock<super::cluster_tickets::TicketSync>,
    /// Connections of other nodes that closed lately, so that a reload
    /// racing with their release does not bring them back.
    pub(super) released: DashMap<String, std::time::Instant>,
}

/// Sharing a change with the other nodes; ready at once on one node.
pub type Shared = BoxFuture<'static, ()>;

impl TicketHolders {
    /// `connection` of `node` (`None`: this one) holds `grant`.
    pub(super) fn insert(&self, grant: &str, connection: &str, node: Option<&str>) {
        self.by_grant
            .entry(grant.to_owned())
            .or_default()
            .insert(connection.to_owned());
        let mut holding = self.by_connection.entry(connection.to_owned()).or_default();
        holding.node = node.map(str::to_owned);
        holding.grants.insert(grant.to_owned());
    }

    /// Nobody holds `grant`; returns this node's connections that did.
    pub(super) fn remove_grant(&self, grant: &str) -> Vec<String> {
        let mut local = Vec::new();
        if let Some((_, connections)) = self.by_grant.remove(grant) {
            for connection in connections {
                self.by_connection.remove_if_mut(&connection, |_, holding| {
                    if holding.node.is_none() {
                        local.push(connection.clone());
                    }
                    holding.grants.remove(grant);
                    holding.grants.is_empty()
                });
            }
        }
        local
    }

    /// `connection` holds nothing any more.
    pub(super) fn remove_connection(&self, connection: &str) {
        if let Some((_, holding)) = self.by_connection.remove(connection) {
            for grant in holding.grants {
                self.by_grant.remove_if_mut(&grant, |_, holders| {
                    holders.remove(connection);
                    holders.is_empty()
                });
            }
        }
    }

    /// `connection` holds the grant `grant` (in addition to others).
    pub fn hold(&self, grant: &str, connection: &str) -> Shared {
        self.insert(grant, connection, None);
        self.share("hold", grant, connection, vec![connection.to_owned()])
    }

    /// A new grant for `grant`'s pair: `connection` is its only holder.
    pub fn replace(&self, grant: &str, connection: &str) -> Shared {
        let mut touched = self.remove_grant(grant);
        self.insert(grant, connection, None);
        touched.push(connection.to_owned());
        self.share("replace", grant, connection, touched)
    }

    /// The grant ended: nobody holds it.
    pub fn drop_grant(&self, grant: &str) -> Shared {
        let touched = self.remove_grant(grant);
        self.share("drop", grant, "", touched)
    }

    /// The connection closed: it holds nothing any more (the other nodes
    /// hear of it in the background).
    pub fn release_connection(&self, connection: &str) {
        self.remove_connection(connection);
        let shared = self.share("release", "", connection, vec![connection.to_owned()]);
        if let Some(sync) = self.cluster.get() {
            sync.link.runtime().spawn(shared);
        }
    }

    /// Whether `connection` holds `grant`.
    pub fn holds(&self, grant: &str, connection: &str) -> bool {
        self.by_grant
            .get(grant)
            .is_some_and(|holders| holders.contains(connection))
    }

    /// Whether any open connection holds `grant`.
    pub fn held(&self, grant: &str) -> bool {
        self.by_grant.get(grant).is_some_and(|h| !h.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[test]
    fn holders_follow_grants_and_connections() {
        let holders = TicketHolders::default();
        holders.hold("72/v/fred", "c1").now_or_never();
        holders.hold("72/v/fred", "c2").now_or_never();
        holders.hold("72/v/ada", "c2").now_or_never();
        assert!(holders.holds("72/v/fred", "c1") && holders.holds("72/v/ada", "c2"));
        holders.release_connection("c2");
        assert!(!holders.holds("72/v/fred", "c2"));
        assert!(!holders.held("72/v/ada"));
        holders.replace("72/v/fred", "c3").now_or_never();
        assert!(
            !holders.holds("72/v/fred", "c1"),
            "a new grant has one holder"
        );
        assert!(holders.holds("72/v/fred", "c3"));
        holders.drop_grant("72/v/fred").now_or_never();
        assert!(!holders.held("72/v/fred"));
    }

    #[test]
    fn tickets_are_unguessable_and_stored_hashed() {
        let (a, da) = new_ticket();
        let (b, _) = new_ticket();
        assert_ne!(a, b);
        assert!(a.len() >= 32, "{a}");
        assert_eq!(digest(&a), da);
        assert_ne!(da, a);
    }
}
