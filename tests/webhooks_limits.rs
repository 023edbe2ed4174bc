//! Webhook bounds against a real receiver: deliveries in flight stay under
//! `webhooks.max_concurrency`, an event over `webhooks.max_payload_bytes`
//! is refused (metric) while others go on, and deliveries for a receiver
//! no longer subscribed end in the dead letters.

mod common;

use common::webhook_receiver::{Answer, Receiver};
use common::TestServer;
use presence_server::config::{Config, WebhookEventType, WebhookSubscription};
use serde_json::json;

fn subscribe(config: &mut Config, url: &str) {
    config.groups[0].webhooks = vec![WebhookSubscription {
        url: url.to_owned(),
        events: vec![WebhookEventType::VisitorOnline],
        secret: "whsec_limits_0123456789".to_owned().into(),
    }];
    config.webhooks.backoff_base_ms = 50;
    config.webhooks.backoff_max_ms = 100;
    config.webhooks.timeout_ms = 300;
}

#[actix_web::test]
async fn deliveries_in_flight_stay_under_max_concurrency() {
    let receiver = Receiver::start().await;
    // Every answer stalls until the sender's timeout: lanes pile up.
    receiver.answer_by_default(Answer::Stall);
    let server = TestServer::start_with(|c| {
        subscribe(c, &receiver.url);
        c.webhooks.max_concurrency = 2;
    })
    .await;
    let mut visitors = Vec::new();
    for i in 0..6 {
        visitors.push(server.visitor(&format!("v-{i}"), json!({})).await);
    }
    let seen = receiver
        .wait_for("every visitor's event tried", |s| {
            (0..6).all(|i| s.iter().any(|r| r.json()["visitorid"] == format!("v-{i}")))
        })
        .await;
    assert!(seen.len() >= 6);
    assert_eq!(receiver.peak_in_flight(), 2, "two at once, never more");
    server.shutdown().await;
}

#[actix_web::test]
async fn an_event_over_max_payload_bytes_is_refused_and_counted() {
    let receiver = Receiver::start().await;
    let server = TestServer::start_with(|c| {
        subscribe(c, &receiver.url);
        c.webhooks.max_payload_bytes = 1024;
    })
    .await;
    let _big = server
        .visitor("v-big", json!({"notes": "x".repeat(2000)}))
        .await;
    let _small = server.visitor("v-small", json!({})).await;
    let seen = receiver
        .wait_for("the small visitor's event", |s| {
            s.iter().any(|r| r.json()["visitorid"] == "v-small")
        })
        .await;
    assert!(seen.iter().all(|r| r.json()["visitorid"] != "v-big"));
    let metrics = common::scrape(&server).await;
    assert_eq!(
        common::sample(
            &metrics,
            "presence_webhook_events_refused_total{reason=\"too_large\"}"
        ),
        1.0
    );
    server.shutdown().await;
}

#[actix_web::test]
async fn deliveries_for_a_removed_receiver_become_dead_letters() {
    let receiver = Receiver::start().await;
    receiver.answer_by_default(Answer::Status(503));
    let server = TestServer::start_with(|c| subscribe(c, &receiver.url)).await;
    let _visitor = server.visitor("v-gone", json!({})).await;
    receiver.wait_for("an attempt", |s| !s.is_empty()).await;
    // What a config reload does: the group has no receiver any more.
    let mut config = common::config(server.dir.path());
    config.groups[0].webhooks.clear();
    server.running().replace_webhook_subscriptions(&config);
    let admin = server.admin_token("ada.admin", 72);
    let page = common::cluster::eventually(
        std::time::Duration::from_secs(10),
        "the dead letter",
        || async {
            let (_, page) = server
                .get("/admin/72/webhooks/failed", Some(&admin), None)
                .await;
            (!page["failed"].as_array()?.is_empty()).then_some(page)
        },
    )
    .await;
    assert_eq!(page["failed"][0]["reason"], "unsubscribed");
    assert_eq!(page["failed"][0]["last_error"], "HTTP 503");
    server.shutdown().await;
}

#[actix_web::test]
async fn a_receiver_that_hangs_holds_only_its_share_and_the_others_go_on() {
    let stuck = Receiver::start().await;
    stuck.answer_by_default(Answer::Stall);
    let healthy = Receiver::start().await;
    let server = TestServer::start_with(|c| {
        subscribe(c, &stuck.url);
        let mut second = c.groups[0].webhooks[0].clone();
        second.url = healthy.url.clone();
        c.groups[0].webhooks.push(second);
        c.webhooks.max_concurrency = 2;
        c.webhooks.max_concurrency_per_receiver = 1;
        // Far past the wait below: without the share, the stuck receiver's
        // older lanes would hold both slots that long.
        c.webhooks.timeout_ms = 60_000;
    })
    .await;
    let mut visitors = Vec::new();
    for i in 0..4 {
        visitors.push(server.visitor(&format!("v-{i}"), json!({})).await);
    }
    healthy
        .wait_for("the healthy receiver gets every event", |s| {
            (0..4).all(|i| s.iter().any(|r| r.json()["visitorid"] == format!("v-{i}")))
        })
        .await;
    assert_eq!(stuck.peak_in_flight(), 1, "the stuck one holds one slot");
    assert_eq!(stuck.requests().len(), 1, "and its other lanes wait");
    server.shutdown().await;
}
