//! Confirmation prompts: the agent proves the browser it commands belongs to
//! the person on the phone.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::confirm::{confirm_path, gated, invoke_status, press, prompt, start, ticket};
use common::{TestServer, WsClient};
use presence_server::clock::{ManualClock, SharedClock};
use serde_json::{json, Value};

/// A choice of `started` that is not the answer.
fn wrong(started: &Value) -> Value {
    started["choices"]
        .as_array()
        .and_then(|c| c.iter().find(|c| **c != started["answer"]))
        .cloned()
        .expect("a wrong choice")
}

async fn outcome(agent: &mut WsClient) -> Value {
    let frame = agent.recv().await;
    assert_eq!(frame["type"], "confirmation", "{frame}");
    frame
}

async fn poll(server: &TestServer, token: &str, visitor: &str, cid: &Value) -> (u16, Value) {
    let cid = cid.as_str().expect("cid");
    server
        .get(
            &format!("{}/{cid}", confirm_path(visitor)),
            Some(token),
            None,
        )
        .await
}

#[actix_web::test]
async fn a_correct_answer_confirms_the_pair_for_that_agent_only() {
    let server = TestServer::start_with(gated).await;
    let fred = server.token("fred.demo", 72);
    let other = server.token("multi", 72);
    let mut visitor = server.visitor("v-1", json!({"url":"/"})).await;
    let mut console = server.agent(&fred).await;

    // The gate: no invoke or signal before a confirmation; lookup works.
    let (status, body) = invoke_status(&server, &fred, "v-1").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("confirmation_required"))
    );
    let (status, body) = server
        .post(
            "/presence/72/visitors/v-1/signal",
            Some(&fred),
            None,
            &json!({"data":1}),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("confirmation_required"))
    );
    let (status, doc) = server
        .get("/presence/72/visitors/v-1", Some(&fred), None)
        .await;
    assert_eq!(
        (status, &doc["online"], &doc["confirmed"]),
        (200, &json!(true), &json!(false))
    );

    let started = start(&server, &fred, "v-1", json!({"choices":4})).await;
    let cid = started["confirmation"].clone();
    let choices = started["choices"].as_array().expect("choices");
    assert_eq!(choices.len(), 4);
    assert!(choices.contains(&started["answer"]));
    assert!(started["expires"].as_u64().is_some());

    let shown = prompt(&mut visitor, &cid).await;
    assert_eq!(shown["choices"], started["choices"]);
    assert_eq!(shown["agent"], json!({"name":"Fred Agent"}));
    assert!(
        shown.get("answer").is_none(),
        "the visitor must not see the answer"
    );

    press(&mut visitor, &cid, started["answer"].clone()).await;
    assert_eq!(
        outcome(&mut console).await,
        json!({"type":"confirmation","visitorid":"v-1","id":cid,"status":"confirmed"})
    );
    let closed = visitor.recv().await;
    assert_eq!(
        closed,
        json!({"type":"confirm_closed","id":cid,"status":"confirmed"})
    );
    ticket(&mut visitor, &cid).await;

    let (status, view) = poll(&server, &fred, "v-1", &cid).await;
    assert_eq!((status, view["status"].as_str()), (200, Some("confirmed")));
    assert!(view["confirmed_until"].as_u64().is_some(), "{view}");
    let (_, doc) = server
        .get("/presence/72/visitors/v-1", Some(&fred), None)
        .await;
    assert_eq!(doc["confirmed"], true);

    // Fred may now invoke, over REST and over his socket.
    let call = invoke_status(&server, &fred, "v-1");
    let answering = visitor.answer(json!("shown"));
    let ((status, result), _) = tokio::join!(call, answering);
    assert_eq!(
        (status, &result["value"]),
        (200, &json!("shown")),
        "{result}"
    );
    console
        .send(json!({"type":"invoke","id":"i1","visitorid":"v-1","func":"showTerms"}))
        .await;
    visitor.answer(json!(1)).await;
    assert_eq!(console.recv().await["ok"], true);

    // Another agent of the group gets nothing from it.
    let (status, body) = invoke_status(&server, &other, "v-1").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("confirmation_required"))
    );
    let (_, doc) = server
        .get("/presence/72/visitors/v-1", Some(&other), None)
        .await;
    assert_eq!(doc["confirmed"], false);
    let (status, body) = poll(&server, &other, "v-1", &cid).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("confirmation_not_found"))
    );
    let mut other_console = server.agent(&other).await;
    other_console
        .send(json!({"type":"invoke","id":"i2","visitorid":"v-1","func":"showTerms"}))
        .await;
    let refused = other_console.recv().await;
    assert_eq!(
        (refused["id"].as_str(), refused["code"].as_str()),
        (Some("i2"), Some("confirmation_required"))
    );
    other_console
        .send(json!({"type":"watch","visitorid":"v-1"}))
        .await;
    assert_eq!(other_console.recv().await["confirmed"], false);
    console
        .send(json!({"type":"watch","visitorid":"v-1"}))
        .await;
    assert_eq!(console.recv().await["confirmed"], true);
}

#[actix_web::test]
async fn the_agent_socket_starts_prompts_too() {
    let server = TestServer::start().await;
    let fred = server.token("fred.demo", 72);
    let mut visitor = server.visitor("v-2", json!({})).await;
    let mut console = server.agent(&fred).await;
    console
        .send(json!({"type":"confirm","id":"r2","visitorid":"v-2","agent":{"name":"Fred at Acme","phone":"+1 555 0100"}}))
        .await;
    let started = console.recv().await;
    assert_eq!(
        (started["type"].as_str(), started["id"].as_str()),
        (Some("confirm"), Some("r2")),
        "{started}"
    );
    assert_eq!(started["visitorid"], "v-2");
    assert_eq!(
        started["choices"].as_array().map(Vec::len),
        Some(3),
        "three by default"
    );
    let cid = started["confirmation"].clone();
    let shown = prompt(&mut visitor, &cid).await;
    assert_eq!(
        shown["agent"],
        json!({"name":"Fred at Acme","phone":"+1 555 0100"})
    );
    press(&mut visitor, &cid, Value::Null).await;
    assert_eq!(outcome(&mut console).await["status"], "declined");

    // Bad frames answer errors carrying the request id.
    for (frame, code) in [
        (
            json!({"type":"confirm","id":"r3","visitorid":"v-2","choices":1}),
            "bad_request",
        ),
        (
            json!({"type":"confirm","id":"r4","visitorid":"v-2","choices":"x"}),
            "bad_request",
        ),
        (
            json!({"type":"confirm","id":"r5","visitorid":"no such/visitor"}),
            "bad_request",
        ),
        (
            json!({"type":"confirm","id":"r6","visitorid":"nobody"}),
            "visitor_not_present",
        ),
        (
            json!({"type":"confirm","id":"r7","visitorid":"v-2","agent":{"name":""}}),
            "bad_request",
        ),
    ] {
        console.send(frame.clone()).await;
        let error = console.recv().await;
        assert_eq!(
            (error["type"].as_str(), error["code"].as_str()),
            (Some("error"), Some(code)),
            "{frame}: {error}"
        );
        assert_eq!(error["id"], frame["id"]);
    }
}

#[actix_web::test]
async fn bad_confirm_requests_get_clear_errors() {
    let server = TestServer::start().await;
    let fred = server.token("fred.demo", 72);
    let olga = server.token("olga", 73);
    let mut visitor = server.visitor("v-3", json!({})).await;
    for (body, code) in [
        (json!({"choices":1}), "bad_request"),
        (json!({"choices":10}), "bad_request"),
        (json!({"choices":"3"}), "bad_request"),
        (json!({"chioces":3}), "bad_request"),
        (json!({"agent":{"name":"x","title":"boss"}}), "bad_request"),
        (json!({"agent":{"name":"x","email":"nope"}}), "bad_request"),
        (json!([3]), "bad_request"),
    ] {
        let (status, error) = server
            .post(&confirm_path("v-3"), Some(&fred), None, &body)
            .await;
        assert_eq!(
            (status, error["error"].as_str()),
            (400, Some(code)),
            "{body}"
        );
        assert!(error["message"].is_string());
    }
    let (status, error) = server
        .post(&confirm_path("nobody"), Some(&fred), None, &json!({}))
        .await;
    assert_eq!(
        (status, error["error"].as_str()),
        (404, Some("visitor_not_present"))
    );
    let (status, error) = server
        .post(&confirm_path("v-3"), Some(&olga), None, &json!({}))
        .await;
    assert_eq!(
        (status, error["error"].as_str()),
        (403, Some("wrong_group"))
    );
    let (status, error) = server
        .post(&confirm_path("v-3"), None, None, &json!({}))
        .await;
    assert_eq!(
        (status, error["error"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, error) = poll(&server, &fred, "v-3", &json!("no-such-confirmation")).await;
    assert_eq!(
        (status, error["error"].as_str()),
        (404, Some("confirmation_not_found"))
    );

    // An empty body means the defaults.
    let mut resp = server
        .http
        .post(server.url(&confirm_path("v-3")))
        .insert_header(("Authorization", format!("Bearer {fred}")))
        .send()
        .await
        .expect("response");
    assert_eq!(resp.status().as_u16(), 201);
    let started: Value = resp.json().await.expect("json");
    assert_eq!(started["choices"].as_array().map(Vec::len), Some(3));

    // The visitor cannot answer a prompt it was not shown.
    let cid = prompt(&mut visitor, &started["confirmation"]).await["id"].clone();
    press(
        &mut visitor,
        &json!("guessed-id"),
        started["answer"].clone(),
    )
    .await;
    let error = visitor.recv().await;
    assert_eq!(error["code"], "confirmation_not_found", "{error}");
    let (_, view) = poll(&server, &fred, "v-3", &cid).await;
    assert_eq!(view["status"], "pending");
}

#[actix_web::test]
async fn wrong_answers_declines_and_timeouts_fail_and_three_lock_the_visitor() {
    let clock = Arc::new(ManualClock::starting_now());
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let server = TestServer::start_in(
        dir,
        |c| {
            gated(c);
            c.presence.confirm_timeout_ms = 1500;
        },
        clock.clone() as SharedClock,
    )
    .await;
    let fred = server.token("fred.demo", 72);
    let mut visitor = server.visitor("v-4", json!({})).await;
    let mut console = server.agent(&fred).await;

    let started = start(&server, &fred, "v-4", json!({})).await;
    let cid = started["confirmation"].clone();
    prompt(&mut visitor, &cid).await;
    press(&mut visitor, &cid, wrong(&started)).await;
    assert_eq!(outcome(&mut console).await["status"], "rejected");
    assert_eq!(visitor.recv().await["status"], "rejected");
    let (_, view) = poll(&server, &fred, "v-4", &cid).await;
    assert_eq!(view["status"], "rejected");
    // Single use: the right answer after a wrong one changes nothing.
    press(&mut visitor, &cid, started["answer"].clone()).await;
    assert_eq!(visitor.recv().await["code"], "confirmation_not_found");
    assert_eq!(invoke_status(&server, &fred, "v-4").await.0, 403);

    let started = start(&server, &fred, "v-4", json!({})).await;
    let cid = started["confirmation"].clone();
    prompt(&mut visitor, &cid).await;
    press(&mut visitor, &cid, Value::Null).await;
    assert_eq!(outcome(&mut console).await["status"], "declined");
    assert_eq!(visitor.recv().await["status"], "declined");

    // Nobody answers: the prompt expires on its own and both sides hear it.
    let started = start(&server, &fred, "v-4", json!({})).await;
    let cid = started["confirmation"].clone();
    prompt(&mut visitor, &cid).await;
    assert_eq!(
        outcome(&mut console).await,
        json!({"type":"confirmation","visitorid":"v-4","id":cid,"status":"expired"})
    );
    assert_eq!(
        visitor.recv().await,
        json!({"type":"confirm_closed","id":cid,"status":"expired"})
    );

    // Three failures within ten minutes: refused for ten minutes.
    let resp = server
        .http
        .post(server.url(&confirm_path("v-4")))
        .insert_header(("Authorization", format!("Bearer {fred}")))
        .send_json(&json!({}))
        .await
        .expect("response");
    assert_eq!(resp.status().as_u16(), 429);
    let retry: u64 = resp
        .headers()
        .get("Retry-After")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((590..=600).contains(&retry), "{retry}");
    // Other visitors are not affected. Their prompt is settled here so that
    // its expiry cannot reach the console ahead of v-4's last outcome.
    let mut other = server.visitor("v-5", json!({})).await;
    let other_started = start(&server, &fred, "v-5", json!({})).await;
    let other_cid = other_started["confirmation"].clone();
    prompt(&mut other, &other_cid).await;
    press(&mut other, &other_cid, Value::Null).await;
    let settled = outcome(&mut console).await;
    assert_eq!(
        (settled["visitorid"].as_str(), settled["id"].clone()),
        (Some("v-5"), other_cid)
    );

    clock.advance(Duration::from_secs(599));
    let (status, error) = server
        .post(&confirm_path("v-4"), Some(&fred), None, &json!({}))
        .await;
    assert_eq!(
        (status, error["error"].as_str()),
        (429, Some("too_many_attempts"))
    );
    clock.advance(Duration::from_secs(1));
    let started = start(&server, &fred, "v-4", json!({})).await;
    let cid = started["confirmation"].clone();
    prompt(&mut visitor, &cid).await;
    press(&mut visitor, &cid, started["answer"].clone()).await;
    assert_eq!(
        outcome(&mut console).await,
        json!({"type":"confirmation","visitorid":"v-4","id":cid,"status":"confirmed"})
    );
}

#[actix_web::test]
async fn two_racing_answers_have_exactly_one_winner() {
    let server = TestServer::start().await;
    let fred = server.token("fred.demo", 72);
    let mut console = server.agent(&fred).await;
    for round in 0..6 {
        let id = format!("racer-{round}");
        let mut tab_a = server.visitor(&id, json!({})).await;
        let mut tab_b = server.visitor(&id, json!({})).await;
        let started = start(&server, &fred, &id, json!({})).await;
        let cid = started["confirmation"].clone();
        prompt(&mut tab_a, &cid).await;
        prompt(&mut tab_b, &cid).await;
        // Both buttons are pressed before either answer is read.
        press(&mut tab_a, &cid, wrong(&started)).await;
        press(&mut tab_b, &cid, started["answer"].clone()).await;

        let settled = outcome(&mut console).await;
        let status = settled["status"].as_str().expect("status").to_owned();
        assert!(status == "confirmed" || status == "rejected", "{settled}");
        let (winner, loser) = if status == "confirmed" {
            (&mut tab_b, &mut tab_a)
        } else {
            (&mut tab_a, &mut tab_b)
        };
        assert_eq!(
            winner.recv().await,
            json!({"type":"confirm_closed","id":cid,"status":status})
        );
        if status == "confirmed" {
            ticket(winner, &cid).await;
        }
        // The loser is told the prompt closed, and that its press did not
        // count, in whichever order the two reached its socket.
        let mut seen = [loser.recv().await, loser.recv().await];
        seen.sort_by_key(|f| f["type"].as_str().map(str::to_owned));
        assert_eq!(
            seen[0],
            json!({"type":"confirm_closed","id":cid,"status":status})
        );
        assert_eq!(seen[1]["type"], "error");
        let code = seen[1]["code"].as_str().expect("code");
        assert!(
            code == "confirmation_settled" || code == "confirmation_not_found",
            "{code}"
        );

        // Exactly one outcome reached the agent: the next frame is the
        // reply to this lookup, and it agrees with the poll.
        console
            .send(json!({"type":"lookup","id":"l","visitorid":id}))
            .await;
        let lookup = console.recv().await;
        assert_eq!(lookup["type"], "lookup", "{lookup}");
        assert_eq!(lookup["confirmed"], status == "confirmed");
        let (_, view) = poll(&server, &fred, &id, &cid).await;
        assert_eq!(view["status"], status.as_str());
    }
}

#[actix_web::test]
async fn a_confirmation_survives_navigation_and_a_restart() {
    let clock = Arc::new(ManualClock::starting_now());
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let server = TestServer::start_in(dir.clone(), gated, clock.clone() as SharedClock).await;
    let fred = server.token("fred.demo", 72);
    let mut console = server.agent(&fred).await;
    let visitor = server.visitor("v-6", json!({"url":"/a"})).await;

    // A prompt still open when the page changes shows on the next page.
    let started = start(&server, &fred, "v-6", json!({})).await;
    let cid = started["confirmation"].clone();
    let mut visitor = visitor;
    prompt(&mut visitor, &cid).await;
    visitor.close().await;
    let mut visitor = server.visitor("v-6", json!({"url":"/b"})).await;
    prompt(&mut visitor, &cid).await;
    press(&mut visitor, &cid, started["answer"].clone()).await;
    assert_eq!(outcome(&mut console).await["status"], "confirmed");
    assert_eq!(visitor.recv().await["type"], "confirm_closed");
    let tab_ticket = ticket(&mut visitor, &cid).await;
    visitor.close().await;

    // The tab's next page presents its ticket, as the SDK does.
    let mut visitor = server
        .visitor_with_tickets("v-6", json!({"url":"/c"}), &[&tab_ticket])
        .await;
    let call = invoke_status(&server, &fred, "v-6");
    let ((status, _), _) = tokio::join!(call, visitor.answer(json!(true)));
    assert_eq!(status, 200, "the confirmation outlives the page");
    drop(console);
    visitor.close().await;

    let dir = server.shutdown().await;
    let server = TestServer::start_in(dir, gated, clock.clone() as SharedClock).await;
    let mut visitor = server
        .visitor_with_tickets("v-6", json!({"url":"/d"}), &[&tab_ticket])
        .await;
    let call = invoke_status(&server, &fred, "v-6");
    let ((status, body), _) = tokio::join!(call, visitor.answer(json!(true)));
    assert_eq!(status, 200, "the confirmation outlives a restart: {body}");
    let (_, view) = poll(&server, &fred, "v-6", &cid).await;
    assert_eq!(view["status"], "confirmed");
    let other = server.token("multi", 72);
    assert_eq!(invoke_status(&server, &other, "v-6").await.0, 403);

    // It lasts confirmation_ttl_secs (3600 by default), then the gate closes.
    clock.advance(Duration::from_secs(3600));
    let (status, body) = invoke_status(&server, &server.token("fred.demo", 72), "v-6").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("confirmation_required"))
    );
    let (_, view) = poll(&server, &server.token("fred.demo", 72), "v-6", &cid).await;
    assert_eq!(view["status"], "expired");
}

#[actix_web::test]
async fn delete_ends_a_prompt_or_a_confirmation_early() {
    let server = TestServer::start_with(gated).await;
    let fred = server.token("fred.demo", 72);
    let mut console = server.agent(&fred).await;
    let mut visitor = server.visitor("v-7", json!({})).await;

    // An open prompt: both sides hear it end.
    let started = start(&server, &fred, "v-7", json!({})).await;
    let cid = started["confirmation"].clone();
    prompt(&mut visitor, &cid).await;
    let (status, body) = server.delete(&confirm_path("v-7"), &fred).await;
    assert_eq!(
        (status, body),
        (200, json!({"visitorid":"v-7","ended":true}))
    );
    assert_eq!(outcome(&mut console).await["status"], "expired");
    assert_eq!(visitor.recv().await["status"], "expired");

    // A live confirmation: the gate closes again.
    let started = start(&server, &fred, "v-7", json!({})).await;
    let cid = started["confirmation"].clone();
    prompt(&mut visitor, &cid).await;
    press(&mut visitor, &cid, started["answer"].clone()).await;
    assert_eq!(outcome(&mut console).await["status"], "confirmed");
    assert_eq!(visitor.recv().await["status"], "confirmed");
    ticket(&mut visitor, &cid).await;
    let (status, _) = server.delete(&confirm_path("v-7"), &fred).await;
    assert_eq!(status, 200);
    assert_eq!(invoke_status(&server, &fred, "v-7").await.0, 403);
    let (_, view) = poll(&server, &fred, "v-7", &cid).await;
    assert_eq!(view["status"], "expired");
    let (status, body) = server.delete(&confirm_path("v-7"), &fred).await;
    assert_eq!((status, body["ended"].as_bool()), (200, Some(false)));

    // A newer prompt by the same agent replaces its open one.
    let first = start(&server, &fred, "v-7", json!({})).await;
    prompt(&mut visitor, &first["confirmation"]).await;
    let second = start(&server, &fred, "v-7", json!({})).await;
    let mut frames = [visitor.recv().await, visitor.recv().await];
    frames.sort_by_key(|f| f["type"].as_str().map(str::to_owned));
    assert_eq!(frames[0]["id"], second["confirmation"]);
    assert_eq!(
        frames[1],
        json!({"type":"confirm_closed","id":first["confirmation"],"status":"expired"})
    );
    assert_eq!(outcome(&mut console).await["id"], first["confirmation"]);
}
