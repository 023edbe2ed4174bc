//! Presence webhooks against a real HTTP receiver: signatures, when events
//! fire (navigation sends nothing), retries after 500s and timeouts, order
//! per visitor, the dead letters and their replay through the admin
//! routes (group-scoped); `webhooks_durability.rs` has the `kill -9`.

mod common;

use common::webhook_receiver::{verify, Answer, Receiver, Recorded};
use common::TestServer;
use presence_server::config::{Config, WebhookEventType, WebhookSubscription};
use serde_json::json;

const SECRET: &str = "whsec_test_0123456789";

fn subscribe(config: &mut Config, url: &str) {
    config.groups[0].webhooks = vec![WebhookSubscription {
        url: url.to_owned(),
        events: vec![
            WebhookEventType::VisitorOnline,
            WebhookEventType::VisitorOffline,
            WebhookEventType::Confirmation,
        ],
        secret: SECRET.to_owned().into(),
    }];
    config.presence.reconnect_grace_ms = 1000;
    config.webhooks.backoff_base_ms = 50;
    config.webhooks.backoff_max_ms = 200;
    config.webhooks.timeout_ms = 500;
}

fn of_visitor<'a>(seen: &'a [Recorded], visitor: &str) -> Vec<&'a Recorded> {
    seen.iter()
        .filter(|r| r.json()["visitorid"] == visitor)
        .collect()
}

fn types(seen: &[&Recorded]) -> Vec<String> {
    seen.iter()
        .map(|r| r.json()["type"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[actix_web::test]
async fn events_are_signed_and_navigation_sends_nothing() {
    let receiver = Receiver::start().await;
    let server = TestServer::start_with(|c| subscribe(c, &receiver.url)).await;

    let first = server.visitor("v-nav", json!({"page": "/home"})).await;
    let seen = receiver
        .wait_for("visitor_online", |s| !of_visitor(s, "v-nav").is_empty())
        .await;
    let online = of_visitor(&seen, "v-nav")[0].clone();
    let body = online.json();
    assert_eq!(body["type"], "visitor_online");
    assert_eq!(body["groupid"], 72);
    assert_eq!(body["data"]["presence"]["page"], "/home");
    assert!(body["id"].as_str().is_some_and(|id| id.starts_with("evt_")));
    assert!(body["timestamp"].as_u64().is_some());
    assert_eq!(online.headers["content-type"], "application/json");
    assert_eq!(
        online.headers["presence-event-id"],
        body["id"].as_str().unwrap()
    );
    let signature = &online.headers["presence-signature"];
    assert!(verify(SECRET, signature, &online.body, 300), "{signature}");
    // Anything else fails: a changed body, another secret, a stale t.
    let tampered = online.body.replace("/home", "/hone");
    assert!(!verify(SECRET, signature, &tampered, 300));
    assert!(!verify(
        "whsec_someone_else_0000",
        signature,
        &online.body,
        300
    ));
    let t: u64 = signature[2..signature.find(',').unwrap()].parse().unwrap();
    let v1 = &signature[signature.find("v1=").unwrap() + 3..];
    let old = format!("t={},v1={v1}", t - 1000);
    assert!(!verify(SECRET, &old, &online.body, 300));

    // A navigation: the page closes and the next opens within the grace.
    first.close().await;
    let second = server.visitor("v-nav", json!({"page": "/cart"})).await;
    // A second visitor goes online and offline meanwhile: once its offline
    // arrives, v-nav's grace (started earlier) has long ended without one.
    let other = server.visitor("v-other", json!({})).await;
    other.close().await;
    receiver
        .wait_for("v-other offline", |s| {
            types(&of_visitor(s, "v-other")) == ["visitor_online", "visitor_offline"]
        })
        .await;
    assert_eq!(
        types(&of_visitor(&receiver.requests(), "v-nav")),
        ["visitor_online"]
    );

    second.close().await;
    let seen = receiver
        .wait_for("v-nav offline", |s| of_visitor(s, "v-nav").len() == 2)
        .await;
    let nav = of_visitor(&seen, "v-nav");
    assert_eq!(types(&nav), ["visitor_online", "visitor_offline"]);
    let offline = nav[1].json();
    assert_eq!(offline["data"]["presence"]["page"], "/cart");
    assert_ne!(offline["id"], body["id"]);
    assert!(verify(
        SECRET,
        &nav[1].headers["presence-signature"],
        &nav[1].body,
        300
    ));
    server.shutdown().await;
}

#[actix_web::test]
async fn retries_after_500s_and_timeouts_keep_each_visitors_order() {
    let receiver = Receiver::start().await;
    // The first event's first three attempts fail: 500, 500, no answer.
    receiver.script(&[Answer::Status(500), Answer::Status(500), Answer::Stall]);
    let server = TestServer::start_with(|c| subscribe(c, &receiver.url)).await;
    let visitor = server.visitor("v-order", json!({})).await;
    receiver
        .wait_for("the first attempt", |s| !s.is_empty())
        .await;
    // The offline event is queued while the online one still retries.
    visitor.close().await;
    let seen = receiver
        .wait_for("both delivered", |s| {
            s.iter().filter(|r| r.delivered()).count() == 2
        })
        .await;
    let answers: Vec<(String, Answer)> = seen
        .iter()
        .map(|r| (r.json()["type"].as_str().unwrap().to_owned(), r.answer))
        .collect();
    assert_eq!(
        answers,
        [
            ("visitor_online".to_owned(), Answer::Status(500)),
            ("visitor_online".to_owned(), Answer::Status(500)),
            ("visitor_online".to_owned(), Answer::Stall),
            ("visitor_online".to_owned(), Answer::Status(200)),
            ("visitor_offline".to_owned(), Answer::Status(200)),
        ],
        "the offline event waited for the online one"
    );
    // Every retry is the same event and body, signed afresh.
    let online: Vec<&Recorded> = seen.iter().take(4).collect();
    assert!(online.iter().all(|r| r.body == online[0].body));
    assert!(online
        .iter()
        .all(|r| verify(SECRET, &r.headers["presence-signature"], &r.body, 300)));
    // The receiver records a 200 before the sender has read it: wait for
    // the sender to count it.
    let metrics = common::cluster::eventually(
        std::time::Duration::from_secs(10),
        "both deliveries counted",
        || async {
            let metrics = common::scrape(&server).await;
            (common::sample(&metrics, "presence_webhook_deliveries_total") == 2.0)
                .then_some(metrics)
        },
    )
    .await;
    assert_eq!(
        common::sample(
            &metrics,
            "presence_webhook_failed_attempts_total{reason=\"status\"}"
        ),
        2.0
    );
    assert_eq!(
        common::sample(
            &metrics,
            "presence_webhook_failed_attempts_total{reason=\"timeout\"}"
        ),
        1.0
    );
    server.shutdown().await;
}

#[actix_web::test]
async fn a_dead_letter_after_the_horizon_is_listed_and_replayed_by_its_groups_admin_only() {
    let receiver = Receiver::start().await;
    receiver.answer_by_default(Answer::Status(500));
    let server = TestServer::start_with(|c| {
        subscribe(c, &receiver.url);
        c.webhooks.retry_horizon_secs = 1;
    })
    .await;
    let admin = server.admin_token("ada.admin", 72);
    let _visitor = server.visitor("v-dead", json!({})).await;
    // Attempts every 50-200 ms, the horizon 1 s after queueing: then the
    // letter is listed.
    let listed = common::cluster::eventually(
        std::time::Duration::from_secs(10),
        "the dead letter",
        || async {
            let (status, page) = server
                .get("/admin/72/webhooks/failed", Some(&admin), None)
                .await;
            assert_eq!(status, 200, "{page}");
            (!page["failed"].as_array().unwrap().is_empty()).then_some(page)
        },
    )
    .await;
    let letter = &listed["failed"][0];
    assert_eq!(letter["type"], "visitor_online");
    assert_eq!(letter["visitorid"], "v-dead");
    assert_eq!(letter["reason"], "horizon");
    assert_eq!(letter["last_error"], "HTTP 500");
    assert!(letter["attempts"].as_u64().unwrap() >= 2);
    assert_eq!(letter["payload"]["type"], "visitor_online");
    let attempts_before = receiver.requests().len();

    // Another group's administrator, and an agent of this one, get 403.
    let other_admin = server.admin_token("multi", 73);
    let agent = server.token("fred.demo", 72);
    // multi administers 73 but is only an agent of 72.
    let multi_in_72 = server.token("multi", 72);
    for (token, error) in [
        (&other_admin, "wrong_group"),
        (&agent, "forbidden"),
        (&multi_in_72, "forbidden"),
    ] {
        let (status, body) = server
            .get("/admin/72/webhooks/failed", Some(token), None)
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (403, Some(error)),
            "{body}"
        );
        let (status, _) = server
            .post(
                "/admin/72/webhooks/failed/replay",
                Some(token),
                None,
                &json!({}),
            )
            .await;
        assert_eq!(status, 403);
    }
    // Group 73's own list is empty: letters are per group.
    let (status, page) = server
        .get("/admin/73/webhooks/failed", Some(&other_admin), None)
        .await;
    assert_eq!(
        (status, page["failed"].as_array().map(Vec::len)),
        (200, Some(0))
    );
    // Replaying in 73, all or by the id of 72's letter, touches nothing of 72.
    for body in [json!({}), json!({"ids": [letter["id"]]})] {
        let (status, answer) = server
            .post(
                "/admin/73/webhooks/failed/replay",
                Some(&other_admin),
                None,
                &body,
            )
            .await;
        assert_eq!((status, &answer["replayed"]), (200, &json!(0)), "{answer}");
    }
    assert!(!server
        .get("/admin/72/webhooks/failed", Some(&admin), None)
        .await
        .1["failed"]
        .as_array()
        .unwrap()
        .is_empty());
    // Bad input is refused with a clear error.
    for bad in [
        json!({"ids": []}),
        json!({"ids": ["x"]}),
        json!({"nope": 1}),
    ] {
        let (status, body) = server
            .post("/admin/72/webhooks/failed/replay", Some(&admin), None, &bad)
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("bad_request")),
            "{bad}"
        );
    }
    let (status, _) = server
        .get("/admin/72/webhooks/failed?cursor=zz", Some(&admin), None)
        .await;
    assert_eq!(status, 400);
    // No deliveries while dead.
    assert_eq!(receiver.requests().len(), attempts_before);

    receiver.answer_by_default(Answer::Status(200));
    let id = letter["id"].as_str().unwrap();
    let (status, body) = server
        .post(
            "/admin/72/webhooks/failed/replay",
            Some(&admin),
            None,
            &json!({"ids": [id]}),
        )
        .await;
    assert_eq!(
        (status, &body),
        (
            200,
            &json!({"replayed": 1, "more": false, "partial": false, "missing": []})
        )
    );
    let seen = receiver
        .wait_for("the replayed delivery", |s| {
            s.iter().any(Recorded::delivered)
        })
        .await;
    let delivered = seen.iter().find(|r| r.delivered()).unwrap();
    assert_eq!(delivered.json()["id"], letter["payload"]["id"]);
    assert!(verify(
        SECRET,
        &delivered.headers["presence-signature"],
        &delivered.body,
        300
    ));
    let (_, page) = server
        .get("/admin/72/webhooks/failed", Some(&admin), None)
        .await;
    assert_eq!(page["failed"], json!([]));
    server.shutdown().await;
}

#[actix_web::test]
async fn settled_confirmations_are_events_with_their_outcome() {
    use common::confirm::{confirm_path, press, prompt, start};
    let receiver = Receiver::start().await;
    let server = TestServer::start_with(|c| subscribe(c, &receiver.url)).await;
    let fred = server.token("fred.demo", 72);
    let mut visitor = server.visitor("v-conf", json!({})).await;
    let started = start(&server, &fred, "v-conf", json!({})).await;
    let cid = started["confirmation"].clone();
    prompt(&mut visitor, &cid).await;
    press(&mut visitor, &cid, started["answer"].clone()).await;
    let is_confirmation = |r: &Recorded| r.json()["type"] == "confirmation";
    let seen = receiver
        .wait_for("the confirmed event", |s| s.iter().any(is_confirmation))
        .await;
    let event = seen.iter().find(|r| is_confirmation(r)).unwrap().json();
    assert_eq!(event["visitorid"], "v-conf");
    assert_eq!(event["data"]["confirmation_id"], cid);
    assert_eq!(event["data"]["outcome"], "confirmed");
    assert_eq!(event["data"]["agent"], "fred.demo");
    assert!(event["data"]["confirmed_until"].as_u64().is_some());

    // A second prompt the agent ends: outcome `ended`.
    let started = start(&server, &fred, "v-conf", json!({})).await;
    let second = started["confirmation"].clone();
    // The first prompt's close and ticket come first.
    loop {
        let frame = visitor.recv().await;
        if frame["type"] == "confirm" && frame["id"] == second {
            break;
        }
    }
    let (status, _) = server.delete(&confirm_path("v-conf"), &fred).await;
    assert_eq!(status, 200);
    let seen = receiver
        .wait_for("the ended event", |s| {
            s.iter().filter(|r| is_confirmation(r)).count() == 2
        })
        .await;
    let ended = seen
        .iter()
        .filter(|r| is_confirmation(r))
        .nth(1)
        .unwrap()
        .json();
    assert_eq!(ended["data"]["confirmation_id"], second);
    assert_eq!(ended["data"]["outcome"], "ended");
    server.shutdown().await;
}
