//! One verb, two transports: the agent operations answer a REST request and
//! an agent-socket frame with the same error code, because both call the
//! same core. Each case is tried over REST and over the socket, and the
//! codes must match each other and the documented one.

mod common;

use common::{assert_closed, TestServer};
use presence_server::config::Role;
use presence_server::token::Policy;
use serde_json::{json, Value};

/// Invokes `func` on `visitor` of `group` over REST: the status and code.
async fn rest_invoke(
    server: &TestServer,
    token: &str,
    group: u64,
    visitor: &str,
    func: &str,
) -> (u16, Option<String>) {
    let (status, body) = server
        .post(
            &format!("/presence/{group}/visitors/{visitor}/invoke"),
            Some(token),
            None,
            &json!({"func": func, "timeout_ms": 2000}),
        )
        .await;
    (status, body["error"].as_str().map(str::to_owned))
}

/// Looks `visitor` of `group` up over REST: the status and code.
async fn rest_lookup(
    server: &TestServer,
    token: &str,
    group: u64,
    visitor: &str,
) -> (u16, Option<String>) {
    let (status, body) = server
        .get(
            &format!("/presence/{group}/visitors/{visitor}"),
            Some(token),
            None,
        )
        .await;
    (status, body["error"].as_str().map(str::to_owned))
}

/// Sends `request` on an authenticated agent socket and returns the code
/// of the error frame answering it.
async fn socket_error(agent: &mut common::WsClient, request: Value) -> Option<String> {
    let id = request["id"].clone();
    agent.send(request).await;
    let answer = agent.recv().await;
    assert_eq!(answer["id"], id, "{answer}");
    assert_eq!(answer["type"], "error", "{answer}");
    answer["code"].as_str().map(str::to_owned)
}

#[actix_web::test]
async fn a_wrong_group_is_wrong_group_on_both_transports() {
    let server = TestServer::start().await;
    let token = server.token("fred.demo", 72);
    let _visitor = server.visitor("v-1", json!({})).await;
    let mut agent = server.agent(&token).await;

    let rest = rest_invoke(&server, &token, 73, "v-1", "showTerms").await;
    let socket = socket_error(
        &mut agent,
        json!({"type":"invoke","id":"i1","groupid":73,"visitorid":"v-1","func":"showTerms"}),
    )
    .await;
    assert_eq!(rest, (403, Some("wrong_group".into())));
    assert_eq!(socket.as_deref(), Some("wrong_group"));

    let rest = rest_lookup(&server, &token, 73, "v-1").await;
    let socket = socket_error(
        &mut agent,
        json!({"type":"lookup","id":"l1","groupid":73,"visitorid":"v-1"}),
    )
    .await;
    assert_eq!(rest, (403, Some("wrong_group".into())));
    assert_eq!(socket.as_deref(), Some("wrong_group"));

    // The token's own group, named or not, still works on the socket.
    agent
        .send(json!({"type":"lookup","id":"l2","groupid":72,"visitorid":"v-1"}))
        .await;
    let found = agent.recv().await;
    assert_eq!(
        (found["type"].as_str(), found["online"].as_bool()),
        (Some("lookup"), Some(true)),
        "{found}"
    );
}

#[actix_web::test]
async fn a_function_off_the_allow_list_is_not_allowed_on_both_transports() {
    let server = TestServer::start_with(|c| {
        c.groups[0].invoke_allow = vec!["showTerms".into()];
    })
    .await;
    let token = server.token("fred.demo", 72);
    let _visitor = server.visitor("v-1", json!({})).await;
    let mut agent = server.agent(&token).await;

    let rest = rest_invoke(&server, &token, 72, "v-1", "openPage").await;
    let socket = socket_error(
        &mut agent,
        json!({"type":"invoke","id":"i1","visitorid":"v-1","func":"openPage"}),
    )
    .await;
    assert_eq!(rest, (403, Some("function_not_allowed".into())));
    assert_eq!(socket.as_deref(), Some("function_not_allowed"));
}

#[actix_web::test]
async fn a_visitor_or_function_out_of_scope_answers_the_same_on_both_transports() {
    let server = TestServer::start().await;
    let policy = Policy::parse(&json!({
        "version": 1,
        "visitors": {"id_prefix": "vip-"},
        "functions": ["showTerms"],
    }))
    .expect("policy");
    let token = server
        .running()
        .tokens()
        .issue_scoped("fred.demo", 72, Role::Agent, 3600, None, Some(policy))
        .expect("issue")
        .token;
    let _outside = server.visitor("v-1", json!({})).await;
    let _inside = server.visitor("vip-1", json!({})).await;
    let mut agent = server.agent(&token).await;

    // A visitor outside the policy reads as not present, so it cannot be
    // probed, whichever way the agent asks.
    let rest = rest_invoke(&server, &token, 72, "v-1", "showTerms").await;
    let socket = socket_error(
        &mut agent,
        json!({"type":"invoke","id":"i1","visitorid":"v-1","func":"showTerms"}),
    )
    .await;
    assert_eq!(rest, (404, Some("visitor_not_present".into())));
    assert_eq!(socket.as_deref(), Some("visitor_not_present"));

    let rest = rest_lookup(&server, &token, 72, "v-1").await;
    let socket = socket_error(
        &mut agent,
        json!({"type":"lookup","id":"l1","visitorid":"v-1"}),
    )
    .await;
    assert_eq!(rest, (404, Some("visitor_not_present".into())));
    assert_eq!(socket.as_deref(), Some("visitor_not_present"));

    // A function outside the policy, on a visitor inside it.
    let rest = rest_invoke(&server, &token, 72, "vip-1", "openPage").await;
    let socket = socket_error(
        &mut agent,
        json!({"type":"invoke","id":"i2","visitorid":"vip-1","func":"openPage"}),
    )
    .await;
    assert_eq!(rest, (403, Some("function_not_allowed".into())));
    assert_eq!(socket.as_deref(), Some("function_not_allowed"));
}

#[actix_web::test]
async fn a_group_removed_from_the_config_is_unknown_group_on_both_transports() {
    let first = TestServer::start().await;
    // A token of group 73, whose signing key survives the restart.
    let token = first.token("olga", 73);
    let dir = first.shutdown().await;
    let server = TestServer::start_in(
        dir,
        |c| c.groups.retain(|g| g.id != 73),
        std::sync::Arc::new(presence_server::clock::SystemClock),
    )
    .await;

    let rest = rest_lookup(&server, &token, 73, "v-1").await;
    assert_eq!(rest, (404, Some("unknown_group".into())));
    let rest = rest_invoke(&server, &token, 73, "v-1", "showTerms").await;
    assert_eq!(rest, (404, Some("unknown_group".into())));

    // The socket checks at auth, with the same code, and closes.
    let mut agent = server.socket("/agent/ws", None).await.expect("connect");
    agent.send(json!({"type": "auth", "token": token})).await;
    let closed = agent.closed().await;
    assert_closed(&closed, awc::ws::CloseCode::Policy, "unknown_group");
}
