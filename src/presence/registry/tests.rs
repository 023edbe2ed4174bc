//! The registry through its interface: a [`RegistryHandle`] over a
//! [`LocalEventBus`], with probes standing in for the sockets.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix::{Actor, Addr, Context, Handler};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use super::*;
use crate::infra::clock::SystemClock;
use crate::infra::ids::VisitorId;
use crate::presence::data::PresenceData;
use crate::presence::events::{AgentEvent, LocalEventBus};

/// Stands in for a visitor socket: forwards each command to the test.
struct ConnectionProbe {
    name: &'static str,
    seen: mpsc::UnboundedSender<(&'static str, VisitorCommand)>,
}

impl Actor for ConnectionProbe {
    type Context = Context<Self>;
}

impl Handler<VisitorCommand> for ConnectionProbe {
    type Result = ();
    fn handle(&mut self, command: VisitorCommand, _: &mut Self::Context) {
        let _ = self.seen.send((self.name, command));
    }
}

/// Stands in for an agent socket: forwards each watch event to the test.
struct WatcherProbe(mpsc::UnboundedSender<VisitorEvent>);

impl Actor for WatcherProbe {
    type Context = Context<Self>;
}

impl Handler<AgentEvent> for WatcherProbe {
    type Result = ();
    fn handle(&mut self, event: AgentEvent, _: &mut Self::Context) {
        if let AgentEvent::Visitor(event) = event {
            let _ = self.0.send(event);
        }
    }
}

/// A visitor connection that never handles its mailbox, as when the
/// client stopped reading and its session cannot run. Says when its
/// mailbox is down to two.
struct StalledConnection(Option<oneshot::Sender<()>>);

impl Actor for StalledConnection {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(2);
        if let Some(ready) = self.0.take() {
            let _ = ready.send(());
        }
        ctx.wait(actix::fut::wrap_future(std::future::pending::<()>()));
    }
}

impl Handler<VisitorCommand> for StalledConnection {
    type Result = ();
    fn handle(&mut self, _: VisitorCommand, _: &mut Self::Context) {}
}

/// Registers a stalled connection of the visitor; its mailbox holds two.
async fn connect_stalled(registry: &RegistryHandle) -> Addr<StalledConnection> {
    let (ready, started) = oneshot::channel();
    let stalled = StalledConnection(Some(ready)).start();
    started.await.expect("started");
    registry
        .connect(
            key(),
            LiveConnection {
                id: "stalled".into(),
                commands: stalled.clone().recipient(),
                open: Arc::new(AtomicBool::new(true)),
                identity: None,
            },
            PresenceData::default(),
        )
        .await
        .expect("connect");
    stalled
}

/// The registry as the server holds it, and the open flags of the
/// connections the test made, by name (a session clears its flag before it
/// disconnects).
struct Harness {
    registry: RegistryHandle,
    open: Vec<(&'static str, Arc<AtomicBool>)>,
}

impl std::ops::Deref for Harness {
    type Target = RegistryHandle;
    fn deref(&self) -> &RegistryHandle {
        &self.registry
    }
}

fn registry(grace_ms: u64) -> Harness {
    registry_with(grace_ms, PresenceConfig::default().max_pending_invokes)
}

fn registry_with(grace_ms: u64, max_pending_invokes: usize) -> Harness {
    let config = PresenceConfig {
        reconnect_grace_ms: grace_ms,
        max_pending_invokes,
        ..PresenceConfig::default()
    };
    let registry = RegistryHandle::start(
        Arc::new(config),
        Arc::new(SystemClock),
        Arc::new(LocalEventBus::default()),
    );
    Harness {
        registry,
        open: Vec::new(),
    }
}

fn key() -> VisitorKey {
    VisitorKey::new(72, VisitorId::parse("v-1").expect("id"))
}

fn data(value: serde_json::Value) -> PresenceData {
    PresenceData::from_value(value).expect("data")
}

async fn connect(
    harness: &mut Harness,
    name: &'static str,
    seen: &mpsc::UnboundedSender<(&'static str, VisitorCommand)>,
) -> Addr<ConnectionProbe> {
    let probe = ConnectionProbe {
        name,
        seen: seen.clone(),
    }
    .start();
    let open = Arc::new(AtomicBool::new(true));
    harness.open.push((name, open.clone()));
    harness
        .connect(
            key(),
            LiveConnection {
                id: name.to_owned(),
                commands: probe.clone().recipient(),
                open,
                identity: None,
            },
            data(json!({"url": format!("/{name}")})),
        )
        .await
        .expect("connect");
    probe
}

/// Connection `a` updates its presence, so the next invoke goes to it.
async fn update_then_invoke(
    harness: &Harness,
    seen: &mut mpsc::UnboundedReceiver<(&'static str, VisitorCommand)>,
) {
    harness
        .presence_update(key(), "a", data(json!({"url": "/a2"})))
        .await
        .expect("update");
    let _pending = invoke(harness);
    assert_eq!(seen.recv().await.expect("routed").0, "a");
}

type InvokeAnswer = oneshot::Receiver<Result<InvokeOutcome, DomainError>>;

/// An invoke of `f`, and where its outcome arrives.
fn invoke_command() -> (VisitorCommand, InvokeAnswer) {
    let (responder, outcome) = oneshot::channel();
    let command = VisitorCommand::Invoke(InvokeRequest {
        func: "f".into(),
        args: json!(null),
        deadline: tokio::time::Instant::now() + Duration::from_secs(30),
        timeout_ms: 30_000,
        responder,
        only_to: None,
    });
    (command, outcome)
}

fn invoke(harness: &Harness) -> InvokeAnswer {
    let (command, outcome) = invoke_command();
    harness.route(key(), command);
    outcome
}

/// Closes a connection as its session does: it stops being a routing
/// target, then deregisters.
fn disconnect(harness: &Harness, connection: &str) {
    for (name, open) in &harness.open {
        if *name == connection {
            open.store(false, Ordering::Release);
        }
    }
    harness.disconnect(key(), connection, None);
}

async fn watch(harness: &Harness) -> mpsc::UnboundedReceiver<VisitorEvent> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let probe = WatcherProbe(tx).start();
    harness.watch(key(), 1, probe.recipient());
    let first = rx.recv().await.expect("state event");
    assert_eq!(first.kind, EventKind::State);
    rx
}

#[actix::test]
async fn an_offline_visitor_fails_at_once() {
    let registry = registry(5_000);
    let outcome = invoke(&registry).await.expect("answered");
    assert_eq!(outcome.expect_err("offline").code(), "visitor_not_present");
}

#[actix::test]
async fn invokes_go_to_the_most_recently_active_tab() {
    let mut registry = registry(5_000);
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let _a = connect(&mut registry, "a", &seen_tx).await;
    let _b = connect(&mut registry, "b", &seen_tx).await;
    let _pending = invoke(&registry);
    assert_eq!(seen.recv().await.expect("routed").0, "b");

    update_then_invoke(&registry, &mut seen).await;
    let state = registry.lookup(&key());
    assert_eq!(state.connections, 2);
    assert_eq!(state.data, json!({"url": "/a2"}));
}

#[actix::test]
async fn commands_wait_out_a_page_navigation() {
    let mut registry = registry(60_000);
    let mut events = watch(&registry).await;
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let _a = connect(&mut registry, "a", &seen_tx).await;
    assert_eq!(
        events.recv().await.expect("event").kind,
        EventKind::Connected
    );
    disconnect(&registry, "a");
    let outcome = invoke(&registry);
    let state = registry.lookup(&key());
    assert!(state.online, "still present during the grace period");
    assert_eq!(state.connections, 0);

    let _b = connect(&mut registry, "b", &seen_tx).await;
    let (name, command) = seen.recv().await.expect("delivered after reconnect");
    assert_eq!(name, "b");
    let VisitorCommand::Invoke(request) = command else {
        panic!("expected an invoke")
    };
    request
        .responder
        .send(Ok(InvokeOutcome::success(json!(1))))
        .expect("waiter");
    assert!(outcome.await.expect("answered").is_ok());
    // The navigation produced one presence event (new url) and no
    // disconnected/connected pair.
    assert_eq!(
        events.recv().await.expect("event").kind,
        EventKind::Presence
    );
}

#[actix::test]
async fn the_grace_period_ending_fails_parked_commands_and_tells_watchers() {
    let mut registry = registry(20);
    let mut events = watch(&registry).await;
    let (seen_tx, _seen) = mpsc::unbounded_channel();
    let _a = connect(&mut registry, "a", &seen_tx).await;
    assert_eq!(
        events.recv().await.expect("event").kind,
        EventKind::Connected
    );
    disconnect(&registry, "a");
    let outcome = invoke(&registry);
    let err = outcome.await.expect("answered").expect_err("gone");
    assert_eq!(err.code(), "visitor_not_present");
    let event = events.recv().await.expect("event");
    assert_eq!(event.kind, EventKind::Disconnected);
    assert!(!event.state.online);
}

#[actix::test]
async fn a_stalled_connection_gets_429_instead_of_an_unbounded_queue() {
    let registry = registry(5_000);
    let _stalled = connect_stalled(&registry).await;
    let mut refused = None;
    for _ in 0..10 {
        let outcome = invoke(&registry);
        // Queued invokes never answer; a refused one answers at once.
        let lookup = registry.lookup(&key());
        assert!(lookup.online);
        if let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_millis(0), outcome).await {
            refused = Some(e);
            break;
        }
    }
    assert_eq!(refused.map(|e| e.code()), Some("too_many_pending"));
}

#[actix::test]
async fn parked_commands_are_capped_at_the_pending_limit() {
    let mut registry = registry_with(60_000, 2);
    let (seen_tx, _seen) = mpsc::unbounded_channel();
    let _a = connect(&mut registry, "a", &seen_tx).await;
    disconnect(&registry, "a");
    let _first = invoke(&registry);
    let _second = invoke(&registry);
    let third = invoke(&registry).await.expect("answered at once");
    assert_eq!(third.expect_err("over the cap").code(), "too_many_pending");
}

#[actix::test]
async fn the_handle_routes_through_the_directory_and_skips_closing_sockets() {
    let handle = registry(PresenceConfig::default().reconnect_grace_ms).registry;
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let (a, b) = ("a", "b");
    let mut flags = Vec::new();
    for name in [a, b] {
        let probe = ConnectionProbe {
            name,
            seen: seen_tx.clone(),
        }
        .start();
        let open = Arc::new(AtomicBool::new(true));
        flags.push(open.clone());
        handle
            .connect(
                key(),
                LiveConnection {
                    id: name.into(),
                    commands: probe.recipient(),
                    open,
                    identity: None,
                },
                PresenceData::default(),
            )
            .await
            .expect("connect");
    }
    assert_eq!(handle.lookup(&key()).connections, 2);
    let send = |handle: &RegistryHandle| {
        let (responder, _outcome) = oneshot::channel();
        handle.route(
            key(),
            VisitorCommand::Signal(SignalRequest {
                data: json!(1),
                responder,
                only_to: None,
            }),
        );
    };
    send(&handle);
    assert_eq!(seen.recv().await.expect("routed").0, "b");
    // b starts closing: it stops counting and stops being a target at once,
    // before the registry hears of it.
    flags[1].store(false, Ordering::Release);
    assert_eq!(handle.lookup(&key()).connections, 1);
    send(&handle);
    assert_eq!(seen.recv().await.expect("routed").0, "a");
    let offline = VisitorKey::new(72, VisitorId::parse("nobody").expect("id"));
    assert!(!handle.lookup(&offline).online);
}

#[actix::test]
async fn the_handle_keeps_a_stalled_connections_mailbox_bounded() {
    let handle = registry(PresenceConfig::default().reconnect_grace_ms).registry;
    let _stalled = connect_stalled(&handle).await;
    let mut accepted = 0;
    for _ in 0..50 {
        let (responder, mut outcome) = oneshot::channel();
        handle.route(
            key(),
            VisitorCommand::Signal(SignalRequest {
                data: json!(1),
                responder,
                only_to: None,
            }),
        );
        match outcome.try_recv() {
            Ok(Err(e)) => assert_eq!(e.code(), "too_many_pending"),
            Ok(Ok(())) => panic!("a stalled connection answered"),
            Err(_) => accepted += 1,
        }
    }
    // Straight from the directory, without the registry: its mailbox holds
    // two, and everything past it is refused at once.
    assert_eq!(accepted, 2);
}

#[actix::test]
async fn commands_parked_for_a_stalled_new_socket_fail_past_its_mailbox() {
    let mut registry = registry_with(60_000, 3);
    let (seen_tx, _seen) = mpsc::unbounded_channel();
    let _a = connect(&mut registry, "a", &seen_tx).await;
    disconnect(&registry, "a");
    let mut parked: Vec<_> = (0..3).map(|_| invoke(&registry)).collect();
    // The registry hands the parked invokes to the new socket as it
    // registers: its mailbox takes two, and the third fails at once.
    let _stalled = connect_stalled(&registry).await;
    let third = parked.pop().expect("three").try_recv();
    assert_eq!(
        third.expect("answered").map_err(|e| e.code()),
        Err("too_many_pending")
    );
    for mut delivered in parked {
        assert!(delivered.try_recv().is_err(), "queued, not answered");
    }
}

#[actix::test]
async fn the_mailbox_depth_returns_to_zero_once_every_message_is_handled() {
    let mut registry = registry(0);
    // Offline: the handle has no target, so the invoke goes through the
    // actor as a `Route`.
    let offline = invoke(&registry).await.expect("answered");
    assert_eq!(offline.expect_err("offline").code(), "visitor_not_present");
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let _a = connect(&mut registry, "a", &seen_tx).await;
    let _events = watch(&registry).await;
    update_then_invoke(&registry, &mut seen).await;
    registry.unwatch(key(), 1);
    registry.unwatch_all(2);
    disconnect(&registry, "a");
    // A closing socket hands back what it had not run (`Repark`).
    let (command, reparked) = invoke_command();
    registry.repark(key(), vec![command]);
    assert!(reparked.await.expect("answered").is_err(), "no tab left");
    // Each of the nine kinds of message went through (Connect,
    // PresenceUpdate, Watch, Route, Unwatch, UnwatchAll, Disconnect,
    // Repark, Stats); `stats` is handled after them (one mailbox, in
    // order) and counts itself as handled, so a handler that forgot to
    // count leaves the depth above zero.
    let stats = registry.stats().await.expect("stats");
    assert_eq!(stats.mailbox_depth, 0, "every message sent was handled");
}
