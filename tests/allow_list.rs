//! The per-group invoke allow-list, over REST and over the agent socket.

mod common;

use common::TestServer;
use serde_json::json;

#[actix_web::test]
async fn only_listed_functions_reach_the_visitor() {
    let server = TestServer::start_with(|c| {
        c.groups[0].invoke_allow = vec!["showTerms".into(), "GLANCE.Cobrowse.Visitor.*".into()];
    })
    .await;
    let token = server.token("fred.demo", 72);
    let mut visitor = server.visitor("v-1", json!({})).await;

    for func in [
        "openPage",
        "showterms",
        "showTerms2",
        "GLANCE.Cobrowse.Agent.start",
        "GLANCE.Cobrowse.VisitorX",
    ] {
        let (status, body) = server.invoke(&token, "v-1", json!({"func": func})).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (403, Some("function_not_allowed")),
            "{func}"
        );
    }
    let (status, body) = server
        .invoke(&token, "v-1", json!({"func": "not valid!"}))
        .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("bad_request")));

    for func in ["showTerms", "GLANCE.Cobrowse.Visitor.start"] {
        let call = server.invoke(&token, "v-1", json!({"func": func}));
        let answer = visitor.answer(json!(func));
        let ((status, body), invoke) = tokio::join!(call, answer);
        assert_eq!((status, &body["value"]), (200, &json!(func)));
        assert_eq!(invoke["func"], func);
    }

    let mut agent = server.agent(&token).await;
    agent
        .send(json!({"type":"invoke","id":"r1","visitorid":"v-1","func":"openPage"}))
        .await;
    let err = agent.recv().await;
    assert_eq!(
        (err["id"].as_str(), err["code"].as_str()),
        (Some("r1"), Some("function_not_allowed"))
    );
    agent
        .send(json!({"type":"invoke","id":"r2","visitorid":"v-1","func":"showTerms"}))
        .await;
    visitor.answer(json!("ok")).await;
    assert_eq!(agent.recv().await["id"], "r2");
}

#[actix_web::test]
async fn an_empty_list_allows_nothing() {
    let server = TestServer::start_with(|c| c.groups[0].invoke_allow = Vec::new()).await;
    let token = server.token("fred.demo", 72);
    let _visitor = server.visitor("v-1", json!({})).await;
    let (status, body) = server
        .invoke(&token, "v-1", json!({"func": "showTerms"}))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("function_not_allowed"))
    );
}
