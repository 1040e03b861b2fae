//! Alibaba Cloud RPC signature v1 (HMAC-SHA1), as aliyun-python-sdk-core and
//! the other classic SDKs sign: every parameter (query and form body, but
//! not `Signature`) sorted by name, each name and value percent-encoded
//! (RFC 3986), joined, encoded once more, and signed as
//! `POST&%2F&<that>` with the key `secret + "&"`; base64 in `Signature`.

use base64::Engine as _;
use chrono::{DateTime, NaiveDateTime, Utc};
use hmac::{Hmac, Mac};

use crate::canonical::encode;
use crate::{same, SigError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub access_key_id: String,
    pub action: String,
    pub version: String,
    pub nonce: String,
    pub time: DateTime<Utc>,
    signature: Vec<u8>,
}

fn param<'a>(params: &'a [(String, String)], name: &'static str) -> Result<&'a str, SigError> {
    let mut found = params.iter().filter(|(k, _)| k == name);
    let first = found.next().ok_or(SigError::Missing(name))?;
    if found.next().is_some() {
        return Err(SigError::Malformed(name));
    }
    Ok(&first.1)
}

/// Reads the signature parameters from all of a request's parameters.
pub fn parse(params: &[(String, String)]) -> Result<Claims, SigError> {
    let signature = match param(params, "Signature") {
        Err(SigError::Missing(_)) => return Err(SigError::Unsigned),
        other => other?,
    };
    if param(params, "SignatureMethod")? != "HMAC-SHA1" {
        return Err(SigError::Unsupported("SignatureMethod must be HMAC-SHA1"));
    }
    if param(params, "SignatureVersion")? != "1.0" {
        return Err(SigError::Unsupported("SignatureVersion must be 1.0"));
    }
    let stamp = param(params, "Timestamp")?;
    let time = NaiveDateTime::parse_from_str(stamp, "%Y-%m-%dT%H:%M:%SZ")
        .map_err(|_| SigError::Malformed("Timestamp"))?
        .and_utc();
    let signature = base64::engine::general_purpose::STANDARD
        .decode(signature)
        .ok()
        .filter(|s| s.len() == 20)
        .ok_or(SigError::Malformed("Signature"))?;
    Ok(Claims {
        access_key_id: param(params, "AccessKeyId")?.to_owned(),
        action: param(params, "Action")?.to_owned(),
        version: param(params, "Version")?.to_owned(),
        nonce: param(params, "SignatureNonce")?.to_owned(),
        time,
        signature,
    })
}

pub fn verify(claims: &Claims, method: &str, params: &[(String, String)], secret: &[u8]) -> bool {
    same(&signature(method, params, secret), &claims.signature)
}

/// The string that is signed (no secret in it). Alibaba Cloud shows it in
/// SignatureDoesNotMatch errors; the classic SDK compares it with its own to
/// tell a wrong secret from a wrong signing method.
pub fn string_to_sign(method: &str, params: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "Signature")
        .map(|(k, v)| (encode(k), encode(v)))
        .collect();
    pairs.sort();
    let joined: Vec<String> = pairs.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{method}&%2F&{}", encode(&joined.join("&")))
}

pub fn signature(method: &str, params: &[(String, String)], secret: &[u8]) -> [u8; 20] {
    let to_sign = string_to_sign(method, params);
    let mut key = Vec::with_capacity(secret.len() + 1);
    key.extend_from_slice(secret);
    key.push(b'&');
    let mac = Hmac::<sha1::Sha1>::new_from_slice(&key).map(|mut m| {
        m.update(to_sign.as_bytes());
        m.finalize().into_bytes()
    });
    key.iter_mut().for_each(|b| *b = 0);
    mac.map(Into::into).unwrap_or([0; 20])
}

/// The `Signature` parameter value for these parameters (tests).
pub fn sign(method: &str, params: &[(String, String)], secret: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(signature(method, params, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// Alibaba Cloud's documented RPC example (ECS DescribeRegions, secret
    /// `testsecret`).
    #[test]
    fn matches_the_alibaba_documentation_example() {
        let params = owned(&[
            ("AccessKeyId", "testid"),
            ("Action", "DescribeRegions"),
            ("Format", "XML"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2016-02-23T12:46:24Z"),
            ("Version", "2014-05-26"),
        ]);
        assert_eq!(
            sign("GET", &params, b"testsecret"),
            "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
        );
    }

    #[test]
    fn a_signed_request_verifies_and_any_change_breaks_it() {
        let mut params = owned(&[
            ("AccessKeyId", "VKMSTEST"),
            ("Action", "Decrypt"),
            ("Version", "2016-01-20"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
            ("SignatureNonce", "abc"),
            ("Timestamp", "2026-12-01T01:02:03Z"),
            ("EncryptionContext", r#"{"video_id": "a b*~"}"#),
        ]);
        let sig = sign("POST", &params, b"secret");
        params.push(("Signature".into(), sig));
        let claims = parse(&params).unwrap();
        assert_eq!(claims.action, "Decrypt");
        assert!(verify(&claims, "POST", &params, b"secret"));
        assert!(!verify(&claims, "POST", &params, b"secreT"));
        assert!(!verify(&claims, "GET", &params, b"secret"));
        params[1].1 = "Encrypt".into();
        assert!(!verify(&claims, "POST", &params, b"secret"));
        params.push(("Signature".into(), "x".into()));
        assert_eq!(parse(&params).err(), Some(SigError::Malformed("Signature")));
    }
}
