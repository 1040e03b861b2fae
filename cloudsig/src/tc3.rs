//! Tencent Cloud API 3.0, TC3-HMAC-SHA256, as tencentcloud-sdk-* sign:
//!
//! ```text
//! Authorization: TC3-HMAC-SHA256 Credential=AKID/2026-12-01/kms/tc3_request,
//!                SignedHeaders=content-type;host, Signature=<64 hex>
//! X-TC-Timestamp: 1796086923        (in the string to sign)
//! X-TC-Action: GenerateDataKey      (NOT signed by the SDKs)
//! ```
//!
//! The SDKs sign neither the action nor the region (only content-type and
//! host), so within the clock window a captured request could be re-sent
//! with another action and the same parameters; TLS is what prevents the
//! capture. A body sent with `X-TC-Content-SHA256: UNSIGNED-PAYLOAD` is
//! refused: the body is always hashed.

use chrono::{DateTime, Utc};

use crate::canonical::authorization;
use crate::canonical::{hex_signature, require_signed, signed_header_names, Request};
use crate::{hmac_sha256, same, SigError};

pub const ALGORITHM: &str = "TC3-HMAC-SHA256";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub access_key_id: String,
    /// `YYYY-MM-DD` of the credential scope (the UTC date of the timestamp).
    pub date: String,
    pub service: String,
    pub signed_headers: Vec<String>,
    pub timestamp: i64,
    pub time: DateTime<Utc>,
    signature: Vec<u8>,
}

impl Claims {
    /// The signature, to remember against replays.
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }
}

pub fn parse(req: &Request<'_>) -> Result<Claims, SigError> {
    let [credential, signed, signature] = authorization(
        req,
        ALGORITHM,
        "only TC3-HMAC-SHA256 signatures are accepted",
    )?;
    let parts: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, service, terminator] = parts[..] else {
        return Err(SigError::Malformed("Credential"));
    };
    if terminator != "tc3_request" || access_key_id.is_empty() {
        return Err(SigError::Malformed("Credential"));
    }
    let signed_headers = signed_header_names(signed)?;
    require_signed(&signed_headers, &["content-type", "host"])?;
    if let Some(h) = req.header("x-tc-content-sha256")? {
        if h != req.body_sha256_hex() {
            return Err(SigError::BodyHashMismatch);
        }
    }
    let stamp = req.required_header("x-tc-timestamp")?;
    let timestamp: i64 = stamp
        .parse()
        .ok()
        .filter(|_| stamp.bytes().all(|b| b.is_ascii_digit()))
        .ok_or(SigError::Malformed("X-TC-Timestamp"))?;
    let time =
        DateTime::from_timestamp(timestamp, 0).ok_or(SigError::Malformed("X-TC-Timestamp"))?;
    if time.format("%Y-%m-%d").to_string() != date {
        return Err(SigError::Malformed(
            "Credential (its date is not X-TC-Timestamp's)",
        ));
    }
    Ok(Claims {
        access_key_id: access_key_id.to_owned(),
        date: date.to_owned(),
        service: service.to_owned(),
        signed_headers,
        timestamp,
        time,
        signature: hex_signature(signature, 32)?,
    })
}

pub fn verify(claims: &Claims, req: &Request<'_>, secret: &[u8]) -> Result<bool, SigError> {
    Ok(same(&signature(claims, req, secret)?, &claims.signature))
}

pub fn signature(claims: &Claims, req: &Request<'_>, secret: &[u8]) -> Result<[u8; 32], SigError> {
    let mut canonical = String::with_capacity(256);
    canonical.push_str(req.method.as_str());
    canonical.push('\n');
    canonical.push_str(req.uri.path());
    canonical.push('\n');
    // GET requests carry their parameters in the query, signed as sent.
    canonical.push_str(req.uri.query().unwrap_or_default());
    canonical.push('\n');
    for name in &claims.signed_headers {
        canonical.push_str(name);
        canonical.push(':');
        canonical.push_str(req.header_values(name)?.join(",").trim());
        canonical.push('\n');
    }
    canonical.push('\n');
    canonical.push_str(&claims.signed_headers.join(";"));
    canonical.push('\n');
    canonical.push_str(&req.body_sha256_hex());
    let to_sign = format!(
        "{ALGORITHM}\n{}\n{}/{}/tc3_request\n{}",
        claims.timestamp,
        claims.date,
        claims.service,
        crate::sha256_hex(canonical.as_bytes())
    );
    let mut key = Vec::with_capacity(3 + secret.len());
    key.extend_from_slice(b"TC3");
    key.extend_from_slice(secret);
    let k_date = hmac_sha256(&key, claims.date.as_bytes());
    key.iter_mut().for_each(|b| *b = 0);
    let k_service = hmac_sha256(&k_date, claims.service.as_bytes());
    let k_signing = hmac_sha256(&k_service, b"tc3_request");
    Ok(hmac_sha256(&k_signing, to_sign.as_bytes()))
}

/// An `Authorization` value as the SDKs make it (tests and benchmarks).
pub fn authorize(
    req: &Request<'_>,
    access_key_id: &str,
    secret: &[u8],
    service: &str,
) -> Result<String, SigError> {
    let stamp = req.required_header("x-tc-timestamp")?;
    let timestamp: i64 = stamp
        .parse()
        .map_err(|_| SigError::Malformed("X-TC-Timestamp"))?;
    let time =
        DateTime::from_timestamp(timestamp, 0).ok_or(SigError::Malformed("X-TC-Timestamp"))?;
    let claims = Claims {
        access_key_id: access_key_id.to_owned(),
        date: time.format("%Y-%m-%d").to_string(),
        service: service.to_owned(),
        signed_headers: vec!["content-type".into(), "host".into()],
        timestamp,
        time,
        signature: Vec::new(),
    };
    let sig = signature(&claims, req, secret)?;
    Ok(format!(
        "{ALGORITHM} Credential={access_key_id}/{}/{service}/tc3_request, SignedHeaders=content-type;host, Signature={}",
        claims.date,
        hex::encode(sig)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue, Method, Uri};

    /// The TC3 guide's example request (CVM DescribeInstances, example
    /// credentials); the expected signature is what tencentcloud-sdk-python
    /// 3.1's own `Sign.sign_tc3` computes for it.
    #[test]
    fn matches_the_tencent_documentation_example() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "content-type",
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        headers.insert("host", HeaderValue::from_static("cvm.tencentcloudapi.com"));
        headers.insert("x-tc-timestamp", HeaderValue::from_static("1551113065"));
        let uri: Uri = "/".parse().unwrap();
        let body = br#"{"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}"#;
        let req = Request {
            method: &Method::POST,
            uri: &uri,
            headers: &headers,
            body,
        };
        let auth = authorize(
            &req,
            "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE",
            b"Gu5t9xGARNpq86cd98joQYCN3EXAMPLE",
            "cvm",
        )
        .unwrap();
        assert!(
            auth.ends_with(
                "Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
            ),
            "{auth}"
        );
        let mut headers = headers.clone();
        headers.insert("authorization", auth.parse().unwrap());
        let req = Request {
            headers: &headers,
            ..req
        };
        let claims = parse(&req).unwrap();
        assert_eq!(claims.date, "2019-02-25");
        assert_eq!(
            hex::encode(claims.signature()),
            "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
        );
        // The credential names an access key and ends as TC3 says.
        for credential in [
            "/2019-02-25/cvm/tc3_request",
            "AKID/2019-02-25/cvm/tc4_request",
        ] {
            let mut h = headers.clone();
            h.insert(
                "authorization",
                format!("TC3-HMAC-SHA256 Credential={credential}, SignedHeaders=content-type;host, Signature={}", "00".repeat(32))
                    .parse()
                    .unwrap(),
            );
            let r = Request { headers: &h, ..req };
            assert_eq!(
                parse(&r).err(),
                Some(SigError::Malformed("Credential")),
                "{credential}"
            );
        }
        assert!(verify(&claims, &req, b"Gu5t9xGARNpq86cd98joQYCN3EXAMPLE").unwrap());
        assert!(!verify(&claims, &req, b"Gu5t9xGARNpq86cd98joQYCN3EXAMPLf").unwrap());
        let mut unsigned = headers.clone();
        unsigned.insert(
            "x-tc-content-sha256",
            HeaderValue::from_static("UNSIGNED-PAYLOAD"),
        );
        let r = Request {
            headers: &unsigned,
            ..req
        };
        assert_eq!(parse(&r).err(), Some(SigError::BodyHashMismatch));
    }
}
