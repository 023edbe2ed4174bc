//! The JSON a receiver gets: `{id, type, groupid, visitorid, timestamp,
//! data}`, `data` depending on the type (README "Webhooks").

use serde::Serialize;
use serde_json::{json, Value};

use crate::infra::config::WebhookEventType;
use crate::infra::ids::{random_id, GroupId};
use crate::presence::visitor::VisitorState;
use crate::store::{ConfirmationRecord, ConfirmationStatus};

/// One event, before it is queued for each receiver.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookEvent {
    /// Unique per event (the same for every receiver and retry): receivers
    /// deduplicate on it.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub groupid: GroupId,
    pub visitorid: String,
    /// Unix ms the event happened.
    pub timestamp: u64,
    pub data: Value,
    #[serde(skip)]
    pub event_type: WebhookEventType,
}

fn event_id() -> String {
    format!("evt_{}", random_id(16))
}

impl WebhookEvent {
    fn new(
        event_type: WebhookEventType,
        groupid: GroupId,
        visitorid: String,
        now_ms: u64,
        data: Value,
    ) -> Self {
        Self {
            id: event_id(),
            kind: event_type.as_str(),
            groupid,
            visitorid,
            timestamp: now_ms,
            data,
            event_type,
        }
    }

    /// The visitor's first connection opened; `state` is its lookup
    /// document at that moment.
    pub fn visitor_online(state: &VisitorState, now_ms: u64) -> Self {
        let mut data = json!({
            "presence": state.data,
            "connected_at": state.connected_at,
            "verified": state.verified,
        });
        if let Some(identity) = &state.identity {
            data["identity"] = identity.clone();
        }
        Self::new(
            WebhookEventType::VisitorOnline,
            state.groupid,
            state.visitorid.clone(),
            now_ms,
            data,
        )
    }

    /// The visitor's grace period ended with no connection; `last` is its
    /// lookup document just before.
    pub fn visitor_offline(last: &VisitorState, now_ms: u64) -> Self {
        let data = json!({
            "presence": last.data,
            "connected_at": last.connected_at,
        });
        Self::new(
            WebhookEventType::VisitorOffline,
            last.groupid,
            last.visitorid.clone(),
            now_ms,
            data,
        )
    }

    /// A prompt was settled.
    pub fn confirmation(record: &ConfirmationRecord, now_ms: u64) -> Self {
        let outcome = match record.status {
            ConfirmationStatus::Expired if !record.counts_as_failure => "ended",
            status => status.as_str(),
        };
        let data = json!({
            "confirmation_id": record.id,
            "outcome": outcome,
            "agent": record.agent,
            "created_at": record.created_ms,
            "confirmed_until": record.confirmed_until.map(|s| s.saturating_mul(1000)),
        });
        Self::new(
            WebhookEventType::Confirmation,
            record.groupid,
            record.visitorid.clone(),
            now_ms,
            data,
        )
    }
}
