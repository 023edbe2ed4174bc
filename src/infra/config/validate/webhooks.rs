//! Validation of `[webhooks]` and each group's `webhooks` subscriptions:
//! receiver URLs (https, or http to loopback unless `allow_http`), known
//! and distinct event names, secrets long enough to sign with, and counts.

use std::collections::HashSet;
use std::net::IpAddr;

use secrecy::ExposeSecret;

use super::{check, ConfigError};
use crate::infra::config::{Config, GroupConfig, MAX_WEBHOOKS_PER_GROUP, MIN_WEBHOOK_SECRET_LEN};

/// Longest accepted receiver URL.
const MAX_URL_LEN: usize = 2048;

pub(super) fn validate_webhooks_section(config: &Config) -> Result<(), ConfigError> {
    let w = &config.webhooks;
    let at = |key: &str| format!("webhooks.{key}");
    check(
        (100..=120_000).contains(&w.timeout_ms),
        at("timeout_ms"),
        "must be 100 to 120000",
    )?;
    check(
        (1..=1024).contains(&w.max_concurrency),
        at("max_concurrency"),
        "must be 1 to 1024",
    )?;
    check(
        (1..=1024).contains(&w.max_concurrency_per_receiver),
        at("max_concurrency_per_receiver"),
        "must be 1 to 1024 (above webhooks.max_concurrency it is that)",
    )?;
    check(
        (1024..=1_048_576).contains(&w.max_payload_bytes),
        at("max_payload_bytes"),
        "must be 1024 to 1048576",
    )?;
    check(
        (1..=7 * 86_400).contains(&w.retry_horizon_secs),
        at("retry_horizon_secs"),
        "must be 1 to 604800",
    )?;
    check(
        (10..=3_600_000).contains(&w.backoff_base_ms),
        at("backoff_base_ms"),
        "must be 10 to 3600000",
    )?;
    check(
        w.backoff_max_ms >= w.backoff_base_ms && w.backoff_max_ms <= 86_400_000,
        at("backoff_max_ms"),
        "must be at least backoff_base_ms and at most 86400000",
    )?;
    check(
        (1..=10_000_000).contains(&w.max_outbox),
        at("max_outbox"),
        "must be 1 to 10000000",
    )?;
    check(
        (1..=10_000_000).contains(&w.max_dead_letters),
        at("max_dead_letters"),
        "must be 1 to 10000000",
    )
}

/// Whether `host` names this machine: `localhost`, 127.0.0.0/8 or ::1.
fn is_loopback(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => IpAddr::V4(*ip).is_loopback(),
        url::Host::Ipv6(ip) => IpAddr::V6(*ip).is_loopback(),
    }
}

/// Why `raw` cannot be a receiver URL, if it cannot.
fn receiver_url_problem(raw: &str, allow_http: bool) -> Option<&'static str> {
    if raw.len() > MAX_URL_LEN {
        return Some("must be at most 2048 characters");
    }
    let Ok(url) = url::Url::parse(raw) else {
        return Some("must be an absolute http or https URL");
    };
    let Some(host) = url.host() else {
        return Some("must name a host");
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Some("must not carry credentials (sign with the secret instead)");
    }
    if url.fragment().is_some() {
        return Some("must not have a #fragment");
    }
    match url.scheme() {
        "https" => None,
        "http" if allow_http || is_loopback(&host) => None,
        "http" => Some(
            "must be https (http only to localhost or 127.0.0.1, or with webhooks.allow_http = true)",
        ),
        _ => Some("must be an absolute http or https URL"),
    }
}

pub(super) fn validate_group_webhooks(
    i: usize,
    group: &GroupConfig,
    allow_http: bool,
) -> Result<(), ConfigError> {
    check(
        group.webhooks.len() <= MAX_WEBHOOKS_PER_GROUP,
        format!("groups[{i}].webhooks"),
        format!("at most {MAX_WEBHOOKS_PER_GROUP} subscriptions per group"),
    )?;
    let mut urls = HashSet::new();
    for (j, hook) in group.webhooks.iter().enumerate() {
        let at = |key: &str| format!("groups[{i}].webhooks[{j}].{key}");
        if let Some(problem) = receiver_url_problem(&hook.url, allow_http) {
            return Err(ConfigError::new(at("url"), problem));
        }
        check(
            urls.insert(hook.url.as_str()),
            at("url"),
            "duplicate url in this group (list every event in one subscription)",
        )?;
        check(
            !hook.events.is_empty(),
            at("events"),
            "name at least one of visitor_online, visitor_offline, confirmation",
        )?;
        let mut seen = HashSet::new();
        for event in &hook.events {
            check(
                seen.insert(*event),
                at("events"),
                format!("{} is listed twice", event.as_str()),
            )?;
        }
        let secret = hook.secret.expose_secret();
        check(
            secret.len() >= MIN_WEBHOOK_SECRET_LEN && secret.len() <= 512,
            at("secret"),
            format!("must be {MIN_WEBHOOK_SECRET_LEN} to 512 characters"),
        )?;
        check(
            secret.trim() == secret,
            at("secret"),
            "must not begin or end with whitespace",
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::infra::config::Config;

    fn with_hook(hook: &str, section: &str) -> Result<Config, crate::infra::config::ConfigError> {
        Config::from_toml_str(&format!(
            r#"
{section}
[[groups]]
id = 1
name = "g"
webhooks = [{hook}]
"#
        ))
    }

    const SECRET: &str = "0123456789abcdef";

    #[test]
    fn receiver_urls_are_https_or_loopback_http() {
        for url in [
            "https://crm.example/hook",
            "http://127.0.0.1:9000/hook",
            "http://localhost/h",
            "http://[::1]:80/",
        ] {
            let hook =
                format!(r#"{{url = "{url}", events = ["visitor_online"], secret = "{SECRET}"}}"#);
            with_hook(&hook, "").unwrap_or_else(|e| panic!("{url}: {e}"));
        }
        for url in [
            "http://crm.example/hook",
            "ftp://crm.example/",
            "https://user:pw@crm.example/",
            "/relative",
            "https://crm.example/#x",
        ] {
            let hook =
                format!(r#"{{url = "{url}", events = ["visitor_online"], secret = "{SECRET}"}}"#);
            let err = with_hook(&hook, "").expect_err(url);
            assert_eq!(err.key, "groups[0].webhooks[0].url", "{url}");
        }
        let hook = format!(
            r#"{{url = "http://crm.example/", events = ["confirmation"], secret = "{SECRET}"}}"#
        );
        with_hook(&hook, "[webhooks]\nallow_http = true").expect("explicit opt-in");
    }

    #[test]
    fn events_and_secrets_are_checked_and_secrets_never_printed() {
        let unknown = format!(
            r#"{{url = "https://a.example/", events = ["visitor_gone"], secret = "{SECRET}"}}"#
        );
        assert!(with_hook(&unknown, "").is_err());
        let none = format!(r#"{{url = "https://a.example/", events = [], secret = "{SECRET}"}}"#);
        assert_eq!(
            with_hook(&none, "").expect_err("empty").key,
            "groups[0].webhooks[0].events"
        );
        let twice = format!(
            r#"{{url = "https://a.example/", events = ["confirmation", "confirmation"], secret = "{SECRET}"}}"#
        );
        assert!(with_hook(&twice, "").is_err());
        let short = r#"{url = "https://a.example/", events = ["confirmation"], secret = "short"}"#;
        assert_eq!(
            with_hook(short, "").expect_err("short").key,
            "groups[0].webhooks[0].secret"
        );
        let hook = format!(
            r#"{{url = "https://a.example/", events = ["confirmation"], secret = "{SECRET}"}}"#
        );
        let dup = format!("{hook}, {hook}");
        assert!(with_hook(&dup, "").is_err(), "duplicate url");
        let config = with_hook(&hook, "").expect("valid");
        assert!(!format!("{config:?}").contains(SECRET));
        let err = with_hook(&hook, "[webhooks]\nretry_horizon_secs = 0").expect_err("horizon");
        assert_eq!(err.key, "webhooks.retry_horizon_secs");
    }
}
