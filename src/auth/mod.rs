//! Auth and tokens: signing in agents ([`sign_in`]), the agent tokens and
//! their keys ([`token`]), the token audit log ([`audit`]), password
//! hashing, token policies and signed visitor identities. Uses the store
//! and infrastructure; knows nothing of sockets or the registry.

pub mod audit;
pub mod identity_verifier;
pub mod password;
pub mod policy;
pub mod sign_in;
pub mod token;
pub mod visitor_identity;
