//! The invoke and signal gate, and who holds a grant: a connection that
//! answered a prompt, or presented its ticket in a hello (see
//! [`super::tickets`]).

use crate::infra::config::GroupConfig;
use crate::infra::error::DomainError;
use crate::infra::ids::VisitorKey;
use crate::presence::registry::ConnectionFilter;
use crate::store::{grant_key, StoreError};

use super::tickets::Shared;
use super::{tickets, Confirmations};

impl Confirmations {
    /// Makes `connection` (a new socket of `key`, saying hello) a holder of
    /// each live grant whose ticket it presents. Unknown or expired
    /// tickets are ignored, so a stale `sessionStorage` never breaks a page.
    /// In cluster mode the returned future completes once every node was
    /// told of the holdings (await it before registering the connection).
    pub fn redeem(&self, key: &VisitorKey, presented: &[String], connection: &str) -> Shared {
        let mut shared: Vec<Shared> = Vec::new();
        if presented.is_empty() {
            return Box::pin(async {});
        }
        let digests: Vec<String> = presented.iter().map(|t| tickets::digest(t)).collect();
        let grants = match self.records.grants_of(key.group, key.visitor.as_str()) {
            Ok(grants) => grants,
            Err(e) => {
                tracing::error!(error = %e, "cannot read confirmation grants");
                return Box::pin(async {});
            }
        };
        let now = self.clock.now_secs();
        for (grant, record) in grants {
            let live = record.until > now;
            if live && record.ticket.as_ref().is_some_and(|t| digests.contains(t)) {
                shared.push(self.holders.hold(&grant, connection));
            }
        }
        Box::pin(async move {
            for share in shared {
                share.await;
            }
        })
    }

    /// A visitor connection closed: it holds no ticket any more.
    pub fn forget_connection(&self, connection: &str) {
        self.holders.release_connection(connection);
    }

    /// Whether `agent` holds a live grant of `key` (in the store).
    fn grant_is_live(&self, grant: &str) -> Result<bool, StoreError> {
        let grant = self.records.grant(grant)?;
        Ok(grant.is_some_and(|g| g.until > self.clock.now_secs()))
    }

    /// Whether `agent` holds a live confirmation of `key`: a live grant
    /// and a connected socket holding its ticket.
    pub fn is_confirmed(&self, key: &VisitorKey, agent: &str) -> Result<bool, StoreError> {
        let grant = grant_key(key.group, key.visitor.as_str(), agent);
        Ok(self.holders.held(&grant) && self.grant_is_live(&grant)?)
    }

    /// As [`Self::is_confirmed`], for documents shown to the agent: a store
    /// failure shows as not confirmed.
    pub fn shows_confirmed(&self, key: &VisitorKey, agent: &str) -> bool {
        self.is_confirmed(key, agent).unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot read confirmation grants");
            false
        })
    }

    /// The invoke and signal gate of groups with `require_confirmation`:
    /// the agent needs a live grant, and the command may go only to the
    /// connections holding its ticket (the returned filter). In other
    /// groups, commands prefer a connected holder. A visitor
    /// between pages has no connection yet: the command waits for the
    /// next one, which must present the ticket. Fails closed when the
    /// store cannot be read.
    pub fn check_gate(
        &self,
        group: &GroupConfig,
        key: &VisitorKey,
        agent: &str,
    ) -> Result<Option<ConnectionFilter>, DomainError> {
        let grant = grant_key(key.group, key.visitor.as_str(), agent);
        if !group.require_confirmation {
            // No gate; but while a browser holding this agent's ticket is
            // connected, the agent's commands go to it, so that
            // `confirmed: true` always describes where they go.
            if !self.holders.held(&grant) {
                return Ok(None);
            }
            let holders = self.holders.clone();
            return Ok(Some(ConnectionFilter::new(move |connection| {
                holders.holds(&grant, connection) || !holders.held(&grant)
            })));
        }
        let between_pages = || self.registry.lookup(key).connections == 0;
        let live = self
            .grant_is_live(&grant)
            .map_err(|e| DomainError::Internal(format!("confirmation store: {e}")))?;
        if !live || !(self.holders.held(&grant) || between_pages()) {
            return Err(DomainError::ConfirmationRequired);
        }
        let holders = self.holders.clone();
        Ok(Some(ConnectionFilter::new(move |connection| {
            holders.holds(&grant, connection)
        })))
    }
}
