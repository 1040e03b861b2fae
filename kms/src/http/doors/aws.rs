//! The AWS KMS door: JSON 1.1 (`X-Amz-Target: TrentService.<Operation>`),
//! SigV4-signed, as boto3, the aws CLI, the AWS SDKs and the AWS Encryption
//! SDK speak it. Key ids come in four forms (UUID, key ARN, `alias/NAME`,
//! alias ARN); answers carry key ARNs, standard base64 blobs and epoch
//! timestamps; errors are `{"__type", "message"}` with a 4xx for anything
//! the client did.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

use super::{audited_operation, epoch_seconds, secret_json, DoorState, Incoming, Refusal};
use crate::api::Base64Secret;
use crate::crypto::{DataKeySpec, EncryptionContext};
use crate::model::{KeyState, Role};
use crate::service::{Caller, DataKeyRequest, KeyView, KmsError, NewKeyRequest, RequestContext};

const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
const PROTOCOL: &str = "aws";
const SYMMETRIC_DEFAULT: &str = "SYMMETRIC_DEFAULT";

type DoorResult = Result<Response, Refusal>;

fn bad(code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal::new(StatusCode::BAD_REQUEST, code, message)
}

fn validation(message: impl Into<String>) -> Refusal {
    bad("ValidationException", message)
}

/// The AWS name and status of each service error. Only trouble on our side
/// (the database, the audit log) is a 5xx, which the SDKs rightly retry.
fn refusal_of(e: KmsError) -> Refusal {
    use KmsError::*;
    let message = e.to_string();
    match e {
        InvalidParameter(_) | ClientNotFound | AccessKeyNotFound | AdminExists => {
            validation(message)
        }
        InvalidCiphertext(_) => bad("InvalidCiphertextException", message),
        Unauthenticated => bad(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ),
        SignatureMismatch => bad(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.",
        ),
        RequestExpired(m) => bad("InvalidSignatureException", format!("Signature expired: {m}")),
        Replayed => bad("InvalidSignatureException", message),
        AccessDenied(_) => bad("AccessDeniedException", message),
        KeyNotFound | KeyDeleted => bad("NotFoundException", message),
        AliasExists => bad("AlreadyExistsException", message),
        KeyDisabled => bad("DisabledException", message),
        KeyPendingDeletion | InvalidKeyState(_) | InvalidVideoState(_) => {
            bad("KMSInvalidStateException", message)
        }
        // AWS has no per-version or per-video refusal; the state exception
        // is what an SDK user already handles, and the message names ours.
        KeyVersionRetired(_) | VideoShredded | VideoPendingShred => bad(
            "KMSInvalidStateException",
            format!("{}: {message}", e.code()),
        ),
        LimitExceeded(_) => bad("LimitExceededException", message),
        IdempotentParameterMismatch => bad("IdempotentParameterMismatchException", message),
        AuditUnavailable | StoreUnavailable(_) => Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "KMSInternalException",
            "the service is unavailable; retry later",
        ),
        RootKeyMismatch | Internal(_) => {
            tracing::error!(error = %e, "AWS door request failed");
            Refusal::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "KMSInternalException",
                "internal error",
            )
        }
    }
}

pub(super) fn render_refusal(r: Refusal, ctx: &RequestContext) -> Response {
    let body = json!({ "__type": r.code, "message": r.message });
    let mut resp = (r.status, axum::Json(body)).into_response();
    finish_headers(&mut resp, ctx);
    resp
}

fn finish_headers(resp: &mut Response, ctx: &RequestContext) {
    let h = resp.headers_mut();
    h.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static(CONTENT_TYPE),
    );
    if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
        h.insert("x-amzn-requestid", v);
    }
}

fn answer<T: Serialize>(body: &T, ctx: &RequestContext) -> Response {
    let mut resp = secret_json(StatusCode::OK, CONTENT_TYPE, body);
    finish_headers(&mut resp, ctx);
    resp
}

pub(super) async fn handle(state: &DoorState, mut ctx: RequestContext, req: Incoming) -> Response {
    // Answers get their headers in `answer`.
    match handle_inner(state, &mut ctx, &req).await {
        Ok(resp) => resp,
        Err(r) => render_refusal(r, &ctx),
    }
}

async fn handle_inner(state: &DoorState, ctx: &mut RequestContext, req: &Incoming) -> DoorResult {
    let target = req
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let op = target
        .strip_prefix("TrentService.")
        .filter(|op| OPERATIONS.contains(op))
        .ok_or_else(|| {
            bad(
                "UnknownOperationException",
                "X-Amz-Target names no operation of this service",
            )
        })?;
    let audit_op = audited_operation(op);
    if req.method != axum::http::Method::POST {
        return Err(bad("UnknownOperationException", "AWS KMS calls are POST /"));
    }
    if req.headers.contains_key("x-amz-security-token") {
        let e = KmsError::Unauthenticated;
        state.refuse_unsigned(ctx, PROTOCOL, audit_op, e);
        return Err(bad(
            "UnrecognizedClientException",
            "temporary credentials (X-Amz-Security-Token) are not accepted; use an access key of vodkms",
        ));
    }
    let signed = req.signed();
    let claims = match cloudsig::sigv4::parse(&signed) {
        Ok(c) => c,
        Err(e) => {
            let code = match e {
                cloudsig::SigError::Unsigned => "MissingAuthenticationTokenException",
                _ => "IncompleteSignatureException",
            };
            state.refuse_unsigned(ctx, PROTOCOL, audit_op, KmsError::Unauthenticated);
            return Err(bad(code, e.to_string()));
        }
    };
    if claims.service != "kms" || claims.region != state.config.aws_region {
        state.refuse_unsigned(ctx, PROTOCOL, audit_op, KmsError::SignatureMismatch);
        return Err(bad(
            "InvalidSignatureException",
            format!(
                "Credential should be scoped to a valid region and service: kms in {}",
                state.config.aws_region
            ),
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
                state
                    .sigv4_keys
                    .verify(&claims, &signed, secret.expose_secret())
            },
        )
        .await
        .map_err(refusal_of)?;
    // Parsed straight into each operation's type (see `parse`).
    let body: &[u8] = if req.body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &req.body
    };
    let call = Call { state, ctx, caller };
    call.run(op, body).await
}

/// SigV4 signing keys derived per access key, date and region: the
/// derivation is four HMACs, a visible share of a request, and its result
/// changes once a day. Filled only from a secret the service handed over
/// for an access key that exists, and only ever read for that key's
/// requests, which authenticate first (a deleted key never gets here).
#[derive(Default)]
pub(super) struct SigningKeys(std::sync::Mutex<HashMap<String, CachedSigningKey>>);

struct CachedSigningKey {
    scope: (String, String, String),
    key: Arc<cloudsig::sigv4::SigningKey>,
}

/// Past this many access keys the cache starts over (bounded memory).
const MAX_SIGNING_KEYS: usize = 10_000;

impl SigningKeys {
    fn verify(
        &self,
        claims: &cloudsig::sigv4::Claims,
        req: &cloudsig::Request<'_>,
        secret: &[u8],
    ) -> bool {
        let cached = {
            let keys = self.0.lock().unwrap_or_else(|p| p.into_inner());
            keys.get(&claims.access_key_id)
                .filter(|c| {
                    let (date, region, service) = &c.scope;
                    *date == claims.date && *region == claims.region && *service == claims.service
                })
                .map(|c| c.key.clone())
        };
        let key = match cached {
            Some(k) => k,
            None => {
                let k = Arc::new(cloudsig::sigv4::SigningKey::derive(
                    secret,
                    &claims.date,
                    &claims.region,
                    &claims.service,
                ));
                let mut keys = self.0.lock().unwrap_or_else(|p| p.into_inner());
                if keys.len() >= MAX_SIGNING_KEYS {
                    keys.clear();
                }
                keys.insert(
                    claims.access_key_id.clone(),
                    CachedSigningKey {
                        scope: (
                            claims.date.clone(),
                            claims.region.clone(),
                            claims.service.clone(),
                        ),
                        key: k.clone(),
                    },
                );
                k
            }
        };
        cloudsig::sigv4::verify_with_key(claims, req, &key).unwrap_or(false)
    }
}

const OPERATIONS: &[&str] = &[
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "Decrypt",
    "Encrypt",
    "ReEncrypt",
    "GenerateRandom",
    "DescribeKey",
    "ListKeys",
    "CreateKey",
    "CreateAlias",
    "ListAliases",
    "DeleteAlias",
    "EnableKey",
    "DisableKey",
    "ScheduleKeyDeletion",
    "CancelKeyDeletion",
    "EnableKeyRotation",
    "DisableKeyRotation",
    "GetKeyRotationStatus",
    "RotateKeyOnDemand",
];

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Refusal> {
    serde_json::from_slice(body).map_err(|e| bad("SerializationException", e.to_string()))
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn check_algorithm(a: &Option<String>) -> Result<(), Refusal> {
    match a.as_deref() {
        None | Some(SYMMETRIC_DEFAULT) => Ok(()),
        Some(_) => Err(validation(
            "EncryptionAlgorithm must be SYMMETRIC_DEFAULT (AES-256-GCM)",
        )),
    }
}

fn dry_run(d: Option<bool>) -> Result<(), Refusal> {
    if d == Some(true) {
        return Err(Refusal::new(
            StatusCode::PRECONDITION_FAILED,
            "DryRunOperationException",
            "The request would have succeeded, but the DryRun flag is set.",
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GenerateDataKeyIn {
    key_id: String,
    key_spec: Option<String>,
    number_of_bytes: Option<u32>,
    encryption_context: Option<EncryptionContext>,
    dry_run: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DecryptIn {
    ciphertext_blob: String,
    encryption_context: Option<EncryptionContext>,
    key_id: Option<String>,
    encryption_algorithm: Option<String>,
    dry_run: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EncryptIn {
    key_id: String,
    plaintext: Base64Secret,
    encryption_context: Option<EncryptionContext>,
    encryption_algorithm: Option<String>,
    dry_run: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ReEncryptIn {
    ciphertext_blob: String,
    source_encryption_context: Option<EncryptionContext>,
    source_key_id: Option<String>,
    destination_key_id: String,
    destination_encryption_context: Option<EncryptionContext>,
    source_encryption_algorithm: Option<String>,
    destination_encryption_algorithm: Option<String>,
    dry_run: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeyIdIn {
    key_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PageIn {
    limit: Option<u32>,
    marker: Option<String>,
    key_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateKeyIn {
    description: Option<String>,
    key_usage: Option<String>,
    key_spec: Option<String>,
    customer_master_key_spec: Option<String>,
    origin: Option<String>,
    multi_region: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AliasIn {
    alias_name: String,
    target_key_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ScheduleIn {
    key_id: String,
    pending_window_in_days: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RotationIn {
    key_id: String,
    rotation_period_in_days: Option<u32>,
}

/// AWS's rotation periods (EnableKeyRotation) and its default.
const AWS_ROTATION_DAYS: std::ops::RangeInclusive<u32> = 90..=2560;
const AWS_DEFAULT_ROTATION_DAYS: u32 = 365;

struct Call<'a> {
    state: &'a DoorState,
    ctx: &'a RequestContext,
    caller: Caller,
}

impl Call<'_> {
    fn key_arn(&self, id: Uuid) -> String {
        let c = &self.state.config;
        format!("arn:aws:kms:{}:{}:key/{id}", c.aws_region, c.aws_account_id)
    }

    fn alias_arn(&self, alias: &str) -> String {
        let c = &self.state.config;
        format!("arn:aws:kms:{}:{}:{alias}", c.aws_region, c.aws_account_id)
    }

    /// A key id in any of the four forms, as the service names keys (UUID
    /// or `alias/NAME`). ARNs of another region or account name no key here.
    fn key_ref(&self, input: &str) -> Result<String, Refusal> {
        let Some(arn) = input.strip_prefix("arn:") else {
            return Ok(input.to_owned());
        };
        let c = &self.state.config;
        let parts: Vec<&str> = arn.splitn(5, ':').collect();
        match parts[..] {
            ["aws", "kms", region, account, resource]
                if region == c.aws_region && account == c.aws_account_id =>
            {
                if let Some(id) = resource.strip_prefix("key/") {
                    Ok(id.to_owned())
                } else if resource.starts_with("alias/") {
                    Ok(resource.to_owned())
                } else {
                    Err(bad("NotFoundException", format!("Invalid arn {input}")))
                }
            }
            _ => Err(bad(
                "NotFoundException",
                format!("Invalid arn {input}: not of this KMS's region and account"),
            )),
        }
    }

    async fn run(self, op: &str, body: &[u8]) -> DoorResult {
        let kms = &self.state.kms;
        let (ctx, caller) = (self.ctx, &self.caller);
        match op {
            "GenerateDataKey" | "GenerateDataKeyWithoutPlaintext" => {
                let with_plaintext = op == "GenerateDataKey";
                let r: GenerateDataKeyIn = parse(body)?;
                let spec = DataKeySpec::from_request(r.key_spec.as_deref(), r.number_of_bytes)
                    .map_err(validation)?
                    .ok_or_else(|| validation("Please specify either KeySpec or NumberOfBytes"))?;
                dry_run(r.dry_run)?;
                let req = DataKeyRequest {
                    key_id: self.key_ref(&r.key_id)?,
                    spec,
                    context: r.encryption_context.unwrap_or_default(),
                };
                let out = kms
                    .generate_data_key(caller.clone(), ctx, req, with_plaintext)
                    .await
                    .map_err(refusal_of)?;
                if let Some(p) = out.plaintext {
                    return Ok(answer(
                        &PlaintextAnswer {
                            ciphertext_blob: b64(out.blob.as_bytes()),
                            key_id: self.key_arn(out.key_id),
                            plaintext: Base64Secret(p),
                            encryption_algorithm: None,
                        },
                        ctx,
                    ));
                }
                Ok(answer(
                    &json!({
                        "CiphertextBlob": b64(out.blob.as_bytes()),
                        "KeyId": self.key_arn(out.key_id),
                    }),
                    ctx,
                ))
            }
            "Decrypt" => {
                let r: DecryptIn = parse(body)?;
                check_algorithm(&r.encryption_algorithm)?;
                dry_run(r.dry_run)?;
                if let Some(k) = &r.key_id {
                    self.require_blob_key(&r.ciphertext_blob, k, Role::Decrypt)
                        .await?;
                }
                let out = kms
                    .decrypt(
                        caller.clone(),
                        ctx,
                        &r.ciphertext_blob,
                        r.encryption_context.unwrap_or_default(),
                    )
                    .await
                    .map_err(refusal_of)?;
                Ok(answer(
                    &PlaintextAnswer {
                        ciphertext_blob: String::new(),
                        key_id: self.key_arn(out.key_id),
                        plaintext: Base64Secret(out.plaintext),
                        encryption_algorithm: Some(SYMMETRIC_DEFAULT),
                    },
                    ctx,
                ))
            }
            "Encrypt" => {
                let r: EncryptIn = parse(body)?;
                check_algorithm(&r.encryption_algorithm)?;
                dry_run(r.dry_run)?;
                let out = kms
                    .encrypt(
                        caller.clone(),
                        ctx,
                        &self.key_ref(&r.key_id)?,
                        r.plaintext.0,
                        r.encryption_context.unwrap_or_default(),
                    )
                    .await
                    .map_err(refusal_of)?;
                Ok(answer(
                    &json!({
                        "CiphertextBlob": b64(out.blob.as_bytes()),
                        "KeyId": self.key_arn(out.key_id),
                        "EncryptionAlgorithm": SYMMETRIC_DEFAULT,
                    }),
                    ctx,
                ))
            }
            "ReEncrypt" => {
                let r: ReEncryptIn = parse(body)?;
                check_algorithm(&r.source_encryption_algorithm)?;
                check_algorithm(&r.destination_encryption_algorithm)?;
                dry_run(r.dry_run)?;
                if let Some(k) = &r.source_key_id {
                    self.require_blob_key(&r.ciphertext_blob, k, Role::Generate)
                        .await?;
                }
                let dest = self.key_ref(&r.destination_key_id)?;
                let out = kms
                    .re_encrypt(
                        caller.clone(),
                        ctx,
                        &r.ciphertext_blob,
                        r.source_encryption_context.unwrap_or_default(),
                        Some(&dest),
                        // AWS: no destination context means an empty one.
                        Some(r.destination_encryption_context.unwrap_or_default()),
                    )
                    .await
                    .map_err(refusal_of)?;
                Ok(answer(
                    &json!({
                        "CiphertextBlob": b64(out.blob.as_bytes()),
                        "SourceKeyId": self.key_arn(out.source_key_id),
                        "KeyId": self.key_arn(out.key_id),
                        "SourceEncryptionAlgorithm": SYMMETRIC_DEFAULT,
                        "DestinationEncryptionAlgorithm": SYMMETRIC_DEFAULT,
                    }),
                    ctx,
                ))
            }
            "GenerateRandom" => {
                #[derive(Deserialize)]
                #[serde(rename_all = "PascalCase")]
                struct In {
                    number_of_bytes: Option<u32>,
                }
                let r: In = parse(body)?;
                let n = r
                    .number_of_bytes
                    .ok_or_else(|| validation("NumberOfBytes is required"))?;
                let bytes = kms
                    .generate_random(caller.clone(), ctx, n)
                    .await
                    .map_err(refusal_of)?;
                Ok(answer(
                    &RandomAnswer {
                        plaintext: Base64Secret(bytes),
                    },
                    ctx,
                ))
            }
            "DescribeKey" => {
                let r: KeyIdIn = parse(body)?;
                let view = kms
                    .describe_key(caller, &self.key_ref(&r.key_id)?)
                    .await
                    .map_err(refusal_of)?;
                Ok(answer(
                    &json!({ "KeyMetadata": self.metadata(&view)? }),
                    ctx,
                ))
            }
            "ListKeys" => {
                let r: PageIn = parse(body)?;
                let mut keys: Vec<(String, Value)> = kms
                    .list_keys(caller)
                    .await
                    .map_err(refusal_of)?
                    .into_iter()
                    .filter(|v| v.record.state != KeyState::Deleted)
                    .map(|v| {
                        let id = v.record.id;
                        (
                            id.to_string(),
                            json!({ "KeyId": id, "KeyArn": self.key_arn(id) }),
                        )
                    })
                    .collect();
                keys.sort_by(|a, b| a.0.cmp(&b.0));
                Ok(answer(&page("Keys", keys, r.limit, r.marker)?, ctx))
            }
            "ListAliases" => {
                let r: PageIn = parse(body)?;
                let only = r.key_id.as_deref().map(|k| self.key_ref(k)).transpose()?;
                let only = match only {
                    Some(k) => Some(
                        kms.resolve_key(caller, Role::Admin, &k)
                            .await
                            .map_err(refusal_of)?,
                    ),
                    None => None,
                };
                let mut aliases = Vec::new();
                for v in kms.list_keys(caller).await.map_err(refusal_of)? {
                    if only.is_some_and(|id| id != v.record.id) {
                        continue;
                    }
                    for a in &v.record.aliases {
                        aliases.push((
                            a.clone(),
                            json!({
                                "AliasName": a,
                                "AliasArn": self.alias_arn(a),
                                "TargetKeyId": v.record.id,
                            }),
                        ));
                    }
                }
                aliases.sort_by(|a, b| a.0.cmp(&b.0));
                Ok(answer(&page("Aliases", aliases, r.limit, r.marker)?, ctx))
            }
            "CreateKey" => {
                let r: CreateKeyIn = parse(body)?;
                let only = |v: &Option<String>, want: &str, name: &str| match v.as_deref() {
                    None => Ok(()),
                    Some(x) if x == want => Ok(()),
                    Some(_) => Err(validation(format!("{name} must be {want}"))),
                };
                only(&r.key_usage, "ENCRYPT_DECRYPT", "KeyUsage")?;
                only(&r.key_spec, SYMMETRIC_DEFAULT, "KeySpec")?;
                only(
                    &r.customer_master_key_spec,
                    SYMMETRIC_DEFAULT,
                    "CustomerMasterKeySpec",
                )?;
                only(&r.origin, "AWS_KMS", "Origin")?;
                if r.multi_region == Some(true) {
                    return Err(validation("multi-Region keys are not supported"));
                }
                let view = kms
                    .create_key(
                        caller,
                        ctx,
                        NewKeyRequest {
                            alias: None,
                            description: r.description,
                            rotation_period_days: None,
                            // The clouds' CreateKey has no such option.
                            per_video_keys: false,
                        },
                    )
                    .await
                    .map_err(refusal_of)?;
                Ok(answer(
                    &json!({ "KeyMetadata": self.metadata(&view)? }),
                    ctx,
                ))
            }
            "CreateAlias" => {
                let r: AliasIn = parse(body)?;
                let target = r
                    .target_key_id
                    .ok_or_else(|| validation("TargetKeyId is required"))?;
                let target = self.key_ref(&target)?;
                if target.starts_with("alias/") {
                    return Err(validation("TargetKeyId must be a key id or key ARN"));
                }
                kms.create_alias(caller, ctx, &r.alias_name, &target)
                    .await
                    .map_err(refusal_of)?;
                Ok(answer(&json!({}), ctx))
            }
            "DeleteAlias" => {
                let r: AliasIn = parse(body)?;
                if !r.alias_name.starts_with("alias/") {
                    return Err(validation("AliasName must begin with alias/"));
                }
                kms.delete_alias(caller, ctx, &r.alias_name)
                    .await
                    .map_err(refusal_of)?;
                Ok(answer(&json!({}), ctx))
            }
            "EnableKey" | "DisableKey" => {
                let r: KeyIdIn = parse(body)?;
                let key = self.key_ref(&r.key_id)?;
                let result = if op == "EnableKey" {
                    kms.enable_key(caller, ctx, &key).await
                } else {
                    kms.disable_key(caller, ctx, &key).await
                };
                match result {
                    Ok(_) => Ok(answer(&json!({}), ctx)),
                    // AWS: enabling an enabled key (or disabling a disabled one) succeeds.
                    Err(KmsError::InvalidKeyState(_))
                        if self.in_state(&key, op == "EnableKey").await =>
                    {
                        Ok(answer(&json!({}), ctx))
                    }
                    Err(e) => Err(refusal_of(e)),
                }
            }
            "ScheduleKeyDeletion" => {
                let r: ScheduleIn = parse(body)?;
                let view = kms
                    .schedule_key_deletion(
                        caller,
                        ctx,
                        &self.key_ref(&r.key_id)?,
                        r.pending_window_in_days,
                    )
                    .await
                    .map_err(refusal_of)?;
                let mut out = json!({
                    "KeyId": self.key_arn(view.record.id),
                    "KeyState": "PendingDeletion",
                });
                if let Some(d) = view.record.deletion_date {
                    out["DeletionDate"] = json!(epoch_seconds(d));
                    out["PendingWindowInDays"] = json!(r.pending_window_in_days.unwrap_or(30));
                }
                Ok(answer(&out, ctx))
            }
            "CancelKeyDeletion" => {
                let r: KeyIdIn = parse(body)?;
                let view = kms
                    .cancel_key_deletion(caller, ctx, &self.key_ref(&r.key_id)?)
                    .await
                    .map_err(refusal_of)?;
                Ok(answer(
                    &json!({ "KeyId": self.key_arn(view.record.id) }),
                    ctx,
                ))
            }
            "EnableKeyRotation" => {
                let r: RotationIn = parse(body)?;
                let days = r
                    .rotation_period_in_days
                    .unwrap_or(AWS_DEFAULT_ROTATION_DAYS);
                if !AWS_ROTATION_DAYS.contains(&days) {
                    return Err(validation("RotationPeriodInDays must be 90..=2560"));
                }
                kms.set_rotation_period(caller, ctx, &self.key_ref(&r.key_id)?, Some(days))
                    .await
                    .map_err(refusal_of)?;
                Ok(answer(&json!({}), ctx))
            }
            "DisableKeyRotation" => {
                let r: KeyIdIn = parse(body)?;
                kms.set_rotation_period(caller, ctx, &self.key_ref(&r.key_id)?, None)
                    .await
                    .map_err(refusal_of)?;
                Ok(answer(&json!({}), ctx))
            }
            "GetKeyRotationStatus" => {
                let r: KeyIdIn = parse(body)?;
                let view = kms
                    .describe_key(caller, &self.key_ref(&r.key_id)?)
                    .await
                    .map_err(refusal_of)?;
                let rec = &view.record;
                let mut out = json!({
                    "KeyRotationEnabled": rec.rotation_period_days.is_some(),
                    "KeyId": self.key_arn(rec.id),
                });
                if let Some(d) = rec.rotation_period_days {
                    out["RotationPeriodInDays"] = json!(d);
                }
                if let Some(next) = rec.next_rotation() {
                    out["NextRotationDate"] = json!(epoch_seconds(next));
                }
                Ok(answer(&out, ctx))
            }
            "RotateKeyOnDemand" => {
                let r: KeyIdIn = parse(body)?;
                let (id, _) = kms
                    .rotate_key(caller, ctx, &self.key_ref(&r.key_id)?)
                    .await
                    .map_err(refusal_of)?;
                Ok(answer(&json!({ "KeyId": self.key_arn(id) }), ctx))
            }
            _ => Err(bad("UnknownOperationException", "unknown operation")),
        }
    }

    /// Whether a key is (already) in the enabled or disabled state.
    async fn in_state(&self, key: &str, enabled: bool) -> bool {
        let want = if enabled {
            KeyState::Enabled
        } else {
            KeyState::Disabled
        };
        matches!(
            self.state.kms.describe_key(&self.caller, key).await,
            Ok(v) if v.record.state == want
        )
    }

    /// Decrypt's and ReEncrypt's optional KeyId must name the blob's key
    /// (checked before anything is opened).
    async fn require_blob_key(&self, blob: &str, key: &str, role: Role) -> Result<(), Refusal> {
        let header = crate::crypto::Blob::from_text(blob)
            .map_err(|e| refusal_of(KmsError::InvalidCiphertext(e)))?
            .header;
        let wanted = self
            .state
            .kms
            .resolve_key(&self.caller, role, &self.key_ref(key)?)
            .await
            .map_err(refusal_of)?;
        if wanted != header.key_id {
            return Err(bad(
                "IncorrectKeyException",
                "The key ID in the request does not identify a KMS key that can perform this operation.",
            ));
        }
        Ok(())
    }

    fn metadata(&self, view: &KeyView) -> Result<Value, Refusal> {
        let r = &view.record;
        let state = match r.state {
            KeyState::Enabled => "Enabled",
            KeyState::Disabled => "Disabled",
            KeyState::PendingDeletion => "PendingDeletion",
            KeyState::Deleted => return Err(refusal_of(KmsError::KeyNotFound)),
        };
        let mut m = json!({
            "AWSAccountId": self.state.config.aws_account_id,
            "KeyId": r.id,
            "Arn": self.key_arn(r.id),
            "CreationDate": epoch_seconds(r.created_at),
            "Enabled": r.state == KeyState::Enabled,
            "Description": r.description,
            "KeyUsage": "ENCRYPT_DECRYPT",
            "KeyState": state,
            "Origin": "AWS_KMS",
            "KeyManager": "CUSTOMER",
            "CustomerMasterKeySpec": SYMMETRIC_DEFAULT,
            "KeySpec": SYMMETRIC_DEFAULT,
            "EncryptionAlgorithms": [SYMMETRIC_DEFAULT],
            "MultiRegion": false,
        });
        if let Some(d) = r.deletion_date {
            m["DeletionDate"] = json!(epoch_seconds(d));
        }
        Ok(m)
    }
}

/// One page of `items` (sorted by their marker) after `marker`, the way the
/// AWS list operations page: `Truncated`, and `NextMarker` while more remain.
fn page(
    name: &str,
    items: Vec<(String, Value)>,
    limit: Option<u32>,
    marker: Option<String>,
) -> Result<Value, Refusal> {
    let limit = limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(validation("Limit must be 1..=1000"));
    }
    let start = match &marker {
        None => 0,
        Some(m) => items.partition_point(|(k, _)| k.as_str() <= m.as_str()),
    };
    let rest = &items[start..];
    let taken: Vec<Value> = rest
        .iter()
        .take(limit as usize)
        .map(|(_, v)| v.clone())
        .collect();
    let truncated = rest.len() > taken.len();
    let mut out = json!({ name: taken, "Truncated": truncated });
    if truncated {
        if let Some((k, _)) = rest.get(taken.len().saturating_sub(1)) {
            out["NextMarker"] = json!(k);
        }
    }
    Ok(out)
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PlaintextAnswer {
    #[serde(skip_serializing_if = "String::is_empty")]
    ciphertext_blob: String,
    key_id: String,
    plaintext: Base64Secret,
    #[serde(skip_serializing_if = "Option::is_none")]
    encryption_algorithm: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RandomAnswer {
    plaintext: Base64Secret,
}
