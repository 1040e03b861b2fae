//! The page a playback request came from (its `Origin`, else the origin of
//! its `Referer`), and allow-lists of page origins: the playback restriction
//! Mux calls referrer validation. Pure parsing of outside input (fuzzed).
//!
//! An allow-list entry is an origin (`https://www.example.com`, a port if
//! not the scheme's default), a wildcard of its subdomains
//! (`https://*.example.com`, not the apex), or `none`: requests that name no
//! page at all (native apps, ffmpeg, a player whose page sets
//! `Referrer-Policy: no-referrer`). An `Origin: null` (sandboxed frames,
//! `file:` pages) or an unreadable header matches nothing.

/// Longest header value looked at; an origin is far shorter.
const MAX_HEADER_LEN: usize = 4096;

/// Where a request says it came from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PageOrigin {
    /// Neither `Origin` nor `Referer`.
    #[default]
    None,
    /// `scheme://host[:port]`, lowercase, without the scheme's default port.
    Origin(String),
    /// `Origin: null`, or a header that is not a URL of a web origin.
    Opaque,
}

impl PageOrigin {
    /// From the raw `Origin` and `Referer` header values: `Origin` wins when
    /// present (browsers send it on cross-origin and POST requests, and it
    /// cannot be set by a page); else the `Referer`'s origin.
    pub fn from_headers(origin: Option<&[u8]>, referer: Option<&[u8]>) -> Self {
        match (origin, referer) {
            (Some(o), _) => parse_origin(o, false),
            (None, Some(r)) => parse_origin(r, true),
            (None, None) => Self::None,
        }
    }
}

/// `scheme://authority[...]` → the normalized origin. With `url_ok`, a path,
/// query and fragment may follow (a `Referer`); an `Origin` has none.
fn parse_origin(raw: &[u8], url_ok: bool) -> PageOrigin {
    let Some(text) = std::str::from_utf8(raw)
        .ok()
        .filter(|t| t.len() <= MAX_HEADER_LEN)
    else {
        return PageOrigin::Opaque;
    };
    let text = text.trim();
    if text.is_empty() {
        return PageOrigin::None;
    }
    let Some((scheme, rest)) = text.split_once("://") else {
        return PageOrigin::Opaque;
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if !url_ok && authority_end != rest.len() {
        return PageOrigin::Opaque;
    }
    match normalize(scheme, &rest[..authority_end], false) {
        Some(origin) => PageOrigin::Origin(origin),
        None => PageOrigin::Opaque,
    }
}

/// `scheme` and `host[:port]` as one lowercase origin, or `None` if either is
/// not what a web origin holds. With `wildcard`, the host may start `*.`.
fn normalize(scheme: &str, authority: &str, wildcard: bool) -> Option<String> {
    let scheme = scheme.to_ascii_lowercase();
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+.-".contains(&b));
    if !scheme_ok || authority.is_empty() {
        return None;
    }
    // A port is what follows the last ':' outside an IPv6 literal's brackets.
    let (host, port) = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => (&authority[..i], Some(&authority[i + 1..])),
        _ => (authority, None),
    };
    let host = host.to_ascii_lowercase();
    let body = if wildcard {
        host.strip_prefix("*.")?
    } else {
        host.as_str()
    };
    let host_ok = if let Some(inner) = body.strip_prefix('[') {
        inner
            .strip_suffix(']')
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok())
    } else {
        !body.is_empty()
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
            && !body.starts_with('.')
            && !body.ends_with('.')
            && !body.contains("..")
    };
    if !host_ok {
        return None;
    }
    let port = match port {
        None => None,
        Some(p) => {
            let n: u16 = p
                .parse()
                .ok()
                .filter(|_| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))?;
            let default = matches!((scheme.as_str(), n), ("http", 80) | ("https", 443));
            (!default).then_some(n)
        }
    };
    Some(match port {
        Some(n) => format!("{scheme}://{host}:{n}"),
        None => format!("{scheme}://{host}"),
    })
}

/// Where playback may happen from. Empty allows nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OriginList {
    allow_none: bool,
    exact: Vec<String>,
    /// (`scheme://`, `.domain[:port]`) of `scheme://*.domain[:port]`.
    wildcard: Vec<(String, String)>,
}

/// The allow-list word for "no Origin or Referer".
pub const NO_PAGE: &str = "none";
/// Most entries in one list.
pub const MAX_ORIGINS: usize = 100;

impl OriginList {
    /// Each entry an origin, a `*.` wildcard origin, or `none`.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        if entries.len() > MAX_ORIGINS {
            return Err(format!("at most {MAX_ORIGINS} allowed origins"));
        }
        let mut list = Self::default();
        for entry in entries {
            let entry = entry.as_ref().trim();
            if entry.eq_ignore_ascii_case(NO_PAGE) {
                list.allow_none = true;
                continue;
            }
            let bad = || {
                let shown: String = entry.chars().take(80).collect();
                format!(
                    "{shown:?} is not an origin (https://host[:port], https://*.domain) or \"{NO_PAGE}\""
                )
            };
            let (scheme, authority) = entry.split_once("://").ok_or_else(bad)?;
            let authority = authority.strip_suffix('/').unwrap_or(authority);
            if authority.contains(['/', '?', '#', '@']) {
                return Err(bad());
            }
            if authority.starts_with("*.") {
                let origin = normalize(scheme, authority, true).ok_or_else(bad)?;
                let (prefix, rest) = origin.split_once("://").ok_or_else(bad)?;
                let suffix = rest.strip_prefix('*').ok_or_else(bad)?;
                list.wildcard
                    .push((format!("{prefix}://"), suffix.to_owned()));
            } else {
                list.exact
                    .push(normalize(scheme, authority, false).ok_or_else(bad)?);
            }
        }
        Ok(list)
    }

    pub fn allows(&self, page: &PageOrigin) -> bool {
        match page {
            PageOrigin::None => self.allow_none,
            PageOrigin::Opaque => false,
            PageOrigin::Origin(origin) => {
                self.exact.iter().any(|o| o == origin)
                    || self.wildcard.iter().any(|(scheme, suffix)| {
                        origin
                            .strip_prefix(scheme.as_str())
                            .and_then(|rest| rest.strip_suffix(suffix.as_str()))
                            // The subdomain part: not empty, and no port of
                            // its own (`a.example.com:8443` is not a
                            // subdomain of `example.com`).
                            .is_some_and(|sub| !sub.is_empty() && !sub.contains(':'))
                    })
            }
        }
    }

    /// The list as entries again (normalized).
    pub fn entries(&self) -> Vec<String> {
        let mut out: Vec<String> = self.exact.clone();
        out.extend(
            self.wildcard
                .iter()
                .map(|(scheme, suffix)| format!("{scheme}*{suffix}")),
        );
        if self.allow_none {
            out.push(NO_PAGE.to_owned());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(origin: Option<&str>, referer: Option<&str>) -> PageOrigin {
        PageOrigin::from_headers(origin.map(str::as_bytes), referer.map(str::as_bytes))
    }

    fn o(s: &str) -> PageOrigin {
        PageOrigin::Origin(s.into())
    }

    #[test]
    fn the_page_comes_from_origin_then_referer() {
        assert_eq!(page(None, None), PageOrigin::None);
        assert_eq!(
            page(Some("https://WWW.Example.com:443"), None),
            o("https://www.example.com")
        );
        assert_eq!(
            page(None, Some("https://www.example.com/watch?v=1#t")),
            o("https://www.example.com")
        );
        // Origin wins over a Referer.
        assert_eq!(
            page(Some("https://a.example"), Some("https://b.example/")),
            o("https://a.example")
        );
        assert_eq!(page(Some("null"), None), PageOrigin::Opaque);
        assert_eq!(
            page(Some("https://a.example/path"), None),
            PageOrigin::Opaque
        );
        assert_eq!(page(None, Some("about:blank")), PageOrigin::Opaque);
        assert_eq!(
            page(None, Some("http://[2001:db8::1]:8080/x")),
            o("http://[2001:db8::1]:8080")
        );
        assert_eq!(
            page(None, Some("https://user@evil.example/")),
            PageOrigin::Opaque
        );
        assert_eq!(
            page(Some("https://a.example:99999"), None),
            PageOrigin::Opaque
        );
        assert_eq!(page(Some(""), None), PageOrigin::None);
    }

    #[test]
    fn lists_match_exact_wildcard_and_none() {
        let list =
            OriginList::parse(&["https://www.example.com/", "https://*.example.org", "none"])
                .unwrap();
        assert!(list.allows(&o("https://www.example.com")));
        assert!(!list.allows(&o("http://www.example.com")));
        assert!(!list.allows(&o("https://www.example.com:8443")));
        assert!(list.allows(&o("https://a.example.org")));
        assert!(list.allows(&o("https://a.b.example.org")));
        assert!(!list.allows(&o("https://example.org")));
        assert!(!list.allows(&o("https://evilexample.org")));
        assert!(!list.allows(&o("https://a.example.org:444")));
        assert!(list.allows(&PageOrigin::None));
        assert!(!list.allows(&PageOrigin::Opaque));
        let strict = OriginList::parse(&["https://www.example.com"]).unwrap();
        assert!(!strict.allows(&PageOrigin::None));
        assert_eq!(
            list.entries(),
            ["https://www.example.com", "https://*.example.org", "none"]
        );
    }

    #[test]
    fn bad_entries_are_refused() {
        for bad in [
            "www.example.com",
            "https://",
            "https://a.example/path",
            "https://*.",
            "https://a.*.example",
            "https://user@a.example",
            "https://a.example:0x50",
        ] {
            assert!(OriginList::parse(&[bad]).is_err(), "{bad}");
        }
    }
}
