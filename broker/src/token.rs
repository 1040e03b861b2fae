//! Playback tokens: compact JWS JWTs (RFC 7515/7519), so any app backend can
//! mint them with an ordinary JWT library. Signatures are made and checked
//! by one (`jsonwebtoken`'s HS256 and EdDSA); what surrounds them is ours.
//!
//! Only the algorithms configured are accepted, each with its own key type:
//! `HS256` with the shared secret, `EdDSA` (Ed25519) with the public key. The
//! header's `alg` picks between them and nothing else: no `none`, no `kid`
//! lookups, no `crit` extensions, so an HMAC can never be checked against a
//! public key (algorithm confusion): each key goes to the library with its
//! one algorithm. The signature is checked before the claims are even
//! parsed; then `aud`, the times with their leeway (an expired token's
//! claims are kept for playback sessions), the lifetime cap and the claims'
//! shapes.
//!
//! Why not the library's `decode`: it parses the header three times and the
//! claims twice, and took 2.9 µs a token against 1.3 µs for this (the
//! signature being the same code), about a tenth of a cached key release.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::{SigningKey, VerifyingKey};
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::sync::Arc;
use zeroize::Zeroizing;

use foundation::SecretBytes;

/// The `aud` every playback token must carry.
pub const AUDIENCE: &str = "vodkms";
/// Longest token accepted, in bytes (header, claims and signature).
pub const MAX_TOKEN_LEN: usize = 4096;
/// `vids` entry meaning every video.
pub const ALL_VIDEOS: &str = "*";
/// Shortest HS256 secret accepted (RFC 7518 §3.2: at least the hash size).
pub const MIN_SECRET_LEN: usize = 32;

pub const MAX_SUBJECT_LEN: usize = 256;
pub use kms_api::context::{valid_video_id, MAX_VIDEO_ID_LEN};
pub const MAX_VIDEOS: usize = 1000;
pub const MAX_JTI_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The viewer.
    pub sub: String,
    /// Video ids, or `["*"]`; empty: none.
    pub vids: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    pub aud: Audience,
    /// The master keys whose data keys this token may release: set on tokens
    /// of an issuer limited to some keys. Absent: any key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<uuid::Uuid>>,
    /// The caller's address must be this address, or inside this CIDR range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The app's id of the viewer's device: what the concurrent-stream limit
    /// counts, instead of the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

/// Longest `device` claim.
pub const MAX_DEVICE_LEN: usize = 128;

/// An `ip` claim: an address or a CIDR range.
pub fn parse_ip_claim(text: &str) -> Option<ipnet::IpNet> {
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .ok()
}

/// `aud` may be one string or an array of them (RFC 7519 §4.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, aud: &str) -> bool {
        match self {
            Self::One(a) => a == aud,
            Self::Many(list) => list.iter().any(|a| a == aud),
        }
    }
}

impl Claims {
    pub fn all_videos(&self) -> bool {
        self.vids.iter().any(|v| v == ALL_VIDEOS)
    }

    pub fn allows(&self, video_id: &str) -> bool {
        self.all_videos() || self.vids.iter().any(|v| v == video_id)
    }

    /// Whether a data key sealed under master key `key_id` may be released.
    pub fn allows_key(&self, key_id: uuid::Uuid) -> bool {
        self.keys.as_ref().is_none_or(|keys| keys.contains(&key_id))
    }

    /// Whether the `ip` claim (if any) lets `caller` use this token. A token
    /// bound to an address is refused when the caller's is unknown.
    pub fn address_allowed(&self, caller: Option<std::net::IpAddr>) -> bool {
        let Some(claim) = &self.ip else { return true };
        match (parse_ip_claim(claim), caller) {
            (Some(net), Some(ip)) => net.contains(&ip),
            _ => false,
        }
    }

    /// The one video this token names, if it names exactly one (not `*`).
    pub fn single_video(&self) -> Option<&str> {
        match self.vids.as_slice() {
            [only] if only != ALL_VIDEOS => Some(only),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token's algorithm is not accepted here")]
    UnsupportedAlgorithm,
    #[error("the token's signature is not valid")]
    BadSignature,
    #[error("the token is not for this service (aud)")]
    WrongAudience,
    #[error("the token's claims are missing or invalid: {0}")]
    InvalidClaims(&'static str),
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token lives longer than this broker accepts")]
    LifetimeTooLong,
    /// Signature and claims are fine but `exp` has passed: the claims come
    /// along so a playback session may still carry the token.
    #[error("the token has expired")]
    Expired(Box<Claims>),
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

/// The keys and rules playback tokens are checked against.
pub struct TokenKeys {
    hs256: Option<SecretBytes>,
    /// The keys as the JWT library takes them, made once.
    hs256_jwt: Option<(EncodingKey, DecodingKey)>,
    eddsa_jwt: Option<DecodingKey>,
    /// Allowed clock difference with the token's signer, seconds.
    pub leeway: i64,
    /// Longest `exp - iat` accepted, seconds. Bounds how long a revocation
    /// must be remembered, whoever signed the token.
    pub max_lifetime: i64,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("hs256", &self.hs256.as_ref().map(|_| "[REDACTED]"))
            .field("eddsa", &self.eddsa_jwt.is_some())
            .field("leeway", &self.leeway)
            .field("max_lifetime", &self.max_lifetime)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyConfigError {
    #[error("the HS256 secret must be base64 of at least {MIN_SECRET_LEN} bytes")]
    WeakSecret,
    #[error("the Ed25519 public key must be 32 bytes in base64, or a PEM `PUBLIC KEY`")]
    BadPublicKey,
    #[error("no token key configured: give an HS256 secret and/or an Ed25519 public key")]
    NoKey,
}

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410), before the 32
/// key bytes: the tests write PEM keys with it.
#[cfg(test)]
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

impl TokenKeys {
    pub fn new(
        hs256: Option<SecretBytes>,
        eddsa: Option<VerifyingKey>,
        leeway: i64,
        max_lifetime: i64,
    ) -> Result<Self, KeyConfigError> {
        if hs256.is_none() && eddsa.is_none() {
            return Err(KeyConfigError::NoKey);
        }
        if hs256.as_ref().is_some_and(|s| s.len() < MIN_SECRET_LEN) {
            return Err(KeyConfigError::WeakSecret);
        }
        // A small-order key would let forged signatures pass a non-strict
        // check (the library's): refuse it here, once.
        if eddsa.as_ref().is_some_and(VerifyingKey::is_weak) {
            return Err(KeyConfigError::BadPublicKey);
        }
        let hs256_jwt = hs256.as_ref().map(|s| {
            (
                EncodingKey::from_secret(s.expose_secret()),
                DecodingKey::from_secret(s.expose_secret()),
            )
        });
        let eddsa_jwt = eddsa
            .as_ref()
            .map(|k| DecodingKey::from_ed_der(k.as_bytes()));
        Ok(Self {
            hs256,
            hs256_jwt,
            eddsa_jwt,
            leeway: leeway.max(0),
            max_lifetime: max_lifetime.max(1),
        })
    }

    /// Decodes an HS256 secret given as base64 (standard or URL-safe).
    pub fn secret_from_base64(text: &str) -> Result<SecretBytes, KeyConfigError> {
        let bytes = foundation::encoding::decode_base64_any(text.trim())
            .ok_or(KeyConfigError::WeakSecret)?;
        let secret = SecretBytes::from(Zeroizing::new(bytes));
        if secret.len() < MIN_SECRET_LEN {
            return Err(KeyConfigError::WeakSecret);
        }
        Ok(secret)
    }

    /// Reads an Ed25519 public key: base64 of the 32 raw bytes, or PEM SPKI
    /// (the same reader as the audit's public keys).
    pub fn public_key_from_text(text: &str) -> Result<VerifyingKey, KeyConfigError> {
        foundation::audit::verifying_key_from_text(text).map_err(|_| KeyConfigError::BadPublicKey)
    }

    pub fn can_sign(&self) -> bool {
        self.hs256.is_some()
    }

    /// The HMAC of a sign-in device cookie, under a key derived from the
    /// HS256 secret (so a cookie can never pass for a token). `None` if no
    /// secret is configured.
    fn device_mac(&self, account: &str, id: &str, exp: i64) -> Option<Hmac<Sha256>> {
        let mut derive = hmac_for(self.hs256.as_ref()?)?;
        derive.update(b"vodkms device cookie v1");
        let key: Zeroizing<[u8; 32]> = Zeroizing::new(derive.finalize().into_bytes().into());
        let mut mac = Hmac::<Sha256>::new_from_slice(key.as_slice()).ok()?;
        mac.update(format!("{account}\n{id}\n{exp}").as_bytes());
        Some(mac)
    }

    /// A device cookie, `ID.EXPIRY.MAC`: this browser signed in to `account`
    /// (lowercased), valid until `exp` (Unix seconds).
    pub fn device_cookie(&self, account: &str, exp: i64) -> Option<String> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let mac = self.device_mac(account, &id, exp)?.finalize().into_bytes();
        Some(format!("{id}.{exp}.{}", URL_SAFE_NO_PAD.encode(mac)))
    }

    /// Whether `cookie` is a device cookie of `account`, unexpired at `now`.
    pub fn device_known(&self, account: &str, cookie: &str, now: i64) -> bool {
        let mut parts = cookie.splitn(3, '.');
        let (Some(id), Some(exp), Some(mac)) = (parts.next(), parts.next(), parts.next()) else {
            return false;
        };
        let (Ok(exp), Ok(mac)) = (exp.parse::<i64>(), URL_SAFE_NO_PAD.decode(mac)) else {
            return false;
        };
        exp > now
            && self
                .device_mac(account, id, exp)
                .is_some_and(|expected| expected.verify_slice(&mac).is_ok())
    }

    /// Signs with HS256 (the broker's own tokens). `None` if no secret is configured.
    pub fn sign(&self, claims: &Claims) -> Option<String> {
        let (key, _) = self.hs256_jwt.as_ref()?;
        jsonwebtoken::encode(&jsonwebtoken::Header::new(Algorithm::HS256), claims, key).ok()
    }

    /// Checks signature, audience and times; `now` in Unix seconds.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(h64), Some(p64), Some(s64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        // The library checks signatures, not headers: `crit` and `typ` are
        // ours, and `alg` is read as text, so `none` or a misspelling is
        // refused as such.
        let header: Header = decode_json(h64)?;
        if header.crit.is_some() {
            // We understand no extensions, so we must refuse any marked critical.
            return Err(TokenError::UnsupportedAlgorithm);
        }
        if header
            .typ
            .as_deref()
            .is_some_and(|t| !t.eq_ignore_ascii_case("JWT"))
        {
            return Err(TokenError::Malformed);
        }
        // Not base64 at all is malformed (checked into a stack buffer: the
        // library decodes it again; a longer one fails as a bad signature).
        let mut sig = [0u8; 128];
        if let Err(base64::DecodeSliceError::DecodeError(_)) =
            URL_SAFE_NO_PAD.decode_slice(s64, &mut sig)
        {
            return Err(TokenError::Malformed);
        }
        // Each key with its one algorithm.
        let (key, algorithm) = match (header.alg.as_str(), &self.hs256_jwt, &self.eddsa_jwt) {
            ("HS256", Some((_, key)), _) => (key, Algorithm::HS256),
            ("EdDSA", _, Some(key)) => (key, Algorithm::EdDSA),
            _ => return Err(TokenError::UnsupportedAlgorithm),
        };
        let signing_input = &token.as_bytes()[..h64.len() + 1 + p64.len()];
        match jsonwebtoken::crypto::verify(s64, signing_input, key, algorithm) {
            Ok(true) => {}
            Ok(false) | Err(_) => return Err(TokenError::BadSignature),
        }
        // Only now are the claims read.
        let claims: Claims = decode_json(p64)
            .map_err(|_| TokenError::InvalidClaims("sub, vids, exp, iat, jti, aud"))?;
        self.check_claims(claims, now)
    }

    fn check_claims(&self, claims: Claims, now: i64) -> Result<Claims, TokenError> {
        self.check_content(&claims)?;
        self.check_times(claims, now)
    }

    /// What does not change with time: audience, ids, videos, lifetime.
    fn check_content(&self, claims: &Claims) -> Result<(), TokenError> {
        if !claims.aud.contains(AUDIENCE) {
            return Err(TokenError::WrongAudience);
        }
        // No control characters: these are stored (sessions, revocations) and
        // PostgreSQL text cannot hold NUL, so one token must not poison a batch.
        if !valid_id(&claims.sub, MAX_SUBJECT_LEN) {
            return Err(TokenError::InvalidClaims("sub"));
        }
        if !valid_id(&claims.jti, MAX_JTI_LEN) {
            return Err(TokenError::InvalidClaims("jti"));
        }
        // An empty list is valid: entitled to nothing.
        if claims.vids.len() > MAX_VIDEOS || claims.vids.iter().any(|v| !valid_video_id(v)) {
            return Err(TokenError::InvalidClaims("vids"));
        }
        if claims.keys.as_ref().is_some_and(|k| k.len() > MAX_VIDEOS) {
            return Err(TokenError::InvalidClaims("keys"));
        }
        if claims
            .ip
            .as_deref()
            .is_some_and(|ip| parse_ip_claim(ip).is_none())
        {
            return Err(TokenError::InvalidClaims("ip"));
        }
        if claims
            .device
            .as_deref()
            .is_some_and(|d| !valid_id(d, MAX_DEVICE_LEN))
        {
            return Err(TokenError::InvalidClaims("device"));
        }
        if claims.exp < claims.iat {
            return Err(TokenError::InvalidClaims("exp"));
        }
        if claims.exp.saturating_sub(claims.iat) > self.max_lifetime {
            return Err(TokenError::LifetimeTooLong);
        }
        Ok(())
    }

    /// As `check_times`, for shared claims (copied only into an error).
    fn check_times_of(&self, claims: Arc<Claims>, now: i64) -> Result<Arc<Claims>, TokenError> {
        match self.times(&claims, now) {
            Ok(()) => Ok(claims),
            Err(TimeCheck::NotYetValid) => Err(TokenError::NotYetValid),
            Err(TimeCheck::Expired) => Err(TokenError::Expired(Box::new((*claims).clone()))),
        }
    }

    /// `iat`, `nbf` and `exp` against `now`, with the leeway.
    fn check_times(&self, claims: Claims, now: i64) -> Result<Claims, TokenError> {
        match self.times(&claims, now) {
            Ok(()) => Ok(claims),
            Err(TimeCheck::NotYetValid) => Err(TokenError::NotYetValid),
            Err(TimeCheck::Expired) => Err(TokenError::Expired(Box::new(claims))),
        }
    }

    fn times(&self, claims: &Claims, now: i64) -> Result<(), TimeCheck> {
        if claims.iat > now.saturating_add(self.leeway)
            || claims
                .nbf
                .is_some_and(|nbf| nbf > now.saturating_add(self.leeway))
        {
            return Err(TimeCheck::NotYetValid);
        }
        if now > claims.exp.saturating_add(self.leeway) {
            return Err(TimeCheck::Expired);
        }
        Ok(())
    }
}

enum TimeCheck {
    NotYetValid,
    Expired,
}

/// Tokens whose signature and content were verified, so a player fetching
/// key after key with one token pays for the JWT once (base64, JSON and the
/// signature were about 1 µs of the cached key path's ~20). The times are
/// checked on every use. Only tokens that verified are kept, and a lookup
/// compares whole tokens under a randomly keyed hash, so nothing is learnt
/// by timing. Bounded: a full shard is emptied. Tied to one [`TokenKeys`].
pub struct VerifiedTokens {
    shards: Vec<std::sync::Mutex<std::collections::HashMap<Box<str>, Arc<Claims>>>>,
    hasher: std::hash::RandomState,
    per_shard: usize,
}

/// Longer tokens are verified every time rather than kept.
const MAX_REMEMBERED_TOKEN_LEN: usize = 2048;
const TOKEN_SHARDS: usize = 16;

impl VerifiedTokens {
    pub fn new(capacity: usize) -> Self {
        Self {
            shards: (0..TOKEN_SHARDS).map(|_| Default::default()).collect(),
            hasher: std::hash::RandomState::new(),
            per_shard: capacity.div_ceil(TOKEN_SHARDS),
        }
    }

    fn shard(
        &self,
        token: &str,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<Box<str>, Arc<Claims>>> {
        use std::hash::BuildHasher;
        let i = (self.hasher.hash_one(token) as usize) % TOKEN_SHARDS;
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// As [`TokenKeys::verify`], remembering what verified; the claims are
    /// shared, not copied, on every use.
    pub fn verify(
        &self,
        keys: &TokenKeys,
        token: &str,
        now: i64,
    ) -> Result<Arc<Claims>, TokenError> {
        if self.per_shard == 0 || token.len() > MAX_REMEMBERED_TOKEN_LEN {
            return keys.verify(token, now).map(Arc::new);
        }
        let known = self.shard(token).get(token).cloned();
        if let Some(claims) = known {
            return keys.check_times_of(claims, now);
        }
        let result = keys.verify(token, now);
        // An expired token verified too: its claims may still be wanted by a
        // live session on the next request.
        let verified = match &result {
            Ok(claims) => Some(claims),
            Err(TokenError::Expired(claims)) => Some(&**claims),
            Err(_) => None,
        };
        if let Some(claims) = verified {
            let mut shard = self.shard(token);
            if shard.len() >= self.per_shard {
                shard.clear();
            }
            shard.insert(token.into(), Arc::new(claims.clone()));
        }
        result.map(Arc::new)
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A viewer or token id: 1..=max bytes, no control characters.
pub fn valid_id(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && !s.chars().any(char::is_control)
}

/// HMAC takes keys of any length, so this is always `Some` in practice.
fn hmac_for(secret: &SecretBytes) -> Option<Hmac<Sha256>> {
    Hmac::<Sha256>::new_from_slice(secret.expose_secret()).ok()
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

/// PKCS#8 v1 DER of an Ed25519 private key (RFC 8410), before the 32-byte seed.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// Signs claims with EdDSA: what an app backend holding the private key does.
/// Used by tests and tools; the broker itself only verifies EdDSA.
pub fn sign_eddsa(key: &SigningKey, claims: &Claims) -> String {
    let mut der = Zeroizing::new(ED25519_PKCS8_PREFIX.to_vec());
    der.extend_from_slice(key.as_bytes());
    let key = EncodingKey::from_ed_der(&der);
    jsonwebtoken::encode(&jsonwebtoken::Header::new(Algorithm::EdDSA), claims, &key)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn claims() -> Claims {
        Claims {
            sub: "alice".into(),
            vids: vec!["v1".into()],
            exp: NOW + 600,
            iat: NOW,
            jti: "t1".into(),
            nbf: None,
            aud: Audience::One(AUDIENCE.into()),
            keys: None,
            ip: None,
            device: None,
        }
    }

    fn hs_keys() -> TokenKeys {
        TokenKeys::new(Some(SecretBytes::new(vec![7u8; 32])), None, 60, 86_400).unwrap()
    }

    #[test]
    fn ip_and_device_claims_are_checked() {
        let keys = hs_keys();
        let bound = Claims {
            ip: Some("198.51.100.0/24".into()),
            device: Some("living-room-tv".into()),
            ..claims()
        };
        let verified = keys.verify(&keys.sign(&bound).unwrap(), NOW).unwrap();
        assert!(verified.address_allowed(Some("198.51.100.9".parse().unwrap())));
        assert!(!verified.address_allowed(Some("203.0.113.9".parse().unwrap())));
        // Bound, and the caller's address unknown: refused.
        assert!(!verified.address_allowed(None));
        assert!(claims().address_allowed(None));
        let one = Claims {
            ip: Some("2001:db8::7".into()),
            ..claims()
        };
        assert!(one.address_allowed(Some("2001:db8::7".parse().unwrap())));
        assert!(!one.address_allowed(Some("2001:db8::8".parse().unwrap())));
        for (bad, field) in [
            (
                Claims {
                    ip: Some("198.51.100.0/33".into()),
                    ..claims()
                },
                "ip",
            ),
            (
                Claims {
                    device: Some("tv\n".into()),
                    ..claims()
                },
                "device",
            ),
        ] {
            assert_eq!(
                keys.verify(&keys.sign(&bad).unwrap(), NOW),
                Err(TokenError::InvalidClaims(field))
            );
        }
    }

    #[test]
    fn remembered_tokens_still_expire_and_only_verified_ones_are_kept() {
        let keys = hs_keys();
        let memo = VerifiedTokens::new(64);
        let token = keys.sign(&claims()).unwrap();
        assert_eq!(memo.verify(&keys, &token, NOW).unwrap(), Arc::new(claims()));
        assert_eq!(memo.len(), 1);
        // From memory: the same claims, and the times checked again.
        assert_eq!(
            memo.verify(&keys, &token, NOW + 600).unwrap(),
            Arc::new(claims())
        );
        assert!(matches!(
            memo.verify(&keys, &token, NOW + 661),
            Err(TokenError::Expired(_))
        ));
        assert!(matches!(
            memo.verify(&keys, &token, NOW - 61),
            Err(TokenError::NotYetValid)
        ));
        // One character off is another token: verified, refused, not kept.
        let last = token.chars().last().unwrap();
        let flipped = format!(
            "{}{}",
            &token[..token.len() - 1],
            if last == 'A' { 'B' } else { 'A' }
        );
        assert!(memo.verify(&keys, &flipped, NOW).is_err());
        let other =
            TokenKeys::new(Some(SecretBytes::new(vec![8u8; 32])), None, 60, 86_400).unwrap();
        let forged = other.sign(&claims()).unwrap();
        assert_eq!(
            memo.verify(&keys, &forged, NOW),
            Err(TokenError::BadSignature)
        );
        // Content checks were made before keeping: a wrong audience never is.
        let mut foreign = claims();
        foreign.aud = Audience::One("someone-else".into());
        let foreign = keys.sign(&foreign).unwrap();
        assert_eq!(
            memo.verify(&keys, &foreign, NOW),
            Err(TokenError::WrongAudience)
        );
        assert_eq!(memo.len(), 1);
        // An expired token that verified is kept (a live session may want it).
        let mut old = claims();
        old.iat = NOW - 7200;
        old.exp = NOW - 3600;
        let old = keys.sign(&old).unwrap();
        assert!(matches!(
            memo.verify(&keys, &old, NOW),
            Err(TokenError::Expired(_))
        ));
        assert!(matches!(
            memo.verify(&keys, &old, NOW),
            Err(TokenError::Expired(_))
        ));
        assert_eq!(memo.len(), 2);
    }

    #[test]
    fn remembered_tokens_are_bounded() {
        let keys = hs_keys();
        let memo = VerifiedTokens::new(32);
        for i in 0..1000 {
            let mut c = claims();
            c.jti = format!("t{i}");
            let token = keys.sign(&c).unwrap();
            assert_eq!(
                memo.verify(&keys, &token, NOW).unwrap().jti,
                format!("t{i}")
            );
        }
        assert!(memo.len() <= 32, "{}", memo.len());
        let none = VerifiedTokens::new(0);
        assert!(none
            .verify(&keys, &keys.sign(&claims()).unwrap(), NOW)
            .is_ok());
        assert!(none.is_empty());
    }

    #[test]
    fn device_cookies_name_one_account_until_they_expire() {
        let keys = hs_keys();
        let cookie = keys.device_cookie("vera", NOW + 100).unwrap();
        assert!(keys.device_known("vera", &cookie, NOW));
        assert!(!keys.device_known("vera", &cookie, NOW + 100));
        assert!(!keys.device_known("other", &cookie, NOW));
        let other_secret =
            TokenKeys::new(Some(SecretBytes::new(vec![8u8; 32])), None, 60, 86_400).unwrap();
        assert!(!other_secret.device_known("vera", &cookie, NOW));
        // A later expiry with the old MAC, a flipped MAC, junk.
        let (id, rest) = cookie.split_once('.').unwrap();
        let mac = rest.split_once('.').unwrap().1;
        assert!(!keys.device_known("vera", &format!("{id}.{}.{mac}", NOW + 999), NOW));
        let flipped = format!("{}A", &cookie[..cookie.len() - 1]);
        assert!(flipped == cookie || !keys.device_known("vera", &flipped, NOW));
        for junk in ["", ".", "..", "a.b.c", "a.1.", "a.99999999999999999999.x"] {
            assert!(!keys.device_known("vera", junk, NOW), "{junk}");
        }
        // A token is not a device cookie, nor the other way round.
        let token = keys.sign(&claims()).unwrap();
        assert!(!keys.device_known("alice", &token, NOW));
        assert!(keys.verify(&cookie, NOW).is_err());
        // Without a secret there are none.
        let verify_only = TokenKeys::new(
            None,
            Some(SigningKey::from_bytes(&[1; 32]).verifying_key()),
            60,
            86_400,
        )
        .unwrap();
        assert!(verify_only.device_cookie("vera", NOW + 100).is_none());
        assert!(!verify_only.device_known("vera", &cookie, NOW));
    }

    fn forge(header: &str, claims: &Claims, sig: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap()),
            URL_SAFE_NO_PAD.encode(sig)
        )
    }

    #[test]
    fn hs256_round_trip() {
        let keys = hs_keys();
        let token = keys.sign(&claims()).unwrap();
        assert_eq!(keys.verify(&token, NOW).unwrap(), claims());
    }

    #[test]
    fn matches_a_known_external_token() {
        // Made by PyJWT-compatible code: HMAC-SHA256 over the standard encoding,
        // key = 32 bytes of 0x07. Checks we interoperate, not just round-trip.
        let keys = hs_keys();
        let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"HS256"}"#);
        let payload = URL_SAFE_NO_PAD.encode(
            br#"{"sub":"bob","vids":["*"],"exp":1800000600,"iat":1800000000,"jti":"x","aud":["other","vodkms"]}"#,
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(&[7u8; 32]).unwrap();
        mac.update(format!("{header}.{payload}").as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        let c = keys
            .verify(&format!("{header}.{payload}.{sig}"), NOW)
            .unwrap();
        assert!(c.all_videos());
        assert_eq!(c.single_video(), None);
    }

    #[test]
    fn refuses_none_and_unknown_algorithms() {
        let keys = hs_keys();
        for alg in ["none", "None", "HS384", "RS256", "hs256", ""] {
            let t = forge(&format!(r#"{{"alg":"{alg}"}}"#), &claims(), b"");
            assert_eq!(
                keys.verify(&t, NOW),
                Err(TokenError::UnsupportedAlgorithm),
                "{alg}"
            );
        }
    }

    #[test]
    fn no_algorithm_confusion() {
        // An EdDSA-only broker must not accept an HMAC keyed with its public key.
        let signing = SigningKey::from_bytes(&[9u8; 32]);
        let public = signing.verifying_key();
        let keys = TokenKeys::new(None, Some(public), 60, 86_400).unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(public.as_bytes()).unwrap();
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256"}"#);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims()).unwrap());
        mac.update(format!("{header}.{payload}").as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        assert_eq!(
            keys.verify(&format!("{header}.{payload}.{sig}"), NOW),
            Err(TokenError::UnsupportedAlgorithm)
        );
        // The genuine EdDSA token passes; a tampered one does not.
        let good = sign_eddsa(&signing, &claims());
        assert_eq!(keys.verify(&good, NOW).unwrap(), claims());
        let mut other = claims();
        other.vids = vec!["*".into()];
        let (h, rest) = good.split_once('.').unwrap();
        let sig = rest.split_once('.').unwrap().1;
        let tampered = format!(
            "{h}.{}.{sig}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&other).unwrap())
        );
        assert_eq!(keys.verify(&tampered, NOW), Err(TokenError::BadSignature));
    }

    #[test]
    fn times_and_audience() {
        let keys = hs_keys();
        let sign = |c: &Claims| keys.sign(c).unwrap();
        assert!(matches!(
            keys.verify(&sign(&claims()), NOW + 600 + 61),
            Err(TokenError::Expired(_))
        ));
        // Within the leeway it still passes.
        assert!(keys.verify(&sign(&claims()), NOW + 600 + 59).is_ok());
        assert_eq!(
            keys.verify(&sign(&claims()), NOW - 61),
            Err(TokenError::NotYetValid)
        );
        let mut c = claims();
        c.aud = Audience::One("other".into());
        assert_eq!(keys.verify(&sign(&c), NOW), Err(TokenError::WrongAudience));
        let mut c = claims();
        c.exp = c.iat + 86_401;
        assert_eq!(
            keys.verify(&sign(&c), NOW),
            Err(TokenError::LifetimeTooLong)
        );
        let mut c = claims();
        c.vids = vec!["has space".into()];
        assert_eq!(
            keys.verify(&sign(&c), NOW),
            Err(TokenError::InvalidClaims("vids"))
        );
        let mut c = claims();
        c.jti = "a\u{0}b".into();
        assert_eq!(
            keys.verify(&sign(&c), NOW),
            Err(TokenError::InvalidClaims("jti"))
        );
        let mut c = claims();
        c.sub = "a\nb".into();
        assert_eq!(
            keys.verify(&sign(&c), NOW),
            Err(TokenError::InvalidClaims("sub"))
        );
        let mut c = claims();
        c.nbf = Some(NOW + 120);
        assert_eq!(keys.verify(&sign(&c), NOW), Err(TokenError::NotYetValid));
    }

    #[test]
    fn refuses_crit_and_wrong_typ_and_junk() {
        let keys = hs_keys();
        let t = forge(r#"{"alg":"HS256","crit":["x"]}"#, &claims(), b"");
        assert_eq!(keys.verify(&t, NOW), Err(TokenError::UnsupportedAlgorithm));
        let t = forge(r#"{"alg":"HS256","typ":"at+jwt"}"#, &claims(), b"");
        assert_eq!(keys.verify(&t, NOW), Err(TokenError::Malformed));
        for junk in [
            "",
            ".",
            "..",
            "a.b.c",
            "a.b.c.d",
            &"x".repeat(MAX_TOKEN_LEN + 1),
        ] {
            assert!(keys.verify(junk, NOW).is_err(), "{junk}");
        }
    }

    #[test]
    fn key_config() {
        assert!(matches!(
            TokenKeys::secret_from_base64("c2hvcnQ="),
            Err(KeyConfigError::WeakSecret)
        ));
        let signing = SigningKey::from_bytes(&[3u8; 32]);
        let raw = signing.verifying_key().to_bytes();
        let mut der = ED25519_SPKI_PREFIX.to_vec();
        der.extend_from_slice(&raw);
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(&der)
        );
        assert_eq!(
            TokenKeys::public_key_from_text(&pem).unwrap(),
            signing.verifying_key()
        );
        let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
        assert_eq!(
            TokenKeys::public_key_from_text(&b64).unwrap(),
            signing.verifying_key()
        );
        assert!(TokenKeys::public_key_from_text("bm9wZQ==").is_err());
    }

    #[test]
    fn weak_public_keys_are_refused() {
        // The identity point: of small order, so it must not verify anything.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = VerifyingKey::from_bytes(&identity).unwrap();
        assert!(matches!(
            TokenKeys::new(None, Some(weak), 60, 86_400),
            Err(KeyConfigError::BadPublicKey)
        ));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_garbage(s in ".{0,600}") {
            let _ = hs_keys().verify(&s, NOW);
        }

        #[test]
        fn any_bit_flip_is_refused(pos in 0usize..200, bit in 0u8..8) {
            let keys = hs_keys();
            let token = keys.sign(&claims()).unwrap();
            let mut bytes = token.into_bytes();
            let i = pos % bytes.len();
            bytes[i] ^= 1 << bit;
            if let Ok(t) = String::from_utf8(bytes) {
                // A flip may land on base64 padding bits that decode the same;
                // then the token is unchanged in meaning, and that is fine.
                if let Ok(c) = keys.verify(&t, NOW) {
                    proptest::prop_assert_eq!(c, claims());
                }
            }
        }
    }

    #[test]
    fn entitlement_reads_the_claims_exactly() {
        let mut c = claims();
        assert!(c.allows("v1") && !c.allows("v2") && !c.allows("v"));
        assert!(!c.all_videos());
        assert_eq!(c.single_video(), Some("v1"));
        c.vids = vec!["v1".into(), "v2".into()];
        assert!(c.allows("v2") && !c.allows("v3"));
        assert_eq!(c.single_video(), None);
        c.vids = vec![ALL_VIDEOS.into()];
        assert!(c.all_videos() && c.allows("anything"));
        assert_eq!(c.single_video(), None);
        c.vids = vec![];
        assert!(!c.allows("v1") && !c.all_videos());
        assert_eq!(c.single_video(), None);

        let (k1, k2) = (uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(2));
        assert!(c.allows_key(k1), "no keys claim: any key");
        c.keys = Some(vec![k1]);
        assert!(c.allows_key(k1) && !c.allows_key(k2));
        c.keys = Some(vec![]);
        assert!(!c.allows_key(k1));

        assert!(Audience::One(AUDIENCE.into()).contains(AUDIENCE));
        assert!(!Audience::One("other".into()).contains(AUDIENCE));
        assert!(Audience::Many(vec!["x".into(), AUDIENCE.into()]).contains(AUDIENCE));
        assert!(!Audience::Many(vec!["x".into()]).contains(AUDIENCE));
    }

    #[test]
    fn key_configuration_edges() {
        let keys = hs_keys();
        let shown = format!("{keys:?}");
        assert!(
            shown.contains("[REDACTED]") && !shown.contains("7, 7"),
            "{shown}"
        );
        assert!(keys.can_sign());
        let public = SigningKey::from_bytes(&[5; 32]).verifying_key();
        let verify_only = TokenKeys::new(None, Some(public), 0, 60).unwrap();
        assert!(!verify_only.can_sign());
        assert!(verify_only.sign(&claims()).is_none());

        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        assert!(TokenKeys::secret_from_base64(&b64(&[1; MIN_SECRET_LEN])).is_ok());
        assert!(TokenKeys::secret_from_base64(&b64(&[1; MIN_SECRET_LEN - 1])).is_err());

        let raw = public.as_bytes();
        assert_eq!(TokenKeys::public_key_from_text(&b64(raw)).unwrap(), public);
        let mut der = ED25519_SPKI_PREFIX.to_vec();
        der.extend_from_slice(raw);
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            b64(&der)
        );
        assert_eq!(TokenKeys::public_key_from_text(&pem).unwrap(), public);
        // 44 bytes that are not an Ed25519 SPKI.
        let mut other = der.clone();
        other[7] ^= 1;
        assert!(TokenKeys::public_key_from_text(&b64(&other)).is_err());
    }

    #[test]
    fn content_limits_are_inclusive() {
        let keys = hs_keys();
        let ok = |c: &Claims| keys.check_content(c);
        let mut c = claims();
        c.vids = (0..MAX_VIDEOS).map(|i| format!("v{i}")).collect();
        assert_eq!(ok(&c), Ok(()));
        c.vids.push("one-more".into());
        assert_eq!(ok(&c), Err(TokenError::InvalidClaims("vids")));
        let mut c = claims();
        c.keys = Some(vec![uuid::Uuid::nil(); MAX_VIDEOS]);
        assert_eq!(ok(&c), Ok(()));
        c.keys = Some(vec![uuid::Uuid::nil(); MAX_VIDEOS + 1]);
        assert_eq!(ok(&c), Err(TokenError::InvalidClaims("keys")));
        let mut c = claims();
        c.exp = c.iat;
        assert_eq!(ok(&c), Ok(()));
        c.exp = c.iat - 1;
        assert_eq!(ok(&c), Err(TokenError::InvalidClaims("exp")));
        c.exp = c.iat + keys.max_lifetime;
        assert_eq!(ok(&c), Ok(()));
        c.exp += 1;
        assert_eq!(ok(&c), Err(TokenError::LifetimeTooLong));
    }

    #[test]
    fn times_hold_exactly_to_the_leeway() {
        let keys = hs_keys();
        let leeway = keys.leeway;
        let times = |c: &Claims, now| keys.check_times(c.clone(), now).map(|_| ());
        let mut c = claims();
        assert_eq!(times(&c, NOW - leeway), Ok(()));
        assert_eq!(times(&c, NOW - leeway - 1), Err(TokenError::NotYetValid));
        c.nbf = Some(NOW + 100);
        assert_eq!(times(&c, NOW + 100 - leeway), Ok(()));
        assert_eq!(times(&c, NOW + 99 - leeway), Err(TokenError::NotYetValid));
        let c = claims();
        assert_eq!(times(&c, c.exp + leeway), Ok(()));
        assert!(matches!(
            times(&c, c.exp + leeway + 1),
            Err(TokenError::Expired(_))
        ));
    }

    /// A valid token of exactly `len` bytes, padded through its video ids
    /// and its id (base64 moves in steps of one or two characters).
    fn token_of_len(keys: &TokenKeys, len: usize) -> String {
        for filler in 0..len {
            for jti in 1..=3 {
                let mut c = claims();
                c.jti = "j".repeat(jti);
                let text = "x".repeat(filler);
                c.vids = text
                    .as_bytes()
                    .chunks(200)
                    .map(|ch| String::from_utf8_lossy(ch).into_owned())
                    .collect();
                let t = keys.sign(&c).unwrap();
                if t.len() == len {
                    return t;
                }
                if t.len() > len + 8 {
                    panic!("no token of {len} bytes");
                }
            }
        }
        panic!("no token of {len} bytes");
    }

    #[test]
    fn token_and_memo_length_limits_are_inclusive() {
        let keys = hs_keys();
        let longest = token_of_len(&keys, MAX_TOKEN_LEN);
        assert!(keys.verify(&longest, NOW).is_ok());
        let too_long = token_of_len(&keys, MAX_TOKEN_LEN + 1);
        assert_eq!(keys.verify(&too_long, NOW), Err(TokenError::Malformed));

        let memo = VerifiedTokens::new(64);
        assert!(memo.is_empty());
        let kept = token_of_len(&keys, MAX_REMEMBERED_TOKEN_LEN);
        memo.verify(&keys, &kept, NOW).unwrap();
        assert_eq!(memo.len(), 1);
        assert!(!memo.is_empty());
        let not_kept = token_of_len(&keys, MAX_REMEMBERED_TOKEN_LEN + 1);
        memo.verify(&keys, &not_kept, NOW).unwrap();
        assert_eq!(memo.len(), 1);
    }

    #[test]
    fn the_memo_stays_within_its_capacity() {
        let keys = hs_keys();
        let memo = VerifiedTokens::new(TOKEN_SHARDS);
        for i in 0..200 {
            let mut c = claims();
            c.jti = format!("t{i}");
            memo.verify(&keys, &keys.sign(&c).unwrap(), NOW).unwrap();
            assert!(memo.len() <= TOKEN_SHARDS, "{} after {i}", memo.len());
        }
        assert!(!memo.is_empty());
    }
}
