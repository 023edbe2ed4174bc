//! Security review, item 1: a website session never signs into another
//! tenant. `multi` is an agent of group 72 and an administrator of group 73,
//! with a different password in each.

mod common;

use common::{TestServer, ORIGIN_72, ORIGIN_73, PASSWORD};
use presence_server::config::Config;
use secrecy::SecretString;
use serde_json::{json, Value};

/// Group 73's own password of `multi`.
const PASSWORD_73: &str = "group-73-admin-pass";

fn distinct_passwords(config: &mut Config) {
    let hash = presence_server::password::hash_password(PASSWORD_73).expect("hash");
    let group = config.groups.iter_mut().find(|g| g.id == 73).expect("73");
    let multi = group
        .users
        .iter_mut()
        .find(|u| u.username == "multi")
        .expect("multi in 73");
    multi.password_hash = Some(SecretString::from(hash));
}

async fn login(server: &TestServer, body: Value) -> (u16, Value, Option<String>) {
    let mut resp = server
        .http
        .post(server.url("/auth/login"))
        .send_json(&body)
        .await
        .expect("login");
    let cookie = resp.cookie("gssnid").map(|c| c.value().to_owned());
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    (resp.status().as_u16(), body, cookie)
}

async fn token_from_cookie(
    server: &TestServer,
    group: u64,
    cookie: &str,
    origin: &str,
) -> (u16, Value) {
    let mut resp = server
        .http
        .post(server.url("/auth/token"))
        .insert_header(("Origin", origin))
        .cookie(awc::cookie::Cookie::new("gssnid", cookie.to_owned()))
        .send_json(&json!({"groupid": group, "credentials": {}}))
        .await
        .expect("token");
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    (resp.status().as_u16(), body)
}

#[actix_web::test]
async fn a_session_issues_tokens_for_its_own_group_only() {
    let server = TestServer::start_with(distinct_passwords).await;

    // Several groups have the name: the group must be said.
    let (status, body, _) = login(&server, json!({"username":"multi","password":PASSWORD})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("groupid_required")),
        "{body}"
    );

    // Group 72's password signs in to 72, and the session stays there.
    let (status, body, cookie) = login(
        &server,
        json!({"groupid":72,"username":"multi","password":PASSWORD}),
    )
    .await;
    assert_eq!(
        (status, body["groupid"].as_u64()),
        (200, Some(72)),
        "{body}"
    );
    let cookie = cookie.expect("session cookie");
    let (status, body) = token_from_cookie(&server, 73, &cookie, ORIGIN_73).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("not_a_member")),
        "the cross-tenant token: {body}"
    );
    let (status, body) = token_from_cookie(&server, 72, &cookie, ORIGIN_72).await;
    assert_eq!(
        (status, body["role"].as_str()),
        (200, Some("agent")),
        "{body}"
    );
    let (status, body) = server
        .post(
            "/auth/token",
            None,
            None,
            &json!({"groupid":73,"credentials":{"gssnid":cookie}}),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("not_a_member"))
    );

    // Group 72's password is no credential for 73, even naming 73.
    let (status, body, cookie) = login(
        &server,
        json!({"groupid":73,"username":"multi","password":PASSWORD}),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str(), cookie),
        (401, Some("invalid_credentials"), None)
    );

    // Group 73's own password now signs in there, as administrator.
    let (status, body, cookie) = login(
        &server,
        json!({"groupid":73,"username":"multi","password":PASSWORD_73}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = token_from_cookie(&server, 73, &cookie.expect("cookie"), ORIGIN_73).await;
    assert_eq!(
        (status, body["role"].as_str()),
        (200, Some("administrator")),
        "{body}"
    );
    let admin = body["token"].as_str().expect("token").to_owned();
    let (status, _) = server.get("/admin/73/agents", Some(&admin), None).await;
    assert_eq!(status, 200);

    // A username in one group needs no groupid; an unknown group is 404.
    let (status, body, _) = login(&server, json!({"username":"olga","password":PASSWORD})).await;
    assert_eq!(
        (status, body["groupid"].as_u64()),
        (200, Some(73)),
        "{body}"
    );
    let (status, body, _) = login(
        &server,
        json!({"groupid":999,"username":"olga","password":PASSWORD}),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("unknown_group"))
    );
    // And olga's password is not checked against another group's record.
    let (status, body, _) = login(
        &server,
        json!({"groupid":72,"username":"olga","password":PASSWORD}),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_credentials"))
    );
}

#[actix_web::test]
async fn failed_sign_ins_are_audited_under_the_group_asked_for_only() {
    let server = TestServer::start_with(distinct_passwords).await;
    let (status, _, _) = login(
        &server,
        json!({"groupid":73,"username":"multi","password":"wrong"}),
    )
    .await;
    assert_eq!(status, 401);
    let count = |group: u64| {
        let server = &server;
        async move {
            let admin = server.admin_token("ada.admin", group);
            let (status, page) = server
                .get(
                    &format!("/admin/{group}/audit?username=multi"),
                    Some(&admin),
                    None,
                )
                .await;
            assert_eq!(status, 200, "{page}");
            page["records"].as_array().expect("records").len()
        }
    };
    assert_eq!(count(73).await, 1, "recorded where it was asked");
    assert_eq!(count(72).await, 0, "never under the other tenant");
}
