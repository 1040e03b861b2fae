//! Broker fixtures: a KMS with a key and clients, plus a broker in front of it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ::broker::token::{Audience, Claims, TokenKeys, AUDIENCE};
use base64::Engine as _;
use kms::crypto::SecretBytes;
use serde_json::{json, Value};

use super::*;

/// The page origin the test brokers allow.
pub const ORIGIN: &str = "http://player.example";

pub struct BrokerSetup {
    pub kms: Setup,
    pub issuer: String,
    /// The HS256 secret, raw and as given to the broker (base64).
    pub secret: Vec<u8>,
    pub secret_b64: String,
    pub broker: BrokerProcess,
    pub api: Api,
}

impl BrokerSetup {
    pub async fn new() -> Self {
        Self::with_env(&[]).await
    }

    pub async fn with_env(env: &[(&str, &str)]) -> Self {
        let kms = Setup::new().await;
        let (_, issuer) = kms.api.create_client(&kms.admin, "issuer", None).await;
        let secret: Vec<u8> = (0..32).map(|_| rand::random::<u8>()).collect();
        let secret_b64 = base64::engine::general_purpose::STANDARD.encode(&secret);
        let broker = Self::start_broker(&kms, &secret_b64, env).await;
        let api = Api::new(&broker.url);
        Self {
            kms,
            issuer,
            secret,
            secret_b64,
            broker,
            api,
        }
    }

    /// Another broker process on the same database and KMS.
    pub async fn start_broker(
        kms: &Setup,
        secret_b64: &str,
        env: &[(&str, &str)],
    ) -> BrokerProcess {
        let mut all = vec![
            ("VODKMS_CORS_ORIGINS", ORIGIN),
            ("VODKMS_COOKIE_SECURE", "false"),
        ];
        all.extend_from_slice(env);
        BrokerProcess::start_broker(&kms.db, &kms.kms.url, &kms.decryptor, secret_b64, &all).await
    }

    /// A data key for `video`: `(16 key bytes, EDK)`.
    pub async fn data_key(&self, video: &str) -> (Vec<u8>, String) {
        let r = self
            .kms
            .api
            .generate(&self.kms.generator, "alias/vod", video)
            .await;
        let body = r.ok();
        let key = base64::engine::general_purpose::STANDARD
            .decode(body["Plaintext"].as_str().unwrap())
            .unwrap();
        assert_eq!(key.len(), 16);
        (key, body["CiphertextBlob"].as_str().unwrap().to_owned())
    }

    /// A token from `POST /v1/tokens`.
    pub async fn issue(&self, viewer: &str, videos: &[&str], ttl: u64) -> Value {
        let r = self
            .api
            .post(
                "/v1/tokens",
                &self.issuer,
                json!({ "Viewer": viewer, "VideoIds": videos, "TtlSeconds": ttl }),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        r.body
    }

    pub async fn token(&self, viewer: &str, videos: &[&str]) -> String {
        self.issue(viewer, videos, 600).await["Token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Signs arbitrary claims with the broker's HS256 secret (an app backend).
    pub fn sign(&self, claims: &Claims) -> String {
        let keys = TokenKeys::new(
            Some(SecretBytes::new(self.secret.clone())),
            None,
            0,
            i64::MAX,
        )
        .unwrap();
        keys.sign(claims).unwrap()
    }

    /// GET `path` on the broker with optional bearer, cookie and Origin.
    pub async fn fetch(
        &self,
        path: &str,
        bearer: Option<&str>,
        cookie: Option<&str>,
    ) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
        fetch_from(&self.api, path, bearer, cookie).await
    }

    /// `(status, Code)` of a key request with a query-string token.
    pub async fn key_status(&self, query: &str) -> (u16, String) {
        let (status, _, body) = self
            .fetch(&format!("/v1/hls/key?{query}"), None, None)
            .await;
        let code = if status == 200 {
            String::new()
        } else {
            serde_json::from_slice::<Value>(&body).unwrap()["Code"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        (status, code)
    }
}

/// GET `path` on any broker (`api`) with optional bearer, cookie, and the
/// allowed Origin: `(status, headers, body bytes)`.
pub async fn fetch_from(
    api: &Api,
    path: &str,
    bearer: Option<&str>,
    cookie: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = api
        .request(reqwest::Method::GET, path, bearer)
        .header("Origin", ORIGIN);
    if let Some(c) = cookie {
        req = req.header("Cookie", format!("vodkms_token={c}"));
    }
    api.raw_bytes(req).await
}

pub fn claims(sub: &str, vids: &[&str], iat: i64, exp: i64) -> Claims {
    Claims {
        sub: sub.into(),
        vids: vids.iter().map(|v| v.to_string()).collect(),
        iat,
        exp,
        jti: uuid::Uuid::new_v4().simple().to_string(),
        nbf: None,
        aud: Audience::One(AUDIENCE.into()),
        keys: None,
        ip: None,
        device: None,
    }
}

/// The claims of a JWT, unverified.
pub fn token_payload(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Percent-encodes a query value.
pub fn q(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
