//! Infrastructure: what every layer may use and that knows nothing of
//! visitors, agents or tokens: configuration, the domain error codes,
//! metrics, connection capacity, clocks, ids, rate limiting, telemetry and
//! the JWT helpers. It imports no other layer of the crate.

pub mod capacity;
pub mod clock;
pub mod config;
pub mod error;
pub mod ids;
pub mod jwt;
pub mod metrics;
pub mod rate;
pub mod shutdown;
pub mod telemetry;
