//! Commands to a visitor connection on another node, over that node's
//! channel. The routing node chose the connection (its confirmation
//! filter included), so the owner delivers to exactly that connection or
//! answers `moved` (it closed meanwhile) and the routing node routes
//! again. The waiter keeps its own deadline; the owner drops the command
//! at the same deadline. A node that is gone fails the command at once
//! with `visitor_not_present`.
//!
//! Requests: `route` `{"g","v","connection","command"}` (an invoke or a
//! signal) answered with the outcome; `show` `{"g","v","command"}` (a
//! prompt to show or close on every tab there), answered at once.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::infra::error::DomainError;
use crate::infra::ids::{GroupId, VisitorId, VisitorKey};
use crate::presence::registry::{
    InvokeOutcome, InvokeRequest, Prompt, RegistryHandle, SignalRequest, Undelivered,
    VisitorCommand,
};
use crate::store::cluster::{ClusterLink, RequestError, RpcReply, WireError};
use crate::store::{AgentCard, ConfirmationStatus};

/// The code a node answers when the chosen connection is not open there.
pub(super) const MOVED: &str = "moved";

/// How long past the command's own deadline the asker waits for a reply.
const REPLY_SLACK: Duration = Duration::from_millis(500);

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum WireCommand {
    Invoke {
        func: String,
        args: Value,
        timeout_ms: u64,
        remaining_ms: u64,
        /// Unix ms of the waiter's deadline: a command that reaches the
        /// owner after it (a slow or resumed Redis) is never delivered.
        deadline_unix_ms: u64,
    },
    Signal {
        data: Value,
    },
    Prompt {
        id: String,
        agent: String,
        card: AgentCard,
        choices: Vec<String>,
        expires: u64,
    },
    PromptClosed {
        id: String,
        status: ConfirmationStatus,
        ticket: Option<(String, String)>,
    },
}

#[derive(Serialize, Deserialize)]
struct Addressed {
    g: GroupId,
    v: String,
    #[serde(default)]
    connection: String,
    command: WireCommand,
}

fn key_of(g: GroupId, v: &str) -> Result<VisitorKey, WireError> {
    VisitorId::parse(v)
        .map(|visitor| VisitorKey::new(g, visitor))
        .map_err(|message| wire(&DomainError::BadRequest(message)))
}

fn wire(error: &DomainError) -> WireError {
    WireError {
        code: error.code().to_owned(),
        message: error.to_string(),
    }
}

/// The error a remote failure stands for here.
fn domain(error: WireError, max_pending: usize, timeout_ms: u64) -> DomainError {
    match error.code.as_str() {
        // The owner's copy of the deadline can answer first.
        "invoke_timeout" => DomainError::InvokeTimeout(timeout_ms),
        "visitor_not_present" => DomainError::VisitorNotPresent(error.message),
        "too_many_pending" => DomainError::TooManyPending(max_pending),
        "confirmation_required" => DomainError::ConfirmationRequired,
        "cluster_unavailable" => DomainError::ClusterUnavailable(error.message),
        _ => DomainError::Internal(format!("on the visitor's node: {}", error.message)),
    }
}

/// What became of a command sent to another node.
pub(super) enum Sent {
    /// Answered (or dropped: the waiter's deadline answers).
    Done,
    /// The connection had closed: route it again.
    Moved(VisitorCommand),
}

/// Sends `command` to `connection` of `key` on `node` and answers its
/// waiter; `again` gets it back if the connection had closed.
pub(super) fn send(
    link: &ClusterLink,
    node: &str,
    key: &VisitorKey,
    connection: &str,
    command: VisitorCommand,
    max_pending: usize,
    again: Arc<dyn Fn(VisitorCommand) + Send + Sync>,
) {
    let metrics = link.metrics().clone();
    let (wire_command, timeout, finish): (WireCommand, Duration, Finish) = match command {
        VisitorCommand::Invoke(request) => {
            let remaining = request.deadline.saturating_duration_since(Instant::now());
            (
                WireCommand::Invoke {
                    func: request.func.clone(),
                    args: request.args.clone(),
                    timeout_ms: request.timeout_ms,
                    remaining_ms: u64::try_from(remaining.as_millis()).unwrap_or(u64::MAX),
                    deadline_unix_ms: unix_ms()
                        .saturating_add(u64::try_from(remaining.as_millis()).unwrap_or(u64::MAX)),
                },
                remaining + REPLY_SLACK,
                Finish::Invoke(request),
            )
        }
        VisitorCommand::Signal(request) => (
            WireCommand::Signal {
                data: request.data.clone(),
            },
            link.config().redis_timeout() * 2,
            Finish::Signal(request),
        ),
        // Prompts travel by `show`, never routed.
        VisitorCommand::Prompt(_) | VisitorCommand::PromptClosed { .. } => return,
    };
    let body = serde_json::to_value(Addressed {
        g: key.group,
        v: key.visitor.as_str().to_owned(),
        connection: connection.to_owned(),
        command: wire_command,
    })
    .unwrap_or(Value::Null);
    let asked = link.request(node, "route", body, timeout);
    link.runtime().spawn(async move {
        let reply = asked.await;
        let outcome = match &reply {
            Ok(_) => "ok",
            Err(RequestError::Remote(e)) if e.code == MOVED => "moved",
            Err(RequestError::Remote(_)) => "error",
            Err(RequestError::NodeGone) => "node_gone",
            Err(RequestError::Timeout) => "timeout",
            Err(RequestError::Unavailable(_)) => "cluster_unavailable",
        };
        metrics.cluster.cross_node_invoke(outcome);
        if let Sent::Moved(command) = finish.answer(reply, max_pending) {
            again(command);
        }
    });
}

enum Finish {
    Invoke(InvokeRequest),
    Signal(SignalRequest),
}

impl Finish {
    fn answer(self, reply: Result<Value, RequestError>, max_pending: usize) -> Sent {
        let failure = match reply {
            Ok(value) => {
                match self {
                    Finish::Invoke(request) => {
                        let outcome = serde_json::from_value::<InvokeOutcome>(value)
                            .map_err(|e| DomainError::Internal(format!("remote outcome: {e}")));
                        let _ = request.responder.send(outcome);
                    }
                    Finish::Signal(request) => {
                        let _ = request.responder.send(Ok(()));
                    }
                }
                return Sent::Done;
            }
            Err(RequestError::Remote(e)) if e.code == MOVED => {
                return Sent::Moved(match self {
                    Finish::Invoke(request) => VisitorCommand::Invoke(request),
                    Finish::Signal(request) => VisitorCommand::Signal(request),
                });
            }
            Err(RequestError::Remote(e)) => {
                let timeout_ms = match &self {
                    Finish::Invoke(request) => request.timeout_ms,
                    Finish::Signal(_) => 0,
                };
                domain(e, max_pending, timeout_ms)
            }
            Err(RequestError::NodeGone) => DomainError::VisitorNotPresent(
                "the node holding the visitor's socket went away".to_owned(),
            ),
            // An invoke's waiter has its own deadline, which answers it. A
            // signal has none: tell it the visitor's node did not confirm
            // (it may or may not have been delivered).
            Err(RequestError::Timeout) => match self {
                Finish::Invoke(_) => return Sent::Done,
                Finish::Signal(_) => DomainError::ClusterUnavailable(
                    "the visitor's node did not confirm the signal in time".to_owned(),
                ),
            },
            Err(RequestError::Unavailable(e)) => DomainError::ClusterUnavailable(e.0),
        };
        match self {
            Finish::Invoke(request) => {
                let _ = request.responder.send(Err(failure));
            }
            Finish::Signal(request) => {
                let _ = request.responder.send(Err(failure));
            }
        }
        Sent::Done
    }
}

/// Shows (or closes) a prompt on every tab of `key` on `node`.
pub(super) fn show(link: &ClusterLink, node: &str, key: &VisitorKey, command: VisitorCommand) {
    let wire_command = match command {
        VisitorCommand::Prompt(prompt) => WireCommand::Prompt {
            id: prompt.id.clone(),
            agent: prompt.agent.clone(),
            card: prompt.card.clone(),
            choices: prompt.choices.clone(),
            expires: prompt.expires,
        },
        VisitorCommand::PromptClosed { id, status, ticket } => WireCommand::PromptClosed {
            id,
            status,
            ticket: ticket.map(|t| (*t).clone()),
        },
        VisitorCommand::Invoke(_) | VisitorCommand::Signal(_) => return,
    };
    let body = serde_json::to_value(Addressed {
        g: key.group,
        v: key.visitor.as_str().to_owned(),
        connection: String::new(),
        command: wire_command,
    })
    .unwrap_or(Value::Null);
    let asked = link.request(node, "show", body, link.config().redis_timeout() * 2);
    link.runtime().spawn(async move {
        if let Err(e) = asked.await {
            tracing::warn!(error = ?e, "a prompt did not reach the visitor's other node");
        }
    });
}

/// Answers `route` and `show` from other nodes.
pub(super) fn serve(link: &ClusterLink, local: RegistryHandle, max_pending: usize) {
    let routing = local.clone();
    link.serve(
        "route",
        Arc::new(move |_from, body| {
            let local = routing.clone();
            Box::pin(async move { deliver(&local, body, max_pending).await })
        }),
    );
    link.serve(
        "show",
        Arc::new(move |_from, body| {
            let local = local.clone();
            Box::pin(async move {
                let addressed: Addressed =
                    serde_json::from_value(body).map_err(|e| bad(e.to_string()))?;
                let key = key_of(addressed.g, &addressed.v)?;
                let command = match addressed.command {
                    WireCommand::Prompt {
                        id,
                        agent,
                        card,
                        choices,
                        expires,
                    } => Arc::new(Prompt {
                        id,
                        agent,
                        card,
                        choices,
                        expires,
                    }),
                    WireCommand::PromptClosed { id, status, ticket } => {
                        let ticket = ticket.map(Arc::new);
                        local.deliver_to_all(&key, &|| VisitorCommand::PromptClosed {
                            id: id.clone(),
                            status,
                            ticket: ticket.clone(),
                        });
                        return Ok(Value::Null);
                    }
                    _ => return Err(bad("not a prompt".into())),
                };
                local.deliver_to_all(&key, &|| VisitorCommand::Prompt(command.clone()));
                Ok(Value::Null)
            })
        }),
    );
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn bad(message: String) -> WireError {
    wire(&DomainError::BadRequest(message))
}

async fn deliver(local: &RegistryHandle, body: Value, max_pending: usize) -> RpcReply {
    let addressed: Addressed = serde_json::from_value(body).map_err(|e| bad(e.to_string()))?;
    let key = key_of(addressed.g, &addressed.v)?;
    match addressed.command {
        WireCommand::Invoke {
            func,
            args,
            timeout_ms,
            remaining_ms,
            deadline_unix_ms,
        } => {
            let left = deadline_unix_ms.saturating_sub(unix_ms()).min(remaining_ms);
            if left == 0 {
                // Its waiter has given up: never run it now.
                return Err(wire(&DomainError::InvokeTimeout(timeout_ms)));
            }
            let within = Duration::from_millis(left);
            let (responder, outcome) = oneshot::channel();
            let command = VisitorCommand::Invoke(InvokeRequest {
                func,
                args,
                deadline: Instant::now() + within,
                timeout_ms,
                responder,
                only_to: None,
            });
            hand(local, &key, &addressed.connection, command, max_pending)?;
            match tokio::time::timeout(within, outcome).await {
                Ok(Ok(Ok(outcome))) => {
                    serde_json::to_value(outcome).map_err(|e| bad(e.to_string()))
                }
                Ok(Ok(Err(e))) => Err(wire(&e)),
                Ok(Err(_)) => Err(wire(&DomainError::not_present())),
                Err(_) => Err(wire(&DomainError::InvokeTimeout(timeout_ms))),
            }
        }
        WireCommand::Signal { data } => {
            let (responder, outcome) = oneshot::channel();
            let command = VisitorCommand::Signal(SignalRequest {
                data,
                responder,
                only_to: None,
            });
            hand(local, &key, &addressed.connection, command, max_pending)?;
            match outcome.await {
                Ok(Ok(())) => Ok(Value::Null),
                Ok(Err(e)) => Err(wire(&e)),
                Err(_) => Err(wire(&DomainError::not_present())),
            }
        }
        _ => Err(bad("not an invoke or a signal".into())),
    }
}

fn hand(
    local: &RegistryHandle,
    key: &VisitorKey,
    connection: &str,
    command: VisitorCommand,
    max_pending: usize,
) -> Result<(), WireError> {
    match local.deliver(key, connection, command) {
        Ok(()) => Ok(()),
        Err(Undelivered::Busy) => Err(wire(&DomainError::TooManyPending(max_pending))),
        Err(Undelivered::Gone) => Err(WireError {
            code: MOVED.to_owned(),
            message: "the connection closed".to_owned(),
        }),
    }
}
