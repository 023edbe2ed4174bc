//! The local event bus with probes standing in for agent sockets.

use actix::{Actor, Addr, AsyncContext, Context, Handler};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use super::*;
use crate::infra::ids::VisitorId;
use crate::presence::visitor::EventKind;
use crate::store::AgentCard;

/// Stands in for an agent socket: forwards each event to the test.
struct SocketProbe(mpsc::UnboundedSender<AgentEvent>);

impl Actor for SocketProbe {
    type Context = Context<Self>;
}

impl Handler<AgentEvent> for SocketProbe {
    type Result = ();
    fn handle(&mut self, event: AgentEvent, _: &mut Self::Context) {
        let _ = self.0.send(event);
    }
}

fn probe() -> (Addr<SocketProbe>, mpsc::UnboundedReceiver<AgentEvent>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (SocketProbe(tx).start(), rx)
}

/// An agent socket that stopped reading: it never handles its mailbox,
/// which holds one event. Says when its mailbox is that small.
struct StalledSocket(Option<oneshot::Sender<()>>);

impl Actor for StalledSocket {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1);
        if let Some(ready) = self.0.take() {
            let _ = ready.send(());
        }
        ctx.wait(actix::fut::wrap_future(std::future::pending::<()>()));
    }
}

impl Handler<AgentEvent> for StalledSocket {
    type Result = ();
    fn handle(&mut self, _: AgentEvent, _: &mut Self::Context) {}
}

async fn stalled_socket() -> Addr<StalledSocket> {
    let (ready, started) = oneshot::channel();
    let socket = StalledSocket(Some(ready)).start();
    started.await.expect("started");
    socket
}

/// The address of a socket that has closed.
fn closed_socket() -> Recipient<AgentEvent> {
    let context = Context::<SocketProbe>::new();
    let address = context.address();
    drop(context);
    address.recipient()
}

fn key(visitor: &str) -> VisitorKey {
    VisitorKey::new(72, VisitorId::parse(visitor).expect("id"))
}

fn event(visitor: &str, kind: EventKind) -> VisitorEvent {
    VisitorEvent {
        kind,
        state: VisitorState::offline(&key(visitor)),
    }
}

fn record(agent: &str) -> ConfirmationRecord {
    ConfirmationRecord {
        id: "c-1".into(),
        groupid: 72,
        visitorid: "v-1".into(),
        agent: agent.into(),
        card: AgentCard {
            name: agent.into(),
            email: None,
            phone: None,
        },
        answer: "1".into(),
        choices: vec!["1".into(), "2".into()],
        created_ms: 0,
        deadline_ms: 1,
        status: ConfirmationStatus::Confirmed,
        counts_as_failure: false,
        confirmed_until: Some(2),
    }
}

async fn next(events: &mut mpsc::UnboundedReceiver<AgentEvent>) -> AgentEvent {
    events.recv().await.expect("an event")
}

/// Asserts that nothing reached `socket` before now: a marker sent now is
/// the next thing it handles (its mailbox keeps order).
async fn nothing_before_now(
    socket: &Addr<SocketProbe>,
    events: &mut mpsc::UnboundedReceiver<AgentEvent>,
    why: &str,
) {
    socket.do_send(AgentEvent::Visitor(event("marker", EventKind::State)));
    match next(events).await {
        AgentEvent::Visitor(marker) if marker.state.visitorid == "marker" => {}
        other => panic!("{why}: got {other:?}"),
    }
}

#[actix::test]
async fn revoking_a_token_closes_its_sockets_and_counts_them() {
    let bus = LocalEventBus::default();
    let (first, mut first_events) = probe();
    let (second, mut second_events) = probe();
    let (other, mut other_events) = probe();
    bus.subscribe("jti-1", 72, "fred", 1, first.recipient());
    bus.subscribe("jti-1", 72, "fred", 2, second.recipient());
    bus.subscribe("jti-2", 72, "fred", 3, other.clone().recipient());

    assert_eq!(bus.revoke("jti-1"), 2);
    assert!(matches!(
        next(&mut first_events).await,
        AgentEvent::TokenRevoked
    ));
    assert!(matches!(
        next(&mut second_events).await,
        AgentEvent::TokenRevoked
    ));
    assert_eq!(bus.revoke("jti-1"), 0, "already swept");
    assert_eq!(bus.revoke("unknown"), 0);
    nothing_before_now(&other, &mut other_events, "another token is untouched").await;

    bus.unsubscribe("jti-2", 72, "fred", 3);
    assert_eq!(bus.revoke("jti-2"), 0, "an unsubscribed socket is gone");
}

#[actix::test]
async fn a_confirmation_outcome_reaches_every_socket_of_the_asking_agent() {
    let bus = LocalEventBus::default();
    let (fred_rest, mut fred_rest_events) = probe();
    let (fred_socket, mut fred_socket_events) = probe();
    let (wilma, mut wilma_events) = probe();
    bus.subscribe("jti-1", 72, "fred", 1, fred_rest.recipient());
    bus.subscribe("jti-2", 72, "fred", 2, fred_socket.clone().recipient());
    bus.subscribe("jti-3", 72, "wilma", 3, wilma.clone().recipient());

    bus.confirmation_settled(&record("fred"));
    for events in [&mut fred_rest_events, &mut fred_socket_events] {
        let AgentEvent::ConfirmationSettled {
            visitorid,
            id,
            status,
        } = next(events).await
        else {
            panic!("expected a confirmation outcome")
        };
        assert_eq!(
            (visitorid.as_str(), id.as_str(), status),
            ("v-1", "c-1", ConfirmationStatus::Confirmed)
        );
    }
    nothing_before_now(&wilma, &mut wilma_events, "another agent hears nothing").await;

    bus.unsubscribe("jti-2", 72, "fred", 2);
    bus.confirmation_settled(&record("fred"));
    assert!(matches!(
        next(&mut fred_rest_events).await,
        AgentEvent::ConfirmationSettled { .. }
    ));
    nothing_before_now(&fred_socket, &mut fred_socket_events, "unsubscribed").await;
}

#[actix::test]
async fn a_watch_gets_the_state_first_then_the_events_of_its_visitor() {
    let bus = LocalEventBus::default();
    let (socket, mut events) = probe();
    let mut current = VisitorState::offline(&key("v-1"));
    current.data = json!({"url": "/"});
    bus.watch(key("v-1"), 1, socket.clone().recipient(), current.clone());
    assert_eq!(bus.watch_count(), 1);
    let AgentEvent::Visitor(first) = next(&mut events).await else {
        panic!("expected a visitor event")
    };
    assert_eq!((first.kind, first.state), (EventKind::State, current));

    bus.visitor_event(&key("v-2"), event("v-2", EventKind::Connected));
    bus.visitor_event(&key("v-1"), event("v-1", EventKind::Connected));
    let AgentEvent::Visitor(second) = next(&mut events).await else {
        panic!("expected a visitor event")
    };
    assert_eq!(
        (second.kind, second.state.visitorid.as_str()),
        (EventKind::Connected, "v-1"),
        "only the watched visitor's events arrive"
    );

    bus.unwatch(&key("v-1"), 1);
    assert_eq!(bus.watch_count(), 0);
    bus.visitor_event(&key("v-1"), event("v-1", EventKind::Presence));
    nothing_before_now(&socket, &mut events, "unwatched").await;
}

#[actix::test]
async fn a_socket_that_stopped_reading_loses_all_its_watches() {
    let bus = LocalEventBus::default();
    let stalled = stalled_socket().await;
    let (reader, mut reader_events) = probe();
    let state = |visitor| VisitorState::offline(&key(visitor));
    bus.watch(key("v-1"), 1, stalled.clone().recipient(), state("v-1"));
    bus.watch(key("v-2"), 1, stalled.clone().recipient(), state("v-2"));
    bus.watch(key("v-1"), 2, reader.recipient(), state("v-1"));
    assert_eq!(bus.watch_count(), 3);
    assert!(matches!(
        next(&mut reader_events).await,
        AgentEvent::Visitor(_)
    ));

    // The stalled socket's mailbox is full with its state events.
    bus.visitor_event(&key("v-1"), event("v-1", EventKind::Presence));
    assert_eq!(
        bus.watch_count(),
        1,
        "the stalled socket's watches are dropped"
    );
    let AgentEvent::Visitor(delivered) = next(&mut reader_events).await else {
        panic!("expected a visitor event")
    };
    assert_eq!(
        delivered.kind,
        EventKind::Presence,
        "the reader still hears"
    );
    bus.visitor_event(&key("v-2"), event("v-2", EventKind::Presence));
    assert_eq!(bus.watch_count(), 1);
}

#[actix::test]
async fn a_closed_socket_gets_no_watch_and_unwatch_all_drops_every_watch() {
    let bus = LocalEventBus::default();
    let (socket, _events) = probe();
    for visitor in ["v-1", "v-2", "v-3"] {
        let state = VisitorState::offline(&key(visitor));
        bus.watch(key(visitor), 1, socket.clone().recipient(), state);
    }
    assert_eq!(bus.watch_count(), 3);
    bus.unwatch_all(1);
    assert_eq!(bus.watch_count(), 0);

    let (reader, _reader_events) = probe();
    let state = VisitorState::offline(&key("v-1"));
    bus.watch(key("v-1"), 2, closed_socket(), state.clone());
    assert_eq!(bus.watch_count(), 0, "a closed socket gets no watch");
    bus.watch(key("v-1"), 3, reader.recipient(), state);
    assert_eq!(bus.watch_count(), 1);
}
