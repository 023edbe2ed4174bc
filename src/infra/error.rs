//! The domain error: everything a client can be told went wrong, whichever
//! transport it used. Each variant has a stable code that clients match on;
//! this file is the only place a code is written. The transports map it at
//! their edge, each in one place: HTTP statuses in
//! `transport::http::error_response`, socket close codes in
//! `transport::close_codes`. Over HTTP it becomes
//! `{"error": code, "message": text}`; over a socket, an error frame with the
//! same code.

use serde::Serialize;

/// Everything a client can be told went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    BadDuration(String),
    #[error("{0}")]
    BadCredentialsForm(String),
    #[error("this username belongs to several groups; say which with groupid")]
    GroupIdRequired,
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("the username or password is wrong")]
    InvalidCredentials,
    #[error("{0}")]
    Unauthorized(String),
    #[error("the token is for group {token}, not group {path}")]
    WrongGroup { token: u64, path: u64 },
    #[error("origin {0:?} is not allowed for this group")]
    OriginNotAllowed(String),
    #[error("group {0} does not subscribe to Presence")]
    PresenceNotSubscribed(u64),
    #[error("the agent is not a member of group {0}")]
    NotAMember(u64),
    #[error("{0}")]
    Forbidden(String),
    #[error("function {0:?} is not in the group's invoke_allow list")]
    FunctionNotAllowed(String),
    #[error("this group does not accept the administrator role from SSO tokens")]
    RoleNotAllowed,
    #[error("the agent is not known to this group and auto-provisioning is off")]
    UnknownAgent,
    #[error("{0}")]
    BadPolicy(String),
    #[error("this group requires a live confirmation of the visitor by this agent")]
    ConfirmationRequired,
    #[error("no such confirmation for this visitor and agent")]
    ConfirmationNotFound,
    #[error("the confirmation was already settled: {0}")]
    ConfirmationSettled(String),
    #[error("the visitor already has {0} confirmation prompts open")]
    TooManyPrompts(usize),
    #[error("group {0} does not exist")]
    UnknownGroup(u64),
    #[error("group {0} has no SSO sign-in page configured")]
    SsoNotConfigured(u64),
    #[error("{0}")]
    VisitorNotPresent(String),
    /// A visitor socket's presence data was refused (too large once merged,
    /// or sent by a connection the registry does not know).
    #[error("{0}")]
    BadPresenceData(String),
    /// Presence from a connection the registry does not know (it left).
    #[error("the connection is not registered")]
    NotRegistered,
    #[error("no such resource")]
    NotFound,
    #[error("no live token has this jti")]
    UnknownToken,
    #[error("no visitor holds this session key")]
    SessionKeyNotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("the visitor already has {0} invokes awaiting a result")]
    TooManyPending(usize),
    #[error("too many failed attempts; retry in {0} s")]
    TooManyAttempts(u64),
    #[error("the visitor did not answer within {0} ms")]
    InvokeTimeout(u64),
    #[error("{0}")]
    TooManyConnections(String),
    #[error("the request body was not complete within {0} ms")]
    RequestTimeout(u64),
    /// Ends the sockets when the server shuts down (close 1001).
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("the server is busy; retry shortly")]
    Busy,
    #[error("the server holds its maximum of {0} connections; retry shortly")]
    AtCapacity(usize),
    #[error("internal error: {0}")]
    Internal(String),

    // What only a socket can get wrong. Each closes the socket with the
    // code `transport::close_codes` maps it to, or is an error frame.
    /// A frame with bad fields, or a hello the server cannot use.
    #[error("{0}")]
    BadFrame(String),
    /// Frames that break the WebSocket protocol (fragments out of order,
    /// bad UTF-8): the same code, but the socket closes with 1002.
    #[error("{0}")]
    ProtocolViolation(String),
    #[error("{0}")]
    MalformedJson(String),
    #[error("{0}")]
    UnknownType(String),
    #[error("{0}")]
    MessageTooLarge(String),
    #[error(
        "more frames than presence.inbound_frames_per_sec and presence.inbound_frame_burst allow"
    )]
    RateLimited,
    #[error("too many bad frames; closing")]
    TooManyErrors,
    #[error("no frame or pong was received within presence.client_timeout_ms")]
    HeartbeatTimeout,
    #[error("frames must be JSON text")]
    BinaryNotSupported,
    #[error("{0}")]
    AuthRequired(&'static str),
    #[error("no auth within presence.hello_timeout_ms")]
    AuthTimeout,
    #[error("auth was already received")]
    AlreadyAuthenticated,
    #[error("{0}")]
    HelloRequired(&'static str),
    #[error("no hello within presence.hello_timeout_ms")]
    HelloTimeout,
    #[error("hello was already received")]
    AlreadyJoined,
    #[error("{0}")]
    BadHello(String),
    #[error("{0}")]
    BadVisitorId(String),
    #[error("this group requires a visitor identity token")]
    IdentityRequired,
    #[error("{0}")]
    IdentityInvalid(String),
    #[error("the connection is not registered yet")]
    NotReady,
    #[error("{0}")]
    UnknownInvoke(String),
    #[error("{0}")]
    PromptNotOpen(String),
    #[error("at most {0} visitors can be watched per socket")]
    TooManyWatches(usize),
    #[error("the agent token was revoked")]
    TokenRevoked,
    #[error("the agent token has expired")]
    TokenExpired,
    #[error("this group is minting session keys too fast; retry in {0} s")]
    SessionKeyMintLimited(u64),
    #[error("no free session key right now; retry shortly")]
    SessionKeysExhausted,
    /// Cluster mode: the shared state (Redis) did not answer in time.
    #[error("the cluster's shared state is unreachable: {0}")]
    ClusterUnavailable(String),
    /// Split roles: the endpoint belongs to the other role (named here).
    #[error("this node has role {0}; this endpoint is served by the {1} role")]
    NotServedHere(&'static str, &'static str),
    /// Auth role: no presence node has handed a signing key over yet.
    #[error("no signing key has been handed over by a presence node yet")]
    NoSigningKey,
    /// An internal call whose HMAC signature, timestamp or nonce is refused;
    /// the code is the reason (`bad_signature`, `stale_request`,
    /// `replayed_request`).
    #[error("{1}")]
    InternalAuth(&'static str, String),
    /// A config reload found a bad file or value (named); the config in
    /// force stays.
    #[error("{0}")]
    ConfigInvalid(String),
    /// A config reload changed keys only a restart applies (named); the
    /// config in force stays.
    #[error("{0}")]
    RestartRequired(String),
}

impl DomainError {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            DomainError::BadRequest(_) => "bad_request",
            DomainError::BadDuration(_) => "bad_duration",
            DomainError::BadCredentialsForm(_) => "bad_credentials_form",
            DomainError::GroupIdRequired => "groupid_required",
            DomainError::PayloadTooLarge(_) => "payload_too_large",
            DomainError::InvalidCredentials => "invalid_credentials",
            DomainError::Unauthorized(_) => "unauthorized",
            DomainError::WrongGroup { .. } => "wrong_group",
            DomainError::OriginNotAllowed(_) => "origin_not_allowed",
            DomainError::PresenceNotSubscribed(_) => "presence_not_subscribed",
            DomainError::NotAMember(_) => "not_a_member",
            DomainError::Forbidden(_) => "forbidden",
            DomainError::FunctionNotAllowed(_) => "function_not_allowed",
            DomainError::ConfirmationRequired => "confirmation_required",
            DomainError::RoleNotAllowed => "role_not_allowed",
            DomainError::UnknownAgent => "unknown_agent",
            DomainError::BadPolicy(_) => "bad_policy",
            DomainError::ConfirmationNotFound => "confirmation_not_found",
            DomainError::ConfirmationSettled(_) => "confirmation_settled",
            DomainError::TooManyPrompts(_) => "too_many_pending",
            DomainError::UnknownGroup(_) => "unknown_group",
            DomainError::SsoNotConfigured(_) => "sso_not_configured",
            DomainError::VisitorNotPresent(_) => "visitor_not_present",
            DomainError::BadPresenceData(_) | DomainError::NotRegistered => "bad_presence_data",
            DomainError::NotFound => "not_found",
            DomainError::UnknownToken => "unknown_token",
            DomainError::SessionKeyNotFound => "session_key_not_found",
            DomainError::MethodNotAllowed => "method_not_allowed",
            DomainError::TooManyPending(_) => "too_many_pending",
            DomainError::TooManyAttempts(_) => "too_many_attempts",
            DomainError::InvokeTimeout(_) => "invoke_timeout",
            DomainError::TooManyConnections(_) => "too_many_connections",
            DomainError::RequestTimeout(_) => "request_timeout",
            DomainError::ShuttingDown => "shutting_down",
            DomainError::Busy => "server_busy",
            DomainError::AtCapacity(_) => "at_capacity",
            DomainError::Internal(_) => "internal",
            DomainError::BadFrame(_) | DomainError::ProtocolViolation(_) => "bad_frame",
            DomainError::MalformedJson(_) => "malformed_json",
            DomainError::UnknownType(_) => "unknown_type",
            DomainError::MessageTooLarge(_) => "message_too_large",
            DomainError::RateLimited => "rate_limited",
            DomainError::TooManyErrors => "too_many_errors",
            DomainError::HeartbeatTimeout => "heartbeat_timeout",
            DomainError::BinaryNotSupported => "binary_not_supported",
            DomainError::AuthRequired(_) => "auth_required",
            DomainError::AuthTimeout => "auth_timeout",
            DomainError::AlreadyAuthenticated => "already_authenticated",
            DomainError::HelloRequired(_) => "hello_required",
            DomainError::HelloTimeout => "hello_timeout",
            DomainError::AlreadyJoined => "already_joined",
            DomainError::BadHello(_) => "bad_hello",
            DomainError::BadVisitorId(_) => "bad_visitor_id",
            DomainError::IdentityRequired => "identity_required",
            DomainError::IdentityInvalid(_) => "identity_invalid",
            DomainError::NotReady => "not_ready",
            DomainError::UnknownInvoke(_) => "unknown_invoke",
            DomainError::PromptNotOpen(_) => "confirmation_not_found",
            DomainError::TooManyWatches(_) => "too_many_watches",
            DomainError::TokenRevoked => "token_revoked",
            DomainError::TokenExpired => "token_expired",
            DomainError::SessionKeyMintLimited(_) => "rate_limited",
            DomainError::SessionKeysExhausted => "session_keys_exhausted",
            DomainError::ClusterUnavailable(_) => "cluster_unavailable",
            DomainError::NotServedHere(..) => "not_served_here",
            DomainError::NoSigningKey => "no_signing_key",
            DomainError::InternalAuth(code, _) => code,
            DomainError::ConfigInvalid(_) => "config_invalid",
            DomainError::RestartRequired(_) => "restart_required",
        }
    }

    /// The JSON body of this error.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.code(),
            message: self.to_string(),
        }
    }

    /// A command waited for the visitor's next socket, and the grace
    /// period ended without one.
    pub fn went_offline() -> Self {
        DomainError::VisitorNotPresent(
            "the visitor went offline before the command could be delivered".to_owned(),
        )
    }

    /// The standard "visitor is not online" error.
    pub fn not_present() -> Self {
        DomainError::VisitorNotPresent("the visitor is not online".to_owned())
    }

    /// The standard "bad token" error; the reason is for the client, never
    /// the token itself.
    pub fn unauthorized(reason: impl Into<String>) -> Self {
        DomainError::Unauthorized(reason.into())
    }
}

/// Runs a fallible blocking call (a sled scan or flush, an fsync) on the
/// blocking pool, off the async workers. Any failure, of the call or of the
/// pool, is an internal error described as `what: cause`.
pub async fn off_thread<T, E>(
    what: &'static str,
    call: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, DomainError>
where
    T: Send + 'static,
    E: std::error::Error + Send + 'static,
{
    on_blocking_pool(what, call)
        .await?
        .map_err(|e| DomainError::from_failure(what, &e))
}

/// The cluster's shared state (Redis) did not answer in time or refused:
/// a cause any lower-layer error may carry (as its `source`), so that the
/// client is told `cluster_unavailable` (503) rather than `internal`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SharedStateUnavailable(pub String);

impl DomainError {
    /// The error a client sees for a failed call: `cluster_unavailable` if
    /// the failure, or any of its causes, is [`SharedStateUnavailable`];
    /// otherwise an internal error described as `what: failure`.
    pub fn from_failure(what: &str, failure: &(dyn std::error::Error + 'static)) -> Self {
        let mut cause = Some(failure);
        while let Some(error) = cause {
            if let Some(unavailable) = error.downcast_ref::<SharedStateUnavailable>() {
                return DomainError::ClusterUnavailable(unavailable.0.clone());
            }
            cause = error.source();
        }
        DomainError::Internal(format!("{what}: {failure}"))
    }
}

/// Runs a blocking call on the blocking pool and hands back what it
/// returned, for the caller to map as it would have on the spot. Only a
/// failure of the pool itself is an internal error, `what: cause`.
pub async fn on_blocking_pool<T: Send + 'static>(
    what: &'static str,
    call: impl FnOnce() -> T + Send + 'static,
) -> Result<T, DomainError> {
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|e| DomainError::Internal(format!("{what}: {e}")))
}

/// `{"error": code, "message": text}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    #[schema(value_type = ErrorCode)]
    pub error: &'static str,
    /// What went wrong, for a person; not for matching on.
    pub message: String,
}

/// Every code [`DomainError::code`] gives a public client, for the OpenAPI
/// document's `ErrorCode` enum. A test reads `code()` in this file and
/// fails if the two differ. (The internal listener's callers get a few
/// more, from [`DomainError::InternalAuth`]; they are not public.)
pub const ERROR_CODES: &[&str] = &[
    "bad_request",
    "bad_duration",
    "bad_credentials_form",
    "groupid_required",
    "payload_too_large",
    "invalid_credentials",
    "unauthorized",
    "wrong_group",
    "origin_not_allowed",
    "presence_not_subscribed",
    "not_a_member",
    "forbidden",
    "function_not_allowed",
    "confirmation_required",
    "role_not_allowed",
    "unknown_agent",
    "bad_policy",
    "confirmation_not_found",
    "confirmation_settled",
    "too_many_pending",
    "unknown_group",
    "sso_not_configured",
    "visitor_not_present",
    "bad_presence_data",
    "not_found",
    "unknown_token",
    "session_key_not_found",
    "method_not_allowed",
    "too_many_attempts",
    "invoke_timeout",
    "too_many_connections",
    "request_timeout",
    "shutting_down",
    "server_busy",
    "at_capacity",
    "internal",
    "bad_frame",
    "malformed_json",
    "unknown_type",
    "message_too_large",
    "rate_limited",
    "too_many_errors",
    "heartbeat_timeout",
    "binary_not_supported",
    "auth_required",
    "auth_timeout",
    "already_authenticated",
    "hello_required",
    "hello_timeout",
    "already_joined",
    "bad_hello",
    "bad_visitor_id",
    "identity_required",
    "identity_invalid",
    "not_ready",
    "unknown_invoke",
    "too_many_watches",
    "token_revoked",
    "token_expired",
    "session_keys_exhausted",
    "cluster_unavailable",
    "not_served_here",
    "no_signing_key",
    "config_invalid",
    "restart_required",
];

/// The `ErrorCode` schema: the machine-readable `error` of every error body.
pub struct ErrorCode;

impl utoipa::PartialSchema for ErrorCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(ERROR_CODES.iter().copied()))
            .description(Some("What went wrong, for a program to match on."))
            .into()
    }
}

impl utoipa::ToSchema for ErrorCode {}
