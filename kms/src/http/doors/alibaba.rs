//! The Alibaba Cloud KMS door: API version 2016-01-20, RPC style. Requests
//! are signed either the current SDKs' way (ACS3-HMAC-SHA256 in
//! `Authorization`, the action in `x-acs-action`) or the classic SDKs' way
//! (RPC v1 HMAC-SHA1 over all parameters, `Action=` among them). Parameters
//! come from the query and a form body. Answers are flat JSON objects with
//! `RequestId`; errors `{Code, Message, RequestId}` with a 4xx.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::{
    audited_operation, context_from, plain, secret_json, Answer, DoorState, Incoming, Refusal,
};
use crate::crypto::{DataKeySpec, EncryptionContext, SecretBytes};
use crate::model::KeyState;
use crate::service::{Caller, DataKeyRequest, KeyView, KmsError, NewKeyRequest, RequestContext};

const PROTOCOL: &str = "alibaba";
const VERSION: &str = "2016-01-20";

type DoorResult = Result<(Map<String, Value>, Option<SecretBytes>), Refusal>;

fn err(status: StatusCode, code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal::new(status, code, message)
}

fn invalid(message: impl Into<String>) -> Refusal {
    err(StatusCode::BAD_REQUEST, "InvalidParameter", message)
}

fn refusal_of(e: KmsError) -> Refusal {
    use KmsError::*;
    let message = e.to_string();
    match e {
        InvalidParameter(_) | ClientNotFound | AccessKeyNotFound | AdminExists => invalid(message),
        InvalidCiphertext(_) => err(
            StatusCode::BAD_REQUEST,
            "Rejected.InvalidCiphertext",
            message,
        ),
        Unauthenticated => err(
            StatusCode::NOT_FOUND,
            "InvalidAccessKeyId.NotFound",
            "Specified access key is not found.",
        ),
        SignatureMismatch => err(
            StatusCode::BAD_REQUEST,
            "SignatureDoesNotMatch",
            "Specified signature is not matched with our calculation.",
        ),
        RequestExpired(_) => err(StatusCode::BAD_REQUEST, "InvalidTimeStamp.Expired", message),
        Replayed => err(
            StatusCode::BAD_REQUEST,
            "SignatureNonceUsed",
            "Specified signature nonce was used already.",
        ),
        AccessDenied(_) => err(StatusCode::FORBIDDEN, "Forbidden.RAM", message),
        KeyNotFound | KeyDeleted => err(StatusCode::NOT_FOUND, "Forbidden.KeyNotFound", message),
        AliasExists => err(StatusCode::CONFLICT, "Rejected.AliasExist", message),
        KeyDisabled => err(StatusCode::BAD_REQUEST, "Rejected.Disabled", message),
        KeyPendingDeletion | InvalidKeyState(_) | InvalidVideoState(_) => err(
            StatusCode::BAD_REQUEST,
            "Rejected.UnexpectedKeyState",
            message,
        ),
        KeyVersionRetired(_) | VideoShredded | VideoPendingShred => err(
            StatusCode::BAD_REQUEST,
            "Rejected.UnexpectedKeyState",
            format!("{}: {message}", e.code()),
        ),
        LimitExceeded(_) => err(StatusCode::BAD_REQUEST, "Rejected.LimitExceeded", message),
        IdempotentParameterMismatch => invalid(message),
        AuditUnavailable | StoreUnavailable(_) => err(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "the service is unavailable; retry later",
        ),
        RootKeyMismatch | Internal(_) => {
            tracing::error!(error = %e, "Alibaba door request failed");
            err(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "internal error",
            )
        }
    }
}

pub(super) fn render_refusal(r: Refusal, ctx: &RequestContext) -> Response {
    let body = json!({
        "Code": r.code,
        "Message": r.message,
        "RequestId": ctx.request_id,
        "HostId": "vodkms",
    });
    let mut resp = (r.status, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
        resp.headers_mut().insert("x-acs-request-id", v);
    }
    resp
}

pub(super) async fn handle(state: &DoorState, mut ctx: RequestContext, req: Incoming) -> Response {
    match handle_inner(state, &mut ctx, &req).await {
        Ok((fields, plaintext)) => secret_json(
            StatusCode::OK,
            "application/json;charset=utf-8",
            &Answer::new(&fields, plaintext, &ctx.request_id),
        ),
        Err(r) => render_refusal(r, &ctx),
    }
}

const OPERATIONS: &[&str] = &[
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "Decrypt",
    "Encrypt",
    "ReEncrypt",
    "CreateKey",
    "DescribeKey",
    "ListKeys",
    "CreateAlias",
    "ListAliases",
    "EnableKey",
    "DisableKey",
    "ScheduleKeyDeletion",
    "CancelKeyDeletion",
    "CreateKeyVersion",
    "ListKeyVersions",
    "UpdateRotationPolicy",
];

/// Every parameter: the query's, then a form body's.
fn parameters(req: &Incoming) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = req
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let form = req
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if form {
        params.extend(form_urlencoded::parse(&req.body).into_owned());
    }
    params
}

async fn handle_inner(state: &DoorState, ctx: &mut RequestContext, req: &Incoming) -> DoorResult {
    if req.method != axum::http::Method::POST && req.method != axum::http::Method::GET {
        return Err(err(
            StatusCode::METHOD_NOT_ALLOWED,
            "UnsupportedHTTPMethod",
            "use POST",
        ));
    }
    let params = parameters(req);
    let signed = req.signed();
    let acs3 = cloudsig::acs3::applies(&signed);
    let header = |name: &str| {
        req.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let action = if acs3 {
        header("x-acs-action")
    } else {
        params
            .iter()
            .find(|(k, _)| k == "Action")
            .map(|(_, v)| v.clone())
    }
    .unwrap_or_default();
    let op = OPERATIONS.iter().find(|o| **o == action).ok_or_else(|| {
        err(
            StatusCode::NOT_FOUND,
            "InvalidAction.NotFound",
            "Specified api is not found, please check your url and method.",
        )
    })?;
    let audit_op = audited_operation(op);
    let uses_token = header("x-acs-security-token").is_some()
        || params
            .iter()
            .any(|(k, _)| k == "SecurityToken" || k == "BearerToken");
    if uses_token {
        state.refuse_unsigned(ctx, PROTOCOL, audit_op, KmsError::Unauthenticated);
        return Err(err(
            StatusCode::BAD_REQUEST,
            "InvalidSecurityToken.Expired",
            "temporary credentials (SecurityToken) are not accepted; use an access key of vodkms",
        ));
    }
    let unsigned = |e: cloudsig::SigError| {
        let code = match e {
            cloudsig::SigError::Unsigned | cloudsig::SigError::Missing(_) => "MissingParameter",
            _ => "IncompleteSignature",
        };
        err(StatusCode::BAD_REQUEST, code, e.to_string())
    };
    let (caller, version) = if acs3 {
        let claims = cloudsig::acs3::parse(&signed).map_err(|e| {
            state.refuse_unsigned(ctx, PROTOCOL, audit_op, KmsError::Unauthenticated);
            unsigned(e)
        })?;
        let caller = state
            .authenticate(
                ctx,
                PROTOCOL,
                audit_op,
                &claims.access_key_id,
                claims.time,
                |secret| {
                    cloudsig::acs3::verify(&claims, &signed, secret.expose_secret())
                        .unwrap_or(false)
                },
            )
            .await
            .map_err(refusal_of)?;
        state
            .first_sighting(ctx, audit_op, &caller, claims.nonce.as_bytes(), claims.time)
            .map_err(refusal_of)?;
        (caller, claims.version)
    } else {
        let claims = cloudsig::rpc::parse(&params).map_err(|e| {
            state.refuse_unsigned(ctx, PROTOCOL, audit_op, KmsError::Unauthenticated);
            unsigned(e)
        })?;
        let method = req.method.as_str();
        let caller = state
            .authenticate(
                ctx,
                PROTOCOL,
                audit_op,
                &claims.access_key_id,
                claims.time,
                |secret| cloudsig::rpc::verify(&claims, method, &params, secret.expose_secret()),
            )
            .await
            .map_err(|e| match e {
                // As Alibaba Cloud words it: the classic SDK reads the string
                // to sign after the colon to tell a wrong secret (same string)
                // from a wrong signing method.
                // Never when the request holds a plaintext (Encrypt): an error
                // message carries no key material, not even the caller's own.
                KmsError::SignatureMismatch if params.iter().any(|(k, _)| k == "Plaintext") => {
                    refusal_of(KmsError::SignatureMismatch)
                }
                KmsError::SignatureMismatch => err(
                    StatusCode::BAD_REQUEST,
                    "SignatureDoesNotMatch",
                    format!(
                        "Specified signature is not matched with our calculation. server string to sign is:{}",
                        cloudsig::rpc::string_to_sign(method, &params)
                    ),
                ),
                other => refusal_of(other),
            })?;
        state
            .first_sighting(ctx, audit_op, &caller, claims.nonce.as_bytes(), claims.time)
            .map_err(refusal_of)?;
        (caller, claims.version)
    };
    if version != VERSION {
        return Err(err(
            StatusCode::BAD_REQUEST,
            "InvalidVersion",
            format!("the API version must be {VERSION}"),
        ));
    }
    if let Some(region) = &state.config.alibaba_region {
        let named = params
            .iter()
            .find(|(k, _)| k == "RegionId")
            .map(|(_, v)| v.clone())
            .or_else(|| header("x-acs-region-id"));
        if named.is_some_and(|r| &r != region) {
            return Err(err(
                StatusCode::BAD_REQUEST,
                "InvalidRegionId",
                format!("this KMS serves the region {region}"),
            ));
        }
    }
    Call {
        state,
        ctx,
        caller,
        params: &params,
    }
    .run(op)
    .await
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// ISO 8601 in UTC, seconds, as Alibaba Cloud writes dates.
fn date(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `365d`, `31536000s` or plain seconds, to whole days.
fn rotation_days(text: &str) -> Result<u32, Refusal> {
    let bad = || invalid("RotationInterval must look like 365d or 31536000s (7 to 365 days)");
    let days = if let Some(d) = text.strip_suffix('d') {
        d.parse::<u32>().map_err(|_| bad())?
    } else {
        let secs: u64 = text
            .strip_suffix('s')
            .unwrap_or(text)
            .parse()
            .map_err(|_| bad())?;
        if secs % 86_400 != 0 {
            return Err(bad());
        }
        u32::try_from(secs / 86_400).map_err(|_| bad())?
    };
    if !(7..=365).contains(&days) {
        return Err(bad());
    }
    Ok(days)
}

struct Call<'a> {
    state: &'a DoorState,
    ctx: &'a RequestContext,
    caller: Caller,
    params: &'a [(String, String)],
}

impl Call<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn required(&self, name: &'static str) -> Result<&str, Refusal> {
        self.param(name).filter(|v| !v.is_empty()).ok_or_else(|| {
            err(
                StatusCode::BAD_REQUEST,
                "MissingParameter",
                format!("{name} is required"),
            )
        })
    }

    fn context(&self, name: &str) -> Result<EncryptionContext, Refusal> {
        let v = self.param(name).map(|s| Value::String(s.to_owned()));
        context_from(v.as_ref()).map_err(invalid)
    }

    /// A boolean as the SDKs print it (`true`, Python's `True`).
    fn flag(&self, name: &str) -> Result<Option<bool>, Refusal> {
        match self.param(name) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(_) => Err(invalid(format!("{name} must be true or false"))),
        }
    }

    fn number(&self, name: &str) -> Result<Option<u32>, Refusal> {
        self.param(name)
            .map(|v| {
                v.parse::<u32>()
                    .map_err(|_| invalid(format!("{name} must be a number")))
            })
            .transpose()
    }

    fn arn(&self, id: uuid::Uuid) -> String {
        let region = self
            .state
            .config
            .alibaba_region
            .as_deref()
            .unwrap_or("cn-hangzhou");
        format!("acs:kms:{region}:0:key/{id}")
    }

    fn metadata(&self, v: &KeyView) -> Value {
        let r = &v.record;
        let mut m = json!({
            "KeyId": r.id,
            "Arn": self.arn(r.id),
            "CreationDate": date(r.created_at),
            "Creator": "vodkms",
            "Description": r.description,
            "KeyState": match r.state {
                KeyState::Enabled => "Enabled",
                KeyState::Disabled => "Disabled",
                KeyState::PendingDeletion => "PendingDeletion",
                KeyState::Deleted => "Deleted",
            },
            "KeyUsage": "ENCRYPT/DECRYPT",
            "KeySpec": "Aliyun_AES_256",
            "Origin": "Aliyun_KMS",
            "ProtectionLevel": "SOFTWARE",
            "PrimaryKeyVersion": r.primary_version.to_string(),
            "LastRotationDate": date(r.last_rotated_at),
            "AutomaticRotation": if r.rotation_period_days.is_some() { "Enabled" } else { "Disabled" },
        });
        if let Some(d) = r.rotation_period_days {
            m["RotationInterval"] = json!(format!("{}s", u64::from(d) * 86_400));
        }
        if let Some(n) = r.next_rotation() {
            m["NextRotationDate"] = json!(date(n));
        }
        if let Some(d) = r.deletion_date {
            m["DeleteDate"] = json!(date(d));
        }
        m
    }

    /// PageNumber (from 1) and PageSize (1..=100, default 10).
    fn page<T>(&self, items: Vec<T>) -> Result<(Vec<T>, usize, u32, u32), Refusal> {
        let number = self.number("PageNumber")?.unwrap_or(1).max(1);
        let size = self.number("PageSize")?.unwrap_or(10);
        if !(1..=100).contains(&size) {
            return Err(invalid("PageSize must be 1..=100"));
        }
        let total = items.len();
        let skip = (number as usize - 1).saturating_mul(size as usize);
        let page = items.into_iter().skip(skip).take(size as usize).collect();
        Ok((page, total, number, size))
    }

    async fn run(self, op: &str) -> DoorResult {
        let kms = &self.state.kms;
        let (ctx, caller) = (self.ctx, &self.caller);
        match op {
            "GenerateDataKey" | "GenerateDataKeyWithoutPlaintext" => {
                let spec = match (self.param("KeySpec"), self.number("NumberOfBytes")?) {
                    (_, Some(n)) => u16::try_from(n)
                        .ok()
                        .filter(|n| (1..=1024).contains(n))
                        .map(DataKeySpec::Bytes)
                        .ok_or_else(|| invalid("NumberOfBytes must be 1..=1024"))?,
                    (None | Some("AES_256"), None) => DataKeySpec::Aes256,
                    (Some("AES_128"), None) => DataKeySpec::Aes128,
                    (Some(_), None) => return Err(invalid("KeySpec must be AES_256 or AES_128")),
                };
                let req = DataKeyRequest {
                    key_id: self.required("KeyId")?.to_owned(),
                    spec,
                    context: self.context("EncryptionContext")?,
                };
                let with_plaintext = op == "GenerateDataKey";
                let out = kms
                    .generate_data_key(caller.clone(), ctx, req, with_plaintext)
                    .await
                    .map_err(refusal_of)?;
                let (f, _) = plain(json!({
                    "KeyId": out.key_id,
                    "KeyVersionId": out.version.to_string(),
                    "CiphertextBlob": b64(out.blob.as_bytes()),
                }));
                Ok((f, out.plaintext))
            }
            "Decrypt" => {
                let out = kms
                    .decrypt(
                        caller.clone(),
                        ctx,
                        self.required("CiphertextBlob")?,
                        self.context("EncryptionContext")?,
                    )
                    .await
                    .map_err(refusal_of)?;
                let (f, _) = plain(json!({
                    "KeyId": out.key_id,
                    "KeyVersionId": out.version.to_string(),
                }));
                Ok((f, Some(out.plaintext)))
            }
            "Encrypt" => {
                // Alibaba Cloud's Decrypt answers base64 (a data key's
                // Plaintext); Encrypt takes text, usually base64 of a key. Base64
                // text is sealed as the bytes it encodes, so Decrypt gives the
                // same text back and other doors see the key bytes; other text
                // is sealed as its UTF-8 bytes (Decrypt then answers those
                // bytes in base64).
                let text = zeroize::Zeroizing::new(self.required("Plaintext")?.to_owned());
                let engine = base64::engine::general_purpose::STANDARD;
                let plaintext = match engine.decode(text.as_bytes()) {
                    Ok(bytes) if engine.encode(&bytes) == *text => {
                        SecretBytes::from(zeroize::Zeroizing::new(bytes))
                    }
                    _ => SecretBytes::new(text.as_bytes().to_vec()),
                };
                let out = kms
                    .encrypt(
                        caller.clone(),
                        ctx,
                        self.required("KeyId")?,
                        plaintext,
                        self.context("EncryptionContext")?,
                    )
                    .await
                    .map_err(refusal_of)?;
                Ok(plain(json!({
                    "KeyId": out.key_id,
                    "KeyVersionId": out.version.to_string(),
                    "CiphertextBlob": b64(out.blob.as_bytes()),
                })))
            }
            "ReEncrypt" => {
                let out = kms
                    .re_encrypt(
                        caller.clone(),
                        ctx,
                        self.required("CiphertextBlob")?,
                        self.context("SourceEncryptionContext")?,
                        Some(self.required("DestinationKeyId")?),
                        Some(self.context("DestinationEncryptionContext")?),
                    )
                    .await
                    .map_err(refusal_of)?;
                Ok(plain(json!({
                    "KeyId": out.key_id,
                    "KeyVersionId": out.version.to_string(),
                    "CiphertextBlob": b64(out.blob.as_bytes()),
                })))
            }
            "CreateKey" => {
                if self
                    .param("KeyUsage")
                    .is_some_and(|u| u != "ENCRYPT/DECRYPT")
                {
                    return Err(invalid("KeyUsage must be ENCRYPT/DECRYPT"));
                }
                if self.param("KeySpec").is_some_and(|s| s != "Aliyun_AES_256") {
                    return Err(invalid("KeySpec must be Aliyun_AES_256"));
                }
                let rotation = match self.flag("EnableAutomaticRotation")? {
                    Some(true) => Some(rotation_days(
                        self.param("RotationInterval").unwrap_or("365d"),
                    )?),
                    _ => None,
                };
                let view = kms
                    .create_key(
                        caller,
                        ctx,
                        NewKeyRequest {
                            alias: None,
                            description: self.param("Description").map(str::to_owned),
                            rotation_period_days: rotation,
                            // The clouds' CreateKey has no such option.
                            per_video_keys: false,
                        },
                    )
                    .await
                    .map_err(refusal_of)?;
                Ok(plain(json!({ "KeyMetadata": self.metadata(&view) })))
            }
            "DescribeKey" => {
                let view = kms
                    .describe_key(caller, self.required("KeyId")?)
                    .await
                    .map_err(refusal_of)?;
                Ok(plain(json!({ "KeyMetadata": self.metadata(&view) })))
            }
            "ListKeys" => {
                let mut keys: Vec<_> = kms
                    .list_keys(caller)
                    .await
                    .map_err(refusal_of)?
                    .into_iter()
                    .filter(|v| v.record.state != KeyState::Deleted)
                    .map(|v| (v.record.created_at, v.record.id))
                    .collect();
                keys.sort();
                let (page, total, number, size) = self.page(keys)?;
                let keys: Vec<Value> = page
                    .into_iter()
                    .map(|(_, id)| json!({ "KeyId": id, "KeyArn": self.arn(id) }))
                    .collect();
                Ok(plain(json!({
                    "Keys": { "Key": keys },
                    "TotalCount": total,
                    "PageNumber": number,
                    "PageSize": size,
                })))
            }
            "CreateAlias" => {
                kms.create_alias(
                    caller,
                    ctx,
                    self.required("AliasName")?,
                    self.required("KeyId")?,
                )
                .await
                .map_err(refusal_of)?;
                Ok(plain(json!({})))
            }
            "ListAliases" => {
                let mut aliases = Vec::new();
                for v in kms.list_keys(caller).await.map_err(refusal_of)? {
                    for a in &v.record.aliases {
                        aliases.push((a.clone(), v.record.id));
                    }
                }
                aliases.sort();
                let region = self
                    .state
                    .config
                    .alibaba_region
                    .as_deref()
                    .unwrap_or("cn-hangzhou");
                let (page, total, number, size) = self.page(aliases)?;
                let aliases: Vec<Value> = page
                    .into_iter()
                    .map(|(a, id)| {
                        json!({
                            "AliasName": a,
                            "AliasArn": format!("acs:kms:{region}:0:{a}"),
                            "KeyId": id,
                        })
                    })
                    .collect();
                Ok(plain(json!({
                    "Aliases": { "Alias": aliases },
                    "TotalCount": total,
                    "PageNumber": number,
                    "PageSize": size,
                })))
            }
            "EnableKey" | "DisableKey" => {
                let key = self.required("KeyId")?;
                let result = if op == "EnableKey" {
                    kms.enable_key(caller, ctx, key).await
                } else {
                    kms.disable_key(caller, ctx, key).await
                };
                result.map_err(refusal_of)?;
                Ok(plain(json!({})))
            }
            "ScheduleKeyDeletion" => {
                let days = self.number("PendingWindowInDays")?.ok_or_else(|| {
                    err(
                        StatusCode::BAD_REQUEST,
                        "MissingParameter",
                        "PendingWindowInDays is required",
                    )
                })?;
                kms.schedule_key_deletion(caller, ctx, self.required("KeyId")?, Some(days))
                    .await
                    .map_err(refusal_of)?;
                Ok(plain(json!({})))
            }
            "CancelKeyDeletion" => {
                kms.cancel_key_deletion(caller, ctx, self.required("KeyId")?)
                    .await
                    .map_err(refusal_of)?;
                Ok(plain(json!({})))
            }
            "CreateKeyVersion" => {
                let (id, version) = kms
                    .rotate_key(caller, ctx, self.required("KeyId")?)
                    .await
                    .map_err(refusal_of)?;
                Ok(plain(json!({ "KeyVersion": {
                    "KeyId": id,
                    "KeyVersionId": version.to_string(),
                    "CreationDate": date(kms.now()),
                }})))
            }
            "ListKeyVersions" => {
                let view = kms
                    .describe_key(caller, self.required("KeyId")?)
                    .await
                    .map_err(refusal_of)?;
                let id = view.record.id;
                let (page, total, number, size) = self.page(view.versions)?;
                let versions: Vec<Value> = page
                    .into_iter()
                    .map(|(v, created)| {
                        json!({
                            "KeyId": id,
                            "KeyVersionId": v.to_string(),
                            "CreationDate": date(created),
                        })
                    })
                    .collect();
                Ok(plain(json!({
                    "KeyVersions": { "KeyVersion": versions },
                    "TotalCount": total,
                    "PageNumber": number,
                    "PageSize": size,
                })))
            }
            "UpdateRotationPolicy" => {
                let days = match self.flag("EnableAutomaticRotation")? {
                    Some(true) => Some(rotation_days(
                        self.param("RotationInterval").unwrap_or("365d"),
                    )?),
                    Some(false) => None,
                    None => {
                        return Err(err(
                            StatusCode::BAD_REQUEST,
                            "MissingParameter",
                            "EnableAutomaticRotation is required",
                        ))
                    }
                };
                kms.set_rotation_period(caller, ctx, self.required("KeyId")?, days)
                    .await
                    .map_err(refusal_of)?;
                Ok(plain(json!({})))
            }
            _ => Err(err(
                StatusCode::NOT_FOUND,
                "InvalidAction.NotFound",
                "unknown action",
            )),
        }
    }
}
