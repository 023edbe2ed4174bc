//! Transports: the HTTP routes, the visitor and agent socket sessions,
//! their frames, the frame-header guard, and the client-address rules.
//! They parse, call the presence core and format the answer.

pub mod agent_session;
pub mod client_addr;
pub mod close_codes;
pub mod http;
pub mod internal;
pub mod metrics_server;
pub mod protocol;
pub mod visitor_session;
pub mod webhooks;
pub mod ws_guard;
pub mod ws_support;
