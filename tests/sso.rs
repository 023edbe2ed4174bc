//! Agent single sign-on with customer-signed JWTs, scoping policies and the
//! administrator API. Tokens are signed with the test keys in tests/keys.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use actix_web_actors::ws::CloseCode;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::{assert_closed, without_lockout, TestServer};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use presence_server::config::{Config, SsoAlgorithm, SsoConfig, UserConfig};
use serde_json::{json, Value};

const ISSUER: &str = "acme-license-72";
/// The test config's `server.public_url`, the default audience.
const AUDIENCE: &str = "http://127.0.0.1:8080";

fn key_path(name: &str) -> String {
    format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(key_path(name)).expect("test key")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("time")
        .as_secs()
}

/// Group 72 accepts SSO from keys a and b (inline PEM and a path), RS256.
fn with_sso(config: &mut Config) {
    without_lockout(config);
    config.groups[0].sso = Some(SsoConfig {
        issuer: ISSUER.into(),
        audience: None,
        public_keys: vec![
            String::from_utf8(pem("group72-a.pub.pem")).expect("pem"),
            key_path("group72-b.pub.pem"),
        ],
        algorithms: vec![SsoAlgorithm::RS256],
        allow_admin_role: false,
        auto_provision: true,
        require_jti: true,
        login_url: Some("https://idp.acme.test/presence?tenant=acme".into()),
    });
}

/// Configures ops@acme.test as an agent of group 72.
fn add_ops_agent(config: &mut Config) {
    config.groups[0].users.push(UserConfig {
        username: "ops@acme.test".into(),
        password_hash: None,
        partner_user_id: None,
        role: Default::default(),
        name: Some("Ops Desk".into()),
    });
}

fn claims(sub: &str) -> Value {
    let t = now();
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": t, "exp": t + 600,
           "jti": presence_server::ids::random_id(12), "displayName": "Jane Doe"})
}

fn sign_with(key: &str, header: Header, claims: &Value) -> String {
    let key = match header.alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem(key)),
        _ => EncodingKey::from_rsa_pem(&pem(key)),
    }
    .expect("signing key");
    jsonwebtoken::encode(&header, claims, &key).expect("sign")
}

fn sign(claims: &Value) -> String {
    sign_with("group72-a.key.pem", Header::new(Algorithm::RS256), claims)
}

async fn exchange(server: &TestServer, jwt: &str) -> (u16, Value) {
    server
        .post(
            "/auth/token",
            None,
            None,
            &json!({"groupid": 72, "credentials": {"jwt": jwt}}),
        )
        .await
}

async fn token_for(server: &TestServer, claims: &Value) -> String {
    let (status, body) = exchange(server, &sign(claims)).await;
    assert_eq!(status, 200, "{body}");
    body["token"].as_str().expect("token").to_owned()
}

#[actix_web::test]
async fn a_customer_signed_token_signs_an_agent_in_and_provisions_it() {
    let server = TestServer::start_with(with_sso).await;
    let (status, body) = exchange(&server, &sign(&claims("jane@acme.test"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["username"].as_str(), body["role"].as_str()),
        (Some("jane@acme.test"), Some("agent"))
    );
    let token = body["token"].as_str().expect("token");
    let (status, _) = server
        .get("/presence/72/visitors/v-1", Some(token), None)
        .await;
    assert_eq!(status, 200);

    // The second configured key (a file path) works too: keys can rotate.
    let rotated = sign_with(
        "group72-b.key.pem",
        Header::new(Algorithm::RS256),
        &claims("jane@acme.test"),
    );
    assert_eq!(exchange(&server, &rotated).await.0, 200);

    // The display name reaches the visitor's confirmation prompt.
    let mut visitor = server.visitor("v-1", json!({})).await;
    let (status, _) = server
        .post(
            "/presence/72/visitors/v-1/confirm",
            Some(token),
            None,
            &json!({}),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(visitor.recv().await["agent"]["name"], "Jane Doe");

    let admin = server.admin_token("ada.admin", 72);
    let (status, list) = server.get("/admin/72/agents", Some(&admin), None).await;
    assert_eq!(status, 200, "{list}");
    let agents = list["agents"].as_array().expect("agents");
    let jane = agents
        .iter()
        .find(|a| a["username"] == "jane@acme.test")
        .expect("provisioned");
    assert_eq!(
        (jane["source"].as_str(), jane["name"].as_str()),
        (Some("sso"), Some("Jane Doe"))
    );
    assert!(jane["first_seen"].as_u64().is_some() && jane["last_seen"].as_u64().is_some());
    let fred = agents
        .iter()
        .find(|a| a["username"] == "fred.demo")
        .expect("configured");
    assert_eq!(
        (fred["source"].as_str(), &fred["last_seen"]),
        (Some("config"), &Value::Null)
    );

    // The audit log names the credential kind.
    let (_, audit) = server
        .get(
            "/admin/72/audit?username=jane@acme.test",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(audit["records"][0]["credential"], "sso", "{audit}");
}

#[actix_web::test]
async fn forged_and_misdirected_tokens_are_refused() {
    let server = TestServer::start_with(with_sso).await;
    let t = now();
    let with = |patch: Value| {
        let mut c = claims("jane@acme.test");
        for (k, v) in patch.as_object().expect("object") {
            if v.is_null() {
                c.as_object_mut().expect("object").remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let public_pem = pem("group72-a.pub.pem");
    let hs_confusion = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims("jane@acme.test"),
        &EncodingKey::from_secret(&public_pem),
    )
    .expect("sign");
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims("jane@acme.test").to_string())
    );
    let header_with = |set: &dyn Fn(&mut Header)| {
        let mut header = Header::new(Algorithm::RS256);
        set(&mut header);
        sign_with("group72-a.key.pem", header, &claims("jane@acme.test"))
    };
    let cases: Vec<(&str, String)> = vec![
        (
            "wrong aud",
            sign(&with(json!({"aud": "https://elsewhere.test"}))),
        ),
        ("wrong iss", sign(&with(json!({"iss": "someone-else"})))),
        (
            "another group's key",
            sign_with(
                "group73.key.pem",
                Header::new(Algorithm::RS256),
                &claims("jane@acme.test"),
            ),
        ),
        ("HS256 keyed with the public PEM", hs_confusion),
        ("alg none", none),
        (
            "expired",
            sign(&with(json!({"iat": t - 700, "exp": t - 10}))),
        ),
        (
            "issued in the future",
            sign(&with(json!({"iat": t + 60, "exp": t + 600}))),
        ),
        (
            "lifetime over a day",
            sign(&with(json!({"iat": t, "exp": t + 86_401}))),
        ),
        ("no iat", sign(&with(json!({"iat": null})))),
        ("nbf in the future", sign(&with(json!({"nbf": t + 60})))),
        ("nbf not a number", sign(&with(json!({"nbf": "soon"})))),
        ("nbf a fraction", sign(&with(json!({"nbf": 1.5})))),
        ("no sub", sign(&with(json!({"sub": null})))),
        ("sub not an email", sign(&with(json!({"sub": "jane"})))),
        ("unknown role", sign(&with(json!({"role": "root"})))),
        (
            "jku header",
            header_with(&|h| h.jku = Some("https://evil.test/jwks.json".into())),
        ),
        (
            "x5u header",
            header_with(&|h| h.x5u = Some("https://evil.test/cert.pem".into())),
        ),
        (
            "ES256 not allowed",
            sign_with(
                "group72-ec.key.pem",
                Header::new(Algorithm::ES256),
                &claims("jane@acme.test"),
            ),
        ),
        ("garbage", "not.a.jwt".into()),
    ];
    for (what, jwt) in cases {
        let (status, body) = exchange(&server, &jwt).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_credentials")),
            "{what}: {body}"
        );
    }
    // A token of this group's key is not a credential for another group.
    let (status, _) = server
        .post(
            "/auth/token",
            None,
            None,
            &json!({"groupid": 73, "credentials": {"jwt": sign(&claims("jane@acme.test"))}}),
        )
        .await;
    assert_eq!(status, 401);

    // Each jti is good once within its lifetime.
    let once = sign(&claims("jane@acme.test"));
    assert_eq!(exchange(&server, &once).await.0, 200);
    let (status, body) = exchange(&server, &once).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_credentials"))
    );
    // nbf gets the leeway exp gets, and a past nbf is fine.
    for nbf in [t - 600, t + 4] {
        let (status, body) = exchange(&server, &sign(&with(json!({"nbf": nbf})))).await;
        assert_eq!(status, 200, "nbf {nbf}: {body}");
    }
}

/// The audit reasons of the group's refused sign-ins, newest first.
async fn refusal_reasons(server: &TestServer) -> Vec<String> {
    let admin = server.admin_token("ada.admin", 72);
    let (status, page) = server.get("/admin/72/audit", Some(&admin), None).await;
    assert_eq!(status, 200, "{page}");
    page["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter_map(|r| r["reason"].as_str().map(str::to_owned))
        .collect()
}

#[actix_web::test]
async fn a_token_without_jti_is_refused_unless_the_group_allows_it() {
    // A configured agent, so the group's audit log shows the reason.
    let ops = |c: &mut Config| {
        with_sso(c);
        add_ops_agent(c);
    };
    let server = TestServer::start_with(ops).await;
    let mut no_jti = claims("ops@acme.test");
    no_jti.as_object_mut().expect("object").remove("jti");
    let (status, body) = exchange(&server, &sign(&no_jti)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_credentials")),
        "{body}"
    );
    assert_eq!(
        refusal_reasons(&server).await.first().map(String::as_str),
        Some("sso_jti_missing")
    );

    // With require_jti = false such a token cannot be tracked, so it stays
    // reusable for its lifetime; that is the trade-off the switch makes.
    let lax = TestServer::start_with(|c| {
        ops(c);
        if let Some(sso) = c.groups[0].sso.as_mut() {
            sso.require_jti = false;
        }
    })
    .await;
    let token = sign(&no_jti);
    assert_eq!(exchange(&lax, &token).await.0, 200);
    assert_eq!(exchange(&lax, &token).await.0, 200);
}

#[actix_web::test]
async fn the_administrator_role_is_honoured_only_where_allowed() {
    let server = TestServer::start_with(with_sso).await;
    let mut admin_claims = claims("boss@acme.test");
    admin_claims["role"] = json!("administrator");
    let (status, body) = exchange(&server, &sign(&admin_claims)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("role_not_allowed"))
    );

    let server = TestServer::start_with(|c| {
        with_sso(c);
        if let Some(sso) = c.groups[0].sso.as_mut() {
            sso.allow_admin_role = true;
        }
    })
    .await;
    let admin = token_for(&server, &admin_claims).await;
    let (status, _) = server.get("/admin/72/agents", Some(&admin), None).await;
    assert_eq!(status, 200);
    let agent = token_for(&server, &claims("jane@acme.test")).await;
    let (status, body) = server.get("/admin/72/agents", Some(&agent), None).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("forbidden")));
}

#[actix_web::test]
async fn without_auto_provisioning_only_known_agents_get_in() {
    let server = TestServer::start_with(|c| {
        with_sso(c);
        if let Some(sso) = c.groups[0].sso.as_mut() {
            sso.auto_provision = false;
        }
        add_ops_agent(c);
    })
    .await;
    let (status, body) = exchange(&server, &sign(&claims("stranger@acme.test"))).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("unknown_agent"))
    );
    let (status, body) = exchange(&server, &sign(&claims("ops@acme.test"))).await;
    assert_eq!(status, 200, "{body}");
}

/// A policy reaching acct-42-* visitors in region eu, and only showTerms.
fn scoped(sub: &str) -> Value {
    let mut c = claims(sub);
    c["policy"] = json!({"version": 1,
        "visitors": {"id_prefix": "acct-42-", "data": {"region": "eu"}},
        "functions": ["showTerms"]});
    c
}

#[actix_web::test]
async fn a_policy_is_enforced_on_every_endpoint() {
    let server = TestServer::start_with(with_sso).await;
    let token = token_for(&server, &scoped("scoped@acme.test")).await;
    let mut inside = server.visitor("acct-42-1", json!({"region": "eu"})).await;
    let mut wrong_region = server.visitor("acct-42-2", json!({"region": "us"})).await;
    let _wrong_prefix = server.visitor("acct-43-1", json!({"region": "eu"})).await;

    let lookup = |id: &str| format!("/presence/72/visitors/{id}");
    assert_eq!(
        server.get(&lookup("acct-42-1"), Some(&token), None).await.0,
        200
    );
    for outside in ["acct-42-2", "acct-43-1", "acct-42-offline"] {
        let (status, body) = server.get(&lookup(outside), Some(&token), None).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (404, Some("visitor_not_present")),
            "{outside} must read as not present"
        );
    }

    let call = server.invoke(&token, "acct-42-1", json!({"func": "showTerms"}));
    let ((status, _), _) = tokio::join!(call, inside.answer(json!(true)));
    assert_eq!(status, 200);
    let (status, body) = server
        .invoke(&token, "acct-42-1", json!({"func": "openPage"}))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("function_not_allowed"))
    );
    let (status, body) = server
        .invoke(&token, "acct-43-1", json!({"func": "showTerms"}))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("visitor_not_present"))
    );

    let signal = |id: &str| format!("/presence/72/visitors/{id}/signal");
    let confirm = |id: &str| format!("/presence/72/visitors/{id}/confirm");
    let body = json!({"data": 1});
    assert_eq!(
        server
            .post(&signal("acct-42-2"), Some(&token), None, &body)
            .await
            .0,
        404
    );
    assert_eq!(
        server
            .post(&confirm("acct-42-2"), Some(&token), None, &json!({}))
            .await
            .0,
        404
    );
    assert_eq!(
        server
            .post(&signal("acct-42-1"), Some(&token), None, &body)
            .await
            .0,
        202
    );
    assert_eq!(inside.recv().await["type"], "signal");
    assert_eq!(
        server
            .post(&confirm("acct-42-1"), Some(&token), None, &json!({}))
            .await
            .0,
        201
    );
    assert_eq!(inside.recv().await["type"], "confirm");

    // Session keys: a visitor outside the policy is a miss.
    wrong_region.send(json!({"type": "session_key"})).await;
    let key = wrong_region.recv().await["key"]
        .as_str()
        .expect("key")
        .to_owned();
    let (status, body) = server
        .get(&format!("/presence/72/sessions/{key}"), Some(&token), None)
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("session_key_not_found"))
    );
    inside.send(json!({"type": "session_key"})).await;
    let key = inside.recv().await["key"].as_str().expect("key").to_owned();
    let (status, _) = server
        .get(&format!("/presence/72/sessions/{key}"), Some(&token), None)
        .await;
    assert_eq!(status, 200);

    // The agent socket: watch shows an outside visitor as offline; lookup,
    // invoke and confirm say it is not present.
    let mut console = server.agent(&token).await;
    console
        .send(json!({"type": "watch", "visitorid": "acct-42-2"}))
        .await;
    let state = console.recv().await;
    assert_eq!(
        (state["online"].as_bool(), &state["data"]),
        (Some(false), &json!({})),
        "{state}"
    );
    for frame in [
        json!({"type": "lookup", "id": "a", "visitorid": "acct-42-2"}),
        json!({"type": "invoke", "id": "b", "visitorid": "acct-43-1", "func": "showTerms"}),
        json!({"type": "confirm", "id": "c", "visitorid": "acct-42-2"}),
    ] {
        console.send(frame.clone()).await;
        let error = console.recv().await;
        assert_eq!(error["code"], "visitor_not_present", "{frame}: {error}");
    }
    console
        .send(json!({"type": "invoke", "id": "d", "visitorid": "acct-42-1", "func": "openPage"}))
        .await;
    assert_eq!(console.recv().await["code"], "function_not_allowed");

    // When the visitor's data changes into scope, it appears.
    wrong_region
        .send(json!({"type": "presence", "data": {"region": "eu"}}))
        .await;
    let event = console.recv().await;
    assert_eq!(
        (event["event"].as_str(), event["online"].as_bool()),
        (Some("presence"), Some(true))
    );
    assert_eq!(
        server.get(&lookup("acct-42-2"), Some(&token), None).await.0,
        200
    );
}

#[actix_web::test]
async fn an_empty_policy_grants_nothing_and_a_bad_one_is_refused() {
    let server = TestServer::start_with(with_sso).await;
    let _visitor = server.visitor("acct-42-1", json!({"region": "eu"})).await;
    let mut empty = claims("empty@acme.test");
    empty["policy"] = json!({});
    let token = token_for(&server, &empty).await;
    let (status, _) = server
        .get("/presence/72/visitors/acct-42-1", Some(&token), None)
        .await;
    assert_eq!(status, 404);

    for policy in [
        json!({"version": 2}),
        json!({"version": 1, "visitors": {"id_prefix": "a", "regoin": "eu"}}),
        json!({"version": 1, "groups": [72]}),
        json!({"functions": "showTerms"}),
        json!("everything"),
    ] {
        let mut c = claims("bad@acme.test");
        c["policy"] = policy.clone();
        let (status, body) = exchange(&server, &sign(&c)).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("bad_policy")),
            "{policy}"
        );
    }
}

#[actix_web::test]
async fn administrators_page_through_online_visitors() {
    let server = TestServer::start_with(with_sso).await;
    let admin = server.admin_token("ada.admin", 72);
    let mut sockets = Vec::new();
    for (id, region) in [("v-a", "eu"), ("v-b", "us"), ("v-c", "eu"), ("v-d", "eu")] {
        sockets.push(
            server
                .visitor(id, json!({"region": region, "tier": 2}))
                .await,
        );
    }
    let (status, page) = server
        .get(
            "/presence/72/visitors?limit=2&data.region=eu",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let ids = |page: &Value| -> Vec<String> {
        page["visitors"]
            .as_array()
            .expect("visitors")
            .iter()
            .map(|v| v["visitorid"].as_str().expect("id").to_owned())
            .collect()
    };
    assert_eq!(ids(&page), ["v-a", "v-c"]);
    let cursor = page["next_cursor"].as_str().expect("more").to_owned();
    let (_, page) = server
        .get(
            &format!("/presence/72/visitors?limit=2&data.region=eu&cursor={cursor}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(ids(&page), ["v-d"]);
    assert_eq!(page["next_cursor"], Value::Null);
    assert_eq!(page["visitors"][0]["data"]["tier"], 2);
    let (_, page) = server
        .get("/presence/72/visitors?data.tier=2", Some(&admin), None)
        .await;
    assert_eq!(ids(&page).len(), 4, "numbers match their decimal text");

    for bad in [
        "limit=0",
        "limit=1001",
        "limit=x",
        "sort=id",
        "cursor=a%20b",
        "data.=x",
    ] {
        let (status, body) = server
            .get(&format!("/presence/72/visitors?{bad}"), Some(&admin), None)
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("bad_request")),
            "{bad}"
        );
    }
    let agent = server.token("fred.demo", 72);
    let (status, body) = server
        .get("/presence/72/visitors", Some(&agent), None)
        .await;
    assert_eq!((status, body["error"].as_str()), (403, Some("forbidden")));
    let other_admin = server.admin_token("multi", 73);
    assert_eq!(
        server.status("/presence/72/visitors", &other_admin).await,
        403
    );
}

#[actix_web::test]
async fn revoking_an_agent_ends_all_its_tokens_and_closes_its_sockets() {
    let server = TestServer::start_with(with_sso).await;
    let first = token_for(&server, &claims("jane@acme.test")).await;
    let second = token_for(&server, &claims("jane@acme.test")).await;
    let other = token_for(&server, &claims("joe@acme.test")).await;
    let mut console = server.agent(&first).await;
    let admin = server.admin_token("ada.admin", 72);

    let agent = server.token("fred.demo", 72);
    let path = "/admin/72/agents/jane@acme.test/revoke";
    let (status, _) = server.post(path, Some(&agent), None, &json!({})).await;
    assert_eq!(status, 403, "agents cannot revoke others");

    let (status, body) = server.post(path, Some(&admin), None, &json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (
            body["tokens_revoked"].as_u64(),
            body["sockets_closed"].as_u64()
        ),
        (Some(2), Some(1))
    );
    assert_closed(&console.closed().await, CloseCode::Policy, "token_revoked");
    for token in [&first, &second] {
        let (status, _) = server
            .get("/presence/72/visitors/v-1", Some(token), None)
            .await;
        assert_eq!(status, 401);
    }
    let (status, _) = server
        .get("/presence/72/visitors/v-1", Some(&other), None)
        .await;
    assert_eq!(status, 200, "other agents keep their tokens");

    let (status, body) = server
        .post(
            "/admin/72/agents/nobody@acme.test/revoke",
            Some(&admin),
            None,
            &json!({}),
        )
        .await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
}

#[actix_web::test]
async fn the_ready_frame_lists_only_the_functions_the_policy_allows() {
    let server = TestServer::start_with(with_sso).await;
    let token = token_for(&server, &scoped("scoped@acme.test")).await;
    let mut ws = server.socket("/agent/ws", None).await.expect("connect");
    ws.send(json!({"type": "auth", "token": token})).await;
    let ready = ws.recv().await;
    assert_eq!(
        (ready["role"].as_str(), &ready["functions"]),
        (Some("agent"), &json!(["showTerms"])),
        "{ready}"
    );
}

#[actix_web::test]
async fn sso_sign_in_starts_at_the_customers_page_and_returns_to_the_console() {
    let server = TestServer::start_with(with_sso).await;
    let client = awc::Client::builder().disable_redirects().finish();
    let start = |query: &str| {
        let request = client.get(server.url(&format!("/auth/sso/72{query}")));
        async move { request.send().await.expect("response") }
    };
    let resp = start("?return_to=%2Fconsole%2Fview%3Fgroupid%3D72%26visitorid%3Dv-1").await;
    assert_eq!(resp.status().as_u16(), 302);
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("location");
    let target = url::Url::parse(location).expect("absolute URL");
    assert_eq!(
        (target.host_str(), target.path()),
        (Some("idp.acme.test"), "/presence")
    );
    let pairs: Vec<(String, String)> = target.query_pairs().into_owned().collect();
    assert_eq!(
        pairs,
        vec![
            ("tenant".into(), "acme".into()),
            ("groupid".into(), "72".into()),
            (
                "return_to".into(),
                format!("{AUDIENCE}/console/view?groupid=72&visitorid=v-1")
            ),
        ]
    );
    // Without return_to the agent comes back to the console's home.
    let resp = start("").await;
    let location = resp.headers().get("location").expect("location");
    assert!(
        location
            .to_str()
            .expect("ascii")
            .ends_with("return_to=http%3A%2F%2F127.0.0.1%3A8080%2Fconsole"),
        "{location:?}"
    );

    // Never an open redirect, nor a redirect anywhere but the console.
    for bad in [
        "?return_to=https%3A%2F%2Fevil.example%2Fconsole",
        "?return_to=%2F%2Fevil.example%2Fconsole",
        "?return_to=%2Fadmin%2F72%2Faudit",
        "?return_to=%2Fconsole%2F..%2Fadmin",
        "?next=%2Fconsole",
    ] {
        let mut resp = start(bad).await;
        assert_eq!(resp.status().as_u16(), 400, "{bad}");
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["error"], "bad_request", "{bad}");
    }
    // Group 73 has no SSO; group 99 does not exist.
    let (status, body) = server.get("/auth/sso/73", None, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("sso_not_configured"))
    );
    let (status, body) = server.get("/auth/sso/99", None, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("unknown_group"))
    );
}
