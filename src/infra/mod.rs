//! Infrastructure: what every layer may use: configuration, the domain
//! error codes, metrics, connection capacity, clocks, ids, rate limiting,
//! telemetry and the JWT helpers. It holds no behaviour of visitors, agents
//! or tokens (only their settings and error codes), and imports no other
//! layer of the crate.

pub mod capacity;
pub mod clock;
pub mod config;
pub mod error;
pub mod ids;
pub mod internal_auth;
pub mod json_integer;
pub mod jwt;
pub mod metrics;
pub mod rate;
pub mod shutdown;
pub mod telemetry;
