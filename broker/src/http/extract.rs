//! Request extractors: the caller's address, playback tokens from headers,
//! and the API client behind management calls.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use foundation::http::extract::BearerToken;

use super::error::ApiError;
use super::{AppState, COOKIE_NAME};
use crate::service::{Client, RequestContext};

/// Request id (set by the middleware) and the caller's address.
pub struct Ctx(pub RequestContext);

impl FromRequestParts<AppState> for Ctx {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, Self::Rejection> {
        let ids = parts.extensions.get::<foundation::http::RequestId>();
        let request_id = ids.map(|r| r.id.clone()).unwrap_or_default();
        let client_request_id = ids.and_then(|r| r.client_request_id.clone());
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let ip = match (peer, &s.http.client_ip_header) {
            (Some(peer), Some(name)) => Some(client_address(
                peer,
                parts.headers.get_all(name).iter().map(|v| v.as_bytes()),
                &s.http.trusted_proxies,
            )),
            (peer, _) => peer.map(canonical),
        };
        // Read only when some page-origin rule exists: most brokers have none.
        let page = if s.broker.checks_pages() {
            crate::page_origin::PageOrigin::from_headers(
                parts.headers.get(header::ORIGIN).map(|v| v.as_bytes()),
                parts.headers.get(header::REFERER).map(|v| v.as_bytes()),
            )
        } else {
            crate::page_origin::PageOrigin::None
        };
        Ok(Self(RequestContext {
            request_id,
            address: ip.map(address_text).unwrap_or_default(),
            ipv6_prefix: ip.and_then(ipv6_prefix),
            client_request_id,
            ip,
            page,
        }))
    }
}

/// The caller's address. A forwarding header (`X-Forwarded-For` style: lines
/// and comma-separated entries, each proxy appending the address it saw)
/// counts only when the TCP peer is a trusted proxy. Then the caller is the
/// right-most entry that is not itself a trusted proxy: everything left of it
/// was written by the caller and proves nothing. Entries that are not plain
/// addresses end the walk (the peer's own view is kept).
pub fn client_address<'a>(
    peer: IpAddr,
    header_values: impl DoubleEndedIterator<Item = &'a [u8]>,
    trusted: &[ipnet::IpNet],
) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(&canonical(*ip)));
    let mut client = peer;
    if !is_trusted(&peer) {
        return canonical(peer);
    }
    for value in header_values.rev() {
        let Ok(text) = std::str::from_utf8(value) else {
            return canonical(client);
        };
        for entry in text.rsplit(',') {
            let Ok(ip) = entry.trim().parse::<IpAddr>() else {
                return canonical(client);
            };
            client = ip;
            if !is_trusted(&ip) {
                return canonical(ip);
            }
        }
    }
    canonical(client)
}

/// `ip` as text, as `Display` writes it. IPv4 (nearly every caller) skips
/// the formatting machinery: this runs on every key request.
fn address_text(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut text = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        let (hundreds, tens, ones) = (octet / 100, octet / 10 % 10, octet % 10);
        if hundreds > 0 {
            text.push(char::from(b'0' + hundreds));
        }
        if hundreds > 0 || tens > 0 {
            text.push(char::from(b'0' + tens));
        }
        text.push(char::from(b'0' + ones));
    }
    text
}

/// IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`) as the IPv4 they are.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The /64 of an IPv6 address (what rate limits count it by).
pub fn ipv6_prefix(ip: IpAddr) -> Option<String> {
    match canonical(ip) {
        IpAddr::V4(_) => None,
        IpAddr::V6(v6) => {
            let s = v6.segments();
            Some(format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3]))
        }
    }
}

/// Every non-empty value of cookie `name`, in the order sent.
pub fn cookies<'a>(
    headers: &'a axum::http::HeaderMap,
    name: &'a str,
) -> impl Iterator<Item = String> + 'a {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|text| text.split(';'))
        .filter_map(move |pair| {
            let (n, v) = pair.trim().split_once('=')?;
            (n == name && !v.is_empty()).then(|| v.trim_matches('"').to_owned())
        })
}

/// The first value of cookie `name`.
pub fn cookie(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    cookies(headers, name).next()
}

/// Playback tokens from `Authorization: Bearer` and the `vodkms_token`
/// cookie, in that order. Never logged.
pub struct PlaybackTokens(pub Vec<String>);

impl<S: Send + Sync> FromRequestParts<S> for PlaybackTokens {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, s: &S) -> Result<Self, Self::Rejection> {
        let Ok(BearerToken(bearer)) = BearerToken::from_request_parts(parts, s).await;
        let mut tokens: Vec<String> = bearer
            .map(|t| t.expose_secret().to_owned())
            .into_iter()
            .collect();
        tokens.extend(cookies(&parts.headers, COOKIE_NAME));
        Ok(Self(tokens))
    }
}

/// The API client (admin or issuer) making a management call, as the KMS
/// knows it. What it may do is the service's decision.
pub struct Admin(pub Client);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, Self::Rejection> {
        let Ok(BearerToken(token)) = BearerToken::from_request_parts(parts, s).await;
        let Ok(Ctx(ctx)) = Ctx::from_request_parts(parts, s).await;
        Ok(Self(s.broker.authenticate(&ctx, token.as_ref()).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_text_is_what_display_writes() {
        for octet in 0..=255u8 {
            for ip in [
                [octet, 0, 10, 255],
                [1, octet, 100, 9],
                [203, 0, 113, octet],
            ] {
                let ip = IpAddr::from(ip);
                assert_eq!(address_text(ip), ip.to_string());
            }
        }
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(address_text(v6), "2001:db8::1");
    }

    fn nets(list: &str) -> Vec<ipnet::IpNet> {
        super::super::parse_trusted_proxies(list).unwrap()
    }

    fn client(peer: &str, headers: &[&str], trusted: &str) -> String {
        client_address(
            peer.parse().unwrap(),
            headers.iter().map(|h| h.as_bytes()),
            &nets(trusted),
        )
        .to_string()
    }

    #[test]
    fn the_header_counts_only_from_trusted_peers() {
        // An untrusted peer names whatever it likes: ignored.
        assert_eq!(
            client("203.0.113.9", &["198.51.100.1"], "10.0.0.0/8"),
            "203.0.113.9"
        );
        assert_eq!(
            client("10.1.1.1", &["198.51.100.1"], "10.0.0.0/8"),
            "198.51.100.1"
        );
        // No header from a trusted peer: the peer.
        assert_eq!(client("10.1.1.1", &[], "10.0.0.0/8"), "10.1.1.1");
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_entry() {
        let t = "10.0.0.0/8,192.0.2.10";
        // The caller prepended a fake address; our proxies appended the real one.
        assert_eq!(
            client("10.1.1.1", &["198.51.100.66, 203.0.113.5, 192.0.2.10"], t),
            "203.0.113.5"
        );
        // Several header lines are one list, in order.
        assert_eq!(
            client("10.1.1.1", &["198.51.100.66", "203.0.113.5, 10.2.2.2"], t),
            "203.0.113.5"
        );
        // Only proxies: the left-most of them.
        assert_eq!(client("10.1.1.1", &["10.3.3.3, 10.2.2.2"], t), "10.3.3.3");
        // Garbage where an address should be: stop at the last proxy seen.
        assert_eq!(client("10.1.1.1", &["203.0.113.5, unknown"], t), "10.1.1.1");
        assert_eq!(client("10.1.1.1", &["unknown, 10.2.2.2"], t), "10.2.2.2");
        // IPv4-mapped IPv6 peers match IPv4 ranges.
        assert_eq!(
            client("::ffff:10.1.1.1", &["203.0.113.5"], t),
            "203.0.113.5"
        );
    }

    #[test]
    fn ipv6_is_throttled_by_64() {
        let a = ipv6_prefix("2001:db8:1:2::1".parse().unwrap());
        let b = ipv6_prefix("2001:db8:1:2:ffff::9".parse().unwrap());
        let c = ipv6_prefix("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a.as_deref(), Some("2001:db8:1:2::/64"));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(ipv6_prefix("192.0.2.1".parse().unwrap()), None);
        assert_eq!(ipv6_prefix("::ffff:192.0.2.1".parse().unwrap()), None);
    }
}
