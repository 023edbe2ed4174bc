//! Parsers of single config values that other layers share: allow-list
//! patterns, origins and trusted-proxy networks.

use std::net::IpAddr;

use ipnet::IpNet;

/// Whether the group's `invoke_allow` list permits `func`: an exact name, or
/// a prefix ending in `*` (`["*"]` allows every function). Case-sensitive.
pub fn function_allowed(allow: &[String], func: &str) -> bool {
    allow.iter().any(|pattern| match pattern.strip_suffix('*') {
        Some(prefix) => func.starts_with(prefix),
        None => pattern == func,
    })
}

/// Normalises an origin to the form browsers send (`scheme://host[:port]`,
/// lowercase, default port dropped). `None` if it is not an http(s) origin:
/// `null`, paths, queries, credentials and other schemes are all refused.
pub fn normalize_origin(raw: &str) -> Option<String> {
    if raw.eq_ignore_ascii_case("null") {
        return None;
    }
    let url = url::Url::parse(raw).ok()?;
    let bare = url.path() == "/" && !raw.ends_with('/');
    if !matches!(url.scheme(), "http" | "https")
        || url.host().is_none()
        || !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
        || !bare
    {
        return None;
    }
    Some(url.origin().ascii_serialization())
}

/// The header the trusted proxies write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
pub enum ForwardedHeader {
    #[default]
    #[serde(rename = "x-forwarded-for")]
    XForwardedFor,
    #[serde(rename = "forwarded")]
    Forwarded,
}

/// Parses a CIDR (`10.0.0.0/8`, `2001:db8::/32`) or a bare address.
pub fn parse_network(raw: &str) -> Result<IpNet, String> {
    let raw = raw.trim();
    raw.parse::<IpNet>()
        .or_else(|_| raw.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{raw:?} is not a CIDR (like 10.0.0.0/8) or an IP address"))
}
