//! Typed async client for the KMS HTTP API, shared by the broker and the CLI.
//!
//! One pooled `reqwest::Client` per `KmsClient` (cheap to clone). Transient
//! failures are retried with jittered exponential backoff: a refused
//! connection, 429 and 503 always (the request did nothing), a timeout or a
//! 502/504 only for calls that are safe to repeat.

use std::time::Duration;

use rand::Rng;
pub use reqwest::Method;
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::*;
use foundation::ApiToken;

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub connect_timeout: Duration,
    /// Whole request, connection included.
    pub request_timeout: Duration,
    /// Extra attempts after the first.
    pub retries: u32,
    pub backoff_base: Duration,
    /// Longest single wait, also the cap on a server's `Retry-After`.
    pub backoff_max: Duration,
    /// PEM certificates to trust for `https://` (a private CA), besides the
    /// usual public roots.
    pub ca_pem: Option<Vec<u8>>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            retries: 2,
            backoff_base: Duration::from_millis(50),
            backoff_max: Duration::from_secs(1),
            ca_pem: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The KMS answered with an error body.
    #[error("KMS refused ({status}): {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// No usable answer (connection refused, timeout, 5xx without a body), after retries.
    #[error("KMS unavailable: {0}")]
    Unavailable(String),
    /// Bad configuration, e.g. a malformed base URL.
    #[error("KMS client: {0}")]
    Config(String),
}

impl ClientError {
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The KMS is away or overloaded (worth retrying later), as opposed to a refusal.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Unavailable(_) => true,
            Self::Api { status, .. } => *status == 429 || *status >= 500,
            Self::Config(_) => false,
        }
    }
}

/// Whether a call may be sent twice without harm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repeat {
    Safe,
    /// Creates something: repeat only when the first attempt surely did nothing.
    OnlyIfUnsent,
}

#[derive(Clone)]
pub struct KmsClient {
    http: reqwest::Client,
    base: String,
    token: ApiToken,
    config: ClientConfig,
}

impl std::fmt::Debug for KmsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl KmsClient {
    pub fn new(base_url: &str, token: ApiToken, config: ClientConfig) -> Result<Self, ClientError> {
        let base = base_url.trim_end_matches('/').to_owned();
        let parsed = reqwest::Url::parse(&base)
            .map_err(|e| ClientError::Config(format!("KMS URL {base:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ClientError::Config(format!(
                "KMS URL {base:?} must start with http:// or https://"
            )));
        }
        let mut builder = reqwest::Client::builder();
        if let Some(pem) = &config.ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| ClientError::Config(format!("the CA file is not PEM: {e}")))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| ClientError::Config(e.to_string()))?;
        Ok(Self {
            http,
            base,
            token,
            config,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        token: &ApiToken,
        body: Option<&B>,
        repeat: Repeat,
    ) -> Result<T, ClientError> {
        let url = format!("{}{}", self.base, path);
        let mut attempt = 0u32;
        loop {
            let mut req = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(token.expose_secret());
            if let Some(b) = body {
                req = req.json(b);
            }
            let outcome = match req.send().await {
                Ok(resp) => Self::read(resp).await,
                Err(e) => Err(Failure::transport(&e)),
            };
            let failure = match outcome {
                Ok(v) => return Ok(v),
                Err(f) => f,
            };
            let retry = attempt < self.config.retries
                && match failure.kind {
                    FailureKind::Unsent | FailureKind::Busy => true,
                    FailureKind::Uncertain => repeat == Repeat::Safe,
                    FailureKind::Final => false,
                };
            if !retry {
                return Err(failure.error);
            }
            tokio::time::sleep(self.backoff(attempt, failure.retry_after)).await;
            attempt += 1;
        }
    }

    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .config
            .backoff_base
            .saturating_mul(1u32 << attempt.min(16));
        // Full jitter: spreads out brokers that all lost the KMS at once.
        let jittered = exp.mul_f64(rand::thread_rng().gen_range(0.5..1.0));
        retry_after.unwrap_or(jittered).min(self.config.backoff_max)
    }

    async fn read<T: DeserializeOwned>(resp: reqwest::Response) -> Result<T, Failure> {
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => return Err(Failure::transport(&e)),
        };
        if status.is_success() {
            // An empty body (204) reads as `null`, which `()` accepts.
            let body: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
            return serde_json::from_slice(body).map_err(|e| Failure {
                kind: FailureKind::Final,
                retry_after: None,
                error: ClientError::Unavailable(format!("unexpected answer from the KMS: {e}")),
            });
        }
        let kind = match status {
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => FailureKind::Busy,
            StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT => FailureKind::Uncertain,
            _ => FailureKind::Final,
        };
        let error = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => ClientError::Api {
                status: status.as_u16(),
                code: body.code,
                message: body.message,
            },
            // No JSON error body: a proxy's page, or not our KMS.
            Err(_) => ClientError::Unavailable(format!("KMS answered HTTP {status}")),
        };
        Err(Failure {
            kind,
            retry_after,
            error,
        })
    }

    // --- data keys ---

    pub async fn generate_data_key(
        &self,
        req: &GenerateDataKeyRequest,
    ) -> Result<GenerateDataKeyResponse, ClientError> {
        self.post("/v1/generate-data-key", req, Repeat::Safe).await
    }

    /// Up to 1000 keys in one call; with a `ClientToken`, safe to repeat.
    pub async fn generate_data_keys(
        &self,
        req: &GenerateDataKeysRequest,
    ) -> Result<GenerateDataKeysResponse, ClientError> {
        let repeat = if req.client_token.is_some() {
            Repeat::Safe
        } else {
            Repeat::OnlyIfUnsent
        };
        self.post("/v1/generate-data-keys", req, repeat).await
    }

    pub async fn generate_data_key_without_plaintext(
        &self,
        req: &GenerateDataKeyRequest,
    ) -> Result<GenerateDataKeyResponse, ClientError> {
        self.post("/v1/generate-data-key-without-plaintext", req, Repeat::Safe)
            .await
    }

    pub async fn decrypt(&self, req: &DecryptRequest) -> Result<DecryptResponse, ClientError> {
        self.post("/v1/decrypt", req, Repeat::Safe).await
    }

    pub async fn re_encrypt(
        &self,
        req: &ReEncryptRequest,
    ) -> Result<ReEncryptResponse, ClientError> {
        self.post("/v1/re-encrypt", req, Repeat::Safe).await
    }

    /// Up to 1000 blobs in one call; each answered on its own.
    pub async fn re_encrypt_batch(
        &self,
        reqs: &[ReEncryptRequest],
    ) -> Result<Vec<ReEncryptResult>, ClientError> {
        self.post("/v1/re-encrypt", reqs, Repeat::Safe).await
    }

    // --- keys ---

    pub async fn create_key(&self, req: &CreateKeyRequest) -> Result<KeyMetadata, ClientError> {
        self.post("/v1/keys", req, Repeat::OnlyIfUnsent).await
    }

    pub async fn list_keys(&self) -> Result<ListKeysResponse, ClientError> {
        self.get("/v1/keys").await
    }

    /// `key` is a key id or `alias/...`.
    pub async fn describe_key(&self, key: &str) -> Result<KeyMetadata, ClientError> {
        self.get(&format!("/v1/keys/{}", path_segment(key))).await
    }

    /// `action`: rotate, disable, enable, schedule-deletion, cancel-deletion.
    pub async fn key_action(
        &self,
        key: &str,
        action: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        let path = format!("/v1/keys/{}/{}", path_segment(key), path_segment(action));
        self.post(&path, body, Repeat::OnlyIfUnsent).await
    }

    // --- clients and audit ---

    pub async fn create_client(
        &self,
        req: &CreateClientRequest,
    ) -> Result<CreateClientResponse, ClientError> {
        self.post("/v1/clients", req, Repeat::OnlyIfUnsent).await
    }

    pub async fn list_clients(&self) -> Result<ListClientsResponse, ClientError> {
        self.get("/v1/clients").await
    }

    pub async fn revoke_client(&self, id: uuid::Uuid) -> Result<(), ClientError> {
        let path = format!("/v1/clients/{id}");
        self.call::<(), ()>(Method::DELETE, &path, &self.token, None, Repeat::Safe)
            .await
    }

    /// `query`: the URL query string without `?` (e.g. `Limit=10&KeyId=...`).
    pub async fn audit(&self, query: &str) -> Result<AuditResponse, ClientError> {
        self.get(&format!("/v1/audit?{query}")).await
    }

    /// The KMS's change feed (`GET /v1/changes`), open. It stays open for
    /// as long as the KMS runs, so the client's request timeout does not
    /// apply; the KMS pings every 15 s.
    pub async fn changes(&self) -> Result<ChangeStream, ClientError> {
        let resp = self
            .http
            .get(format!("{}/v1/changes", self.base))
            .bearer_auth(self.token.expose_secret())
            .timeout(Duration::from_secs(365 * 86_400))
            .send()
            .await
            .map_err(|e| Failure::transport(&e).error)?;
        if resp.status().is_success() {
            return Ok(ChangeStream {
                resp,
                pending: Vec::new(),
            });
        }
        Err(Self::read::<()>(resp).await.err().map_or_else(
            || ClientError::Unavailable("the change feed closed".into()),
            |f| f.error,
        ))
    }

    /// Who this client is.
    pub async fn whoami(&self) -> Result<ClientInfo, ClientError> {
        self.get("/v1/whoami").await
    }

    /// Who the holder of `token` is: how the broker checks admin and issuer
    /// tokens. `Api { status: 401 }` for unknown or revoked tokens.
    pub async fn identify(&self, token: &ApiToken) -> Result<ClientInfo, ClientError> {
        self.call::<(), _>(Method::GET, "/v1/whoami", token, None, Repeat::Safe)
            .await
    }

    /// Any call of this API, or of the broker's (it speaks the same way:
    /// Bearer tokens, JSON bodies, `{Code, Message}` errors). `repeat_safe`:
    /// whether an attempt that timed out may be sent again.
    pub async fn request_json(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        repeat_safe: bool,
    ) -> Result<serde_json::Value, ClientError> {
        let repeat = if repeat_safe {
            Repeat::Safe
        } else {
            Repeat::OnlyIfUnsent
        };
        self.call(method, path, &self.token, body, repeat).await
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call::<(), T>(Method::GET, path, &self.token, None, Repeat::Safe)
            .await
    }

    async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        repeat: Repeat,
    ) -> Result<T, ClientError> {
        self.call(Method::POST, path, &self.token, Some(body), repeat)
            .await
    }
}

/// Percent-encodes what may not appear raw in one path segment. Aliases keep
/// their slashes (`alias/a/b` routes as an alias path on the server).
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/:".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FailureKind {
    /// The request never reached the KMS.
    Unsent,
    /// The KMS said it did nothing and to come back (429, 503).
    Busy,
    /// The request may or may not have been carried out.
    Uncertain,
    Final,
}

struct Failure {
    kind: FailureKind,
    retry_after: Option<Duration>,
    error: ClientError,
}

impl Failure {
    fn transport(e: &reqwest::Error) -> Self {
        let kind = if e.is_connect() {
            FailureKind::Unsent
        } else if e.is_builder() {
            FailureKind::Final
        } else {
            FailureKind::Uncertain
        };
        // reqwest's Display names the URL but never headers, so no token leaks.
        Self {
            kind,
            retry_after: None,
            error: ClientError::Unavailable(e.to_string()),
        }
    }
}

/// An open `GET /v1/changes`.
pub struct ChangeStream {
    resp: reqwest::Response,
    pending: Vec<u8>,
}

/// Longest line the change feed sends.
const MAX_CHANGE_LINE: usize = 64 * 1024;

impl ChangeStream {
    /// The next event, `Ok(None)` when the KMS ends the stream. A line this
    /// version cannot read comes back as `Reset` (drop everything: safe).
    pub async fn next(&mut self) -> Result<Option<crate::api::ChangeEvent>, ClientError> {
        loop {
            if let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                return Ok(Some(
                    serde_json::from_slice(&line).unwrap_or(crate::api::ChangeEvent::Reset),
                ));
            }
            if self.pending.len() > MAX_CHANGE_LINE {
                return Err(ClientError::Unavailable(
                    "a change feed line longer than 64 KiB".into(),
                ));
            }
            match self.resp.chunk().await {
                Ok(Some(bytes)) => self.pending.extend_from_slice(&bytes),
                Ok(None) => return Ok(None),
                Err(e) => return Err(Failure::transport(&e).error),
            }
        }
    }
}
