//! The server's assembly: builds every component from the config, starts
//! the registry, the housekeeping timer and the HTTP server, and shuts them
//! down in order. The only module that knows every layer.

pub mod housekeeping;
mod reload;
mod roles;
mod running;
mod seams;
mod webhooks;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use tokio_util::sync::CancellationToken;

use crate::auth::audit::Audit;
use crate::auth::identity_verifier::IdentityVerifier;
use crate::auth::password::{self, PasswordChecker};
use crate::auth::sign_in::Authenticator;
use crate::auth::token::{ConfiguredStanding, TokenService};
use crate::infra::clock::{SharedClock, SystemClock};
use crate::infra::config::{Config, ConfigSource, LiveConfig};
use crate::infra::{capacity, config, ids, metrics};
use crate::presence::admission::GroupAccess;
use crate::presence::agent_ops::AgentOps;
use crate::presence::cluster::{ClusterEventBus, ClusterPresence, MutedBus};
use crate::presence::confirmation;
use crate::presence::events::{EventBus, LocalEventBus};
use crate::presence::live_sockets::LiveSockets;
use crate::presence::origin::OriginPolicy;
use crate::presence::registry::{PresenceDirectory, RegistryHandle};
use crate::store::cluster::ClusterLink;
use crate::store::{Store, StoreError};
use crate::transport::agent_session::AgentSocketDeps;
use crate::transport::visitor_session::VisitorSocketDeps;
use crate::transport::{client_addr, http, metrics_server};

/// Session-key lookups that may miss per token, and per client, each minute
/// (a 6-digit space must not be enumerable).
pub const SESSION_KEY_MISSES_PER_MINUTE: usize = 10;

use running::Parts;
pub use running::RunningServer;
use seams::Seams;

/// Why the server could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("cannot open the data directory: {0}")]
    Store(#[from] StoreError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("password hashing: {0}")]
    Password(String),
    #[error("cluster: {0}")]
    Cluster(#[from] crate::store::cluster::LinkError),
}

/// Binds the configured address with the configured listen backlog.
pub fn bind(config: &Config) -> Result<TcpListener, ServerError> {
    let addr = config.server.bind_addr()?;
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(config.server.backlog.min(i32::MAX as u32) as i32)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Starts the server on `listener` with the system clock. Must be called
/// inside an actix system (`#[actix_web::main]` or `#[actix_web::test]`).
pub async fn run(config: Config, listener: TcpListener) -> Result<RunningServer, ServerError> {
    run_with_clock(config, listener, Arc::new(SystemClock)).await
}

/// Starts the server on `listener` with the config loaded from `source`,
/// which a live reload (SIGHUP, `POST /internal/reload`, a cluster's
/// `reload` broadcast) reads again.
pub async fn run_with_source(
    config: Config,
    listener: TcpListener,
    source: ConfigSource,
) -> Result<RunningServer, ServerError> {
    start(config, listener, Arc::new(SystemClock), Some(source)).await
}

/// Starts the server with an injected wall clock (tests drive token expiry
/// and key ages with it). Without a config source, a reload fails saying
/// there is no file to read.
pub async fn run_with_clock(
    config: Config,
    listener: TcpListener,
    clock: SharedClock,
) -> Result<RunningServer, ServerError> {
    start(config, listener, clock, None).await
}

async fn start(
    config: Config,
    listener: TcpListener,
    clock: SharedClock,
    source: Option<ConfigSource>,
) -> Result<RunningServer, ServerError> {
    config.validate()?;
    ids::check_random_source()?;
    let config = Arc::new(config);
    let live = Arc::new(LiveConfig::new(config.clone()));
    let store = Arc::new(Store::open(&config.server.data_dir)?);
    let metrics = Arc::new(metrics::Metrics::new());
    let cluster = match config.cluster.is_redis() {
        true => Some(ClusterLink::connect(&config.cluster, metrics.clone()).await?),
        false => None,
    };
    let seams = match &cluster {
        Some(link) => Seams::cluster(&config, &store, &clock, link).await?,
        None => Seams::single_node(&config, &store, &clock)?,
    };
    let received = seams.received.clone();
    let tokens = Arc::new(TokenService::new(
        seams.keys,
        seams.revocations,
        clock.clone(),
        config.auth.token_max_secs,
    ));
    let standing = Arc::new(ConfiguredStanding::new(live.clone()));
    tokens.check_standing(standing.clone());
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    for warning in password::hash_warnings(&config) {
        tracing::warn!(group = warning.group, user = %warning.username, "{warning}");
    }
    let configured = password::configured_hashes(&config);
    let passwords = Arc::new(
        PasswordChecker::for_hashes(configured.iter().map(|h| h.phc))
            .map_err(|e| ServerError::Password(e.to_string()))?,
    );
    let auth = Arc::new(
        Authenticator::new(config.clone(), passwords, clock.clone(), seams.sign_in)
            .map_err(|message| config::ConfigError::new("groups.sso", message))?,
    );
    let audit = Arc::new(Audit::new(
        store.clone(),
        clock.clone(),
        config.auth.audit_retention_days,
        metrics.clone(),
    ));
    if let Some(link) = &cluster {
        audit.join_cluster(link);
    }
    let (session_keys, session_key_misses) = (seams.session_keys, seams.session_key_misses);
    let file_limit = capacity::FileLimit::raise()?;
    let socket_limit = config.server.max_connections.min(file_limit.socket_room());
    let gate = capacity::ConnectionGate::new(
        socket_limit,
        config.server.max_sockets_per_ip,
        metrics.clone(),
    );
    let trusted_proxies = Arc::new(
        client_addr::TrustedProxies::parse(
            &config.server.trusted_proxies,
            config.server.forwarded_header,
        )
        .map_err(|m| config::ConfigError::new("server.trusted_proxies", m))?,
    );
    let webhooks = webhooks::start(&config, &store, &metrics, &clock)?;
    // The single-node presence directory and event bus.
    let local_bus: Arc<dyn EventBus> = Arc::new(LocalEventBus::default());
    let (live_agents, registry, cluster_presence) = match &cluster {
        None => {
            let local = RegistryHandle::start(
                Arc::new(config.presence.clone()),
                clock.clone(),
                local_bus.clone(),
            );
            webhooks::emit_transitions(&local, &webhooks);
            let registry: Arc<dyn PresenceDirectory> = Arc::new(local);
            (local_bus, registry, None)
        }
        Some(link) => {
            // This node's registry holds its own sockets; the cluster
            // directory merges every node's and derives watch events.
            let bus: Arc<dyn EventBus> =
                Arc::new(ClusterEventBus::new(local_bus.clone(), link.clone()));
            let local = RegistryHandle::start(
                Arc::new(config.presence.clone()),
                clock.clone(),
                Arc::new(MutedBus(local_bus)),
            );
            let presence = ClusterPresence::start(
                link.clone(),
                local,
                bus.clone(),
                clock.clone(),
                live.clone(),
            )
            .await;
            presence.emit_webhooks(webhooks.clone());
            webhooks.join_cluster(link);
            let registry: Arc<dyn PresenceDirectory> = Arc::new(presence.clone());
            (bus, registry, Some(presence))
        }
    };
    // Cluster mode: a token revoked on another node closes its sockets here
    // (the local close only: the revoking node asked every node itself).
    let closing = live_agents.clone();
    tokens
        .revocations()
        .on_revoked(Arc::new(move |jti| closing.revoke(jti)));
    let confirmations = confirmation::Confirmations::new(
        seams.confirmation_records,
        seams.prompt_failures,
        clock.clone(),
        registry.clone(),
        live_agents.clone(),
        metrics.clone(),
        &config.presence,
    );
    if let Some(link) = &cluster {
        confirmations.join_cluster(link);
        crate::presence::admission::GroupCensus::start(link, &gate, live.clone());
    }
    confirmations.emit_webhooks(webhooks.clone());
    confirmations.resume().await?;
    let chores = housekeeping::Chores::new(
        tokens.clone(),
        auth.clone(),
        audit.clone(),
        session_keys.clone(),
        session_key_misses.clone(),
        confirmations.clone(),
        registry.clone(),
    );
    // Rotate or purge at once if the ring is overdue (after downtime).
    chores.run_once()?;
    // On its own arbiter, not the registry's: a long sweep stalls nothing.
    let housekeeping = housekeeping::HousekeepingThread::start(
        chores.clone(),
        housekeeping::interval(config.auth.key_rotation_secs),
    );
    let origins = web::Data::new(OriginPolicy::from_config(&config));
    let groups = Arc::new(GroupAccess::new(live.clone(), origins.clone().into_inner()));
    let live_sockets = Arc::new(LiveSockets::default());
    let limits = Arc::new(config.presence.clone());
    let ops = web::Data::new(AgentOps::new(
        groups.clone(),
        registry.clone(),
        confirmations.clone(),
        session_keys.clone(),
        session_key_misses.clone(),
        metrics.clone(),
    ));
    let shutdown = CancellationToken::new();
    let visitor_sockets = web::Data::new(VisitorSocketDeps {
        groups: groups.clone(),
        identity: IdentityVerifier::new(clock.clone()),
        registry: registry.clone(),
        gate: gate.clone(),
        session_keys: session_keys.clone(),
        confirmations: confirmations.clone(),
        limits: limits.clone(),
        metrics: metrics.clone(),
        sockets: live_sockets.clone(),
        shutdown: shutdown.clone(),
    });
    let agent_sockets = web::Data::new(AgentSocketDeps {
        ops: ops.clone().into_inner(),
        tokens: tokens.clone(),
        events: live_agents.clone(),
        gate: gate.clone(),
        limits,
        metrics: metrics.clone(),
        sockets: live_sockets.clone(),
        shutdown: shutdown.clone(),
    });
    let webhooks_data = web::Data::from(webhooks.clone());
    let http_limits = web::Data::new(http::HttpLimits {
        body_limit: config.presence.max_message_bytes,
        request_body_timeout: config.server.request_body_timeout(),
        trusted_proxies: trusted_proxies.clone(),
    });
    let auth_deps = web::Data::new(http::AuthDeps {
        config: live.clone(),
        auth,
        tokens: tokens.clone(),
        audit,
        origins: origins.clone().into_inner(),
        events: live_agents,
        metrics: metrics.clone(),
    });
    let reloader = Arc::new(reload::Reloader {
        source,
        live: live.clone(),
        auth: auth_deps.auth.clone(),
        origins: auth_deps.origins.clone(),
        groups,
        standing,
        tokens: tokens.clone(),
        audit: auth_deps.audit.clone(),
        events: auth_deps.events.clone(),
        sockets: live_sockets,
        metrics: metrics.clone(),
        clock: clock.clone(),
        cluster: cluster.clone(),
        hash: std::sync::Mutex::new(config::settings_hash(&config)),
        last: std::sync::Mutex::new(None),
        running: tokio::sync::Mutex::new(()),
        listeners: std::sync::Mutex::new(Vec::new()),
    });
    webhooks::follow_reloads(&reloader, &webhooks);
    if let Some(link) = &cluster {
        reload::on_broadcast(link, &reloader);
    }
    reload::on_sighup(reloader.clone(), shutdown.clone())?;
    let role_parts = roles::start(roles::RoleInputs {
        config: config.clone(),
        store: store.clone(),
        clock: clock.clone(),
        tokens: tokens.clone(),
        received,
        events: auth_deps.events.clone(),
        audit: auth_deps.audit.clone(),
        metrics: metrics.clone(),
        shutdown: shutdown.clone(),
        reloader: reloader.clone(),
    })?;
    let audit = auth_deps.audit.clone();
    let health = web::Data::new(http::Health {
        cluster: cluster.clone(),
        role: role_parts.health,
        reloader: reloader.clone(),
    });
    let role = web::Data::new(config.server.role);
    let console = web::Data::new(http::ConsoleSettings::new(match config.server.role {
        config::ServerRole::Presence => &config.server.auth_url,
        _ => "",
    }));
    let token_data = web::Data::from(tokens.clone());
    let metrics_data = web::Data::from(metrics.clone());

    #[cfg(target_os = "linux")]
    {
        // Backstop for peers that stop reading: a socket actor only runs
        // while its output can be written, so the kernel drops connections
        // whose data (or zero-window probes) go unacknowledged this long.
        // Accepted sockets inherit it from the listener.
        socket2::SockRef::from(&listener)
            .set_tcp_user_timeout(Some(config.presence.client_timeout()))?;
    }
    let workers = config.server.worker_count();
    // Sockets are capped exactly, across workers, by the gate (a clean 503
    // at the limit). actix-web's own per-worker cap only stops accepting,
    // leaving connections in the backlog; it is the backstop for plain
    // HTTP connections, split so the workers together stay within the
    // descriptors the file limit leaves.
    let per_worker = file_limit.per_worker_connections(workers);
    let peer_connections = capacity::KeyedSlots::new();
    let on_connect = http::guards::on_connect(
        peer_connections,
        config.server.max_connections_per_ip,
        trusted_proxies,
        metrics.clone(),
    );
    if let Some(link) = &cluster {
        // Every handler is registered: subscribe, beat, hear the others.
        link.start();
    }
    let addr = listener.local_addr()?;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(http_limits.clone())
            .app_data(auth_deps.clone())
            .app_data(token_data.clone())
            .app_data(health.clone())
            .app_data(metrics_data.clone())
            .app_data(origins.clone())
            .app_data(ops.clone())
            .app_data(visitor_sockets.clone())
            .app_data(agent_sockets.clone())
            .app_data(role.clone())
            .app_data(console.clone())
            .app_data(webhooks_data.clone())
            .wrap(from_fn(http::guards::body_deadline))
            .wrap(from_fn(http::cors::cors))
            .wrap(from_fn(http::role_gate::role_gate))
            .wrap(from_fn(http::guards::connection_limit))
            .wrap(from_fn(http::request_log::log_requests))
            .configure(|cfg| http::configure(cfg, &http_limits))
            .default_service(web::to(http::not_found))
    })
    .on_connect(on_connect)
    // Frames are small and latency is the product: without TCP_NODELAY a
    // frame written while the previous one awaits its (delayed) ACK waits
    // up to 40 ms (Nagle), which was the invoke tail at 5,000/s.
    .tcp_nodelay(true)
    .workers(workers)
    .max_connections(per_worker)
    .backlog(config.server.backlog)
    .shutdown_timeout(config.server.shutdown_timeout_secs)
    .disable_signals()
    .listen(listener)?
    .run();
    let handle = server.handle();
    let task = tokio::task::spawn_local(server);
    let metrics_server = metrics_server::start(
        &config,
        metrics_server::MetricsSource {
            metrics: metrics.clone(),
            registry: registry.clone(),
        },
    )?;
    tracing::info!(
        %addr,
        workers,
        max_connections = socket_limit,
        connections_per_worker = per_worker,
        open_file_limit = file_limit.soft,
        metrics = ?metrics_server.as_ref().map(|m| m.addr),
        "listening"
    );
    Ok(RunningServer {
        addr,
        handle,
        task,
        parts: Parts {
            gate,
            tokens,
            chores,
            metrics,
            registry,
            shutdown,
            shutdown_timeout_secs: config.server.shutdown_timeout_secs,
            store,
            audit,
            cluster,
            cluster_presence,
            webhooks,
            reloader,
        },
        metrics_server,
        internal_server: role_parts.internal,
        housekeeping,
    })
}
