//! The invoke and signal use case: the checks an agent's invoke passes, and
//! the one place that waits for a visitor's outcome with a deadline. What
//! travels to the visitor (requests and their reply channels) is the
//! registry's routing payload (see [`crate::presence::registry`]).
//!
//! The waiter owns the timeout: it gives up at the deadline and answers
//! `invoke_timeout`, whatever happens downstream. Everything downstream
//! (registry, visitor session) only has to drop or answer the responder.

use crate::infra::config::function_allowed;
use serde_json::Value;
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::time::{Duration, Instant};

use crate::infra::config::{valid_function_name, PresenceConfig};
use crate::infra::error::DomainError;
use crate::infra::ids::VisitorKey;
use crate::infra::metrics::Metrics;
use crate::presence::registry::{
    ConnectionFilter, InvokeOutcome, InvokeRequest, PresenceDirectory, SignalRequest,
    VisitorCommand,
};

/// Checks an invoke's function name (syntax, then the group's allow-list)
/// and timeout, returning the timeout.
pub fn check_invoke(
    func: &str,
    timeout_ms: Option<u64>,
    config: &PresenceConfig,
    allow: &[String],
) -> Result<u64, DomainError> {
    if !valid_function_name(func) {
        return Err(DomainError::BadRequest(
            "func must be 1 to 128 characters from A-Z a-z 0-9 . _ $".to_owned(),
        ));
    }
    if !function_allowed(allow, func) {
        return Err(DomainError::FunctionNotAllowed(func.to_owned()));
    }
    let timeout_ms = timeout_ms.unwrap_or(config.invoke_timeout_ms);
    if timeout_ms == 0 || timeout_ms > config.max_invoke_timeout_ms {
        return Err(DomainError::BadRequest(format!(
            "timeout_ms must be 1 to {}",
            config.max_invoke_timeout_ms
        )));
    }
    Ok(timeout_ms)
}

/// Sends an invoke through the registry and waits for its outcome until the
/// deadline.
pub async fn invoke(
    registry: &dyn PresenceDirectory,
    metrics: &Arc<Metrics>,
    key: VisitorKey,
    func: String,
    args: Value,
    timeout_ms: u64,
    only_to: Option<ConnectionFilter>,
) -> Result<InvokeOutcome, DomainError> {
    let timer = metrics.invoke_started();
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    let (responder, outcome) = oneshot::channel();
    registry.route(
        key,
        VisitorCommand::Invoke(InvokeRequest {
            func,
            args,
            deadline,
            timeout_ms,
            responder,
            only_to,
        }),
    );
    let result = match tokio::time::timeout_at(deadline, outcome).await {
        Ok(Ok(result)) => result,
        // The responder was dropped unanswered: the connection it was bound
        // to went away.
        Ok(Err(_)) => Err(DomainError::VisitorNotPresent(
            "the visitor's connection closed before it answered".to_owned(),
        )),
        Err(_) => Err(DomainError::InvokeTimeout(timeout_ms)),
    };
    timer.finish(match &result {
        Ok(InvokeOutcome::Ok { .. }) => "ok",
        Ok(InvokeOutcome::Failed { .. }) => "failed",
        Err(e) => e.code(),
    });
    result
}

/// Sends a signal through the registry and waits until it is handed to a
/// visitor connection (or refused). Bounded by the visitor grace period plus
/// the default invoke timeout, so it never hangs.
pub async fn signal(
    registry: &dyn PresenceDirectory,
    key: VisitorKey,
    data: Value,
    config: &PresenceConfig,
    only_to: Option<ConnectionFilter>,
) -> Result<(), DomainError> {
    let (responder, delivered) = oneshot::channel();
    registry.route(
        key,
        VisitorCommand::Signal(SignalRequest {
            data,
            responder,
            only_to,
        }),
    );
    let limit = config.reconnect_grace() + Duration::from_millis(config.invoke_timeout_ms);
    match tokio::time::timeout(limit, delivered).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) | Err(_) => Err(DomainError::not_present()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn outcomes_serialise_as_documented() {
        assert_eq!(
            serde_json::to_value(InvokeOutcome::success(json!(5))).expect("json"),
            json!({"ok": true, "value": 5})
        );
        assert_eq!(
            serde_json::to_value(InvokeOutcome::failure("no".into())).expect("json"),
            json!({"ok": false, "error": "no"})
        );
    }

    fn all() -> Vec<String> {
        vec!["*".to_owned()]
    }

    #[test]
    fn allow_lists_match_exact_names_and_prefixes_only() {
        let allow: Vec<String> = ["showTerms", "GLANCE.Cobrowse.Visitor.*", "$x"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for ok in [
            "showTerms",
            "GLANCE.Cobrowse.Visitor.start",
            "GLANCE.Cobrowse.Visitor.",
            "$x",
        ] {
            assert!(function_allowed(&allow, ok), "{ok}");
        }
        for refused in [
            "showterms",
            "showTerms2",
            "xshowTerms",
            "GLANCE.Cobrowse.VisitorX",
            "GLANCE.Cobrowse.Visitor",
            "GLANCE.Cobrowse.Agent.start",
            "$",
            "",
        ] {
            assert!(!function_allowed(&allow, refused), "{refused}");
        }
        assert!(function_allowed(&all(), "anything.at_all"));
        assert!(!function_allowed(&[], "showTerms"));
        let config = PresenceConfig::default();
        assert_eq!(
            check_invoke("openPage", None, &config, &allow).map_err(|e| e.code()),
            Err("function_not_allowed")
        );
        assert_eq!(
            check_invoke("bad name", None, &config, &allow).map_err(|e| e.code()),
            Err("bad_request"),
            "syntax is checked first"
        );
    }

    #[test]
    fn checks_function_names_and_timeouts() {
        let config = PresenceConfig::default();
        assert_eq!(
            check_invoke("GLANCE.Cobrowse.start", None, &config, &all()),
            Ok(config.invoke_timeout_ms)
        );
        assert_eq!(check_invoke("$x_1", Some(5), &config, &all()), Ok(5));
        assert!(check_invoke("", None, &config, &all()).is_err());
        assert!(check_invoke("alert(1)", None, &config, &all()).is_err());
        assert!(check_invoke(&"a".repeat(129), None, &config, &all()).is_err());
        assert!(check_invoke("f", Some(0), &config, &all()).is_err());
        assert!(
            check_invoke("f", Some(config.max_invoke_timeout_ms + 1), &config, &all()).is_err()
        );
    }
}
