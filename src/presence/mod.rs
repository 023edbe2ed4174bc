//! The presence core: the registry of visitors and the routing of
//! commands to them, invokes, confirmation prompts, session keys, the event
//! bus to live agent sockets, Origin rules, and the agent operations every
//! transport calls. Uses auth, the store and infrastructure; never a
//! transport.

pub mod admission;
pub mod agent_ops;
pub mod cluster;
pub mod coalescer;
pub mod confirmation;
pub mod data;
pub mod events;
pub mod invoke;
pub mod live_sockets;
pub mod origin;
pub mod registry;
pub mod session_keys;
pub mod visitor;
pub mod webhooks;
