//! Watching visitors from the agent socket.

mod common;

use common::TestServer;
use serde_json::json;

#[actix_web::test]
async fn watch_reports_state_then_connected_presence_and_disconnected() {
    let server = TestServer::start_with(|c| c.presence.reconnect_grace_ms = 150).await;
    let token = server.token("fred.demo", 72);
    let mut agent = server.agent(&token).await;
    agent
        .send(json!({"type":"watch","visitorid":"v-123"}))
        .await;
    assert_eq!(
        agent.recv().await,
        json!({"type":"visitor","event":"state","visitorid":"v-123","online":false,"connections":0,"data":{},"verified":false,"confirmed":false})
    );

    let mut visitor = server.visitor("v-123", json!({"url":"/home"})).await;
    assert_eq!(
        agent.recv().await,
        json!({"type":"visitor","event":"connected","visitorid":"v-123","online":true,"connections":1,"data":{"url":"/home"},"verified":false,"confirmed":false})
    );
    visitor
        .send(json!({"type":"presence","data":{"url":"/cart"}}))
        .await;
    let event = agent.recv().await;
    assert_eq!(
        (event["event"].as_str(), &event["data"]),
        (Some("presence"), &json!({"url":"/cart"}))
    );

    visitor.close().await;
    let event = agent.recv().await;
    assert_eq!(event["event"], "disconnected");
    assert_eq!(event["online"], false);
}

#[actix_web::test]
async fn a_page_navigation_does_not_look_like_going_offline() {
    let server = TestServer::start().await; // 10 s grace
    let token = server.token("fred.demo", 72);
    let mut agent = server.agent(&token).await;
    let page1 = server.visitor("v-1", json!({"url":"/1"})).await;
    agent.send(json!({"type":"watch","visitorid":"v-1"})).await;
    assert_eq!(agent.recv().await["event"], "state");
    page1.close().await;
    let _page2 = server.visitor("v-1", json!({"url":"/2"})).await;
    // The very next event is the page change: no disconnected/connected.
    let event = agent.recv().await;
    assert_eq!(event["event"], "presence", "{event}");
    assert_eq!(event["data"], json!({"url":"/2"}));
    assert_eq!(event["online"], true);
}

#[actix_web::test]
async fn unwatch_stops_events_and_watches_stay_in_the_agents_group() {
    let server = TestServer::start().await;
    let token = server.token("fred.demo", 72);
    let mut agent = server.agent(&token).await;
    agent.send(json!({"type":"watch","visitorid":"a"})).await;
    assert_eq!(agent.recv().await["visitorid"], "a");
    agent.send(json!({"type":"watch","visitorid":"b"})).await;
    assert_eq!(agent.recv().await["visitorid"], "b");
    agent.send(json!({"type":"unwatch","visitorid":"a"})).await;
    // Frames are handled in order: once this lookup answers, the unwatch is
    // in the registry's mailbox, ahead of the hello below (FIFO).
    agent
        .send(json!({"type":"lookup","id":"sync","visitorid":"a"}))
        .await;
    assert_eq!(agent.recv().await["id"], "sync");
    let _a = server.visitor("a", json!({})).await;
    let _b = server.visitor("b", json!({})).await;
    // Only b's event arrives; a's would have come first had the unwatch failed.
    let event = agent.recv().await;
    assert_eq!(
        (event["visitorid"].as_str(), event["event"].as_str()),
        (Some("b"), Some("connected"))
    );

    // A visitor of the same id in another group is someone else.
    let mut other = server.socket("/visitor/ws", None).await.expect("connect");
    other
        .send(json!({"type":"hello","groupid":73,"visitorid":"b"}))
        .await;
    assert_eq!(other.recv().await["type"], "welcome");
    other
        .send(json!({"type":"presence","data":{"x":"group 73"}}))
        .await;
    let mut b = server.visitor("b", json!({"y":"group 72"})).await;
    let event = agent.recv().await;
    assert_eq!(event["data"], json!({"y":"group 72"}), "{event}");
    b.send(json!({"type":"presence","data":{"z":1}})).await;
    assert_eq!(agent.recv().await["data"]["z"], 1);
}

#[actix_web::test]
async fn watch_limits_and_bad_ids_get_error_frames() {
    let server = TestServer::start_with(|c| c.presence.max_watches_per_agent = 2).await;
    let token = server.token("fred.demo", 72);
    let mut agent = server.agent(&token).await;
    agent
        .send(json!({"type":"watch","visitorid":"bad id"}))
        .await;
    assert_eq!(agent.recv().await["code"], "bad_request");
    agent.send(json!({"type":"watch","visitorid":"a"})).await;
    agent.recv().await;
    agent.send(json!({"type":"watch","visitorid":"b"})).await;
    agent.recv().await;
    agent.send(json!({"type":"watch","visitorid":"c"})).await;
    assert_eq!(agent.recv().await["code"], "too_many_watches");
    agent.send(json!({"type":"teleport"})).await;
    assert_eq!(agent.recv().await["code"], "unknown_type");
    agent
        .send(json!({"type":"lookup","id":"l1","visitorid":"a"}))
        .await;
    let lookup = agent.recv().await;
    assert_eq!(
        (
            lookup["type"].as_str(),
            lookup["id"].as_str(),
            lookup["online"].as_bool()
        ),
        (Some("lookup"), Some("l1"), Some(false))
    );
}

#[actix_web::test]
async fn agent_frames_get_rest_codes_with_their_id() {
    let server = TestServer::start().await;
    let token = server.token("fred.demo", 72);
    let mut agent = server.agent(&token).await;
    agent
        .send(json!({"type":"invoke","id":"r1","visitorid":"v-1"}))
        .await;
    let err = agent.recv().await;
    assert_eq!(
        (err["id"].as_str(), err["code"].as_str()),
        (Some("r1"), Some("bad_request")),
        "{err}"
    );
    agent.send_text("{broken").await;
    assert_eq!(agent.recv().await["code"], "bad_request");
    agent
        .send(json!({"type":"unwatch","visitorid":"no spaces allowed"}))
        .await;
    assert_eq!(agent.recv().await["code"], "bad_request");
    agent
        .send(json!({"type":"invoke","id":"x".repeat(129),"visitorid":"v-1","func":"f"}))
        .await;
    assert_eq!(agent.recv().await["code"], "bad_request");
}

#[actix_web::test]
async fn agent_sockets_share_the_size_limit_heartbeat_and_error_budget() {
    use awc::ws::CloseCode;
    let server = TestServer::start_with(|c| {
        c.presence.max_message_bytes = 1024;
        c.presence.ping_interval_ms = 50;
        c.presence.client_timeout_ms = 200;
    })
    .await;
    let token = server.token("fred.demo", 72);

    let mut agent = server.agent(&token).await;
    agent
        .send_text(&format!(
            r#"{{"type":"lookup","id":"{}"}}"#,
            "x".repeat(2000)
        ))
        .await;
    common::assert_closed(&agent.closed().await, CloseCode::Size, "message_too_large");

    let mut agent = server.agent(&token).await;
    common::assert_closed(
        &agent.closed().await,
        CloseCode::Policy,
        "heartbeat_timeout",
    );

    let mut agent = server.agent(&token).await;
    for _ in 0..(presence_server::ws_support::ERROR_BUDGET + 1) {
        agent
            .send(json!({"type":"watch","visitorid":"bad id"}))
            .await;
    }
    common::assert_closed(&agent.closed().await, CloseCode::Policy, "too_many_errors");
}
