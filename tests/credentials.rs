//! Every credential kind of `POST /auth/token`, accepted and refused, plus
//! website sessions.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{TestServer, API_KEY_72, API_KEY_73, API_KEY_74, PASSWORD};
use presence_server::clock::{Clock, ManualClock, SystemClock};
use presence_server::login_key;
use serde_json::{json, Value};

async fn token(server: &TestServer, group: u64, credentials: Value) -> (u16, Value) {
    server
        .post(
            "/auth/token",
            None,
            None,
            &json!({"groupid": group, "credentials": credentials}),
        )
        .await
}

fn key(api_key: &str, group: u64, puid: &str, exp: u64) -> String {
    login_key::generate(api_key.as_bytes(), group, puid, exp)
}

/// `key` with the character at `at` replaced.
fn with_char(key: &str, at: usize, c: char) -> String {
    let mut out: Vec<char> = key.chars().collect();
    out[at] = c;
    out.into_iter().collect()
}

fn now() -> u64 {
    SystemClock.now_secs()
}

fn assert_refused(got: (u16, Value), status: u16, code: &str, what: &str) {
    assert_eq!(
        (got.0, got.1["error"].as_str()),
        (status, Some(code)),
        "{what}: {}",
        got.1
    );
}

#[actix_web::test]
async fn partner_login_keys() {
    let server = TestServer::start_with(common::without_lockout).await;
    let good = key(API_KEY_72, 72, "fred", now() + 600);
    let (status, body) = token(
        &server,
        72,
        json!({"partnerid":72,"partneruserid":"fred","loginkey":good}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["username"], "fred.demo");
    let claims = server
        .running()
        .tokens()
        .verify(body["token"].as_str().expect("token"))
        .expect("valid");
    assert_eq!(claims.groupid, 72);

    let cases = [
        (
            "wrong secret",
            json!({"partnerid":72,"partneruserid":"fred","loginkey":key("some-other-api-key", 72, "fred", now() + 600)}),
            401,
            "invalid_credentials",
        ),
        (
            "expired",
            json!({"partnerid":72,"partneruserid":"fred","loginkey":key(API_KEY_72, 72, "fred", now() - 1)}),
            401,
            "invalid_credentials",
        ),
        (
            "over the future cap",
            json!({"partnerid":72,"partneruserid":"fred","loginkey":key(API_KEY_72, 72, "fred", now() + 86_400 + 120)}),
            401,
            "invalid_credentials",
        ),
        (
            "malformed",
            json!({"partnerid":72,"partneruserid":"fred","loginkey":"$1$notanumber$abc"}),
            401,
            "invalid_credentials",
        ),
        (
            "bad alphabet",
            json!({"partnerid":72,"partneruserid":"fred","loginkey":with_char(&good, 30, '+')}),
            401,
            "invalid_credentials",
        ),
        (
            "padded",
            json!({"partnerid":72,"partneruserid":"fred","loginkey":format!("{good}=")}),
            401,
            "invalid_credentials",
        ),
        (
            "wrong group's key",
            json!({"partnerid":73,"partneruserid":"fred","loginkey":good}),
            401,
            "invalid_credentials",
        ),
        (
            "unknown partner",
            json!({"partnerid":999,"partneruserid":"fred","loginkey":good}),
            401,
            "invalid_credentials",
        ),
        (
            "unknown puid",
            json!({"partnerid":72,"partneruserid":"nobody","loginkey":key(API_KEY_72, 72, "nobody", now() + 600)}),
            401,
            "invalid_credentials",
        ),
    ];
    for (what, creds, status, code) in cases {
        assert_refused(token(&server, 72, creds).await, status, code, what);
    }
    // Valid for group 73, asked for group 72.
    let olga = key(API_KEY_73, 73, "olga", now() + 600);
    assert_refused(
        token(
            &server,
            72,
            json!({"partnerid":73,"partneruserid":"olga","loginkey":olga}),
        )
        .await,
        403,
        "not_a_member",
        "not a member",
    );
    let nick = key(API_KEY_74, 74, "nick", now() + 600);
    assert_refused(
        token(
            &server,
            74,
            json!({"partnerid":74,"partneruserid":"nick","loginkey":nick}),
        )
        .await,
        403,
        "presence_not_subscribed",
        "no presence",
    );
}

#[actix_web::test]
async fn username_login_keys() {
    let server = TestServer::start_with(common::without_lockout).await;
    let good = key(API_KEY_72, 72, "fred", now() + 600);
    let (status, body) = token(&server, 72, json!({"username":"fred.demo","loginkey":good})).await;
    assert_eq!(
        (status, body["username"].as_str()),
        (200, Some("fred.demo")),
        "{body}"
    );

    let cases = [
        (
            "wrong secret",
            json!({"username":"fred.demo","loginkey":key("some-other-api-key", 72, "fred", now() + 600)}),
        ),
        (
            "expired",
            json!({"username":"fred.demo","loginkey":key(API_KEY_72, 72, "fred", now() - 5)}),
        ),
        (
            "over the future cap",
            json!({"username":"fred.demo","loginkey":key(API_KEY_72, 72, "fred", now() + 90_000)}),
        ),
        (
            "malformed",
            json!({"username":"fred.demo","loginkey":"$1$$"}),
        ),
        (
            "another user's key",
            json!({"username":"ada.admin","loginkey":good}),
        ),
        ("unknown user", json!({"username":"ghost","loginkey":good})),
        (
            "user without a puid",
            json!({"username":"ada.admin","loginkey":key(API_KEY_72, 72, "", now() + 600)}),
        ),
    ];
    for (what, creds) in cases {
        assert_refused(
            token(&server, 72, creds).await,
            401,
            "invalid_credentials",
            what,
        );
    }
    // The username form uses the asked group's record and api_key only.
    let olga = key(API_KEY_73, 73, "olga", now() + 600);
    assert_refused(
        token(&server, 72, json!({"username":"olga","loginkey":olga})).await,
        401,
        "invalid_credentials",
        "another group's record is never checked",
    );
    let nick = key(API_KEY_74, 74, "nick", now() + 600);
    assert_refused(
        token(&server, 74, json!({"username":"nick","loginkey":nick})).await,
        403,
        "presence_not_subscribed",
        "no presence",
    );
}

#[actix_web::test]
async fn passwords_across_groups() {
    let server = TestServer::start().await;
    // The same username in two groups gets a token for the one it asks for,
    // with that group's role.
    let (status, body) = token(&server, 72, json!({"username":"multi","password":PASSWORD})).await;
    assert_eq!(
        (status, body["role"].as_str()),
        (200, Some("agent")),
        "{body}"
    );
    let (status, body) = token(&server, 73, json!({"username":"multi","password":PASSWORD})).await;
    assert_eq!(
        (status, body["role"].as_str()),
        (200, Some("administrator")),
        "{body}"
    );
    assert_eq!(body["groupid"], 73);

    // A password is checked against the asked group's record only: olga's
    // right password for group 73 is no credential for group 72.
    assert_refused(
        token(&server, 72, json!({"username":"olga","password":PASSWORD})).await,
        401,
        "invalid_credentials",
        "another group's record is never checked",
    );
    assert_refused(
        token(&server, 72, json!({"username":"olga","password":"wrong"})).await,
        401,
        "invalid_credentials",
        "no oracle without the password",
    );
    assert_refused(
        token(&server, 74, json!({"username":"nick","password":PASSWORD})).await,
        403,
        "presence_not_subscribed",
        "no presence",
    );
}

#[actix_web::test]
async fn website_sessions_issue_tokens_by_body_or_cookie() {
    let clock = Arc::new(ManualClock::starting_now());
    let server = TestServer::start_with_clock(clock.clone()).await;
    let mut resp = server
        .http
        .post(server.url("/auth/login"))
        .send_json(&json!({"username":"fred.demo","password":PASSWORD}))
        .await
        .expect("login");
    assert_eq!(resp.status().as_u16(), 200);
    let cookie = resp.cookie("gssnid").expect("cookie");
    assert!(cookie.http_only().unwrap_or(false));
    assert_eq!(cookie.same_site(), Some(awc::cookie::SameSite::Lax));
    assert!(
        !cookie.secure().unwrap_or(false),
        "http public_url: not Secure"
    );
    assert!(
        cookie.max_age().is_none(),
        "no fixed Max-Age: the server's idle timeout, extended on use, decides"
    );
    let body: Value = resp.json().await.expect("json");
    let gssnid = body["gssnid"].as_str().expect("gssnid").to_owned();
    assert_eq!(cookie.value(), gssnid);
    assert_eq!(body["expires"], clock.now_secs() + 43_200);

    let (status, _) = token(&server, 72, json!({"gssnid": gssnid})).await;
    assert_eq!(status, 200);
    // The cookie alone, with empty credentials.
    let mut resp = server
        .http
        .post(server.url("/auth/token"))
        .insert_header(("Origin", common::ORIGIN_72))
        .cookie(awc::cookie::Cookie::new("gssnid", gssnid.clone()))
        .send_json(&json!({"groupid":72,"credentials":{}}))
        .await
        .expect("token");
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["username"], "fred.demo");

    assert_refused(
        token(&server, 72, json!({"gssnid":"made-up"})).await,
        401,
        "invalid_credentials",
        "unknown session",
    );
    assert_refused(
        token(&server, 72, json!({})).await,
        400,
        "bad_credentials_form",
        "no cookie",
    );

    // Idle timeout, driven by the clock.
    clock.advance(Duration::from_secs(43_200));
    assert_refused(
        token(&server, 72, json!({"gssnid": gssnid})).await,
        401,
        "invalid_credentials",
        "idle session",
    );
}

#[actix_web::test]
async fn sessions_end_on_logout_and_keep_membership_rules() {
    let server = TestServer::start().await;
    let login = |user: &'static str| {
        let server = &server;
        async move {
            let (status, body) = server
                .post(
                    "/auth/login",
                    None,
                    None,
                    &json!({"username":user,"password":PASSWORD}),
                )
                .await;
            assert_eq!(status, 200, "{body}");
            body["gssnid"].as_str().expect("gssnid").to_owned()
        }
    };
    let (status, body) = server
        .post(
            "/auth/login",
            None,
            None,
            &json!({"username":"fred.demo","password":"wrong"}),
        )
        .await;
    assert_refused((status, body), 401, "invalid_credentials", "bad login");

    let fred = login("fred.demo").await;
    let resp = server
        .http
        .post(server.url("/auth/logout"))
        .send_json(&json!({"gssnid": fred}))
        .await
        .expect("logout");
    assert_eq!(resp.status().as_u16(), 204);
    assert_refused(
        token(&server, 72, json!({"gssnid": fred})).await,
        401,
        "invalid_credentials",
        "after logout",
    );

    let olga = login("olga").await;
    assert_refused(
        token(&server, 72, json!({"gssnid": olga})).await,
        403,
        "not_a_member",
        "not a member",
    );
    let nick = login("nick").await;
    assert_refused(
        token(&server, 74, json!({"gssnid": nick})).await,
        403,
        "presence_not_subscribed",
        "no presence",
    );
}

#[actix_web::test]
async fn session_cookies_are_secure_on_https() {
    let server =
        TestServer::start_with(|c| c.server.public_url = "https://presence.example".into()).await;
    let resp = server
        .http
        .post(server.url("/auth/login"))
        .send_json(&json!({"username":"fred.demo","password":PASSWORD}))
        .await
        .expect("login");
    let cookie = resp.cookie("gssnid").expect("cookie");
    assert_eq!(cookie.secure(), Some(true));
}

#[actix_web::test]
async fn a_partners_key_never_signs_into_another_group() {
    let server = TestServer::start().await;
    // "multi" is an agent in 72 and an administrator in 73. Group 72's
    // partner may vouch for it in 72, and nowhere else.
    let k72 = key(API_KEY_72, 72, "multi-72", now() + 600);
    let (status, body) = token(
        &server,
        72,
        json!({"partnerid":72,"partneruserid":"multi-72","loginkey":k72}),
    )
    .await;
    assert_eq!(
        (status, body["role"].as_str()),
        (200, Some("agent")),
        "{body}"
    );
    assert_refused(
        token(
            &server,
            73,
            json!({"partnerid":72,"partneruserid":"multi-72","loginkey":k72}),
        )
        .await,
        403,
        "not_a_member",
        "cross-tenant partner key",
    );
    // Nor through the username form: in 73 the key must be 73's.
    assert_refused(
        token(&server, 73, json!({"username":"multi","loginkey":k72})).await,
        401,
        "invalid_credentials",
        "username form with another group's key",
    );
    let k73 = key(API_KEY_73, 73, "multi-73", now() + 600);
    let (status, body) = token(&server, 73, json!({"username":"multi","loginkey":k73})).await;
    assert_eq!(
        (status, body["role"].as_str()),
        (200, Some("administrator")),
        "{body}"
    );
}

#[actix_web::test]
async fn token_request_fields_get_their_own_codes() {
    let server = TestServer::start().await;
    let creds = json!({"username":"fred.demo","password":PASSWORD});
    for duration in [
        json!(-1),
        json!("3600"),
        json!(59.5),
        json!(1e20),
        json!(59),
        json!(7201),
        json!(true),
    ] {
        let (status, body) = server
            .post(
                "/auth/token",
                None,
                None,
                &json!({"groupid":72,"duration":duration,"credentials":creds}),
            )
            .await;
        assert_refused((status, body), 400, "bad_duration", &duration.to_string());
    }
    let (status, body) = server
        .post("/auth/token", None, None, &json!({"groupid":72}))
        .await;
    assert_refused(
        (status, body),
        400,
        "bad_credentials_form",
        "missing credentials",
    );
    let big = "k".repeat(2000);
    assert_refused(
        token(&server, 72, json!({"username":"fred.demo","loginkey":big})).await,
        400,
        "bad_request",
        "oversized login key",
    );
    // Refusals are audited too.
    let admin = server.admin_token("ada.admin", 72);
    let (_, page) = server.get("/admin/72/audit", Some(&admin), None).await;
    let reasons: Vec<&str> = page["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter_map(|r| r["reason"].as_str())
        .collect();
    assert!(
        reasons.contains(&"bad_duration") && reasons.contains(&"bad_credentials_form"),
        "{reasons:?}"
    );
}

/// How long a refused password sign-in of `username` takes at best over
/// three tries (the minimum shrugs off a busy machine's stalls).
async fn quickest_refusal(server: &TestServer, username: &str) -> Duration {
    let mut quickest = Duration::MAX;
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let refused = token(
            server,
            72,
            json!({"username": username, "password": "not-the-password"}),
        )
        .await;
        quickest = quickest.min(started.elapsed());
        assert_refused(refused, 401, "invalid_credentials", username);
    }
    quickest
}

#[actix_web::test]
async fn unknown_users_cost_as_much_as_the_costliest_configured_hash() {
    // ada.admin's hash takes eight times the recommended passes.
    let params = argon2::Params::new(19 * 1024, 16, 1, None).expect("params");
    let costly = {
        use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
        argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
            .hash_password(PASSWORD.as_bytes(), &SaltString::generate(&mut OsRng))
            .expect("hash")
            .to_string()
    };
    let server = TestServer::start_with(|c| {
        common::without_lockout(c);
        c.groups[0].users[1].password_hash = Some(costly.into());
    })
    .await;
    let known = quickest_refusal(&server, "ada.admin").await;
    let unknown = quickest_refusal(&server, "nobody.here").await;
    // With the recommended dummy an unknown user would answer about eight
    // times sooner; with the costliest parameters it takes about as long.
    assert!(
        unknown * 3 >= known,
        "unknown user {unknown:?} vs a known one {known:?}"
    );
}
