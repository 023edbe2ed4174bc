//! The frames the server sends, on either socket, and their JSON text.

use serde::Serialize;
use serde_json::Value;

use crate::infra::ids::GroupId;
use crate::store::AgentCard;

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
