//! The cloud front doors at `POST /`: the AWS KMS JSON protocol, Alibaba
//! Cloud KMS (2016-01-20, RPC style) and Tencent Cloud KMS (API 3.0,
//! 2019-01-18). Each verifies its SDKs' request signature against an access
//! key, translates the call to the same service (roles, key scopes, audit)
//! as the native `/v1` API, and answers in its own dialect: its error codes,
//! always 4xx for a client's mistake (the SDKs retry 5xx).

mod alibaba;
mod aws;
mod replay;
mod tencent;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{OriginalUri, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};

use super::extract::Ctx;
use crate::model::Operation;
use crate::service::{Caller, Door, Kms, KmsError, RequestContext};

pub use replay::{ReplayGuard, Sighting};

/// How far a signed request's time may be from ours, either way.
pub const CLOCK_WINDOW: Duration = Duration::from_secs(5 * 60);

/// Settings of the doors (`vodkms kms serve --aws-region ...`).
#[derive(Debug, Clone)]
pub struct DoorConfig {
    /// The region AWS SigV4 scopes must name, and key ARNs carry.
    pub aws_region: String,
    /// The account in key ARNs (the AWS Encryption SDK compares them).
    pub aws_account_id: String,
    /// `None`: Alibaba requests are accepted for any region.
    pub alibaba_region: Option<String>,
    /// `None`: Tencent requests are accepted for any region.
    pub tencent_region: Option<String>,
}

impl Default for DoorConfig {
    fn default() -> Self {
        Self {
            aws_region: "us-east-1".into(),
            aws_account_id: "000000000000".into(),
            alibaba_region: None,
            tencent_region: None,
        }
    }
}

/// What the door handler shares.
#[derive(Clone)]
pub struct DoorState {
    kms: Kms,
    config: Arc<DoorConfig>,
    replays: Arc<ReplayGuard>,
    sigv4_keys: Arc<aws::SigningKeys>,
}

impl DoorState {
    pub fn new(kms: Kms, config: DoorConfig) -> Self {
        Self {
            kms,
            config: Arc::new(config),
            replays: Arc::new(ReplayGuard::new(CLOCK_WINDOW, 4_000_000)),
            sigv4_keys: Arc::default(),
        }
    }
}

/// A door's request, body read, with the URI the client signed (under
/// `/kms` in `vodkms dev` the router strips the prefix; signatures cover it).
pub(crate) struct Incoming {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Incoming {
    pub fn signed(&self) -> cloudsig::Request<'_> {
        cloudsig::Request {
            method: &self.method,
            uri: &self.uri,
            headers: &self.headers,
            body: &self.body,
        }
    }
}

/// A refusal in a door's dialect: what the client is told.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

/// The door a request is for, by the headers each protocol always sends.
enum Protocol {
    Aws,
    Tencent,
    Alibaba,
}

fn protocol_of(headers: &HeaderMap, uri: &Uri) -> Option<Protocol> {
    if headers.contains_key("x-amz-target") {
        Some(Protocol::Aws)
    } else if headers.contains_key("x-tc-action") {
        Some(Protocol::Tencent)
    } else if headers.contains_key("x-acs-action")
        || uri
            .query()
            .is_some_and(|q| form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "Action"))
        || headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
    {
        Some(Protocol::Alibaba)
    } else {
        None
    }
}

/// Largest body a door reads (the biggest legitimate one is an Encrypt of
/// 4 KiB, base64, with a full EncryptionContext).
pub const MAX_DOOR_BODY: usize = 256 * 1024;

/// `POST /` (and `/kms` in dev): picks the door, reads the body, hands over.
pub async fn root(
    State(state): State<DoorState>,
    OriginalUri(original): OriginalUri,
    Ctx(ctx): Ctx,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let Some(protocol) = protocol_of(&parts.headers, &original) else {
        return super::error_response(
            StatusCode::BAD_REQUEST,
            super::ErrorInfo {
                code: "UnknownProtocol",
                message: "POST / takes AWS KMS (X-Amz-Target), Alibaba Cloud KMS (Action) or Tencent Cloud KMS (X-TC-Action) requests".into(),
                log_detail: None,
            },
            None,
        );
    };
    let body = match axum::body::to_bytes(body, MAX_DOOR_BODY).await {
        Ok(b) => b,
        Err(e) => {
            let refusal = if foundation::http::server::is_body_timeout(&e) {
                Refusal::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "RequestTimeout",
                    "the request body did not arrive in time",
                )
            } else {
                Refusal::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "RequestEntityTooLarge",
                    format!("the request body is larger than {MAX_DOOR_BODY} bytes"),
                )
            };
            return match protocol {
                Protocol::Aws => aws::render_refusal(refusal, &ctx),
                Protocol::Tencent => tencent::render_refusal(refusal, &ctx),
                Protocol::Alibaba => alibaba::render_refusal(refusal, &ctx),
            };
        }
    };
    let incoming = Incoming {
        method: parts.method,
        uri: original,
        headers: parts.headers,
        body,
    };
    match protocol {
        Protocol::Aws => aws::handle(&state, ctx, incoming).await,
        Protocol::Tencent => tencent::handle(&state, ctx, incoming).await,
        Protocol::Alibaba => alibaba::handle(&state, ctx, incoming).await,
    }
}

impl DoorState {
    /// Authenticates a signed request and checks its clock. Every refusal is
    /// audited under `op`, naming the protocol and access key.
    pub(crate) async fn authenticate(
        &self,
        ctx: &mut RequestContext,
        protocol: &'static str,
        op: Operation,
        access_key_id: &str,
        sent_at: DateTime<Utc>,
        verify: impl FnOnce(&crate::crypto::SecretBytes) -> bool,
    ) -> Result<Caller, KmsError> {
        ctx.door = Some(Door {
            protocol,
            access_key_id: Some(access_key_id.chars().take(128).collect()),
        });
        let caller = match self.kms.authenticate_signed(access_key_id, verify).await {
            Ok(c) => c,
            Err(e) => {
                self.kms.audit_refusal(op, ctx, None, &e);
                return Err(e);
            }
        };
        let now = self.kms.now();
        let skew = (now - sent_at).abs();
        if skew.to_std().unwrap_or(Duration::MAX) > CLOCK_WINDOW {
            let e = KmsError::RequestExpired(format!(
                "the request was signed at {sent_at}, more than 5 minutes from the server's time {}",
                now.format("%Y-%m-%dT%H:%M:%SZ")
            ));
            self.kms.audit_refusal(op, ctx, Some(&caller), &e);
            return Err(e);
        }
        Ok(caller)
    }

    /// Refuses a nonce seen before within the clock window, for
    /// the protocol and access key `authenticate` put in `ctx`.
    pub(crate) fn first_sighting(
        &self,
        ctx: &RequestContext,
        op: Operation,
        caller: &Caller,
        token: &[u8],
        sent_at: DateTime<Utc>,
    ) -> Result<(), KmsError> {
        let (protocol, key) = ctx
            .door
            .as_ref()
            .map(|d| (d.protocol, d.access_key_id.as_deref().unwrap_or_default()))
            .unwrap_or_default();
        match self.replays.first_sighting(protocol, key, token, sent_at) {
            Sighting::First => Ok(()),
            Sighting::Repeat => {
                let e = KmsError::Replayed;
                self.kms.audit_refusal(op, ctx, Some(caller), &e);
                Err(e)
            }
            Sighting::Full => Err(KmsError::Internal(
                "too many signed requests to remember; retry shortly".into(),
            )),
        }
    }

    /// Audits a refusal found before authentication (a malformed signature).
    pub(crate) fn refuse_unsigned(
        &self,
        ctx: &mut RequestContext,
        protocol: &'static str,
        op: Operation,
        error: KmsError,
    ) -> KmsError {
        ctx.door = Some(Door {
            protocol,
            access_key_id: None,
        });
        self.kms.audit_refusal(op, ctx, None, &error);
        error
    }
}

/// An answer of the Alibaba and Tencent doors: its fields, the plaintext key
/// if any, and the request id.
#[derive(serde::Serialize)]
pub(crate) struct Answer<'a> {
    #[serde(flatten)]
    fields: &'a serde_json::Map<String, serde_json::Value>,
    #[serde(rename = "Plaintext", skip_serializing_if = "Option::is_none")]
    plaintext: Option<crate::api::Base64Secret>,
    #[serde(rename = "RequestId")]
    request_id: &'a str,
}

impl<'a> Answer<'a> {
    pub fn new(
        fields: &'a serde_json::Map<String, serde_json::Value>,
        plaintext: Option<crate::crypto::SecretBytes>,
        request_id: &'a str,
    ) -> Self {
        Self {
            fields,
            plaintext: plaintext.map(crate::api::Base64Secret),
            request_id,
        }
    }
}

/// An answer of the Alibaba and Tencent doors without key material: the
/// fields of a JSON object.
pub(crate) fn plain(
    v: serde_json::Value,
) -> (
    serde_json::Map<String, serde_json::Value>,
    Option<crate::crypto::SecretBytes>,
) {
    match v {
        serde_json::Value::Object(m) => (m, None),
        _ => (serde_json::Map::new(), None),
    }
}

/// A response body of JSON that may carry key material: written into a
/// buffer that is wiped once sent.
pub(crate) fn secret_json<T: serde::Serialize>(
    status: StatusCode,
    content_type: &'static str,
    body: &T,
) -> Response {
    let mut resp = super::secret_body::SecretJson(body).into_response();
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static(content_type),
    );
    resp
}

/// Seconds since the epoch with milliseconds, as the AWS JSON protocol and
/// others write timestamps.
pub(crate) fn epoch_seconds(t: DateTime<Utc>) -> f64 {
    // i64 milliseconds of any date we store fit f64 exactly.
    t.timestamp_millis() as f64 / 1000.0
}

/// An operation's audit name, for refusals before the operation ran.
pub(crate) fn audited_operation(name: &str) -> Operation {
    match name {
        "GenerateDataKey" => Operation::GenerateDataKey,
        "GenerateDataKeyWithoutPlaintext" => Operation::GenerateDataKeyWithoutPlaintext,
        "Decrypt" => Operation::Decrypt,
        "Encrypt" => Operation::Encrypt,
        "ReEncrypt" => Operation::ReEncrypt,
        "GenerateRandom" => Operation::GenerateRandom,
        "CreateKey" => Operation::CreateKey,
        "CreateAlias" => Operation::CreateAlias,
        "DeleteAlias" => Operation::DeleteAlias,
        "EnableKey" => Operation::EnableKey,
        "DisableKey" => Operation::DisableKey,
        "ScheduleKeyDeletion" => Operation::ScheduleKeyDeletion,
        "CancelKeyDeletion" => Operation::CancelKeyDeletion,
        "EnableKeyRotation" | "DisableKeyRotation" | "UpdateRotationPolicy" => {
            Operation::UpdateRotationPolicy
        }
        "RotateKeyOnDemand" | "CreateKeyVersion" => Operation::RotateKey,
        _ => Operation::Authenticate,
    }
}

/// EncryptionContext as the Alibaba and Tencent SDKs send it: a JSON object
/// in a string (their documented form), a JSON object (hand-written JSON),
/// or a Python dict's printed form (what aliyun-python-sdk-kms sends when
/// given a dict instead of a string). Values must be strings.
pub(crate) fn context_from(
    value: Option<&serde_json::Value>,
) -> Result<crate::crypto::EncryptionContext, String> {
    use serde_json::Value;
    let object = match value {
        None | Some(Value::Null) => return Ok(Default::default()),
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(Default::default()),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => return Err("EncryptionContext must be a JSON object of strings".into()),
            Err(_) => {
                return kms_api::context::parse_python_dict(s)
                    .ok_or_else(|| "EncryptionContext is not a JSON object of strings".into())
            }
        },
        Some(v @ Value::Object(_)) => v.clone(),
        Some(_) => return Err("EncryptionContext must be a JSON object of strings".into()),
    };
    let Value::Object(map) = object else {
        return Err("EncryptionContext must be a JSON object of strings".into());
    };
    map.into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k, s)),
            _ => Err(format!("EncryptionContext value of `{k}` is not a string")),
        })
        .collect()
}
