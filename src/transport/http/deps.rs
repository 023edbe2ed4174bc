//! What the HTTP routes use besides the agent operations: the sign-in,
//! token, session and administrator endpoints get [`AuthDeps`] (the
//! authorization side of the server), every request gets [`HttpLimits`].
//! Each is registered as its own `web::Data`, so a handler names exactly
//! what it uses.

use std::sync::Arc;
use std::time::Duration;

use crate::auth::audit::Audit;
use crate::auth::sign_in::Authenticator;
use crate::auth::token::TokenService;
use crate::infra::config::LiveConfig;
use crate::infra::metrics::Metrics;
use crate::presence::events::EventBus;
use crate::presence::origin::OriginPolicy;
use crate::transport::client_addr::TrustedProxies;

/// What the authorization endpoints use: `/auth/*`, SSO start and the
/// administrator's audit, agent and revocation endpoints.
pub struct AuthDeps {
    /// The config in force (a reload replaces it).
    pub config: Arc<LiveConfig>,
    /// Checks credentials, lockouts and memberships.
    pub auth: Arc<Authenticator>,
    /// Issues, verifies and revokes agent tokens.
    pub tokens: Arc<TokenService>,
    /// The token audit log.
    pub audit: Arc<Audit>,
    /// The console and cookie Origin rules.
    pub origins: Arc<OriginPolicy>,
    /// Closes a revoked token's live sockets.
    pub events: Arc<dyn EventBus>,
    pub metrics: Arc<Metrics>,
}

/// What every request is held to.
pub struct HttpLimits {
    /// Largest request body.
    pub body_limit: usize,
    /// How long a request body may take to arrive.
    pub request_body_timeout: Duration,
    /// Load balancers whose forwarding headers name the client.
    pub trusted_proxies: Arc<TrustedProxies>,
}
