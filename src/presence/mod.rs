//! The presence core: the registry of visitors and the routing of
//! commands to them, invokes, confirmation prompts, session keys, the live
//! agent index, Origin rules, and the agent operations every transport
//! calls. Uses auth, the store and infrastructure; never a transport.

pub mod admission;
pub mod agent_ops;
pub mod coalescer;
pub mod confirmation;
pub mod data;
pub mod invoke;
pub mod live_agents;
pub mod origin;
pub mod registry;
pub mod session_keys;
