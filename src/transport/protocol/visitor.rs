//! The frames a visitor socket sends: hello, presence, results, receipts,
//! `leaving`, session-key requests and confirmation answers.

use serde::Deserialize;
#[cfg(feature = "fuzzing")]
use serde::Serialize;
use serde_json::Value;

use super::InboundFrame;
use crate::infra::ids::GroupId;

/// Frames a visitor sends. (`Serialize` only for the fuzz targets' round
/// trip.)
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "fuzzing", derive(Serialize))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum VisitorInbound {
    Hello {
        groupid: GroupId,
        visitorid: String,
        #[serde(default)]
        data: Option<Value>,
        /// A signed visitor identity token.
        #[serde(default)]
        identity: Option<String>,
        /// Confirmation tickets this tab was given (at most 16).
        #[serde(default)]
        tickets: Vec<String>,
        /// The client sends `received` for each invoke before running it
        /// (absent or `null`: it does not).
        #[serde(default)]
        receipts: Option<bool>,
    },
    Presence {
        data: Value,
    },
    Result {
        id: String,
        ok: bool,
        #[serde(default)]
        value: Value,
        #[serde(default)]
        error: Option<String>,
    },
    /// Ask for a session key to read out to an agent.
    SessionKey {},
    /// The button pressed in a confirmation prompt; `null` declines.
    ConfirmAnswer {
        id: String,
        choice: Option<String>,
    },
    /// A receipts client took invoke `id` and is about to run it.
    Received {
        id: String,
    },
    /// `pagehide`: no new commands here; owed results still arrive.
    Leaving {},
}

impl InboundFrame for VisitorInbound {
    const TYPES: &'static [&'static str] = &[
        "hello",
        "presence",
        "result",
        "session_key",
        "confirm_answer",
        "received",
        "leaving",
    ];
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::protocol::parse_frame;

    #[test]
    fn parses_hello_and_results() {
        let hello: VisitorInbound =
            parse_frame(r#"{"type":"hello","groupid":72,"visitorid":"v","data":{"url":"/"}}"#)
                .expect("hello");
        assert!(matches!(hello, VisitorInbound::Hello { groupid: 72, .. }));
        let result: VisitorInbound =
            parse_frame(r#"{"type":"result","id":"1","ok":false,"error":"nope"}"#).expect("result");
        assert!(matches!(result, VisitorInbound::Result { ok: false, .. }));
    }
}
