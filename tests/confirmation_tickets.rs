//! Security review, item 8: a confirmation belongs to the browser that
//! pressed the right button. A second socket with the same visitor id gets
//! neither the agent's gated invokes nor a `confirmed: true`.

mod common;

use awc::ws::CloseCode;
use common::confirm::{gated, invoke_status, press, prompt, start, ticket};
use common::{TestServer, WsClient};
use serde_json::{json, Value};

/// Confirms `visitor` (socket `tab`) for the agent of `token`; the ticket.
async fn confirm(server: &TestServer, token: &str, visitor: &str, tab: &mut WsClient) -> String {
    let started = start(server, token, visitor, json!({})).await;
    let cid = started["confirmation"].clone();
    prompt(tab, &cid).await;
    press(tab, &cid, started["answer"].clone()).await;
    assert_eq!(tab.recv().await["type"], "confirm_closed");
    ticket(tab, &cid).await
}

async fn lookup(server: &TestServer, token: &str, visitor: &str) -> Value {
    server
        .get(
            &format!("/presence/72/visitors/{visitor}"),
            Some(token),
            None,
        )
        .await
        .1
}

async fn signal(server: &TestServer, token: &str, visitor: &str) -> u16 {
    let path = format!("/presence/72/visitors/{visitor}/signal");
    let (status, _) = server
        .post(&path, Some(token), None, &json!({"data": 1}))
        .await;
    status
}

#[actix_web::test]
async fn a_second_socket_with_the_same_visitor_id_gets_nothing() {
    let server = TestServer::start_with(gated).await;
    let fred = server.token("fred.demo", 72);
    let mut real = server.visitor("v-1", json!({})).await;
    let ticket = confirm(&server, &fred, "v-1", &mut real).await;
    assert_eq!(lookup(&server, &fred, "v-1").await["confirmed"], true);

    // The impostor joins later and becomes the most recently active tab.
    let mut impostor = server.visitor("v-1", json!({})).await;
    impostor
        .send(json!({"type":"presence","data":{"page":"/x"}}))
        .await;
    impostor.send(json!({"type":"session_key"})).await;
    assert_eq!(
        impostor.recv().await["type"],
        "session_key",
        "presence handled"
    );
    let call = invoke_status(&server, &fred, "v-1");
    let ((status, result), invoke_frame) = tokio::join!(call, real.answer(json!("accepted")));
    assert_eq!((status, result["value"].as_str()), (200, Some("accepted")));
    assert_eq!(invoke_frame["func"], "showTerms", "the real tab ran it");
    let status = signal(&server, &fred, "v-1").await;
    assert_eq!(status, 202);
    assert_eq!(real.recv().await["type"], "signal");

    // Without the real tab, the impostor is refused as if no grant existed.
    real.close().await;
    let (status, body) = invoke_status(&server, &fred, "v-1").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("confirmation_required"))
    );
    assert_eq!(lookup(&server, &fred, "v-1").await["confirmed"], false);
    let status = signal(&server, &fred, "v-1").await;
    assert_eq!(status, 403);
    // The impostor saw no invoke, signal or ticket: its next frame is the
    // answer to this request.
    impostor.send(json!({"type":"session_key"})).await;
    assert_eq!(impostor.recv().await["type"], "session_key");

    // The real tab's next page presents the ticket and has the grant back.
    let mut next_page = server
        .visitor_with_tickets("v-1", json!({}), &[&ticket])
        .await;
    assert_eq!(lookup(&server, &fred, "v-1").await["confirmed"], true);
    let call = invoke_status(&server, &fred, "v-1");
    let ((status, _), _) = tokio::join!(call, next_page.answer(json!("ok")));
    assert_eq!(status, 200);

    // The agent socket sees the same gate.
    let mut console = server.agent(&fred).await;
    next_page.close().await;
    console
        .send(json!({"type":"invoke","id":"r1","visitorid":"v-1","func":"showTerms"}))
        .await;
    let refused = console.recv().await;
    assert_eq!(
        (refused["id"].as_str(), refused["code"].as_str()),
        (Some("r1"), Some("confirmation_required"))
    );
}

#[actix_web::test]
async fn tickets_are_per_agent_and_stale_ones_are_ignored() {
    let server = TestServer::start_with(gated).await;
    let fred = server.token("fred.demo", 72);
    let ada = server.token("ada.admin", 72);
    let mut tab = server.visitor("v-2", json!({})).await;
    let fred_ticket = confirm(&server, &fred, "v-2", &mut tab).await;
    tab.close().await;
    // Garbage, another visitor's and unknown tickets are ignored: no error.
    let mut other = server.visitor("v-3", json!({})).await;
    let other_ticket = confirm(&server, &ada, "v-3", &mut other).await;
    let _tab = server
        .visitor_with_tickets("v-2", json!({}), &["bogus", &other_ticket, &fred_ticket])
        .await;
    assert_eq!(lookup(&server, &fred, "v-2").await["confirmed"], true);
    assert_eq!(
        lookup(&server, &ada, "v-2").await["confirmed"],
        false,
        "fred's ticket only"
    );
    let _stranger = server
        .visitor_with_tickets("v-3", json!({}), &[&fred_ticket])
        .await;
    let (status, _) = invoke_status(&server, &fred, "v-3").await;
    assert_eq!(status, 403, "a ticket is for its own visitor");

    // More than 16 tickets in a hello is a bad hello.
    let many: Vec<String> = (0..17).map(|i| format!("t{i}")).collect();
    let mut ws = server.socket("/visitor/ws", None).await.expect("connect");
    ws.send(json!({"type":"hello","groupid":72,"visitorid":"v-4","tickets":many}))
        .await;
    common::assert_closed(&ws.closed().await, CloseCode::Policy, "bad_frame");
}

#[actix_web::test]
async fn without_the_gate_a_confirmed_agent_still_reaches_the_confirmed_browser() {
    let server = TestServer::start().await;
    let fred = server.token("fred.demo", 72);
    let mut real = server.visitor("v-5", json!({})).await;
    confirm(&server, &fred, "v-5", &mut real).await;
    let mut impostor = server.visitor("v-5", json!({})).await;
    impostor
        .send(json!({"type":"presence","data":{"page":"/x"}}))
        .await;
    impostor.send(json!({"type":"session_key"})).await;
    assert_eq!(impostor.recv().await["type"], "session_key");
    assert_eq!(lookup(&server, &fred, "v-5").await["confirmed"], true);
    let call = invoke_status(&server, &fred, "v-5");
    let ((status, _), frame) = tokio::join!(call, real.answer(json!("real")));
    assert_eq!((status, frame["func"].as_str()), (200, Some("showTerms")));
    // Another agent, unconfirmed, goes to the most recently active tab.
    let ada = server.token("ada.admin", 72);
    let call = invoke_status(&server, &ada, "v-5");
    let ((status, _), _) = tokio::join!(call, impostor.answer(json!("x")));
    assert_eq!(status, 200);
    // With the confirmed browser gone, nothing claims to be confirmed.
    real.close().await;
    server
        .once_seen("confirmed: false", || async {
            (lookup(&server, &fred, "v-5").await["confirmed"] == false).then_some(())
        })
        .await;
    let call = invoke_status(&server, &fred, "v-5");
    let ((status, _), _) = tokio::join!(call, impostor.answer(json!("y")));
    assert_eq!(status, 200, "no gate in this group");
}

#[actix_web::test]
async fn a_leaving_tab_stops_showing_confirmed_and_its_ticket_confirms_the_next_page() {
    let server = TestServer::start_with(gated).await;
    let fred = server.token("fred.demo", 72);
    // `leaving` is for clients that opted in to receipts, as the SDK does.
    let mut page1 = server.receipts_visitor("v-6").await;
    let ticket = confirm(&server, &fred, "v-6", &mut page1).await;
    assert_eq!(lookup(&server, &fred, "v-6").await["confirmed"], true);

    // pagehide: the tab no longer counts, so neither does its ticket.
    page1.send(json!({"type":"leaving"})).await;
    // Handled once the session_key sent after it is answered.
    page1.send(json!({"type":"session_key"})).await;
    assert_eq!(page1.recv().await["type"], "session_key");
    let state = lookup(&server, &fred, "v-6").await;
    assert_eq!(
        (&state["confirmed"], &state["connections"]),
        (&json!(false), &json!(0)),
        "{state}"
    );

    let _page2 = server
        .visitor_with_tickets("v-6", json!({}), &[&ticket])
        .await;
    assert_eq!(lookup(&server, &fred, "v-6").await["confirmed"], true);
}
