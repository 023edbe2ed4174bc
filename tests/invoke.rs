//! Invokes and signals: the round trip over REST and over the agent socket,
//! every failure code, tabs, and the reconnect grace period.

mod common;

use common::TestServer;
use serde_json::json;

#[actix_web::test]
async fn rest_invoke_round_trip_returns_the_visitors_value_and_errors() {
    let server = TestServer::start().await;
    let mut visitor = server.visitor("v-123", json!({"url":"/"})).await;
    let token = server.token("fred.demo", 72);

    let call = server.invoke(
        &token,
        "v-123",
        json!({"func":"showTerms","args":{"lang":"en"},"timeout_ms":5000}),
    );
    let answer = visitor.answer(json!({"accepted":true}));
    let ((status, body), invoke) = tokio::join!(call, answer);
    assert_eq!(invoke["func"], "showTerms");
    assert_eq!(invoke["args"], json!({"lang":"en"}));
    assert_eq!(status, 200);
    assert_eq!(body, json!({"ok":true,"value":{"accepted":true}}));

    let call = server.invoke(&token, "v-123", json!({"func":"openPage"}));
    let answer = async {
        let invoke = visitor.recv().await;
        assert_eq!(invoke["args"], json!(null));
        visitor
            .send(json!({"type":"result","id":invoke["id"],"ok":false,"error":"blocked by user"}))
            .await;
    };
    let ((status, body), ()) = tokio::join!(call, answer);
    assert_eq!(status, 200);
    assert_eq!(body, json!({"ok":false,"error":"blocked by user"}));
}

#[actix_web::test]
async fn agent_socket_invoke_round_trip() {
    let server = TestServer::start().await;
    let mut visitor = server.visitor("v-123", json!({})).await;
    let token = server.token("fred.demo", 72);
    let mut agent = server.agent(&token).await;
    agent
        .send(
            json!({"type":"invoke","id":"r1","visitorid":"v-123","func":"showTerms","args":[1,2]}),
        )
        .await;
    let invoke = visitor.recv().await;
    assert_eq!(invoke["args"], json!([1, 2]));
    visitor
        .send(json!({"type":"result","id":invoke["id"],"ok":true,"value":"yes"}))
        .await;
    assert_eq!(
        agent.recv().await,
        json!({"type":"result","id":"r1","ok":true,"value":"yes"})
    );

    agent
        .send(json!({"type":"invoke","id":"r2","visitorid":"nobody","func":"f"}))
        .await;
    let err = agent.recv().await;
    assert_eq!(err["type"], "error");
    assert_eq!(err["id"], "r2");
    assert_eq!(err["code"], "visitor_not_present");

    agent
        .send(json!({"type":"invoke","id":"r3","visitorid":"v-123","func":"f","timeout_ms":100}))
        .await;
    let _ignored = visitor.recv().await;
    let err = agent.recv().await;
    assert_eq!(
        (err["id"].clone(), err["code"].clone()),
        (json!("r3"), json!("invoke_timeout"))
    );

    agent
        .send(json!({"type":"invoke","id":"r4","visitorid":"v-123","func":"bad name()"}))
        .await;
    let err = agent.recv().await;
    assert_eq!(
        (err["id"].clone(), err["code"].clone()),
        (json!("r4"), json!("bad_request"))
    );
}

#[actix_web::test]
async fn an_offline_visitor_is_404() {
    let server = TestServer::start().await;
    let token = server.token("fred.demo", 72);
    let (status, body) = server.invoke(&token, "ghost", json!({"func":"f"})).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "visitor_not_present");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
}

#[actix_web::test]
async fn an_unanswered_invoke_times_out_with_504() {
    let server = TestServer::start().await;
    let mut visitor = server.visitor("v-1", json!({})).await;
    let token = server.token("fred.demo", 72);
    let (status, body) = server
        .invoke(&token, "v-1", json!({"func":"f","timeout_ms":150}))
        .await;
    assert_eq!(status, 504);
    assert_eq!(body["error"], "invoke_timeout");
    // A late result is harmless (it is dropped, or answered with an
    // `unknown_invoke` error frame once the session has forgotten the id),
    // and the socket stays usable.
    let late = visitor.recv().await;
    assert_eq!(late["type"], "invoke");
    visitor
        .send(json!({"type":"result","id":late["id"],"ok":true}))
        .await;
    let call = server.invoke(&token, "v-1", json!({"func":"again"}));
    let answer = async {
        loop {
            let frame = visitor.recv().await;
            if frame["type"] == "invoke" {
                visitor
                    .send(json!({"type":"result","id":frame["id"],"ok":true,"value":2}))
                    .await;
                return;
            }
            assert_eq!(frame["code"], "unknown_invoke", "{frame}");
        }
    };
    let ((status, body), ()) = tokio::join!(call, answer);
    assert_eq!((status, body), (200, json!({"ok":true,"value":2})));
}

#[actix_web::test]
async fn the_pending_limit_answers_429() {
    let server = TestServer::start_with(|c| c.presence.max_pending_invokes = 2).await;
    let mut visitor = server.visitor("v-1", json!({})).await;
    let token = server.token("fred.demo", 72);
    let first = server.invoke(&token, "v-1", json!({"func":"a"}));
    let second = server.invoke(&token, "v-1", json!({"func":"b"}));
    let drive = async {
        let a = visitor.recv().await;
        let b = visitor.recv().await;
        // Both are pending on the connection now: a third is refused.
        let (status, body) = server.invoke(&token, "v-1", json!({"func":"c"})).await;
        assert_eq!(status, 429);
        assert_eq!(body["error"], "too_many_pending");
        for frame in [a, b] {
            visitor
                .send(json!({"type":"result","id":frame["id"],"ok":true,"value":frame["func"]}))
                .await;
        }
    };
    let ((s1, b1), (s2, b2), ()) = tokio::join!(first, second, drive);
    assert_eq!((s1, s2), (200, 200));
    let mut values = vec![b1["value"].clone(), b2["value"].clone()];
    values.sort_by_key(|v| v.to_string());
    assert_eq!(values, vec![json!("a"), json!("b")]);
}

#[actix_web::test]
async fn invokes_go_to_the_most_recently_active_tab() {
    let server = TestServer::start().await;
    let token = server.token("fred.demo", 72);
    let mut agent = server.agent(&token).await;
    agent.send(json!({"type":"watch","visitorid":"v-1"})).await;
    assert_eq!(agent.recv().await["event"], "state");
    let mut tab_a = server.visitor("v-1", json!({"url":"/a"})).await;
    assert_eq!(agent.recv().await["event"], "connected");
    let mut tab_b = server.visitor("v-1", json!({"url":"/b"})).await;
    assert_eq!(agent.recv().await["event"], "presence");
    server
        .once_seen("both tabs", || async {
            let (_, doc) = server
                .get("/presence/72/visitors/v-1", Some(&token), None)
                .await;
            (doc["connections"] == 2).then_some(())
        })
        .await;

    let call = server.invoke(&token, "v-1", json!({"func":"whoami"}));
    let answer = tab_b.answer(json!("b"));
    let ((_, body), _) = tokio::join!(call, answer);
    assert_eq!(body["value"], "b");

    // Tab A becomes the most recently active by publishing presence.
    tab_a
        .send(json!({"type":"presence","data":{"url":"/a2"}}))
        .await;
    assert_eq!(agent.recv().await["event"], "presence");
    server
        .once_seen("tab A's update", || async {
            let (_, doc) = server
                .get("/presence/72/visitors/v-1", Some(&token), None)
                .await;
            (doc["data"]["url"] == "/a2").then_some(())
        })
        .await;
    let call = server.invoke(&token, "v-1", json!({"func":"whoami"}));
    let answer = tab_a.answer(json!("a"));
    let ((_, body), _) = tokio::join!(call, answer);
    assert_eq!(body["value"], "a");

    // Closing a tab leaves the other reachable, with no offline event.
    tab_a.close().await;
    let call = server.invoke(&token, "v-1", json!({"func":"whoami"}));
    let answer = tab_b.answer(json!("b"));
    let ((_, body), _) = tokio::join!(call, answer);
    assert_eq!(body["value"], "b");
}

#[actix_web::test]
async fn an_invoke_during_page_navigation_waits_for_the_new_socket() {
    let server = TestServer::start().await;
    let token = server.token("fred.demo", 72);
    let visitor = server.visitor("v-nav", json!({"url":"/page1"})).await;
    visitor.close().await;

    let mut agent = server.agent(&token).await;
    agent
        .send(
            json!({"type":"invoke","id":"r1","visitorid":"v-nav","func":"showMessage","args":"hi"}),
        )
        .await;
    // The closed socket stopped counting before its close frame went out;
    // the visitor is still present, in its grace period. The invoke was
    // handed to the registry before this lookup was read, and the new
    // page's hello reaches the registry after it, so the invoke is parked
    // and then delivered.
    agent
        .send(json!({"type":"lookup","id":"l1","visitorid":"v-nav"}))
        .await;
    let lookup = agent.recv().await;
    assert_eq!(lookup["type"], "lookup");
    assert_eq!(
        lookup["online"], true,
        "still present during the grace period: {lookup}"
    );
    assert_eq!(lookup["connections"], 0);

    let mut next_page = server.socket("/visitor/ws", None).await.expect("connect");
    next_page
        .send(json!({"type":"hello","groupid":72,"visitorid":"v-nav","data":{"url":"/page2"}}))
        .await;
    assert_eq!(next_page.recv().await["type"], "welcome");
    let invoke = next_page.recv().await;
    assert_eq!(invoke["func"], "showMessage");
    next_page
        .send(json!({"type":"result","id":invoke["id"],"ok":true,"value":"shown"}))
        .await;
    assert_eq!(
        agent.recv().await,
        json!({"type":"result","id":"r1","ok":true,"value":"shown"})
    );
}

#[actix_web::test]
async fn a_parked_invoke_fails_when_the_grace_period_ends() {
    let server = TestServer::start_with(|c| c.presence.reconnect_grace_ms = 200).await;
    let token = server.token("fred.demo", 72);
    let visitor = server.visitor("v-gone", json!({})).await;
    visitor.close().await;
    let (status, body) = server
        .invoke(&token, "v-gone", json!({"func":"f","timeout_ms":10000}))
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"], "visitor_not_present");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("offline")),
        "{body}"
    );
}

#[actix_web::test]
async fn an_invoke_in_flight_fails_at_once_when_its_socket_closes() {
    let server = TestServer::start().await;
    let token = server.token("fred.demo", 72);
    let mut visitor = server.visitor("v-1", json!({})).await;
    let call = server.invoke(&token, "v-1", json!({"func":"f","timeout_ms":60000}));
    let close = async {
        let _invoke = visitor.recv().await;
        visitor.close().await;
    };
    let ((status, body), ()) = tokio::join!(call, close);
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"], "visitor_not_present");
}

#[actix_web::test]
async fn signals_are_delivered_with_202_or_refused_with_404() {
    let server = TestServer::start().await;
    let token = server.token("fred.demo", 72);
    let mut visitor = server.visitor("v-1", json!({})).await;
    let (status, _) = server
        .post(
            "/presence/72/visitors/v-1/signal",
            Some(&token),
            None,
            &json!({"data":{"note":"hello"}}),
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(
        visitor.recv().await,
        json!({"type":"signal","data":{"note":"hello"}})
    );

    let (status, body) = server
        .post(
            "/presence/72/visitors/ghost/signal",
            Some(&token),
            None,
            &json!({"data":1}),
        )
        .await;
    assert_eq!(
        (status, body["error"].clone()),
        (404, json!("visitor_not_present"))
    );

    let mut agent = server.agent(&token).await;
    agent
        .send(json!({"type":"signal","id":"s1","visitorid":"v-1","data":[true]}))
        .await;
    assert_eq!(visitor.recv().await, json!({"type":"signal","data":[true]}));
    assert_eq!(agent.recv().await, json!({"type":"signal_sent","id":"s1"}));
}

#[actix_web::test]
async fn malformed_rest_bodies_get_400_with_a_json_error() {
    let server = TestServer::start().await;
    let token = server.token("fred.demo", 72);
    let _visitor = server.visitor("v-1", json!({})).await;
    for body in [
        json!({}),
        json!({"func": 5}),
        json!({"func": "f", "timeout_ms": -1}),
        json!({"func": "f", "timeout_ms": 0}),
        json!({"func": "f", "timeout_ms": 999_999_999}),
        json!({"func": "not a name"}),
        json!({"func": "f", "surprise": 1}),
        json!([1, 2]),
    ] {
        let (status, resp) = server.invoke(&token, "v-1", body.clone()).await;
        assert_eq!(status, 400, "{body} -> {resp}");
        assert_eq!(resp["error"], "bad_request", "{body}");
    }
    let (status, resp) = server.invoke(&token, "bad%20id", json!({"func":"f"})).await;
    assert_eq!((status, resp["error"].clone()), (400, json!("bad_request")));

    let mut req = server
        .http
        .post(server.url("/presence/72/visitors/v-1/invoke"));
    req = req.insert_header(("Authorization", format!("Bearer {token}")));
    let mut resp = req
        .insert_header(("Content-Type", "application/json"))
        .send_body("{not json")
        .await
        .expect("response");
    assert_eq!(resp.status().as_u16(), 400);
    let body: serde_json::Value = resp.json().await.expect("json error body");
    assert_eq!(body["error"], "bad_request");
}

#[actix_web::test]
async fn unknown_paths_and_methods_get_json_errors() {
    let server = TestServer::start().await;
    let (status, body) = server.get("/nope", None, None).await;
    assert_eq!((status, body["error"].clone()), (404, json!("not_found")));
    let (status, body) = server
        .get("/presence/72/visitors/v-1/invoke", None, None)
        .await;
    assert_eq!(
        (status, body["error"].clone()),
        (405, json!("method_not_allowed"))
    );
    // The 405 names the methods the path serves.
    for (path, allow) in [
        ("/presence/72/visitors/v-1/invoke", "POST"),
        ("/presence/72/visitors/v-1/confirm", "POST, DELETE"),
        ("/healthz", "GET"),
    ] {
        let resp = server
            .http
            .put(server.url(path))
            .send()
            .await
            .expect("response");
        assert_eq!(resp.status().as_u16(), 405, "{path}");
        assert_eq!(resp.headers().get("allow").unwrap(), allow, "{path}");
    }
    let (status, body) = server.get("/healthz", None, None).await;
    assert_eq!((status, body["status"].clone()), (200, json!("ok")));
    // The API document, served without a token.
    let (status, doc) = server.get("/openapi.json", None, None).await;
    assert_eq!((status, doc["openapi"].clone()), (200, json!("3.1.0")));
}
