//! presence-server: an actor-based real-time presence server.
//!
//! Visitor browsers hold one WebSocket each; agent consoles authenticate
//! with short-lived tokens and reach visitors through the REST API or their
//! own socket. The registry routes every command by (group, visitor).
//! Durable state lives in sled behind the store.
//!
//! The source is layered (see ARCHITECTURE.md): `server` assembles
//! `transport` (HTTP and sockets) over `presence` (the core) over `auth`
//! over `store` over `infra`. [`run`] starts the server on a listener, so
//! tests can start it on port 0.

#![forbid(unsafe_code)]

mod auth;
pub mod cli;
mod infra;
mod presence;
mod server;
mod store;
mod transport;

pub use server::{bind, run, run_with_clock, RunningServer, ServerError};
pub use store::Store;

/// Configuration: the typed, validated config and its sections.
pub mod config {
    pub use crate::infra::config::{
        Config, ConfigError, GroupConfig, LogFormat, PresenceConfig, Role, SsoAlgorithm, SsoConfig,
        UserConfig,
    };
}

/// Wall clocks; tests drive token expiry and key ages with [`ManualClock`](clock::ManualClock).
pub mod clock {
    pub use crate::infra::clock::{Clock, ManualClock, SharedClock, SystemClock};
}

/// Random ids.
pub mod ids {
    pub use crate::infra::ids::random_id;
}

/// Password hashing, for configuring users.
pub mod password {
    pub use crate::auth::password::{hash_password, PasswordChecker};
}

/// Login keys, for configuring users.
pub mod login_key {
    pub use crate::auth::sign_in::login_key::generate;
}

/// Agent tokens and the policies that scope them.
pub mod token {
    pub use crate::auth::policy::Policy;
    pub use crate::auth::token::{AgentClaims, TokenError, TokenService, AUDIENCE, ISSUER};
}

/// Limits of the token audit log.
pub mod audit {
    pub use crate::auth::audit::{MAX_USERNAME, MAX_USER_AGENT, TRUNCATED};
}

/// Logging set-up.
pub mod telemetry {
    pub use crate::infra::telemetry::init;
}

/// Limits of the socket frame guard.
pub mod ws_guard {
    pub use crate::transport::ws_guard::{BUFFER_OVERHEAD_BYTES, MAX_FRAGMENTS};
}

/// The error-frame budget of a socket.
pub mod ws_support {
    pub use crate::transport::ws_support::ERROR_BUDGET;
}
