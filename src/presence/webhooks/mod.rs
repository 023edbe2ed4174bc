//! Presence webhooks: which events each group's receivers want, the JSON
//! event itself, and the durable outbox they wait in until a receiver has
//! acknowledged them. Delivery (HTTP, signatures, backoff) is the
//! transport's (`transport/webhooks/`); it takes ready deliveries from the
//! [`Outbox`] and reports how each attempt went.
//!
//! Events: `visitor_online` when a visitor gets its first connection (the
//! registry's `Transition::Online`), `visitor_offline` when its grace
//! period ends with none (so a page navigation sends nothing), and
//! `confirmation` when a prompt is settled (`confirmation/settle.rs`).

mod event;
mod lanes;
mod outbox;
mod subscriptions;

pub use event::WebhookEvent;
pub use outbox::{Attempt, NamedLetter, Outbox, ReadyDelivery, MAX_REPLAY};
pub use subscriptions::WebhookSubscriptions;
