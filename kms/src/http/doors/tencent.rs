//! The Tencent Cloud KMS door: API 3.0, version 2019-01-18, TC3-signed, the
//! action in `X-TC-Action`. Answers are `{"Response": {...}}` envelopes.
//! Errors are `Response.Error.{Code, Message}` with HTTP 200, as Tencent
//! Cloud answers them: the SDKs read error codes only from a 200 answer and
//! report any other status as a network failure.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{audited_operation, context_from, plain, secret_json, DoorState, Incoming, Refusal};
use crate::api::Base64Secret;
use crate::crypto::{DataKeySpec, EncryptionContext, SecretBytes};
use crate::model::KeyState;
use crate::service::{Caller, DataKeyRequest, KeyView, KmsError, NewKeyRequest, RequestContext};

const PROTOCOL: &str = "tencent";
const VERSION: &str = "2019-01-18";

/// An answer's fields, and the plaintext key if it carries one (kept in its
/// zeroizing holder until serialized into the wiped response buffer).
type DoorResult = Result<(Map<String, Value>, Option<SecretBytes>), Refusal>;

#[derive(serde::Serialize)]
struct Envelope<'a> {
    #[serde(rename = "Response")]
    response: super::Answer<'a>,
}

fn fail(code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal::new(StatusCode::OK, code, message)
}

fn invalid(message: impl Into<String>) -> Refusal {
    fail("InvalidParameterValue", message)
}

fn refusal_of(e: KmsError) -> Refusal {
    use KmsError::*;
    let message = e.to_string();
    match e {
        InvalidParameter(_) | ClientNotFound | AccessKeyNotFound | AdminExists => invalid(message),
        InvalidCiphertext(_) => fail("InvalidParameterValue.InvalidCiphertext", message),
        Unauthenticated => fail(
            "AuthFailure.SecretIdNotFound",
            "the SecretId is not found or was deleted",
        ),
        SignatureMismatch => fail("AuthFailure.SignatureFailure", message),
        RequestExpired(_) => fail("AuthFailure.SignatureExpire", message),
        Replayed => fail("AuthFailure.SignatureFailure", message),
        AccessDenied(_) => fail("AuthFailure.UnauthorizedOperation", message),
        KeyNotFound | KeyDeleted => fail("ResourceUnavailable.CmkNotFound", message),
        AliasExists => fail("InvalidParameterValue.AliasAlreadyExists", message),
        KeyDisabled => fail("ResourceUnavailable.CmkDisabled", message),
        KeyPendingDeletion | InvalidKeyState(_) | InvalidVideoState(_) => {
            fail("ResourceUnavailable.CmkStateNotSupport", message)
        }
        KeyVersionRetired(_) | VideoShredded | VideoPendingShred => fail(
            "ResourceUnavailable.CmkStateNotSupport",
            format!("{}: {message}", e.code()),
        ),
        LimitExceeded(_) => fail("LimitExceeded", message),
        IdempotentParameterMismatch => invalid(message),
        AuditUnavailable | StoreUnavailable(_) => {
            fail("InternalError", "the service is unavailable; retry later")
        }
        RootKeyMismatch | Internal(_) => {
            tracing::error!(error = %e, "Tencent door request failed");
            fail("InternalError", "internal error")
        }
    }
}

pub(super) fn render_refusal(r: Refusal, ctx: &RequestContext) -> Response {
    let body = json!({ "Response": {
        "Error": { "Code": r.code, "Message": r.message },
        "RequestId": ctx.request_id,
    }});
    let mut resp = (r.status, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
        resp.headers_mut().insert("x-tc-requestid", v);
    }
    resp
}

pub(super) async fn handle(state: &DoorState, mut ctx: RequestContext, req: Incoming) -> Response {
    match handle_inner(state, &mut ctx, &req).await {
        Ok((fields, plaintext)) => secret_json(
            StatusCode::OK,
            "application/json",
            &Envelope {
                response: super::Answer::new(&fields, plaintext, &ctx.request_id),
            },
        ),
        Err(r) => render_refusal(r, &ctx),
    }
}

const OPERATIONS: &[&str] = &[
    "GenerateDataKey",
    "Decrypt",
    "Encrypt",
    "ReEncrypt",
    "CreateKey",
    "DescribeKey",
    "ListKeys",
    "EnableKey",
    "DisableKey",
    "ScheduleKeyDeletion",
    "CancelKeyDeletion",
    "EnableKeyRotation",
    "DisableKeyRotation",
    "GetKeyRotationStatus",
];

async fn handle_inner(state: &DoorState, ctx: &mut RequestContext, req: &Incoming) -> DoorResult {
    let header = |name: &str| {
        req.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    let action = header("x-tc-action");
    let op = OPERATIONS.iter().find(|o| **o == action).ok_or_else(|| {
        fail(
            "InvalidAction",
            "X-TC-Action names no action of this service",
        )
    })?;
    let audit_op = audited_operation(op);
    if req.method != axum::http::Method::POST {
        return Err(fail(
            "UnsupportedProtocol",
            "Tencent Cloud KMS calls are POST / with a JSON body",
        ));
    }
    if !req.headers.get("x-tc-token").is_none_or(|t| t.is_empty()) {
        state.refuse_unsigned(ctx, PROTOCOL, audit_op, KmsError::Unauthenticated);
        return Err(fail(
            "AuthFailure.TokenFailure",
            "temporary credentials (X-TC-Token) are not accepted; use an access key of vodkms",
        ));
    }
    let signed = req.signed();
    let claims = cloudsig::tc3::parse(&signed).map_err(|e| {
        state.refuse_unsigned(ctx, PROTOCOL, audit_op, KmsError::Unauthenticated);
        fail("AuthFailure.InvalidAuthorization", e.to_string())
    })?;
    if claims.service != "kms" {
        state.refuse_unsigned(ctx, PROTOCOL, audit_op, KmsError::SignatureMismatch);
        return Err(fail(
            "AuthFailure.SignatureFailure",
            "the credential scope must name the service kms",
        ));
    }
    let caller = state
        .authenticate(
            ctx,
            PROTOCOL,
            audit_op,
            &claims.access_key_id,
            claims.time,
            |secret| {
                cloudsig::tc3::verify(&claims, &signed, secret.expose_secret()).unwrap_or(false)
            },
        )
        .await
        .map_err(refusal_of)?;
    // No replay guard: the SDKs sign identical requests identically (the
    // same Decrypt twice in a second), and do not sign X-TC-Action, so two
    // calls with one body in one second (DescribeKey, then DisableKey) share
    // a signature. Like Tencent Cloud, a request is good within the clock
    // window; TLS keeps it from being captured.
    if header("x-tc-version") != VERSION {
        return Err(fail(
            "NoSuchVersion",
            format!("X-TC-Version must be {VERSION}"),
        ));
    }
    if let Some(region) = &state.config.tencent_region {
        if header("x-tc-region") != region {
            return Err(fail(
                "UnsupportedRegion",
                format!("this KMS serves the region {region}"),
            ));
        }
    }
    let body: Value = if req.body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(&req.body)
            .map_err(|e| fail("InvalidParameter", format!("the body is not JSON: {e}")))?
    };
    if !body.is_object() {
        return Err(fail("InvalidParameter", "the body must be a JSON object"));
    }
    Call { state, ctx, caller }.run(op, body).await
}

fn parse<T: serde::de::DeserializeOwned>(body: &Value) -> Result<T, Refusal> {
    T::deserialize(body).map_err(|e| fail("InvalidParameter", e.to_string()))
}

fn context(body: &Value, name: &str) -> Result<EncryptionContext, Refusal> {
    context_from(body.get(name)).map_err(invalid)
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeyIdIn {
    key_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GenerateIn {
    key_id: String,
    key_spec: Option<String>,
    number_of_bytes: Option<u32>,
    encryption_public_key: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CiphertextIn {
    ciphertext_blob: String,
    encryption_public_key: Option<String>,
    destination_key_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EncryptIn {
    key_id: String,
    plaintext: Base64Secret,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateKeyIn {
    alias: String,
    description: Option<String>,
    key_usage: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListIn {
    offset: Option<u32>,
    limit: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ScheduleIn {
    key_id: String,
    pending_window_in_days: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RotationIn {
    key_id: String,
    rotate_days: Option<u32>,
}

struct Call<'a> {
    state: &'a DoorState,
    ctx: &'a RequestContext,
    caller: Caller,
}

fn metadata(v: &KeyView) -> Value {
    let r = &v.record;
    let alias = r
        .aliases
        .first()
        .map(|a| a.trim_start_matches("alias/").to_owned())
        .unwrap_or_default();
    json!({
        "KeyId": r.id,
        "Alias": alias,
        "CreateTime": r.created_at.timestamp(),
        "Description": r.description,
        "KeyState": match r.state {
            KeyState::Enabled => "Enabled",
            KeyState::Disabled => "Disabled",
            KeyState::PendingDeletion => "PendingDelete",
            KeyState::Deleted => "Deleted",
        },
        "KeyUsage": "ENCRYPT_DECRYPT",
        "Type": 1,
        "KeyRotationEnabled": r.rotation_period_days.is_some(),
        "NextRotateTime": r.next_rotation().map(|t| t.timestamp()).unwrap_or(0),
        "DeletionDate": r.deletion_date.map(|t| t.timestamp()).unwrap_or(0),
        "Origin": "TENCENT_KMS",
        "ValidTo": 0,
    })
}

impl Call<'_> {
    async fn run(self, op: &str, body: Value) -> DoorResult {
        let kms = &self.state.kms;
        let (ctx, caller) = (self.ctx, &self.caller);
        match op {
            "GenerateDataKey" => {
                let r: GenerateIn = parse(&body)?;
                if r.encryption_public_key.is_some() {
                    return Err(fail(
                        "UnsupportedOperation",
                        "EncryptionPublicKey is not supported",
                    ));
                }
                let spec = DataKeySpec::from_request(r.key_spec.as_deref(), r.number_of_bytes)
                    .map_err(invalid)?
                    .ok_or_else(|| {
                        fail("MissingParameter", "KeySpec or NumberOfBytes is required")
                    })?;
                let req = DataKeyRequest {
                    key_id: r.key_id.clone(),
                    spec,
                    context: context(&body, "EncryptionContext")?,
                };
                let out = kms
                    .generate_data_key(caller.clone(), ctx, req, true)
                    .await
                    .map_err(refusal_of)?;
                let f = plain(json!({
                    "KeyId": out.key_id,
                    "CiphertextBlob": b64(out.blob.as_bytes()),
                }));
                Ok((f.0, out.plaintext))
            }
            "Decrypt" => {
                let r: CiphertextIn = parse(&body)?;
                if r.encryption_public_key.is_some() {
                    return Err(fail(
                        "UnsupportedOperation",
                        "EncryptionPublicKey is not supported",
                    ));
                }
                let out = kms
                    .decrypt(
                        caller.clone(),
                        ctx,
                        &r.ciphertext_blob,
                        context(&body, "EncryptionContext")?,
                    )
                    .await
                    .map_err(refusal_of)?;
                Ok((plain(json!({ "KeyId": out.key_id })).0, Some(out.plaintext)))
            }
            "Encrypt" => {
                let r: EncryptIn = parse(&body)?;
                let out = kms
                    .encrypt(
                        caller.clone(),
                        ctx,
                        &r.key_id,
                        r.plaintext.0,
                        context(&body, "EncryptionContext")?,
                    )
                    .await
                    .map_err(refusal_of)?;
                Ok(plain(json!({
                    "CiphertextBlob": b64(out.blob.as_bytes()),
                    "KeyId": out.key_id,
                })))
            }
            "ReEncrypt" => {
                let r: CiphertextIn = parse(&body)?;
                let source = context(&body, "SourceEncryptionContext")?;
                let dest = context(&body, "DestinationEncryptionContext")?;
                let dest_key = r.destination_key_id.clone();
                let out = kms
                    .re_encrypt(
                        caller.clone(),
                        ctx,
                        &r.ciphertext_blob,
                        source,
                        dest_key.as_deref(),
                        Some(dest),
                    )
                    .await
                    .map_err(refusal_of)?;
                Ok(plain(json!({
                    "CiphertextBlob": b64(out.blob.as_bytes()),
                    "KeyId": out.key_id,
                    "SourceKeyId": out.source_key_id,
                    "ReEncrypted": true,
                })))
            }
            "CreateKey" => {
                let r: CreateKeyIn = parse(&body)?;
                if r.key_usage
                    .as_deref()
                    .is_some_and(|u| u != "ENCRYPT_DECRYPT")
                {
                    return Err(invalid("KeyUsage must be ENCRYPT_DECRYPT"));
                }
                let view = kms
                    .create_key(
                        caller,
                        ctx,
                        NewKeyRequest {
                            alias: Some(format!("alias/{}", r.alias)),
                            description: r.description,
                            rotation_period_days: None,
                            // The clouds' CreateKey has no such option.
                            per_video_keys: false,
                        },
                    )
                    .await
                    .map_err(refusal_of)?;
                let (mut f, _) = plain(metadata(&view));
                f.retain(|k, _| {
                    [
                        "KeyId",
                        "Alias",
                        "CreateTime",
                        "Description",
                        "KeyState",
                        "KeyUsage",
                    ]
                    .contains(&k.as_str())
                });
                Ok((f, None))
            }
            "DescribeKey" => {
                let r: KeyIdIn = parse(&body)?;
                let view = kms
                    .describe_key(caller, &r.key_id)
                    .await
                    .map_err(refusal_of)?;
                Ok(plain(json!({ "KeyMetadata": metadata(&view) })))
            }
            "ListKeys" => {
                let r: ListIn = parse(&body)?;
                let limit = r.limit.unwrap_or(20);
                if !(1..=1000).contains(&limit) {
                    return Err(invalid("Limit must be 1..=1000"));
                }
                let mut keys: Vec<_> = kms
                    .list_keys(caller)
                    .await
                    .map_err(refusal_of)?
                    .into_iter()
                    .filter(|v| v.record.state != KeyState::Deleted)
                    .map(|v| (v.record.created_at, v.record.id))
                    .collect();
                keys.sort();
                let total = keys.len();
                let page: Vec<Value> = keys
                    .into_iter()
                    .skip(r.offset.unwrap_or(0) as usize)
                    .take(limit as usize)
                    .map(|(_, id)| json!({ "KeyId": id }))
                    .collect();
                Ok(plain(json!({ "Keys": page, "TotalCount": total })))
            }
            "EnableKey" | "DisableKey" => {
                let r: KeyIdIn = parse(&body)?;
                let key = &r.key_id;
                let result = if op == "EnableKey" {
                    kms.enable_key(caller, ctx, key).await
                } else {
                    kms.disable_key(caller, ctx, key).await
                };
                result.map_err(refusal_of)?;
                Ok((Map::new(), None))
            }
            "ScheduleKeyDeletion" => {
                let r: ScheduleIn = parse(&body)?;
                let view = kms
                    .schedule_key_deletion(caller, ctx, &r.key_id, Some(r.pending_window_in_days))
                    .await
                    .map_err(refusal_of)?;
                Ok(plain(json!({
                    "KeyId": view.record.id,
                    "DeletionDate": view.record.deletion_date.map(|t| t.timestamp()).unwrap_or(0),
                })))
            }
            "CancelKeyDeletion" => {
                let r: KeyIdIn = parse(&body)?;
                let view = kms
                    .cancel_key_deletion(caller, ctx, &r.key_id)
                    .await
                    .map_err(refusal_of)?;
                Ok(plain(json!({ "KeyId": view.record.id })))
            }
            "EnableKeyRotation" => {
                let r: RotationIn = parse(&body)?;
                let days = r.rotate_days.unwrap_or(365);
                if !(7..=365).contains(&days) {
                    return Err(invalid("RotateDays must be 7..=365"));
                }
                kms.set_rotation_period(caller, ctx, &r.key_id, Some(days))
                    .await
                    .map_err(refusal_of)?;
                Ok((Map::new(), None))
            }
            "DisableKeyRotation" => {
                let r: KeyIdIn = parse(&body)?;
                kms.set_rotation_period(caller, ctx, &r.key_id, None)
                    .await
                    .map_err(refusal_of)?;
                Ok((Map::new(), None))
            }
            "GetKeyRotationStatus" => {
                let r: KeyIdIn = parse(&body)?;
                let view = kms
                    .describe_key(caller, &r.key_id)
                    .await
                    .map_err(refusal_of)?;
                let rec = &view.record;
                Ok(plain(json!({
                    "KeyRotationEnabled": rec.rotation_period_days.is_some(),
                    "NextRotateTime": rec.next_rotation().map(|t| t.timestamp()).unwrap_or(0),
                    "RotateDays": rec.rotation_period_days.unwrap_or(0),
                })))
            }
            _ => Err(fail("InvalidAction", "unknown action")),
        }
    }
}
