//! What the presence core tells of one visitor: its lookup document, as
//! REST and the agent socket show it, and the events watching agents get
//! when it comes, goes or changes. Shared by the registry, which produces
//! them, and the event bus, which carries them.

use serde::Serialize;
use serde_json::Value;

use crate::infra::ids::{GroupId, VisitorKey};

/// The lookup document of a visitor, as REST and the agent socket show it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct VisitorState {
    #[schema(value_type = u64)]
    pub groupid: GroupId,
    pub visitorid: String,
    pub online: bool,
    pub connections: usize,
    pub data: Value,
    /// Unix ms of the start of this online period.
    pub connected_at: Option<u64>,
    /// Whether the connection commands go to presented a valid identity
    /// token.
    pub verified: bool,
    /// That token's custom claims.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<Value>,
}

impl VisitorState {
    /// The document of a visitor who is not present.
    pub fn offline(key: &VisitorKey) -> Self {
        Self {
            groupid: key.group,
            visitorid: key.visitor.as_str().to_owned(),
            online: false,
            connections: 0,
            data: Value::Object(Default::default()),
            connected_at: None,
            verified: false,
            identity: None,
        }
    }

    /// The same visitor as one who is not present: what an agent outside
    /// its policy sees.
    pub fn hidden(self) -> Self {
        Self {
            online: false,
            connections: 0,
            data: Value::Object(Default::default()),
            connected_at: None,
            verified: false,
            identity: None,
            ..self
        }
    }
}

/// What changed about a watched visitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The current state, sent once when a watch begins.
    State,
    Connected,
    Disconnected,
    Presence,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::State => "state",
            EventKind::Connected => "connected",
            EventKind::Disconnected => "disconnected",
            EventKind::Presence => "presence",
        }
    }
}

/// What a watching agent socket is told about a visitor.
#[derive(Debug, Clone)]
pub struct VisitorEvent {
    pub kind: EventKind,
    pub state: VisitorState,
}
