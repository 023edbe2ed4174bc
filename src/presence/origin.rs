//! Origin whitelisting and CORS.
//!
//! Browsers send `Origin` on cross-site requests and on every WebSocket
//! handshake. A request with an Origin must match, exactly on scheme, host
//! and port, an origin the group lists; `null` never matches. Requests
//! without an Origin (servers, load tests) are not browsers and pass.
//!
//! Before the group is known (preflights, socket handshakes) the union of all
//! groups' lists applies; once it is known, the group's own list does.
//!
//! A request authenticated by the session cookie alone is one any page can
//! make a browser send, so it must carry an Origin, and that Origin must
//! be the console's own (`server.public_url`) or on the group's list.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arc_swap::ArcSwap;

use actix_web::http::header::{self, HeaderMap};

use crate::infra::config::normalize_origin;
use crate::infra::config::Config;
use crate::infra::error::DomainError;
use crate::infra::ids::GroupId;

/// The Origin a request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestOrigin {
    /// No Origin header: not a browser request.
    Absent,
    /// A well-formed origin, normalised.
    Valid(String),
    /// An Origin header that is not a usable origin (`null`, garbage).
    Invalid(String),
}

impl RequestOrigin {
    /// Reads the Origin header.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        match headers.get(header::ORIGIN) {
            None => RequestOrigin::Absent,
            Some(value) => {
                let raw = value.to_str().unwrap_or("").to_owned();
                match normalize_origin(&raw) {
                    Some(normal) => RequestOrigin::Valid(normal),
                    None => RequestOrigin::Invalid(raw),
                }
            }
        }
    }
}

/// Which origins may call which group: the rules of the config in force,
/// replaced whole by a reload (each check reads one set of rules).
#[derive(Debug, Default)]
pub struct OriginPolicy {
    rules: ArcSwap<OriginRules>,
}

impl OriginPolicy {
    /// Builds the policy from validated config.
    pub fn from_config(config: &Config) -> Self {
        Self {
            rules: ArcSwap::from_pointee(OriginRules::from_config(config)),
        }
    }

    /// Puts the rules of a reloaded config in force: new requests and
    /// sockets are checked against them.
    pub fn replace(&self, config: &Config) {
        self.rules.store(Arc::new(OriginRules::from_config(config)));
    }

    /// Whether `origin` is the console's (it alone may send cookies
    /// cross-origin, to an auth node).
    pub fn is_console(&self, origin: &RequestOrigin) -> bool {
        self.rules.load().is_console(origin)
    }

    /// `Ok` if the origin is the console's own or `group` allows it: the
    /// sign-in endpoints serve the console for every group.
    pub fn check_console_or_group(
        &self,
        group: GroupId,
        origin: &RequestOrigin,
    ) -> Result<(), DomainError> {
        self.rules.load().check_console_or_group(group, origin)
    }

    /// The check of a request authenticated by the session cookie alone:
    /// it must carry an Origin that is the console's, or on the list of
    /// `group` (any group's, when the session's group is unknown).
    pub fn check_cookie_request(
        &self,
        group: Option<GroupId>,
        origin: &RequestOrigin,
    ) -> Result<(), DomainError> {
        self.rules.load().check_cookie_request(group, origin)
    }

    /// Whether any group allows the origin (before the group is known).
    pub fn allowed_anywhere(&self, origin: &RequestOrigin) -> bool {
        self.rules.load().allowed_anywhere(origin)
    }

    /// Whether `group` allows the origin.
    pub fn allowed_for_group(&self, group: GroupId, origin: &RequestOrigin) -> bool {
        self.rules.load().allowed_for_group(group, origin)
    }

    /// `Ok` if `group` allows the origin, else `origin_not_allowed`.
    pub fn check_group(&self, group: GroupId, origin: &RequestOrigin) -> Result<(), DomainError> {
        self.rules.load().check_group(group, origin)
    }
}

/// One config's origin lists.
#[derive(Debug, Default)]
struct OriginRules {
    per_group: HashMap<GroupId, HashSet<String>>,
    union: HashSet<String>,
    /// The origin of `server.public_url`, where the console is served.
    console: Option<String>,
}

impl OriginRules {
    fn from_config(config: &Config) -> Self {
        let mut policy = OriginRules::default();
        for group in &config.groups {
            let set: HashSet<String> = group
                .origins
                .iter()
                .filter_map(|o| normalize_origin(o))
                .collect();
            policy.union.extend(set.iter().cloned());
            policy.per_group.insert(group.id, set);
        }
        policy.console = url::Url::parse(config.server.console_origin_url())
            .ok()
            .and_then(|u| normalize_origin(&u.origin().ascii_serialization()));
        if let Some(console) = &policy.console {
            // The console signs in through /auth/*; group paths still
            // need the group's own list.
            policy.union.insert(console.clone());
        }
        policy
    }

    /// Whether `origin` is the console's (it alone may send cookies
    /// cross-origin, to an auth node).
    fn is_console(&self, origin: &RequestOrigin) -> bool {
        matches!(origin, RequestOrigin::Valid(o) if self.console.as_deref() == Some(o.as_str()))
    }

    /// `Ok` if the origin is the console's own or `group` allows it: the
    /// sign-in endpoints serve the console for every group.
    fn check_console_or_group(
        &self,
        group: GroupId,
        origin: &RequestOrigin,
    ) -> Result<(), DomainError> {
        match origin {
            RequestOrigin::Valid(o) if self.console.as_deref() == Some(o.as_str()) => Ok(()),
            other => self.check_group(group, other),
        }
    }

    /// The check of a request authenticated by the session cookie alone:
    /// it must carry an Origin that is the console's, or on the list of
    /// `group` (any group's, when the session's group is unknown).
    fn check_cookie_request(
        &self,
        group: Option<GroupId>,
        origin: &RequestOrigin,
    ) -> Result<(), DomainError> {
        let allowed = match origin {
            RequestOrigin::Absent | RequestOrigin::Invalid(_) => false,
            RequestOrigin::Valid(o) if self.console.as_deref() == Some(o.as_str()) => true,
            valid => match group {
                Some(group) => self.allowed_for_group(group, valid),
                None => self.allowed_anywhere(valid),
            },
        };
        if allowed {
            Ok(())
        } else if *origin == RequestOrigin::Absent {
            Err(DomainError::OriginNotAllowed(
                "(none: a request authenticated by the session cookie must carry an Origin)".into(),
            ))
        } else {
            Err(DomainError::OriginNotAllowed(display(origin)))
        }
    }

    /// Whether any group allows the origin (before the group is known).
    fn allowed_anywhere(&self, origin: &RequestOrigin) -> bool {
        match origin {
            RequestOrigin::Absent => true,
            RequestOrigin::Valid(o) => self.union.contains(o),
            RequestOrigin::Invalid(_) => false,
        }
    }

    /// Whether `group` allows the origin.
    fn allowed_for_group(&self, group: GroupId, origin: &RequestOrigin) -> bool {
        match origin {
            RequestOrigin::Absent => true,
            RequestOrigin::Valid(o) => self
                .per_group
                .get(&group)
                .is_some_and(|set| set.contains(o)),
            RequestOrigin::Invalid(_) => false,
        }
    }

    /// `Ok` if `group` allows the origin, else `origin_not_allowed`.
    fn check_group(&self, group: GroupId, origin: &RequestOrigin) -> Result<(), DomainError> {
        if self.allowed_for_group(group, origin) {
            Ok(())
        } else {
            Err(DomainError::OriginNotAllowed(display(origin)))
        }
    }
}

pub fn display(origin: &RequestOrigin) -> String {
    match origin {
        RequestOrigin::Absent => String::new(),
        RequestOrigin::Valid(o) | RequestOrigin::Invalid(o) => o.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_browsers() {
        assert_eq!(
            normalize_origin("http://localhost:8080").as_deref(),
            Some("http://localhost:8080")
        );
        assert_eq!(
            normalize_origin("HTTPS://Example.COM").as_deref(),
            Some("https://example.com")
        );
        assert_eq!(
            normalize_origin("https://example.com:443").as_deref(),
            Some("https://example.com")
        );
    }

    #[test]
    fn refuses_things_that_are_not_origins() {
        for bad in [
            "null",
            "NULL",
            "",
            "example.com",
            "ftp://example.com",
            "http://example.com/",
            "http://example.com/path",
            "http://user@example.com",
            "http://example.com?x=1",
            "file:///etc/passwd",
        ] {
            assert_eq!(normalize_origin(bad), None, "{bad}");
        }
    }

    fn policy() -> OriginPolicy {
        let config = Config::from_toml_str(
            r#"
            [[groups]]
            id = 1
            name = "a"
            origins = ["https://a.example"]
            [[groups]]
            id = 2
            name = "b"
            origins = ["https://b.example:8443"]
            "#,
        )
        .expect("config");
        OriginPolicy::from_config(&config)
    }

    #[test]
    fn group_lists_are_exact_and_separate() {
        let p = policy();
        let a = RequestOrigin::Valid("https://a.example".into());
        assert!(p.allowed_for_group(1, &a));
        assert!(!p.allowed_for_group(2, &a));
        assert!(p.allowed_anywhere(&a));
        for near_miss in [
            "https://a.example.evil.com",
            "https://evil-a.example",
            "http://a.example",
            "https://a.example:444",
            "https://b.example",
        ] {
            let o = RequestOrigin::Valid(near_miss.into());
            assert!(!p.allowed_anywhere(&o), "{near_miss}");
        }
        assert!(!p.allowed_anywhere(&RequestOrigin::Invalid("null".into())));
        assert!(p.allowed_for_group(1, &RequestOrigin::Absent));
    }
}
