//! AWS Signature Version 4, `Authorization` header form, as botocore and the
//! other AWS SDKs sign JSON protocol requests:
//!
//! ```text
//! Authorization: AWS4-HMAC-SHA256 Credential=AKID/20261201/us-east-1/kms/aws4_request,
//!                SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=<64 hex>
//! ```
//!
//! The door requires `host`, `x-amz-date` and `x-amz-target` to be signed, so
//! a captured signature can be replayed neither to another server name nor
//! as another operation, and the body is always hashed by us (a signed
//! `x-amz-content-sha256` must agree; `UNSIGNED-PAYLOAD` is refused).

use chrono::{DateTime, Utc};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use crate::canonical::authorization;
use crate::canonical::{
    encode, hex_signature, query_pairs, require_signed, signed_header_names, Request, RFC3986_PATH,
};
use crate::{hmac_sha256, same, SigError};

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// Headers every request must have signed.
pub const REQUIRED_SIGNED: [&str; 3] = ["host", "x-amz-date", "x-amz-target"];

/// What a SigV4 request claims, read without any secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub access_key_id: String,
    /// `YYYYMMDD` of the credential scope (equal to X-Amz-Date's).
    pub date: String,
    pub region: String,
    pub service: String,
    pub signed_headers: Vec<String>,
    /// X-Amz-Date as sent (`YYYYMMDDTHHMMSSZ`).
    pub amz_date: String,
    pub time: DateTime<Utc>,
    signature: Vec<u8>,
}

/// Reads the `Authorization` and `X-Amz-Date` headers.
pub fn parse(req: &Request<'_>) -> Result<Claims, SigError> {
    let [credential, signed, signature] = authorization(
        req,
        ALGORITHM,
        "only AWS4-HMAC-SHA256 signatures are accepted",
    )?;
    let parts: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, terminator] = parts[..] else {
        return Err(SigError::Malformed("Credential"));
    };
    if terminator != "aws4_request" || access_key_id.is_empty() {
        return Err(SigError::Malformed("Credential"));
    }
    let signed_headers = signed_header_names(signed)?;
    require_signed(&signed_headers, &REQUIRED_SIGNED)?;
    if let Some(h) = req.header("x-amz-content-sha256")? {
        if h != req.body_sha256_hex() {
            return Err(SigError::BodyHashMismatch);
        }
    }
    let amz_date = req.required_header("x-amz-date")?;
    let time = parse_amz_date(amz_date).ok_or(SigError::Malformed("X-Amz-Date"))?;
    if amz_date.get(..8) != Some(date) {
        return Err(SigError::Malformed(
            "Credential (its date is not X-Amz-Date's)",
        ));
    }
    Ok(Claims {
        access_key_id: access_key_id.to_owned(),
        date: date.to_owned(),
        region: region.to_owned(),
        service: service.to_owned(),
        signed_headers,
        amz_date: amz_date.to_owned(),
        time,
        signature: hex_signature(signature, 32)?,
    })
}

/// `YYYYMMDDTHHMMSSZ`, read by hand: a format string parse was a visible
/// share of the AWS door's time.
fn parse_amz_date(s: &str) -> Option<DateTime<Utc>> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |acc, d| {
            d.is_ascii_digit().then(|| acc * 10 + u32::from(d - b'0'))
        })
    };
    let date =
        chrono::NaiveDate::from_ymd_opt(i32::try_from(num(0..4)?).ok()?, num(4..6)?, num(6..8)?)?;
    Some(
        date.and_hms_opt(num(9..11)?, num(11..13)?, num(13..15)?)?
            .and_utc(),
    )
}

/// Whether the request was signed with `secret` as it claims.
pub fn verify(claims: &Claims, req: &Request<'_>, secret: &[u8]) -> Result<bool, SigError> {
    Ok(same(&signature(claims, req, secret)?, &claims.signature))
}

/// The signature of `req` under `secret` for these claims (also what a
/// client computes; the tests and benchmarks sign with it). The canonical
/// request is streamed into its hash, never built as a string: this runs
/// on every request of the AWS door.
pub fn signature(claims: &Claims, req: &Request<'_>, secret: &[u8]) -> Result<[u8; 32], SigError> {
    let key = SigningKey::derive(secret, &claims.date, &claims.region, &claims.service);
    signature_with_key(claims, req, &key)
}

/// Whether the request was signed with the key derived for its scope (a
/// caller may keep derived keys: they change once a day per access key).
pub fn verify_with_key(
    claims: &Claims,
    req: &Request<'_>,
    key: &SigningKey,
) -> Result<bool, SigError> {
    Ok(same(
        &signature_with_key(claims, req, key)?,
        &claims.signature,
    ))
}

/// The key SigV4 derives from a secret for one date, region and service;
/// wiped on drop, never printed.
pub struct SigningKey([u8; 32]);

impl SigningKey {
    pub fn derive(secret: &[u8], date: &str, region: &str, service: &str) -> Self {
        let mut key = Vec::with_capacity(4 + secret.len());
        key.extend_from_slice(b"AWS4");
        key.extend_from_slice(secret);
        let mut k = hmac_sha256(&key, date.as_bytes());
        key.zeroize();
        for part in [region.as_bytes(), service.as_bytes(), b"aws4_request"] {
            let next = hmac_sha256(&k, part);
            k.zeroize();
            k = next;
        }
        Self(k)
    }
}

impl Drop for SigningKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey([REDACTED])")
    }
}

fn signature_with_key(
    claims: &Claims,
    req: &Request<'_>,
    key: &SigningKey,
) -> Result<[u8; 32], SigError> {
    let canonical = canonical_request_hash(req, &claims.signed_headers)?;
    let mut canonical_hex = [0u8; 64];
    hex::encode_to_slice(canonical, &mut canonical_hex).map_err(|_| SigError::Malformed("hash"))?;
    let k_signing: &[u8] = &key.0;
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(k_signing).map_err(|_| SigError::Malformed("key"))?;
    for part in [
        ALGORITHM.as_bytes(),
        b"\n",
        claims.amz_date.as_bytes(),
        b"\n",
        claims.date.as_bytes(),
        b"/",
        claims.region.as_bytes(),
        b"/",
        claims.service.as_bytes(),
        b"/aws4_request\n",
        &canonical_hex,
    ] {
        mac.update(part);
    }
    Ok(mac.finalize().into_bytes().into())
}

fn canonical_request_hash(req: &Request<'_>, signed: &[String]) -> Result<[u8; 32], SigError> {
    let mut h = Sha256::new();
    h.update(req.method.as_str().as_bytes());
    h.update(b"\n");
    // Non-S3 services encode the path as sent once more (so `%` becomes `%25`).
    for piece in percent_encoding::utf8_percent_encode(req.uri.path(), RFC3986_PATH) {
        h.update(piece.as_bytes());
    }
    h.update(b"\n");
    if req.uri.query().is_some_and(|q| !q.is_empty()) {
        let mut query: Vec<(String, String)> = query_pairs(req.uri)
            .into_iter()
            .map(|(k, v)| (encode(&k), encode(&v)))
            .collect();
        query.sort();
        for (i, (k, v)) in query.iter().enumerate() {
            if i > 0 {
                h.update(b"&");
            }
            h.update(k.as_bytes());
            h.update(b"=");
            h.update(v.as_bytes());
        }
    }
    h.update(b"\n");
    for name in signed {
        h.update(name.as_bytes());
        h.update(b":");
        let mut any = false;
        for (i, v) in req.headers.get_all(name.as_str()).iter().enumerate() {
            let v = v
                .to_str()
                .map_err(|_| SigError::Malformed("a signed header"))?;
            if i > 0 {
                h.update(b",");
            }
            // Trimmed, runs of spaces as one (SigV4's header value rule).
            for (j, word) in v.split_whitespace().enumerate() {
                if j > 0 {
                    h.update(b" ");
                }
                h.update(word.as_bytes());
            }
            any = true;
        }
        if !any {
            // HTTP/2 carries the host as `:authority`, which is the URI's.
            match (name.as_str(), req.uri.authority()) {
                ("host", Some(a)) => h.update(a.as_str().as_bytes()),
                _ => return Err(SigError::Missing("a signed header")),
            }
        }
        h.update(b"\n");
    }
    h.update(b"\n");
    for (i, name) in signed.iter().enumerate() {
        if i > 0 {
            h.update(b";");
        }
        h.update(name.as_bytes());
    }
    h.update(b"\n");
    let mut body_hex = [0u8; 64];
    hex::encode_to_slice(Sha256::digest(req.body), &mut body_hex)
        .map_err(|_| SigError::Malformed("hash"))?;
    h.update(body_hex);
    Ok(h.finalize().into())
}

/// An `Authorization` value for a request, as an SDK would send it: for
/// tests, benchmarks and the CLI's own self-checks.
pub fn authorize(
    req: &Request<'_>,
    access_key_id: &str,
    secret: &[u8],
    region: &str,
    service: &str,
    signed_headers: &[&str],
) -> Result<String, SigError> {
    let amz_date = req.required_header("x-amz-date")?.to_owned();
    let date = amz_date.get(..8).unwrap_or_default().to_owned();
    let claims = Claims {
        access_key_id: access_key_id.to_owned(),
        date: date.clone(),
        region: region.to_owned(),
        service: service.to_owned(),
        signed_headers: signed_headers.iter().map(|s| (*s).to_owned()).collect(),
        amz_date,
        time: DateTime::<Utc>::MIN_UTC,
        signature: Vec::new(),
    };
    let sig = signature(&claims, req, secret)?;
    Ok(format!(
        "{ALGORITHM} Credential={access_key_id}/{date}/{region}/{service}/aws4_request, SignedHeaders={}, Signature={}",
        signed_headers.join(";"),
        hex::encode(sig)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue, Method, Uri};

    /// AWS's documented example (IAM ListUsers, "Create a signed AWS API
    /// request", example secret), signed the same way as our KMS requests.
    #[test]
    fn matches_the_aws_documentation_example() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "content-type",
            HeaderValue::from_static("application/x-www-form-urlencoded; charset=utf-8"),
        );
        headers.insert("host", HeaderValue::from_static("iam.amazonaws.com"));
        headers.insert("x-amz-date", HeaderValue::from_static("20150830T123600Z"));
        let uri: Uri = "/?Action=ListUsers&Version=2010-05-08".parse().unwrap();
        let req = Request {
            method: &Method::GET,
            uri: &uri,
            headers: &headers,
            body: b"",
        };
        let auth = authorize(
            &req,
            "AKIDEXAMPLE",
            b"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "us-east-1",
            "iam",
            &["content-type", "host", "x-amz-date"],
        )
        .unwrap();
        assert!(
            auth.ends_with(
                "Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
            ),
            "{auth}"
        );
    }

    fn kms_request(headers: &mut HeaderMap, body: &'static [u8]) -> (Uri, &'static [u8]) {
        headers.insert("host", HeaderValue::from_static("127.0.0.1:8081"));
        headers.insert("x-amz-date", HeaderValue::from_static("20261201T010203Z"));
        headers.insert(
            "x-amz-target",
            HeaderValue::from_static("TrentService.GenerateDataKey"),
        );
        headers.insert(
            "content-type",
            HeaderValue::from_static("application/x-amz-json-1.1"),
        );
        ("/".parse().unwrap(), body)
    }

    #[test]
    fn amz_dates_are_read_exactly() {
        let t = parse_amz_date("20261201T010203Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-12-01T01:02:03+00:00");
        let t = parse_amz_date("19991231T235959Z").unwrap();
        assert_eq!(t.to_rfc3339(), "1999-12-31T23:59:59+00:00");
        for bad in [
            "20261201 010203Z",
            "20261201T010203 ",
            "20261201X010203Y",
            "20261201T01020Z",
            "20261301T010203Z",
            "2026120aT010203Z",
        ] {
            assert_eq!(parse_amz_date(bad), None, "{bad}");
        }
    }

    /// The canonical request written out by hand from the SigV4
    /// specification: a header sent twice is one line, its values joined by
    /// commas, runs of spaces made one; a Host carried only in the URI (as
    /// HTTP/2's `:authority`) counts as the Host header.
    #[test]
    fn repeated_headers_and_an_authority_host_are_canonical() {
        use sha2::{Digest, Sha256};
        let mut headers = HeaderMap::new();
        headers.insert("x-amz-date", HeaderValue::from_static("20261201T010203Z"));
        headers.append("x-amz-meta", HeaderValue::from_static("a"));
        headers.append("x-amz-meta", HeaderValue::from_static("  b   c "));
        let uri: Uri = "http://127.0.0.1:8081/".parse().unwrap();
        let body = b"{}";
        let req = Request {
            method: &Method::POST,
            uri: &uri,
            headers: &headers,
            body,
        };
        let signed = ["host", "x-amz-date", "x-amz-meta"];
        let auth = authorize(&req, "VKMSTEST", b"secret", "us-east-1", "kms", &signed).unwrap();
        let canonical = format!(
            "POST\n/\n\nhost:127.0.0.1:8081\nx-amz-date:20261201T010203Z\nx-amz-meta:a,b c\n\n\
             host;x-amz-date;x-amz-meta\n{}",
            hex::encode(Sha256::digest(body))
        );
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n20261201T010203Z\n20261201/us-east-1/kms/aws4_request\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let key = SigningKey::derive(b"secret", "20261201", "us-east-1", "kms");
        let want = hex::encode(crate::hmac_sha256(&key.0, to_sign.as_bytes()));
        assert!(auth.ends_with(&format!("Signature={want}")), "{auth}");
    }

    #[test]
    fn a_signed_request_verifies_and_any_change_breaks_it() {
        let mut headers = HeaderMap::new();
        let (uri, body) = kms_request(&mut headers, br#"{"KeyId":"alias/vod"}"#);
        let signed = ["content-type", "host", "x-amz-date", "x-amz-target"];
        let req = Request {
            method: &Method::POST,
            uri: &uri,
            headers: &headers,
            body,
        };
        let auth = authorize(&req, "VKMSTEST", b"secret", "us-east-1", "kms", &signed).unwrap();
        let mut headers = headers.clone();
        headers.insert("authorization", auth.parse().unwrap());
        let req = Request {
            headers: &headers,
            ..req
        };
        let claims = parse(&req).unwrap();
        assert_eq!(claims.access_key_id, "VKMSTEST");
        assert_eq!(claims.region, "us-east-1");
        // A derived key verifies its own signatures only.
        let right = SigningKey::derive(b"secret", "20261201", "us-east-1", "kms");
        let wrong_day = SigningKey::derive(b"secret", "20261202", "us-east-1", "kms");
        let wrong_secret = SigningKey::derive(b"secreT", "20261201", "us-east-1", "kms");
        assert_eq!(verify_with_key(&claims, &req, &right), Ok(true));
        assert_eq!(verify_with_key(&claims, &req, &wrong_day), Ok(false));
        assert_eq!(verify_with_key(&claims, &req, &wrong_secret), Ok(false));
        // Never printed.
        assert_eq!(format!("{right:?}"), "SigningKey([REDACTED])");
        assert!(verify(&claims, &req, b"secret").unwrap());
        assert!(!verify(&claims, &req, b"secreT").unwrap());
        let other_body = Request {
            body: br#"{"KeyId":"alias/other"}"#,
            ..req
        };
        assert!(!verify(&claims, &other_body, b"secret").unwrap());
        let mut moved = headers.clone();
        moved.insert(
            "x-amz-target",
            HeaderValue::from_static("TrentService.Decrypt"),
        );
        let moved = Request {
            headers: &moved,
            ..req
        };
        assert!(!verify(&claims, &moved, b"secret").unwrap());
    }

    #[test]
    fn required_parts_must_be_signed_and_well_formed() {
        let mut headers = HeaderMap::new();
        let (uri, body) = kms_request(&mut headers, b"{}");
        let req = Request {
            method: &Method::POST,
            uri: &uri,
            headers: &headers,
            body,
        };
        let cases = [
            ("AWS4-HMAC-SHA256 Credential=A/20261201/us-east-1/kms/aws4_request, SignedHeaders=host;x-amz-date, Signature=00", SigError::NotSigned("x-amz-target")),
            ("AWS4-HMAC-SHA256 Credential=A/20261130/us-east-1/kms/aws4_request, SignedHeaders=host;x-amz-date;x-amz-target, Signature=0000000000000000000000000000000000000000000000000000000000000000", SigError::Malformed("Credential (its date is not X-Amz-Date's)")),
            ("AWS4-HMAC-SHA256 Credential=A/20261201/us-east-1/kms, SignedHeaders=host;x-amz-date;x-amz-target, Signature=00", SigError::Malformed("Credential")),
            ("AWS4-HMAC-SHA256 Credential=/20261201/us-east-1/kms/aws4_request, SignedHeaders=host;x-amz-date;x-amz-target, Signature=00", SigError::Malformed("Credential")),
            ("AWS4-HMAC-SHA256 Credential=A/20261201/us-east-1/kms/aws5_request, SignedHeaders=host;x-amz-date;x-amz-target, Signature=00", SigError::Malformed("Credential")),
            ("AWS4-HMAC-SHA256 Credential=A/20261201/us-east-1/kms/aws4_request, SignedHeaders=host;x-amz-date;x-amz-target, Signature=zz", SigError::Malformed("Signature")),
            ("AWS4-HMAC-SHA1 Credential=A", SigError::Unsupported("only AWS4-HMAC-SHA256 signatures are accepted")),
            ("AWS4-HMAC-SHA256 garbage", SigError::Malformed("Authorization")),
        ];
        for (auth, want) in cases {
            let mut h = headers.clone();
            h.insert("authorization", auth.parse().unwrap());
            let r = Request { headers: &h, ..req };
            assert_eq!(parse(&r).err(), Some(want), "{auth}");
        }
        assert_eq!(parse(&req).err(), Some(SigError::Unsigned));
        let mut h = headers.clone();
        h.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=A/20261201/us-east-1/kms/aws4_request, SignedHeaders=host;x-amz-date;x-amz-target, Signature=00".parse().unwrap(),
        );
        h.insert(
            "x-amz-content-sha256",
            HeaderValue::from_static("UNSIGNED-PAYLOAD"),
        );
        let r = Request { headers: &h, ..req };
        assert_eq!(parse(&r).err(), Some(SigError::BodyHashMismatch));
    }
}
