//! Invoke receipts and `leaving` (issue 14): a receipts client's invoke
//! that got no `received` before its socket closed is routed again to the
//! visitor's next socket; one with a receipt fails at most once; a
//! `leaving` socket gets no new commands but still delivers results; the
//! waiter's deadline covers a re-park; raw clients behave as before.

mod common;

use awc::ws::CloseCode;
use common::{sample, scrape, TestServer, WsClient};
use serde_json::{json, Value};

/// Receives the next frame, which must be an invoke of `func`.
async fn next_invoke(ws: &mut WsClient, func: &str) -> Value {
    let invoke = ws.recv().await;
    assert_eq!(invoke["type"], "invoke", "{invoke}");
    assert_eq!(invoke["func"], func, "{invoke}");
    invoke
}

/// A new page of `visitor` gets, and answers, an invoke sent once it is
/// connected: nothing older is delivered to it first.
async fn a_new_page_answers(server: &TestServer, token: &str, visitor: &str) {
    let mut page = server.receipts_visitor(visitor).await;
    a_new_page_answers_on(&mut page, server, token, visitor).await;
}

/// `page` of `visitor` gets, and answers, the next invoke.
async fn a_new_page_answers_on(
    page: &mut WsClient,
    server: &TestServer,
    token: &str,
    visitor: &str,
) {
    let call = server.invoke(token, visitor, json!({"func":"second","timeout_ms":10000}));
    let answer = async {
        let invoke = next_invoke(page, "second").await;
        page.send(json!({"type":"result","id":invoke["id"],"ok":true,"value":2}))
            .await;
    };
    let ((status, body), ()) = tokio::join!(call, answer);
    assert_eq!(status, 200, "{body}");
}

/// Sends `leaving`, then waits until the socket has handled it (its answer
/// to the `session_key` sent after it arrives).
async fn leave(ws: &mut WsClient) {
    ws.send(json!({"type": "leaving"})).await;
    ws.send(json!({"type": "session_key"})).await;
    let reply = ws.recv().await;
    assert_eq!(reply["type"], "session_key", "{reply}");
}

#[actix_web::test]
async fn a_receiptless_close_reparks_the_invoke_for_the_next_socket() {
    let server = TestServer::start().await;
    let token = server.token("fred.demo", 72);
    let mut page1 = server.receipts_visitor("v-r1").await;
    let call = server.invoke(
        &token,
        "v-r1",
        json!({"func":"f","args":1,"timeout_ms":10000}),
    );
    let navigate = async {
        let first = next_invoke(&mut page1, "f").await;
        // Taken by the socket, never acknowledged: the page went away.
        page1.close().await;
        let mut page2 = server.receipts_visitor("v-r1").await;
        let again = next_invoke(&mut page2, "f").await;
        assert_eq!(again["args"], first["args"]);
        page2
            .send(json!({"type":"received","id":again["id"]}))
            .await;
        page2
            .send(json!({"type":"result","id":again["id"],"ok":true,"value":"page2"}))
            .await;
        page2
    };
    let ((status, body), _page2) = tokio::join!(call, navigate);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["value"], "page2");
    let metrics = scrape(&server).await;
    assert_eq!(sample(&metrics, "presence_invokes_reparked_total"), 1.0);
    assert_eq!(
        sample(
            &metrics,
            "presence_visitor_closes_total{kind=\"unannounced\"}"
        ),
        1.0
    );
}

#[actix_web::test]
async fn a_receipted_close_fails_and_is_never_resent() {
    let server = TestServer::start().await;
    let token = server.token("fred.demo", 72);
    let mut page1 = server.receipts_visitor("v-r2").await;
    let call = server.invoke(&token, "v-r2", json!({"func":"f","timeout_ms":60000}));
    let close = async {
        let invoke = next_invoke(&mut page1, "f").await;
        page1
            .send(json!({"type":"received","id":invoke["id"]}))
            .await;
        page1.close().await;
    };
    let ((status, body), ()) = tokio::join!(call, close);
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"], "visitor_not_present");

    // The next page gets the next invoke, not the one that may have run.
    a_new_page_answers(&server, &token, "v-r2").await;
    let metrics = scrape(&server).await;
    assert_eq!(sample(&metrics, "presence_invokes_reparked_total"), 0.0);
}

#[actix_web::test]
async fn a_client_without_receipts_fails_its_invoke_at_once_as_before() {
    let server = TestServer::start().await;
    let token = server.token("fred.demo", 72);
    let mut raw = server.visitor("v-r3", json!({})).await;
    let call = server.invoke(&token, "v-r3", json!({"func":"f","timeout_ms":60000}));
    let close = async {
        let invoke = next_invoke(&mut raw, "f").await;
        // A receipt means nothing without the hello's opt-in.
        raw.send(json!({"type":"received","id":invoke["id"]})).await;
        let error = raw.recv().await;
        assert_eq!(error["type"], "error", "{error}");
        assert_eq!(
            error["code"], "unknown_type",
            "as before receipts existed: {error}"
        );
        raw.close().await;
    };
    let ((status, body), ()) = tokio::join!(call, close);
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"], "visitor_not_present");

    // The next page gets the next invoke: nothing was kept for it.
    let mut next = server.visitor("v-r3", json!({})).await;
    let call = server.invoke(&token, "v-r3", json!({"func":"second","timeout_ms":10000}));
    let answer = async {
        let invoke = next_invoke(&mut next, "second").await;
        next.send(json!({"type":"result","id":invoke["id"],"ok":true,"value":2}))
            .await;
    };
    let ((status, body), ()) = tokio::join!(call, answer);
    assert_eq!(status, 200, "{body}");
    let metrics = scrape(&server).await;
    assert_eq!(sample(&metrics, "presence_invokes_reparked_total"), 0.0);
}

#[actix_web::test]
async fn an_unknown_receipt_is_a_client_error() {
    let server = TestServer::start().await;
    let mut page = server.receipts_visitor("v-r4").await;
    page.send(json!({"type":"received","id":"nope"})).await;
    let error = page.recv().await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["code"], "unknown_invoke", "{error}");
}

#[actix_web::test]
async fn a_leaving_socket_gets_no_new_commands_but_still_delivers_results() {
    let server = TestServer::start().await;
    let token = server.token("fred.demo", 72);
    let mut agent = server.agent(&token).await;
    let mut page1 = server.receipts_visitor("v-r5").await;

    agent
        .send(json!({"type":"invoke","id":"a1","visitorid":"v-r5","func":"first"}))
        .await;
    let first = next_invoke(&mut page1, "first").await;
    page1
        .send(json!({"type":"received","id":first["id"]}))
        .await;
    leave(&mut page1).await;

    // Routed after the socket said leaving: parked for the next page.
    agent
        .send(json!({"type":"invoke","id":"a2","visitorid":"v-r5","func":"second"}))
        .await;
    agent
        .send(json!({"type":"lookup","id":"l1","visitorid":"v-r5"}))
        .await;
    let lookup = agent.recv().await;
    assert_eq!(lookup["online"], true, "{lookup}");
    assert_eq!(lookup["connections"], 0, "{lookup}");

    // The leaving page still delivers the result it owes.
    page1
        .send(json!({"type":"result","id":first["id"],"ok":true,"value":"one"}))
        .await;
    assert_eq!(
        agent.recv().await,
        json!({"type":"result","id":"a1","ok":true,"value":"one"})
    );
    let seen = page1.close_collecting().await;
    assert!(
        seen.iter().all(|frame| frame["type"] != "invoke"),
        "a leaving socket was written an invoke: {seen:?}"
    );

    let mut page2 = server.receipts_visitor("v-r5").await;
    let second = next_invoke(&mut page2, "second").await;
    page2
        .send(json!({"type":"result","id":second["id"],"ok":true,"value":"two"}))
        .await;
    assert_eq!(
        agent.recv().await,
        json!({"type":"result","id":"a2","ok":true,"value":"two"})
    );
    let metrics = scrape(&server).await;
    assert_eq!(
        sample(&metrics, "presence_visitor_closes_total{kind=\"leaving\"}"),
        1.0
    );
}

#[actix_web::test]
async fn the_deadline_covers_the_wait_across_a_repark() {
    let server = TestServer::start().await;
    let token = server.token("fred.demo", 72);
    let mut page1 = server.receipts_visitor("v-r6").await;
    let started = std::time::Instant::now();
    let call = server.invoke(&token, "v-r6", json!({"func":"f","timeout_ms":800}));
    let close = async {
        next_invoke(&mut page1, "f").await;
        page1.close().await;
    };
    // Re-parked, and no page comes back before the deadline.
    let ((status, body), ()) = tokio::join!(call, close);
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"], "invoke_timeout");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));

    // The page that comes back later is not sent the expired invoke.
    a_new_page_answers(&server, &token, "v-r6").await;
    let metrics = scrape(&server).await;
    assert_eq!(sample(&metrics, "presence_invokes_reparked_total"), 1.0);
}

#[actix_web::test]
async fn a_receiptless_close_hands_the_invoke_to_another_open_tab() {
    let server = TestServer::start().await;
    let token = server.token("fred.demo", 72);
    let mut tab1 = server.receipts_visitor("v-r7").await;
    // The last to say hello is the most recently active: invokes go there.
    let mut tab2 = server.receipts_visitor("v-r7").await;
    let call = server.invoke(&token, "v-r7", json!({"func":"f","timeout_ms":10000}));
    let tabs = async {
        next_invoke(&mut tab2, "f").await;
        tab2.close().await;
        let again = next_invoke(&mut tab1, "f").await;
        tab1.send(json!({"type":"received","id":again["id"]})).await;
        tab1.send(json!({"type":"result","id":again["id"],"ok":true,"value":"tab1"}))
            .await;
    };
    let ((status, body), ()) = tokio::join!(call, tabs);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["value"], "tab1");
}

/// The agent socket's next `n` frames, in any order, keyed by their `id`
/// (results) or their `event` (watch events).
async fn next_frames(agent: &mut WsClient, n: usize) -> std::collections::BTreeMap<String, Value> {
    let mut frames = std::collections::BTreeMap::new();
    for _ in 0..n {
        let frame = agent.recv().await;
        let key = frame["id"].as_str().or(frame["event"].as_str());
        let key = key.unwrap_or_else(|| panic!("unexpected frame {frame}"));
        frames.insert(key.to_owned(), frame);
    }
    frames
}

#[actix_web::test]
async fn a_leaving_socket_that_stays_open_goes_offline_after_the_grace_period() {
    // The page went into the back/forward cache: it said leaving, and its
    // socket stays open with nobody behind it.
    let server = TestServer::start_with(|c| c.presence.reconnect_grace_ms = 1000).await;
    let token = server.token("fred.demo", 72);
    let mut agent = server.agent(&token).await;
    agent.send(json!({"type":"watch","visitorid":"v-r8"})).await;
    assert_eq!(agent.recv().await["event"], "state");
    let mut page = server.receipts_visitor("v-r8").await;
    assert_eq!(agent.recv().await["event"], "connected");
    for (id, func) in [("taken", "f"), ("untaken", "g")] {
        agent
            .send(
                json!({"type":"invoke","id":id,"visitorid":"v-r8","func":func,"timeout_ms":60000}),
            )
            .await;
    }
    let taken = next_invoke(&mut page, "f").await;
    page.send(json!({"type":"received","id":taken["id"]})).await;
    next_invoke(&mut page, "g").await;
    leave(&mut page).await;

    // A leaving socket does not count: the visitor is in its grace period.
    agent
        .send(json!({"type":"lookup","id":"l1","visitorid":"v-r8"}))
        .await;
    let lookup = agent.recv().await;
    assert_eq!(
        (&lookup["online"], &lookup["connections"]),
        (&json!(true), &json!(0)),
        "{lookup}"
    );
    agent
        .send(
            json!({"type":"invoke","id":"parked","visitorid":"v-r8","func":"h","timeout_ms":60000}),
        )
        .await;

    // The grace period ends with no new page: the visitor goes offline,
    // every invoke fails long before its deadline, and the server closes
    // the socket.
    let frames = next_frames(&mut agent, 4).await;
    for id in ["taken", "untaken", "parked"] {
        assert_eq!(frames[id]["code"], "visitor_not_present", "{frames:?}");
    }
    assert_eq!(frames["disconnected"]["online"], false, "{frames:?}");
    let closed = page.closed().await;
    assert_eq!(closed.code, Some(CloseCode::Normal), "{closed:?}");
    assert!(closed.errors.is_empty(), "{closed:?}");
    let (status, body) = server
        .get("/presence/72/visitors/v-r8", Some(&token), None)
        .await;
    assert_eq!((status, &body["online"]), (200, &json!(false)), "{body}");
}

#[actix_web::test]
async fn a_leaving_socket_the_server_closes_fails_its_unanswered_invoke() {
    let server = TestServer::start_with(|c| c.presence.reconnect_grace_ms = 1000).await;
    let token = server.token("fred.demo", 72);
    let mut agent = server.agent(&token).await;
    agent.send(json!({"type":"watch","visitorid":"v-r9"})).await;
    assert_eq!(agent.recv().await["event"], "state");
    let mut page1 = server.receipts_visitor("v-r9").await;
    assert_eq!(agent.recv().await["event"], "connected");
    agent
        .send(json!({"type":"invoke","id":"a1","visitorid":"v-r9","func":"f","timeout_ms":60000}))
        .await;
    // Written to the page, which froze (back/forward cache) after taking it:
    // its receipt may be queued in a page that never runs again.
    next_invoke(&mut page1, "f").await;
    leave(&mut page1).await;
    let mut page2 = server.receipts_visitor("v-r9").await;

    // page1 never closes by itself; at the end of its grace period the
    // server closes it. Being the server's close, a receipt could still be
    // on its way, so the invoke fails rather than risk running twice.
    let closed = page1.closed().await;
    assert_eq!(closed.code, Some(CloseCode::Normal), "{closed:?}");
    let answer = agent.recv().await;
    assert_eq!(answer["id"], "a1", "{answer}");
    assert_eq!(
        (answer["type"].as_str(), answer["code"].as_str()),
        (Some("error"), Some("visitor_not_present")),
        "{answer}"
    );
    a_new_page_answers_on(&mut page2, &server, &token, "v-r9").await;
}

#[actix_web::test]
async fn a_heartbeat_timeout_fails_an_invoke_whose_receipt_may_be_in_flight() {
    let server = TestServer::start_with(|c| {
        c.presence.ping_interval_ms = 100;
        c.presence.client_timeout_ms = 600;
        c.presence.reconnect_grace_ms = 30_000;
    })
    .await;
    let token = server.token("fred.demo", 72);
    let mut page = server.receipts_visitor("v-r10").await;
    let call = server.invoke(&token, "v-r10", json!({"func":"f","timeout_ms":10000}));
    let stall = async {
        // The page takes the invoke; its uplink then stalls, so the server
        // hears nothing (not even pongs) and times the socket out.
        next_invoke(&mut page, "f").await;
        let closed = page.closed().await;
        assert_ne!(closed.code, None, "{closed:?}");
    };
    let ((status, body), ()) = tokio::join!(call, stall);
    // At the close, not parked for a next page (which would run it again).
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("visitor_not_present")),
        "{body}"
    );
    a_new_page_answers(&server, &token, "v-r10").await;
    let metrics = scrape(&server).await;
    assert_eq!(sample(&metrics, "presence_invokes_reparked_total"), 0.0);
}
