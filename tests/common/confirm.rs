//! Confirmation-prompt steps over REST and the visitor socket, shared by
//! the confirmation test files.

use serde_json::{json, Value};

use super::{TestServer, WsClient};

pub fn confirm_path(visitor: &str) -> String {
    format!("/presence/72/visitors/{visitor}/confirm")
}

/// Starts a prompt over REST; the 201 body.
pub async fn start(server: &TestServer, token: &str, visitor: &str, body: Value) -> Value {
    let (status, started) = server
        .post(&confirm_path(visitor), Some(token), None, &body)
        .await;
    assert_eq!(status, 201, "{started}");
    started
}

/// Reads the visitor's next frame, which must be the prompt `cid`.
pub async fn prompt(visitor: &mut WsClient, cid: &Value) -> Value {
    let frame = visitor.recv().await;
    assert_eq!(
        (&frame["type"], &frame["id"]),
        (&json!("confirm"), cid),
        "{frame}"
    );
    frame
}

pub async fn press(visitor: &mut WsClient, cid: &Value, choice: Value) {
    visitor
        .send(json!({"type":"confirm_answer","id":cid,"choice":choice}))
        .await;
}

/// Reads the visitor's next frame, which must be the ticket of `cid`.
pub async fn ticket(visitor: &mut WsClient, cid: &Value) -> String {
    let frame = visitor.recv().await;
    assert_eq!(
        (&frame["type"], &frame["id"]),
        (&json!("confirm_ticket"), cid),
        "{frame}"
    );
    frame["ticket"].as_str().expect("ticket").to_owned()
}

/// Makes group 72 require confirmation.
pub fn gated(config: &mut presence_server::config::Config) {
    config.groups[0].require_confirmation = true;
}

/// An invoke of `showTerms` over REST; its status and body.
pub async fn invoke_status(server: &TestServer, token: &str, visitor: &str) -> (u16, Value) {
    server
        .invoke(
            token,
            visitor,
            json!({"func":"showTerms","timeout_ms":5000}),
        )
        .await
}
