//! Confirmation tickets: a grant belongs to the connection whose user
//! pressed the right button, not to whoever shares the visitor id.
//!
//! A correct answer hands that connection alone an unguessable ticket
//! (`confirm_ticket`); only its SHA-256 is stored, with the grant. A hello
//! may present tickets, and a live one makes the new connection a holder
//! too, so the grant follows a navigation, a reconnect or a restart of
//! that tab. Gated invokes and signals go only to holders, and `confirmed`
//! is true only while a holder is connected. Holders live in memory; a
//! connection stops holding when it closes.

use std::collections::HashSet;

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

/// Which connections hold which grant (by grant key).
#[derive(Default)]
pub struct TicketHolders {
    by_grant: DashMap<String, HashSet<String>>,
    by_connection: DashMap<String, HashSet<String>>,
}

impl TicketHolders {
    /// `connection` holds the grant `grant` (in addition to others).
    pub fn hold(&self, grant: &str, connection: &str) {
        self.by_grant
            .entry(grant.to_owned())
            .or_default()
            .insert(connection.to_owned());
        self.by_connection
            .entry(connection.to_owned())
            .or_default()
            .insert(grant.to_owned());
    }

    /// A new grant for `grant`'s pair: `connection` is its only holder.
    pub fn replace(&self, grant: &str, connection: &str) {
        self.drop_grant(grant);
        self.hold(grant, connection);
    }

    /// The grant ended: nobody holds it.
    pub fn drop_grant(&self, grant: &str) {
        if let Some((_, connections)) = self.by_grant.remove(grant) {
            for connection in connections {
                self.by_connection.remove_if_mut(&connection, |_, grants| {
                    grants.remove(grant);
                    grants.is_empty()
                });
            }
        }
    }

    /// The connection closed: it holds nothing any more.
    pub fn release_connection(&self, connection: &str) {
        if let Some((_, grants)) = self.by_connection.remove(connection) {
            for grant in grants {
                self.by_grant.remove_if_mut(&grant, |_, holders| {
                    holders.remove(connection);
                    holders.is_empty()
                });
            }
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

    #[test]
    fn holders_follow_grants_and_connections() {
        let holders = TicketHolders::default();
        holders.hold("72/v/fred", "c1");
        holders.hold("72/v/fred", "c2");
        holders.hold("72/v/ada", "c2");
        assert!(holders.holds("72/v/fred", "c1") && holders.holds("72/v/ada", "c2"));
        holders.release_connection("c2");
        assert!(!holders.holds("72/v/fred", "c2"));
        assert!(!holders.held("72/v/ada"));
        holders.replace("72/v/fred", "c3");
        assert!(
            !holders.holds("72/v/fred", "c1"),
            "a new grant has one holder"
        );
        assert!(holders.holds("72/v/fred", "c3"));
        holders.drop_grant("72/v/fred");
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
