//! What the registry routes to a visitor connection: invokes and signals
//! with the channel their outcome goes back on, and confirmation prompts to
//! show or close. Whoever waits holds the receiving end; everything on the
//! way (registry, visitor session) only answers or drops the responder.

use std::sync::Arc;

use actix::Message;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::infra::error::DomainError;
use crate::store::{AgentCard, ConfirmationStatus};

/// What the visitor's function returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum InvokeOutcome {
    /// `{"ok": true, "value": ...}`
    Ok { ok: bool, value: Value },
    /// `{"ok": false, "error": "..."}`
    Failed { ok: bool, error: String },
}

impl InvokeOutcome {
    pub fn success(value: Value) -> Self {
        InvokeOutcome::Ok { ok: true, value }
    }
    pub fn failure(error: String) -> Self {
        InvokeOutcome::Failed { ok: false, error }
    }
}

/// Where the outcome of an invoke goes.
pub type InvokeResponder = oneshot::Sender<Result<InvokeOutcome, DomainError>>;
/// Where the outcome of a signal goes.
pub type SignalResponder = oneshot::Sender<Result<(), DomainError>>;

/// An invoke on its way to a visitor.
#[derive(Debug)]
pub struct InvokeRequest {
    pub func: String,
    pub args: Value,
    pub deadline: Instant,
    pub timeout_ms: u64,
    pub responder: InvokeResponder,
    /// The connections it may go to; `None`: any.
    pub only_to: Option<ConnectionFilter>,
}

/// A signal on its way to a visitor.
#[derive(Debug)]
pub struct SignalRequest {
    pub data: Value,
    pub responder: SignalResponder,
    /// The connections it may go to; `None`: any.
    pub only_to: Option<ConnectionFilter>,
}

/// Which of a visitor's connections a command may go to, by connection id
/// (those holding the asking agent's confirmation ticket). Asked at
/// delivery, so a command parked over a page navigation is checked
/// against the new page's connection.
#[derive(Clone)]
pub struct ConnectionFilter(Arc<dyn Fn(&str) -> bool + Send + Sync>);

impl ConnectionFilter {
    pub fn new(accepts: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        Self(Arc::new(accepts))
    }

    /// Whether the connection `id` may receive the command.
    pub fn accepts(&self, id: &str) -> bool {
        (self.0)(id)
    }
}

impl std::fmt::Debug for ConnectionFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnectionFilter")
    }
}

/// A confirmation prompt as the visitor's sockets show it.
#[derive(Debug)]
pub struct Prompt {
    pub id: String,
    pub agent: String,
    pub card: AgentCard,
    pub choices: Vec<String>,
    /// Unix seconds.
    pub expires: u64,
}

/// What the registry asks of a visitor connection.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub enum VisitorCommand {
    Invoke(InvokeRequest),
    Signal(SignalRequest),
    /// Show a confirmation prompt.
    Prompt(Arc<Prompt>),
    /// A confirmation prompt ended; close it.
    PromptClosed {
        id: String,
        status: ConfirmationStatus,
        /// (connection id, ticket) of the connection that confirmed it:
        /// that connection alone is sent the ticket, after the close.
        ticket: Option<Arc<(String, String)>>,
    },
}

impl VisitorCommand {
    /// Whether connection `id` may receive the command.
    pub fn accepts(&self, id: &str) -> bool {
        let only_to = match self {
            VisitorCommand::Invoke(request) => request.only_to.as_ref(),
            VisitorCommand::Signal(request) => request.only_to.as_ref(),
            VisitorCommand::Prompt(_) | VisitorCommand::PromptClosed { .. } => None,
        };
        only_to.is_none_or(|filter| filter.accepts(id))
    }

    /// Whether its waiter already gave up (an invoke or signal whose
    /// receiver is gone); prompts are never abandoned.
    pub fn is_abandoned(&self) -> bool {
        match self {
            VisitorCommand::Invoke(request) => request.responder.is_closed(),
            VisitorCommand::Signal(request) => request.responder.is_closed(),
            VisitorCommand::Prompt(_) | VisitorCommand::PromptClosed { .. } => false,
        }
    }

    /// Answers the command's waiter with `error`.
    pub fn fail(self, error: DomainError) {
        // A waiter that already gave up has dropped its receiver; nothing to do.
        match self {
            VisitorCommand::Invoke(request) => {
                let _ = request.responder.send(Err(error));
            }
            VisitorCommand::Signal(request) => {
                let _ = request.responder.send(Err(error));
            }
            VisitorCommand::Prompt(_) | VisitorCommand::PromptClosed { .. } => {}
        }
    }
}
