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

pub use server::{bind, run, run_with_clock, run_with_source, RunningServer, ServerError};
pub use store::Store;
pub use transport::http::openapi_json;

/// Configuration: the typed, validated config and its sections.
pub mod config {
    pub use crate::infra::config::{
        ClusterConfig, ClusterMode, Config, ConfigError, ConfigSource, GroupConfig, LogFormat,
        PresenceConfig, ReloadChanges, ReloadOutcome, ReloadReport, Role, ServerRole, SsoAlgorithm,
        SsoConfig, UserConfig, WebhookEventType, WebhookSubscription, WebhooksConfig,
    };
}

/// Wall clocks; tests drive token expiry and key ages with [`ManualClock`](clock::ManualClock).
pub mod clock {
    pub use crate::infra::clock::{Clock, ManualClock, SharedClock, SystemClock};
}

/// The signing of internal calls between the auth and presence roles.
pub mod internal_auth {
    pub use crate::infra::internal_auth::{
        sign, SignedHeaders, MAX_SKEW_MS, NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER,
    };
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

/// Entry points for the fuzz targets in `fuzz/`, only with the `fuzzing`
/// feature: the frame parsers (and, under the feature, `Serialize` on the
/// inbound frames for the round trip), the fragment reassembly, login keys,
/// the three token verifiers, presence data and the config loader. Not part
/// of the supported surface.
#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    pub use actix_http::ws::Item;
    pub use actix_web::web::Bytes;

    pub use crate::auth::sign_in::login_key::{
        generate as login_key_generate, verify as login_key_verify, LoginKeyError,
        MAX_KEY_BYTES as LOGIN_KEY_MAX_BYTES,
    };
    pub use crate::auth::sign_in::sso::{SsoError, SsoIdentity, SsoVerifier};
    pub use crate::auth::token::{AgentClaims, TokenError, TokenService, LEEWAY_SECS};
    pub use crate::auth::visitor_identity::{
        verify as visitor_identity_verify, IdentityError, IdentityRules, MAX_CUSTOM_CLAIMS_BYTES,
    };
    pub use crate::infra::config::{Config, ConfigError, SsoAlgorithm, SsoConfig};
    pub use crate::presence::data::{PresenceData, MAX_KEY_BYTES, MAX_PRESENCE_BYTES};
    pub use crate::transport::protocol::{
        parse_frame, AgentInbound, FrameError, InboundFrame, VisitorInbound,
    };
    pub use crate::transport::ws_support::{Assembled, MessageAssembler};

    /// The frame targets' invariants: no panic on any text; a frame that
    /// parses re-serialises to text that parses to the same frame
    /// (compared by its serialisation); an error's `id` is always a usable
    /// request id. Panics when one fails.
    pub fn check_frame_round_trip<F: InboundFrame + serde::Serialize>(text: &str) {
        match parse_frame::<F>(text) {
            Ok(frame) => {
                let once = serde_json::to_string(&frame).expect("a parsed frame serialises");
                let again = parse_frame::<F>(&once)
                    .unwrap_or_else(|e| panic!("re-serialised frame {once} does not parse: {e:?}"));
                let twice = serde_json::to_string(&again).expect("serialises");
                assert_eq!(once, twice, "round trip changed the frame");
            }
            Err(e) => {
                if let Some(id) = &e.id {
                    assert!(
                        !id.is_empty() && id.len() <= 128,
                        "unusable error id {id:?}"
                    );
                }
            }
        }
    }

    /// A token service over a fresh store in `dir`, its clock frozen at
    /// `now_secs`, with one signing key and tokens living at most
    /// `max_lifetime_secs`.
    pub fn token_service(
        dir: &std::path::Path,
        now_secs: u64,
        max_lifetime_secs: u64,
    ) -> Result<TokenService, String> {
        use std::sync::Arc;
        let store = Arc::new(crate::store::Store::open(dir).map_err(|e| e.to_string())?);
        let clock: crate::infra::clock::SharedClock =
            Arc::new(crate::infra::clock::ManualClock::new(now_secs * 1000));
        let keys = crate::auth::token::KeyRing::load_or_create(
            store.clone(),
            clock.clone(),
            86_400,
            max_lifetime_secs,
        )
        .map_err(|e| e.to_string())?;
        let revocations =
            crate::auth::token::Revocations::load(store).map_err(|e| e.to_string())?;
        Ok(TokenService::new(
            Arc::new(keys),
            revocations,
            clock,
            max_lifetime_secs,
        ))
    }
}
