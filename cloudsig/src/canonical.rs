//! Pieces shared by the canonical requests: header values, query strings,
//! percent-encoding.

use http::{HeaderMap, Method, Uri};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};

use crate::SigError;

/// A request as received, body read in full.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

impl<'a> Request<'a> {
    /// One header as text; `Malformed` if it is not visible ASCII or appears
    /// twice (a signed value must be unambiguous).
    pub fn header(&self, name: &'static str) -> Result<Option<&'a str>, SigError> {
        let mut values = self.headers.get_all(name).iter();
        let Some(first) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(SigError::Malformed(name));
        }
        first
            .to_str()
            .map(Some)
            .map_err(|_| SigError::Malformed(name))
    }

    pub fn required_header(&self, name: &'static str) -> Result<&'a str, SigError> {
        self.header(name)?.ok_or(SigError::Missing(name))
    }

    /// Every value of a header (for signed headers sent more than once),
    /// with `Host` taken from the URI under HTTP/2 (`:authority`).
    pub(crate) fn header_values(&self, name: &str) -> Result<Vec<String>, SigError> {
        let mut out = Vec::new();
        for v in self.headers.get_all(name) {
            out.push(
                v.to_str()
                    .map_err(|_| SigError::Malformed("a signed header"))?
                    .to_owned(),
            );
        }
        if out.is_empty() && name == "host" {
            if let Some(authority) = self.uri.authority() {
                out.push(authority.as_str().to_owned());
            }
        }
        if out.is_empty() {
            return Err(SigError::Missing("a signed header"));
        }
        Ok(out)
    }

    pub(crate) fn body_sha256_hex(&self) -> String {
        sha256_hex(self.body)
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// RFC 3986 unreserved characters stay; everything else is %XX (upper case):
/// AWS's UriEncode, Alibaba's percentEncode, Python's `quote(safe='~')`.
pub(crate) const RFC3986: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The same, keeping `/` (canonical URIs).
pub(crate) const RFC3986_PATH: &AsciiSet = &RFC3986.remove(b'/');

pub(crate) fn encode(s: &str) -> String {
    utf8_percent_encode(s, RFC3986).to_string()
}

/// Query parameters, decoded (`+` as space, as form encoding has it).
pub(crate) fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    uri.query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// A signed header list (`a;b;c`): lower case, sorted, no duplicates.
pub(crate) fn signed_header_names(list: &str) -> Result<Vec<String>, SigError> {
    let names: Vec<String> = list.split(';').map(str::to_owned).collect();
    let well_formed = names.iter().all(|n| {
        !n.is_empty()
            && n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    });
    if !well_formed || names.windows(2).any(|w| w[0] >= w[1]) {
        return Err(SigError::Malformed("SignedHeaders"));
    }
    Ok(names)
}

pub(crate) fn require_signed(names: &[String], required: &[&'static str]) -> Result<(), SigError> {
    for r in required {
        if !names.iter().any(|n| n == r) {
            return Err(SigError::NotSigned(r));
        }
    }
    Ok(())
}

/// `Key=value` items of an `Authorization` header after its algorithm,
/// separated by commas (and optional spaces).
pub(crate) fn auth_params<'a>(
    rest: &'a str,
    names: &[&'static str],
) -> Result<Vec<&'a str>, SigError> {
    let mut found: Vec<Option<&str>> = vec![None; names.len()];
    for item in rest.split(',') {
        let item = item.trim();
        let (k, v) = item
            .split_once('=')
            .ok_or(SigError::Malformed("Authorization"))?;
        let Some(i) = names.iter().position(|n| *n == k) else {
            return Err(SigError::Malformed("Authorization"));
        };
        if found[i].replace(v).is_some() {
            return Err(SigError::Malformed("Authorization"));
        }
    }
    names
        .iter()
        .zip(found)
        .map(|(n, v)| v.ok_or(SigError::Missing(n)))
        .collect()
}

/// The `Credential`, `SignedHeaders` and `Signature` of an `Authorization`
/// header of `algorithm` (the shape SigV4, TC3 and ACS3 share).
pub(crate) fn authorization<'a>(
    req: &'a Request<'_>,
    algorithm: &str,
    unsupported: &'static str,
) -> Result<[&'a str; 3], SigError> {
    let auth = req.header("authorization")?.ok_or(SigError::Unsigned)?;
    let rest = auth
        .strip_prefix(algorithm)
        .and_then(|r| r.strip_prefix(' '))
        .ok_or(SigError::Unsupported(unsupported))?;
    <[&str; 3]>::try_from(auth_params(
        rest,
        &["Credential", "SignedHeaders", "Signature"],
    )?)
    .map_err(|_| SigError::Malformed("Authorization"))
}

/// A lower-case hex signature of `len` bytes.
pub(crate) fn hex_signature(text: &str, len: usize) -> Result<Vec<u8>, SigError> {
    if text.len() != len * 2 || text.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(SigError::Malformed("Signature"));
    }
    hex::decode(text).map_err(|_| SigError::Malformed("Signature"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_lower_case_hex_of_the_exact_length() {
        let good = "ab".repeat(32);
        assert_eq!(hex_signature(&good, 32).unwrap(), vec![0xab; 32]);
        // Wrong length, even as valid lower-case hex.
        assert!(hex_signature("abab", 32).is_err());
        assert!(hex_signature(&"ab".repeat(33), 32).is_err());
        // Upper case, even of the right length.
        assert!(hex_signature(&"AB".repeat(32), 32).is_err());
        assert!(hex_signature(&"zz".repeat(32), 32).is_err());
    }

    #[test]
    fn only_a_missing_host_is_taken_from_the_uri() {
        let uri: http::Uri = "http://kms.example:8200/".parse().unwrap();
        let none = http::HeaderMap::new();
        let req = Request {
            method: &http::Method::POST,
            uri: &uri,
            headers: &none,
            body: b"",
        };
        assert_eq!(req.header_values("host").unwrap(), ["kms.example:8200"]);
        assert_eq!(
            req.header_values("x-acs-date"),
            Err(SigError::Missing("a signed header"))
        );
        let mut headers = http::HeaderMap::new();
        headers.append("host", http::HeaderValue::from_static("other.example"));
        headers.append("x-acs-date", http::HeaderValue::from_static("a"));
        headers.append("x-acs-date", http::HeaderValue::from_static("b"));
        let req = Request {
            headers: &headers,
            ..req
        };
        assert_eq!(req.header_values("host").unwrap(), ["other.example"]);
        assert_eq!(req.header_values("x-acs-date").unwrap(), ["a", "b"]);
    }

    #[test]
    fn encoding_keeps_only_unreserved() {
        assert_eq!(encode("a-b_c.d~e f/g+h*%"), "a-b_c.d~e%20f%2Fg%2Bh%2A%25");
        assert_eq!(encode("ü"), "%C3%BC");
        assert_eq!(
            utf8_percent_encode("/a b/c", RFC3986_PATH).to_string(),
            "/a%20b/c"
        );
    }

    #[test]
    fn signed_header_lists_are_strict() {
        assert!(signed_header_names("host;x-amz-date").is_ok());
        for bad in ["", "host;;x", "x-amz-date;host", "Host", "host;host", "a b"] {
            assert!(signed_header_names(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn authorization_items_are_exact() {
        let names = &["Credential", "Signature"];
        assert_eq!(
            auth_params("Credential=a/b, Signature=ff", names).unwrap(),
            vec!["a/b", "ff"]
        );
        for bad in [
            "Credential=a",
            "Credential=a,Credential=b,Signature=c",
            "Credential=a,Other=1,Signature=c",
            "nonsense",
        ] {
            assert!(auth_params(bad, names).is_err(), "{bad}");
        }
    }
}
