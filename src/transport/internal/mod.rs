//! The internal listener of the split roles (`server.internal_bind`),
//! apart from the public one: it serves only `/internal/*`, and the public
//! listener never does.
//!
//! - Auth role: `POST /internal/keys`, a presence node handing its signing
//!   keys over (answered with the `kid`s held, after they are flushed).
//! - Presence role: `POST /internal/revoked`, an auth node without Redis
//!   passing on revocations (answered after they are denied and their
//!   sockets closed).
//! - Every role: `POST /internal/audit`, the audit record of a token
//!   `gen-token` issued while this node holds its data dir (cluster mode).
//! - Every role: `POST /internal/reload`, a live config reload (answered
//!   with its report: 200 when applied, 409 `restart_required` or 422
//!   `config_invalid` otherwise). Role `all` runs the listener only when
//!   `server.internal_secret` is set, for this route alone.
//!
//! Every call is signed (`infra::internal_auth`); a refused one gets 401
//! with its reason as the code, a metric, a warning, and an audit record
//! under group 0 (the deployment's own), at most
//! `REFUSALS_PER_CLIENT_PER_MINUTE` per client and minute.

mod caller;
pub mod handover;
pub mod notices;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::dev::ServerHandle;
use actix_web::web::Bytes;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde::Deserialize;

use crate::auth::audit::{Audit, AuditRecord, Outcome};
use crate::auth::sign_in::CredentialKind;
use crate::auth::token::handover::KeyHandover;
use crate::auth::token::{ReceivedKeys, TokenService};
use crate::infra::clock::SharedClock;
use crate::infra::config::{Config, ConfigReloader, ReloadOutcome, ServerRole};
use crate::infra::error::{off_thread, on_blocking_pool, DomainError};
use crate::infra::internal_auth::{
    InternalVerifier, SignedHeaders, NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER,
};
use crate::infra::metrics::Metrics;
use crate::presence::events::EventBus;

pub use caller::SignedCaller;

/// Path of the key handover.
pub const KEYS_PATH: &str = "/internal/keys";
/// Path of the revocation notice.
pub const REVOKED_PATH: &str = "/internal/revoked";
/// Path of the live config reload.
pub const RELOAD_PATH: &str = "/internal/reload";
/// Path of a command-line token's audit record (`gen-token` in cluster
/// mode, while this node holds the data dir the tool would write to).
pub const AUDIT_PATH: &str = "/internal/audit";
/// Largest internal request body.
pub const MAX_INTERNAL_BODY: usize = 1 << 20;
/// Most revocations one notice carries.
pub const MAX_NOTICE_JTIS: usize = 10_000;
/// Longest `jti` accepted in a notice.
pub const MAX_JTI_BYTES: usize = 128;
/// The group internal-call refusals are audited under.
pub const DEPLOYMENT_GROUP: u64 = 0;

/// What the internal handlers use.
pub struct InternalDeps {
    pub verifier: InternalVerifier,
    pub clock: SharedClock,
    /// Auth role: where handed-over keys go.
    pub received: Option<Arc<ReceivedKeys>>,
    pub tokens: Arc<TokenService>,
    /// Closes the sockets of a revoked token.
    pub events: Arc<dyn EventBus>,
    pub audit: Arc<Audit>,
    pub metrics: Arc<Metrics>,
    /// Re-reads and applies the config.
    pub reloader: Arc<dyn ConfigReloader>,
}

/// A running internal listener.
pub struct InternalServer {
    pub addr: SocketAddr,
    pub handle: ServerHandle,
}

/// Starts the internal listener of a split role, or of role `all` with an
/// internal secret (none otherwise).
pub fn start(config: &Config, deps: InternalDeps) -> std::io::Result<Option<InternalServer>> {
    let role = config.server.role;
    if !config.server.runs_internal_listener() {
        return Ok(None);
    }
    let listener = TcpListener::bind(&config.server.internal_bind)?;
    let addr = listener.local_addr()?;
    let deps = web::Data::new(deps);
    let server = HttpServer::new(move || {
        let app = App::new()
            .app_data(deps.clone())
            .app_data(web::PayloadConfig::new(MAX_INTERNAL_BODY));
        let app = match role {
            ServerRole::Auth => app.route(KEYS_PATH, web::post().to(receive_keys)),
            ServerRole::Presence => app.route(REVOKED_PATH, web::post().to(receive_revocations)),
            ServerRole::All => app,
        };
        let app = app
            .route(RELOAD_PATH, web::post().to(reload_config))
            .route(AUDIT_PATH, web::post().to(record_cli_audit));
        app.default_service(web::to(crate::transport::http::not_found))
    })
    .workers(1)
    .tcp_nodelay(true)
    .disable_signals()
    .listen(listener)?
    .run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    tracing::info!(%addr, role = role.as_str(), "internal listener");
    Ok(Some(InternalServer { addr, handle }))
}

fn signed_headers(req: &HttpRequest) -> Option<SignedHeaders> {
    let get = |name: &str| req.headers().get(name)?.to_str().ok().map(str::to_owned);
    Some(SignedHeaders {
        timestamp: get(TIMESTAMP_HEADER)?,
        nonce: get(NONCE_HEADER)?,
        signature: get(SIGNATURE_HEADER)?,
    })
}

/// Checks the signature; a refusal is counted, logged and audited.
async fn authenticate(
    deps: &web::Data<InternalDeps>,
    req: &HttpRequest,
    body: &Bytes,
) -> Result<(), DomainError> {
    let now = deps.clock.now_ms();
    let headers = signed_headers(req);
    let checked = deps.verifier.verify(
        req.method().as_str(),
        req.path(),
        headers.as_ref(),
        body,
        now,
    );
    let Err(error) = checked else {
        return Ok(());
    };
    refuse(deps, req, &error).await;
    Err(error)
}

async fn refuse(deps: &web::Data<InternalDeps>, req: &HttpRequest, error: &DomainError) {
    let reason = error.code();
    let peer = req.peer_addr().map(|a| a.ip().to_string());
    deps.metrics.roles.internal_call_refused(reason);
    tracing::warn!(path = req.path(), peer = ?peer, reason, "internal call refused: {error}");
    let client = peer.clone().unwrap_or_default();
    let admission = deps
        .audit
        .throttle()
        .admit(&client, DEPLOYMENT_GROUP, deps.clock.now_ms());
    if !admission.write {
        deps.audit.not_recorded("client_rate");
        return;
    }
    let mut record = AuditRecord::new(Outcome::Refused, deps.clock.now_ms()).with_client(
        peer,
        req.headers()
            .get(actix_web::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok()),
    );
    record.groupid = Some(DEPLOYMENT_GROUP);
    record.reason = Some(format!("internal call {}: {reason}", req.path()));
    let audit = deps.audit.clone();
    let written = on_blocking_pool("internal refusal audit", move || {
        if let Some(summary) = admission.summary {
            audit.record(&AuditRecord::summary(&summary, record.at))?;
        }
        audit.record(&record)
    })
    .await;
    match written {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "could not audit a refused internal call"),
        Err(e) => tracing::error!(error = %e, "could not audit a refused internal call"),
    }
}

fn bad_request(message: String) -> DomainError {
    DomainError::BadRequest(message)
}

/// `POST /internal/keys` (auth role).
async fn receive_keys(
    deps: web::Data<InternalDeps>,
    req: HttpRequest,
    body: Bytes,
) -> Result<HttpResponse, DomainError> {
    authenticate(&deps, &req, &body).await?;
    let handover: KeyHandover =
        serde_json::from_slice(&body).map_err(|e| bad_request(format!("bad key handover: {e}")))?;
    let received = deps
        .received
        .clone()
        .ok_or_else(|| DomainError::Internal("no key store on this node".into()))?;
    let receipt = on_blocking_pool("key handover", move || received.accept(&handover))
        .await?
        .map_err(|e| match e {
            crate::auth::token::HandoverError::Malformed(m) => bad_request(m),
            crate::auth::token::HandoverError::Store(e) => DomainError::from(e),
        })?;
    Ok(HttpResponse::Ok().json(receipt))
}

/// `POST /internal/reload` (every role): reloads the config, answering
/// with the report once it is in force, or with why not.
async fn reload_config(
    deps: web::Data<InternalDeps>,
    req: HttpRequest,
    body: Bytes,
) -> Result<HttpResponse, DomainError> {
    authenticate(&deps, &req, &body).await?;
    let report = deps.reloader.clone().reload().await;
    let error = report.error.clone().unwrap_or_default();
    match report.outcome {
        ReloadOutcome::Applied => Ok(HttpResponse::Ok().json(report)),
        ReloadOutcome::Refused => Err(DomainError::RestartRequired(error)),
        ReloadOutcome::Failed => Err(DomainError::ConfigInvalid(error)),
    }
}

/// `POST /internal/audit` (every role): records the audit record of a token
/// `gen-token` issued, flushed before the answer (the tool prints the token
/// only then). Only that kind of record is taken.
async fn record_cli_audit(
    deps: web::Data<InternalDeps>,
    req: HttpRequest,
    body: Bytes,
) -> Result<HttpResponse, DomainError> {
    authenticate(&deps, &req, &body).await?;
    let record: AuditRecord = serde_json::from_slice(&body)
        .map_err(|e| DomainError::BadRequest(format!("bad audit record: {e}")))?;
    let cli_issue = record.outcome == Outcome::Issued
        && record.credential == Some(CredentialKind::Cli)
        && record.jti.is_some();
    if !cli_issue {
        return Err(DomainError::BadRequest(
            "only the issued record of a command-line token is taken here".into(),
        ));
    }
    let audit = deps.audit.clone();
    off_thread("audit", move || audit.record(&record)).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"recorded": true})))
}

/// The body of `POST /internal/revoked`.
#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationNotice {
    pub revoked: Vec<NoticeEntry>,
}

/// One revoked token.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct NoticeEntry {
    pub jti: String,
    pub exp: u64,
}

/// `POST /internal/revoked` (presence role, no Redis).
async fn receive_revocations(
    deps: web::Data<InternalDeps>,
    req: HttpRequest,
    body: Bytes,
) -> Result<HttpResponse, DomainError> {
    authenticate(&deps, &req, &body).await?;
    let notice: RevocationNotice = serde_json::from_slice(&body)
        .map_err(|e| bad_request(format!("bad revocation notice: {e}")))?;
    if notice.revoked.len() > MAX_NOTICE_JTIS
        || notice
            .revoked
            .iter()
            .any(|r| r.jti.is_empty() || r.jti.len() > MAX_JTI_BYTES)
    {
        return Err(bad_request(format!(
            "a notice carries at most {MAX_NOTICE_JTIS} jtis of 1 to {MAX_JTI_BYTES} bytes"
        )));
    }
    let tokens = deps.tokens.clone();
    let entries = notice.revoked.clone();
    on_blocking_pool("revocation notice", move || {
        entries
            .iter()
            .try_for_each(|r| tokens.revocations().revoke(&r.jti, r.exp).map(drop))
    })
    .await?
    .map_err(DomainError::from)?;
    let closed: usize = notice
        .revoked
        .iter()
        .map(|r| deps.events.revoke(&r.jti))
        .sum();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "revoked": notice.revoked.len(),
        "closed": closed,
    })))
}
