//! The JSON frames of the visitor and agent sockets, in one place so that
//! the wire contract can be read, and changed, as a whole.
//!
//! Inbound frames are parsed in two steps, first as JSON, then by `type`, so
//! a client is told precisely whether its frame was not JSON
//! (`malformed_json`), had an unknown type (`unknown_type`) or had bad fields
//! (`bad_frame`).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::infra::error::DomainError;
use crate::infra::ids::GroupId;
use crate::store::AgentCard;

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
        /// The client sends `received` for each invoke before running it.
        #[serde(default)]
        receipts: bool,
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

/// Frames an agent sends. `Debug` redacts the token of `auth`.
/// (`Serialize` only for the fuzz targets' round trip.)
#[derive(Deserialize)]
#[cfg_attr(feature = "fuzzing", derive(Serialize))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentInbound {
    Auth {
        token: String,
    },
    Watch {
        /// The group asked for; the token's group when absent.
        #[serde(default)]
        groupid: Option<GroupId>,
        visitorid: String,
    },
    Unwatch {
        /// The group asked for; the token's group when absent.
        #[serde(default)]
        groupid: Option<GroupId>,
        visitorid: String,
    },
    Invoke {
        /// The group asked for; the token's group when absent.
        #[serde(default)]
        groupid: Option<GroupId>,
        id: String,
        visitorid: String,
        func: String,
        #[serde(default)]
        args: Value,
        #[serde(default)]
        timeout_ms: Option<u64>,
    },
    Signal {
        /// The group asked for; the token's group when absent.
        #[serde(default)]
        groupid: Option<GroupId>,
        #[serde(default)]
        id: Option<String>,
        visitorid: String,
        #[serde(default)]
        data: Value,
    },
    Lookup {
        /// The group asked for; the token's group when absent.
        #[serde(default)]
        groupid: Option<GroupId>,
        id: String,
        visitorid: String,
    },
    /// Start a confirmation prompt.
    Confirm {
        /// The group asked for; the token's group when absent.
        #[serde(default)]
        groupid: Option<GroupId>,
        id: String,
        visitorid: String,
        #[serde(default)]
        choices: Option<usize>,
        #[serde(default)]
        agent: Option<AgentCard>,
    },
    /// Find the visitor holding a session key.
    FindSession {
        /// The group asked for; the token's group when absent.
        #[serde(default)]
        groupid: Option<GroupId>,
        id: String,
        key: String,
    },
}

impl std::fmt::Debug for AgentInbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AgentInbound::Auth { .. } => f.write_str("Auth { token: [REDACTED] }"),
            AgentInbound::Watch { visitorid, .. } => {
                write!(f, "Watch {{ visitorid: {visitorid:?} }}")
            }
            AgentInbound::Unwatch { visitorid, .. } => {
                write!(f, "Unwatch {{ visitorid: {visitorid:?} }}")
            }
            AgentInbound::Invoke {
                id,
                visitorid,
                func,
                ..
            } => {
                write!(
                    f,
                    "Invoke {{ id: {id:?}, visitorid: {visitorid:?}, func: {func:?} }}"
                )
            }
            AgentInbound::Signal { id, visitorid, .. } => {
                write!(f, "Signal {{ id: {id:?}, visitorid: {visitorid:?} }}")
            }
            AgentInbound::Lookup { id, visitorid, .. } => {
                write!(f, "Lookup {{ id: {id:?}, visitorid: {visitorid:?} }}")
            }
            AgentInbound::Confirm { id, visitorid, .. } => {
                write!(f, "Confirm {{ id: {id:?}, visitorid: {visitorid:?} }}")
            }
            AgentInbound::FindSession { id, .. } => write!(f, "FindSession {{ id: {id:?} }}"),
        }
    }
}

impl InboundFrame for AgentInbound {
    const TYPES: &'static [&'static str] = &[
        "auth",
        "watch",
        "unwatch",
        "invoke",
        "signal",
        "lookup",
        "confirm",
        "find_session",
    ];
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

/// Frames the server sends, on either socket.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    Welcome {
        visitorid: &'a str,
        connection: &'a str,
    },
    Invoke {
        id: &'a str,
        func: &'a str,
        args: &'a Value,
    },
    Signal {
        data: &'a Value,
    },
    Ready {
        groupid: GroupId,
        username: &'a str,
        role: &'a str,
        expires: u64,
        /// The `invoke_allow` patterns this token may use (group list
        /// narrowed by the token's policy): a hint for consoles; every
        /// invoke is still checked.
        functions: &'a [String],
    },
    Visitor {
        event: &'a str,
        visitorid: &'a str,
        online: bool,
        connections: usize,
        data: &'a Value,
        verified: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        identity: Option<&'a Value>,
        /// Whether the receiving agent holds a live confirmation.
        confirmed: bool,
    },
    Result {
        id: &'a str,
        ok: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        value: Option<&'a Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'a str>,
    },
    SignalSent {
        id: &'a str,
    },
    SessionKey {
        key: &'a str,
        expires: u64,
    },
    Lookup {
        id: &'a str,
        #[serde(flatten)]
        visitor: &'a Value,
    },
    /// To a visitor: a confirmation prompt to show.
    #[serde(rename = "confirm")]
    ConfirmPrompt {
        id: &'a str,
        choices: &'a [String],
        agent: &'a AgentCard,
        expires: u64,
    },
    /// To the one visitor connection that answered a prompt correctly: the
    /// ticket that carries its grant across pages and reconnects.
    ConfirmTicket {
        id: &'a str,
        ticket: &'a str,
    },
    /// To a visitor: a prompt ended; close its dialog.
    ConfirmClosed {
        id: &'a str,
        status: &'a str,
    },
    /// To an agent: the prompt it started, with the answer to read out.
    #[serde(rename = "confirm")]
    ConfirmStarted {
        id: &'a str,
        visitorid: &'a str,
        confirmation: &'a str,
        answer: &'a str,
        choices: &'a [String],
        expires: u64,
    },
    /// To an agent: how its prompt ended.
    Confirmation {
        visitorid: &'a str,
        id: &'a str,
        status: &'a str,
    },
    Error {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        code: &'a str,
        message: &'a str,
    },
}

impl ServerFrame<'_> {
    /// The frame as JSON text.
    pub fn to_text(&self) -> String {
        // Serialising these plain structs of strings, numbers and JSON values
        // cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"type":"error","code":"internal","message":"unserialisable frame"}"#.to_owned()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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

    /// Found by `fuzz/agent_frame`: without correctly rounded float
    /// parsing, a number re-serialised from a parsed frame read back one
    /// ulp off, so what the server forwarded differed from what it read.
    #[test]
    fn numbers_survive_a_round_trip() {
        let text = r#"{"type":"invoke","id":"1","visitorid":"v","func":"f","args":{"a":15301256253012569999999999999530125625301256999999999999999999999999999999999999999999999992}}"#;
        let AgentInbound::Invoke { args, .. } = parse_frame::<AgentInbound>(text).expect("invoke")
        else {
            panic!("expected an invoke");
        };
        let again: Value = serde_json::from_str(&args.to_string()).expect("json");
        assert_eq!(again, args);
    }

    #[test]
    fn debug_never_shows_an_auth_token() {
        let frame: AgentInbound =
            parse_frame(r#"{"type":"auth","token":"eyJ.secret.sig"}"#).expect("auth");
        assert!(!format!("{frame:?}").contains("secret"));
    }

    #[test]
    fn server_frames_have_the_documented_shape() {
        let args = json!({"a": 1});
        let text = ServerFrame::Invoke {
            id: "1",
            func: "showTerms",
            args: &args,
        }
        .to_text();
        assert_eq!(
            serde_json::from_str::<Value>(&text).expect("json"),
            json!({"type":"invoke","id":"1","func":"showTerms","args":{"a":1}})
        );
        let text = ServerFrame::Error {
            id: None,
            code: "x",
            message: "y",
        }
        .to_text();
        assert_eq!(
            serde_json::from_str::<Value>(&text).expect("json"),
            json!({"type":"error","code":"x","message":"y"})
        );
    }
}
