//! The client's address, for lockouts, per-client limits and the audit log.
//!
//! A bare server sees its clients directly, and forwarding headers are
//! ignored, since any client can send them. Behind a load balancer every
//! TCP peer is the balancer, so when (and only when) the peer is in
//! `server.trusted_proxies` the client is read from the one header
//! `server.forwarded_header` names, `X-Forwarded-For` (the default) or
//! `Forwarded` (RFC 7239), never the other (which the client could have
//! written): the right-most address that is not itself a trusted proxy. Entries left of
//! it were written by the client and are never believed. An entry that is
//! not an address (`unknown`, an obfuscated name, garbage) where the walk
//! stops leaves the peer as the client.

use crate::infra::config::{parse_network, ForwardedHeader};
use std::net::{IpAddr, SocketAddr};

use actix_web::http::header::{HeaderMap, HeaderName};
use ipnet::IpNet;

/// The proxies whose forwarding headers are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    networks: Vec<IpNet>,
    header: ForwardedHeader,
}

impl TrustedProxies {
    /// Parses `server.trusted_proxies`; their client is in `header`.
    pub fn parse(list: &[String], header: ForwardedHeader) -> Result<Self, String> {
        let networks = list
            .iter()
            .map(|n| parse_network(n))
            .collect::<Result<_, _>>()?;
        Ok(Self { networks, header })
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.networks.iter().any(|n| n.contains(&ip))
    }

    /// The client of a request whose TCP peer is `peer`.
    pub fn client_ip(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer.map(canonical)?;
        if !self.contains(peer) {
            return Some(peer);
        }
        let chain = forwarded_chain(headers, self.header);
        for entry in chain.iter().rev() {
            match entry {
                Some(ip) if self.contains(*ip) => continue,
                Some(ip) => return Some(*ip),
                None => return Some(peer),
            }
        }
        // Every hop was a trusted proxy: the one nearest the client.
        Some(chain.first().copied().flatten().unwrap_or(peer))
    }
}

/// An IPv4 address mapped into IPv6 (`::ffff:a.b.c.d`) is that IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The forwarding chain in `header`, nearest the client first: every
/// `X-Forwarded-For` entry in order, or every `Forwarded` element's `for`.
/// `None` marks an entry that is not an address.
fn forwarded_chain(headers: &HeaderMap, header: ForwardedHeader) -> Vec<Option<IpAddr>> {
    let values = |name: HeaderName| -> Vec<String> {
        headers
            .get_all(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    };
    match header {
        ForwardedHeader::XForwardedFor => values(HeaderName::from_static("x-forwarded-for"))
            .iter()
            .flat_map(|v| v.split(','))
            .map(|entry| parse_node(entry.trim()))
            .collect(),
        ForwardedHeader::Forwarded => values(actix_web::http::header::FORWARDED)
            .iter()
            .flat_map(|v| v.split(','))
            .map(|element| {
                element
                    .split(';')
                    .filter_map(|pair| pair.split_once('='))
                    .find(|(key, _)| key.trim().eq_ignore_ascii_case("for"))
                    .and_then(|(_, value)| parse_node(value.trim().trim_matches('"')))
            })
            .collect(),
    }
}

/// `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1` or `[2001:db8::1]:4711`.
fn parse_node(node: &str) -> Option<IpAddr> {
    node.parse::<IpAddr>()
        .or_else(|_| node.parse::<SocketAddr>().map(|s| s.ip()))
        .or_else(|_| {
            node.strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
                .ok_or(())
                .and_then(|inner| inner.parse::<IpAddr>().map_err(|_| ()))
        })
        .ok()
        .map(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn proxies() -> TrustedProxies {
        proxies_writing(ForwardedHeader::XForwardedFor)
    }

    fn proxies_writing(header: ForwardedHeader) -> TrustedProxies {
        TrustedProxies::parse(&["127.0.0.0/8".into(), "2001:db8::/32".into()], header)
            .expect("parse")
    }

    #[test]
    fn headers_count_only_from_a_trusted_peer() {
        let h = headers(&[("x-forwarded-for", "203.0.113.7")]);
        assert_eq!(
            proxies().client_ip(Some(ip("198.51.100.1")), &h),
            Some(ip("198.51.100.1")),
            "an untrusted peer's header is ignored"
        );
        assert_eq!(
            TrustedProxies::default().client_ip(Some(ip("127.0.0.1")), &h),
            Some(ip("127.0.0.1")),
            "no trusted proxies: headers ignored"
        );
        assert_eq!(
            proxies().client_ip(Some(ip("127.0.0.1")), &h),
            Some(ip("203.0.113.7"))
        );
    }

    #[test]
    fn the_right_most_untrusted_entry_is_the_client() {
        let p = proxies();
        let peer = Some(ip("127.0.0.1"));
        // The client forged the first entry; the proxies appended the rest.
        let h = headers(&[("x-forwarded-for", "192.0.2.66, 203.0.113.7, 127.0.0.9")]);
        assert_eq!(p.client_ip(peer, &h), Some(ip("203.0.113.7")));
        let split = headers(&[
            ("x-forwarded-for", "192.0.2.66"),
            ("x-forwarded-for", "203.0.113.7:5555, 2001:db8::1"),
        ]);
        assert_eq!(p.client_ip(peer, &split), Some(ip("203.0.113.7")));
        let all_proxies = headers(&[("x-forwarded-for", "127.0.0.5, 127.0.0.6")]);
        assert_eq!(p.client_ip(peer, &all_proxies), Some(ip("127.0.0.5")));
        let garbage = headers(&[("x-forwarded-for", "203.0.113.7, nonsense")]);
        assert_eq!(
            p.client_ip(peer, &garbage),
            peer,
            "garbage where the walk stops"
        );
        assert_eq!(p.client_ip(peer, &HeaderMap::new()), peer);
        assert_eq!(p.client_ip(None, &h), None);
    }

    #[test]
    fn forwarded_is_read_when_the_proxies_write_it() {
        let p = proxies_writing(ForwardedHeader::Forwarded);
        let peer = Some(ip("127.0.0.1"));
        let h = headers(&[(
            "forwarded",
            "for=192.0.2.60;proto=http, For=\"[2001:db8:cafe::17]:4711\";by=x, for=203.0.113.43",
        )]);
        assert_eq!(p.client_ip(peer, &h), Some(ip("203.0.113.43")));
        let v6 = headers(&[("forwarded", "for=192.0.2.60, for=\"[2002::17]:4711\"")]);
        assert_eq!(p.client_ip(peer, &v6), Some(ip("2002::17")));
        let unknown = headers(&[("forwarded", "for=unknown")]);
        assert_eq!(p.client_ip(peer, &unknown), peer);
        // The header the proxies do not write is the client's: ignored.
        let both = headers(&[
            ("x-forwarded-for", "203.0.113.1"),
            ("forwarded", "for=203.0.113.2"),
        ]);
        assert_eq!(p.client_ip(peer, &both), Some(ip("203.0.113.2")));
        assert_eq!(proxies().client_ip(peer, &both), Some(ip("203.0.113.1")));
        let only_xff = headers(&[("x-forwarded-for", "203.0.113.1")]);
        assert_eq!(p.client_ip(peer, &only_xff), peer);
    }

    #[test]
    fn mapped_addresses_and_bad_networks() {
        let p = proxies();
        assert!(p.contains(ip("::ffff:127.0.0.1")));
        assert!(parse_network("10.0.0.1").is_ok());
        assert!(parse_network("10.0.0.0/33").is_err());
        assert!(parse_network("proxy.example").is_err());
    }
}
