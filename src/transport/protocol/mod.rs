//! The JSON frames of the visitor and agent sockets, in one place so that
//! the wire contract can be read, and changed, as a whole.
//!
//! Inbound frames are parsed in two steps, first as JSON, then by `type`, so
//! a client is told precisely whether its frame was not JSON
//! (`malformed_json`), had an unknown type (`unknown_type`) or had bad fields
//! (`bad_frame`).
//!
//! `visitor.rs` holds the frames a visitor sends, `agent.rs` those an agent
//! sends, and `server.rs` those the server sends on either socket; their
//! types are re-exported here, so `transport::protocol::X` names them all.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::infra::error::DomainError;

mod agent;
mod server;
mod visitor;

pub use agent::AgentInbound;
pub use server::ServerFrame;
pub use visitor::VisitorInbound;

/// Longest client-chosen request id (`id` of agent frames).
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// A frame the server could not use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    pub error: DomainError,
    /// The frame's `id`, when it had a usable one, so the error can be
    /// matched to the request.
    pub id: Option<String>,
}

impl FrameError {
    pub fn new(error: DomainError) -> Self {
        Self { error, id: None }
    }

    /// The error's text.
    pub fn message(&self) -> String {
        self.error.to_string()
    }

    fn with_id(mut self, frame: &Value) -> Self {
        self.id = frame
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| check_request_id(id).is_ok())
            .map(str::to_owned);
        self
    }
}

/// A family of inbound frames, tagged by `type`.
pub trait InboundFrame: DeserializeOwned {
    /// The `type` values this family accepts.
    const TYPES: &'static [&'static str];
}

/// Parses an inbound text frame.
pub fn parse_frame<F: InboundFrame>(text: &str) -> Result<F, FrameError> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        FrameError::new(DomainError::MalformedJson(format!(
            "frame is not valid JSON: {e}"
        )))
    })?;
    let kind = match value.get("type") {
        Some(Value::String(kind)) => kind.clone(),
        Some(_) => {
            return Err(FrameError::new(DomainError::BadFrame(
                "`type` must be a string".into(),
            )))
        }
        None if value.is_object() => {
            return Err(FrameError::new(DomainError::BadFrame(
                "frame has no `type`".into(),
            )))
        }
        None => {
            return Err(FrameError::new(DomainError::BadFrame(
                "frame must be a JSON object".into(),
            )))
        }
    };
    if !F::TYPES.contains(&kind.as_str()) {
        return Err(FrameError::new(DomainError::UnknownType(format!(
            "unknown frame type {kind:?}; expected one of {}",
            F::TYPES.join(", ")
        )))
        .with_id(&value));
    }
    let id_source = value.clone();
    serde_json::from_value(value).map_err(|e| {
        FrameError::new(DomainError::BadFrame(format!("bad {kind} frame: {e}"))).with_id(&id_source)
    })
}

/// Checks a client-chosen request id.
pub fn check_request_id(id: &str) -> Result<(), FrameError> {
    if id.is_empty() || id.len() > MAX_REQUEST_ID_LEN {
        return Err(FrameError::new(DomainError::BadFrame(format!(
            "id must be 1 to {MAX_REQUEST_ID_LEN} bytes"
        ))));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_malformed_unknown_and_bad_frames_apart() {
        let err = |t: &str| parse_frame::<VisitorInbound>(t).expect_err(t).error.code();
        assert_eq!(err("{not json"), "malformed_json");
        assert_eq!(err(r#"{"type":"dance"}"#), "unknown_type");
        assert_eq!(err(r#"{"type":"hello"}"#), "bad_frame");
        assert_eq!(err(r#"{"type":7}"#), "bad_frame");
        assert_eq!(err(r#"[1,2]"#), "bad_frame");
        assert_eq!(err(r#"{"no":"type"}"#), "bad_frame");
    }

    #[test]
    fn errors_carry_the_frames_id() {
        let err = parse_frame::<AgentInbound>(r#"{"type":"invoke","id":"r9"}"#).expect_err("bad");
        assert_eq!(
            (err.error.code(), err.id.as_deref()),
            ("bad_frame", Some("r9"))
        );
        let err = parse_frame::<AgentInbound>(r#"{"type":"nope","id":7}"#).expect_err("bad");
        assert_eq!((err.error.code(), err.id), ("unknown_type", None));
    }
}
