//! Alibaba Cloud ACS3-HMAC-SHA256 (signature v3), as the current
//! alibabacloud-* SDKs (tea-openapi) sign RPC-style requests:
//!
//! ```text
//! Authorization: ACS3-HMAC-SHA256 Credential=AKID,SignedHeaders=host;x-acs-action;...,Signature=<64 hex>
//! x-acs-action, x-acs-version, x-acs-date (2026-12-01T01:02:03Z),
//! x-acs-signature-nonce, x-acs-content-sha256 (hex SHA-256 of the body)
//! ```
//!
//! Parameters travel in the query (decoded, then re-encoded for the
//! canonical request) and the form body (covered by its hash). The door
//! requires the action, version, date, nonce, body hash and host to be
//! signed, and refuses a nonce it has seen within the clock window.

use chrono::{DateTime, NaiveDateTime, Utc};

use crate::canonical::authorization;
use crate::canonical::{
    encode, hex_signature, query_pairs, require_signed, signed_header_names, Request,
};
use crate::{hmac_sha256, same, SigError};

pub const ALGORITHM: &str = "ACS3-HMAC-SHA256";
pub const REQUIRED_SIGNED: [&str; 6] = [
    "host",
    "x-acs-action",
    "x-acs-content-sha256",
    "x-acs-date",
    "x-acs-signature-nonce",
    "x-acs-version",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub access_key_id: String,
    pub signed_headers: Vec<String>,
    pub action: String,
    pub version: String,
    pub nonce: String,
    pub time: DateTime<Utc>,
    signature: Vec<u8>,
}

/// Whether the request uses ACS3 (an `Authorization` with its algorithm).
pub fn applies(req: &Request<'_>) -> bool {
    matches!(req.header("authorization"), Ok(Some(a)) if a.starts_with(ALGORITHM))
}

pub fn parse(req: &Request<'_>) -> Result<Claims, SigError> {
    let [credential, signed, signature] = authorization(
        req,
        ALGORITHM,
        "only ACS3-HMAC-SHA256 header signatures are accepted",
    )?;
    if credential.is_empty() {
        return Err(SigError::Malformed("Credential"));
    }
    let signed_headers = signed_header_names(signed)?;
    require_signed(&signed_headers, &REQUIRED_SIGNED)?;
    if req.required_header("x-acs-content-sha256")? != req.body_sha256_hex() {
        return Err(SigError::BodyHashMismatch);
    }
    let date = req.required_header("x-acs-date")?;
    let time = NaiveDateTime::parse_from_str(date, "%Y-%m-%dT%H:%M:%SZ")
        .map_err(|_| SigError::Malformed("x-acs-date"))?
        .and_utc();
    Ok(Claims {
        access_key_id: credential.to_owned(),
        signed_headers,
        action: req.required_header("x-acs-action")?.to_owned(),
        version: req.required_header("x-acs-version")?.to_owned(),
        nonce: req.required_header("x-acs-signature-nonce")?.to_owned(),
        time,
        signature: hex_signature(signature, 32)?,
    })
}

pub fn verify(claims: &Claims, req: &Request<'_>, secret: &[u8]) -> Result<bool, SigError> {
    Ok(same(
        &signature(&claims.signed_headers, req, secret)?,
        &claims.signature,
    ))
}

pub fn signature(
    signed: &[String],
    req: &Request<'_>,
    secret: &[u8],
) -> Result<[u8; 32], SigError> {
    // tea-openapi: keys as they are, values quote(safe='~'), sorted by key.
    let mut query = query_pairs(req.uri);
    query.sort();
    let query: Vec<String> = query
        .into_iter()
        .map(|(k, v)| format!("{k}={}", encode(&v)))
        .collect();
    let mut canonical = String::with_capacity(512);
    canonical.push_str(req.method.as_str());
    canonical.push('\n');
    canonical.push_str(req.uri.path());
    canonical.push('\n');
    canonical.push_str(&query.join("&"));
    canonical.push('\n');
    for name in signed {
        let mut values: Vec<String> = req
            .header_values(name)?
            .into_iter()
            .map(|v| v.trim().to_owned())
            .collect();
        values.sort();
        canonical.push_str(name);
        canonical.push(':');
        canonical.push_str(&values.join(","));
        canonical.push('\n');
    }
    canonical.push('\n');
    canonical.push_str(&signed.join(";"));
    canonical.push('\n');
    canonical.push_str(&req.body_sha256_hex());
    let to_sign = format!("{ALGORITHM}\n{}", crate::sha256_hex(canonical.as_bytes()));
    Ok(hmac_sha256(secret, to_sign.as_bytes()))
}

/// An `Authorization` value signing every header of `req` (as the SDK does).
pub fn authorize(
    req: &Request<'_>,
    access_key_id: &str,
    secret: &[u8],
) -> Result<String, SigError> {
    let mut names: Vec<String> = req.headers.keys().map(|k| k.as_str().to_owned()).collect();
    names.sort();
    names.dedup();
    let sig = signature(&names, req, secret)?;
    Ok(format!(
        "{ALGORITHM} Credential={access_key_id},SignedHeaders={},Signature={}",
        names.join(";"),
        hex::encode(sig)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue, Method, Uri};

    #[test]
    fn a_signed_request_verifies_and_any_change_breaks_it() {
        let body = b"Recipient=x";
        let mut headers = HeaderMap::new();
        for (k, v) in [
            ("host", "127.0.0.1:8081"),
            ("x-acs-action", "GenerateDataKey"),
            ("x-acs-version", "2016-01-20"),
            ("x-acs-date", "2026-12-01T01:02:03Z"),
            ("x-acs-signature-nonce", "n1"),
            ("content-type", "application/x-www-form-urlencoded"),
        ] {
            headers.insert(k, HeaderValue::from_static(v));
        }
        headers.insert(
            "x-acs-content-sha256",
            crate::sha256_hex(body).parse().unwrap(),
        );
        let uri: Uri = "/?KeyId=alias%2Fvod&EncryptionContext=%7B%22a%22%3A%22b%20c%22%7D"
            .parse()
            .unwrap();
        let req = Request {
            method: &Method::POST,
            uri: &uri,
            headers: &headers,
            body,
        };
        let auth = authorize(&req, "VKMSTEST", b"secret").unwrap();
        let mut signed = headers.clone();
        signed.insert("authorization", auth.parse().unwrap());
        let req = Request {
            headers: &signed,
            ..req
        };
        assert!(applies(&req));
        let claims = parse(&req).unwrap();
        assert_eq!(claims.action, "GenerateDataKey");
        assert!(verify(&claims, &req, b"secret").unwrap());
        assert!(!verify(&claims, &req, b"other").unwrap());
        let other: Uri = "/?KeyId=alias%2Fother".parse().unwrap();
        let moved = Request { uri: &other, ..req };
        assert!(!verify(&claims, &moved, b"secret").unwrap());
        let tampered = Request {
            body: b"Recipient=y",
            ..req
        };
        assert_eq!(parse(&tampered).err(), Some(SigError::BodyHashMismatch));
    }

    #[test]
    fn applies_only_to_acs3_authorizations() {
        let uri: Uri = "/".parse().unwrap();
        let request = |auth: Option<&'static str>| {
            let mut headers = HeaderMap::new();
            if let Some(a) = auth {
                headers.insert("authorization", HeaderValue::from_static(a));
            }
            headers
        };
        for (auth, want) in [
            (
                Some("ACS3-HMAC-SHA256 Credential=a,SignedHeaders=host,Signature=00"),
                true,
            ),
            (
                Some("AWS4-HMAC-SHA256 Credential=a/b/c/d/aws4_request"),
                false,
            ),
            (Some("TC3-HMAC-SHA256 Credential=a/b/c/tc3_request"), false),
            (None, false),
        ] {
            let headers = request(auth);
            let req = Request {
                method: &Method::POST,
                uri: &uri,
                headers: &headers,
                body: b"",
            };
            assert_eq!(applies(&req), want, "{auth:?}");
        }
    }
}
