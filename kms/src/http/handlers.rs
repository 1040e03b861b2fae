//! Handlers: extract, call the service, shape the answer. No rules here.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use foundation::http::extract::JsonObjectOrArray;
use foundation::http::HttpError;
use serde::Deserialize;
use uuid::Uuid;

use super::error::ApiError;
use super::extract::{Authenticated, BearerToken, Ctx, JsonBody};
use super::secret_body::SecretJson;
use crate::api::*;
use crate::crypto::DataKeySpec;
use crate::model::{AuditFilter, ClientRecord, Operation, Role, Roles};
use crate::service::{DataKeyRequest, KeyView, Kms, NewClient, NewKeyRequest};

type ApiResult<T> = Result<T, ApiError>;

fn key_metadata(v: KeyView) -> KeyMetadata {
    let r = v.record;
    KeyMetadata {
        key_id: r.id,
        next_rotation_date: r.next_rotation(),
        aliases: r.aliases,
        description: r.description,
        key_state: r.state.as_str().to_owned(),
        creation_date: r.created_at,
        current_key_version_id: r.primary_version,
        key_versions: v
            .versions
            .into_iter()
            .map(|(key_version_id, creation_date)| KeyVersion {
                key_version_id,
                creation_date,
            })
            .collect(),
        rotation_period_in_days: r.rotation_period_days,
        deletion_date: r.deletion_date,
        min_decryption_version: r.min_decryption_version,
        per_video_keys: r.per_video_keys,
    }
}

fn video_info(v: crate::service::VideoView) -> VideoInfo {
    VideoInfo {
        video_id: v.video_id,
        state: v.state.to_owned(),
        per_video_keys: v.has_per_video_keys,
        shred_date: v.shred_date,
        shredded_date: v.shredded_at,
    }
}

fn client_info(c: ClientRecord) -> ClientInfo {
    ClientInfo {
        client_id: c.id,
        name: c.name,
        role: c.roles.as_string(),
        roles: c.roles.iter().map(|r| r.as_str().to_owned()).collect(),
        key_ids: c.key_ids,
        creation_date: c.created_at,
        revoked_date: c.revoked_at,
    }
}

pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "Status": "ok" }))
}

pub async fn readyz(State(kms): State<Kms>) -> ApiResult<Json<serde_json::Value>> {
    kms.ready().await?;
    let (unconfirmed, max) = kms.staleness();
    Ok(Json(serde_json::json!({
        "Status": "ready",
        "CacheUnconfirmedSeconds": unconfirmed.as_secs_f64(),
        "MaxStaleSeconds": max.as_secs(),
    })))
}

pub async fn create_key(
    State(kms): State<Kms>,
    Authenticated(caller): Authenticated,
    Ctx(ctx): Ctx,
    body: ApiResult<JsonBody<CreateKeyRequest>>,
) -> ApiResult<(StatusCode, Json<KeyMetadata>)> {
    let JsonBody(req) = admin_first(&caller, body)?;
    let req = NewKeyRequest {
        alias: req.alias,
        description: req.description,
        rotation_period_days: req.rotation_period_in_days,
        per_video_keys: req.per_video_keys.unwrap_or(false),
    };
    let view = kms.create_key(&caller, &ctx, req).await?;
    Ok((StatusCode::CREATED, Json(key_metadata(view))))
}

pub async fn list_keys(
    State(kms): State<Kms>,
    Authenticated(caller): Authenticated,
) -> ApiResult<Json<ListKeysResponse>> {
    let keys = kms.list_keys(&caller).await?;
    Ok(Json(ListKeysResponse {
        keys: keys.into_iter().map(key_metadata).collect(),
    }))
}

pub async fn describe_key(
    State(kms): State<Kms>,
    Authenticated(caller): Authenticated,
    Path(key): Path<String>,
) -> ApiResult<Json<KeyMetadata>> {
    Ok(Json(key_metadata(kms.describe_key(&caller, &key).await?)))
}

pub async fn describe_alias(
    state: State<Kms>,
    caller: Authenticated,
    Path(name): Path<String>,
) -> ApiResult<Json<KeyMetadata>> {
    describe_key(state, caller, Path(format!("alias/{name}"))).await
}

/// The lifecycle actions under `/v1/keys/{KeyId}/...`.
#[derive(Debug, Clone, Copy)]
pub enum KeyAction {
    Rotate,
    Disable,
    Enable,
    ScheduleDeletion,
    CancelDeletion,
    RetireVersions,
}

impl KeyAction {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "rotate" => Self::Rotate,
            "disable" => Self::Disable,
            "enable" => Self::Enable,
            "schedule-deletion" => Self::ScheduleDeletion,
            "cancel-deletion" => Self::CancelDeletion,
            "retire-versions" => Self::RetireVersions,
            _ => return None,
        })
    }
}

pub async fn key_action(
    State(kms): State<Kms>,
    Authenticated(caller): Authenticated,
    Ctx(ctx): Ctx,
    Path((key, action)): Path<(String, String)>,
    body: ApiResult<JsonBody<serde_json::Value>>,
) -> ApiResult<Json<serde_json::Value>> {
    let JsonBody(body) = admin_first(&caller, body)?;
    run_key_action(kms, caller, ctx, key, &action, body).await
}

/// `POST /v1/keys/alias/{name...}/{action}`: aliases may contain slashes.
pub async fn alias_action(
    State(kms): State<Kms>,
    Authenticated(caller): Authenticated,
    Ctx(ctx): Ctx,
    Path(rest): Path<String>,
    body: ApiResult<JsonBody<serde_json::Value>>,
) -> ApiResult<Json<serde_json::Value>> {
    let JsonBody(body) = admin_first(&caller, body)?;
    let (name, action) = rest.rsplit_once('/').ok_or_else(not_found_route)?;
    run_key_action(kms, caller, ctx, format!("alias/{name}"), action, body).await
}

fn not_found_route() -> ApiError {
    ApiError::Http(HttpError {
        status: StatusCode::NOT_FOUND,
        code: "NotFound",
        message: "no such route".into(),
    })
}

async fn run_key_action(
    kms: Kms,
    caller: crate::service::Caller,
    ctx: crate::service::RequestContext,
    key: String,
    action: &str,
    body: serde_json::Value,
) -> ApiResult<Json<serde_json::Value>> {
    let action = KeyAction::parse(action).ok_or_else(not_found_route)?;
    let reject_body = |body: &serde_json::Value| -> ApiResult<()> {
        admin_first(
            &caller,
            match body.as_object() {
                Some(o) if o.is_empty() => Ok(()),
                _ => Err(ApiError::malformed("this call takes no parameters")),
            },
        )
    };
    let json = |v: KeyView| serde_json::to_value(key_metadata(v)).unwrap_or_default();
    Ok(Json(match action {
        KeyAction::Rotate => {
            reject_body(&body)?;
            let (key_id, key_version_id) = kms.rotate_key(&caller, &ctx, &key).await?;
            serde_json::to_value(RotateKeyResponse {
                key_id,
                key_version_id,
            })
            .unwrap_or_default()
        }
        KeyAction::Disable => {
            reject_body(&body)?;
            json(kms.disable_key(&caller, &ctx, &key).await?)
        }
        KeyAction::Enable => {
            reject_body(&body)?;
            json(kms.enable_key(&caller, &ctx, &key).await?)
        }
        KeyAction::ScheduleDeletion => {
            let req: ScheduleDeletionRequest = admin_first(&caller, body_as(body))?;
            json(
                kms.schedule_key_deletion(&caller, &ctx, &key, req.pending_window_in_days)
                    .await?,
            )
        }
        KeyAction::CancelDeletion => {
            reject_body(&body)?;
            json(kms.cancel_key_deletion(&caller, &ctx, &key).await?)
        }
        KeyAction::RetireVersions => {
            let req: RetireVersionsRequest = admin_first(&caller, body_as(body))?;
            json(
                kms.retire_versions(&caller, &ctx, &key, req.min_decryption_version)
                    .await?,
            )
        }
    }))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct UsageQuery {
    #[serde(default)]
    days: Option<u32>,
}

/// `GET /v1/keys/{KeyId}/version-usage?Days=N`: decrypts per version from
/// the audit trail, so an admin sees when retiring a version is safe.
pub async fn version_usage(
    State(kms): State<Kms>,
    Authenticated(caller): Authenticated,
    Path(key): Path<String>,
    query: Result<Query<UsageQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<VersionUsageResponse>> {
    let Query(q) = admin_first(&caller, query_or_malformed(query))?;
    let days = q.days.unwrap_or(30);
    let (view, usage) = kms.version_usage(&caller, &key, days).await?;
    let min = view.record.min_decryption_version;
    Ok(Json(VersionUsageResponse {
        key_id: view.record.id,
        current_key_version_id: view.record.primary_version,
        min_decryption_version: min,
        days,
        versions: view
            .versions
            .iter()
            .zip(usage)
            .map(|((version, created), u)| VersionUsageEntry {
                key_version_id: *version,
                creation_date: *created,
                retired: *version < min,
                decrypts: u.decrypts,
                last_decrypt: u.last_decrypt,
                refused_as_retired: u.refused_retired,
            })
            .collect(),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ShredQuery {
    #[serde(default)]
    pending_window_in_days: Option<u32>,
}

/// `DELETE /v1/videos/{VideoId}?PendingWindowInDays=N`: schedules the
/// video's crypto-shred (0: now).
pub async fn shred_video(
    State(kms): State<Kms>,
    Authenticated(caller): Authenticated,
    Ctx(ctx): Ctx,
    Path(video_id): Path<String>,
    query: Result<Query<ShredQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<VideoInfo>> {
    let Query(q) = admin_first(&caller, query_or_malformed(query))?;
    let view = kms
        .schedule_video_shred(&caller, &ctx, &video_id, q.pending_window_in_days)
        .await?;
    Ok(Json(video_info(view)))
}

pub async fn describe_video(
    State(kms): State<Kms>,
    Authenticated(caller): Authenticated,
    Path(video_id): Path<String>,
) -> ApiResult<Json<VideoInfo>> {
    Ok(Json(video_info(
        kms.describe_video(&caller, &video_id).await?,
    )))
}

/// `POST /v1/videos/{VideoId}/cancel-shred`.
pub async fn cancel_video_shred(
    State(kms): State<Kms>,
    Authenticated(caller): Authenticated,
    Ctx(ctx): Ctx,
    Path(video_id): Path<String>,
) -> ApiResult<Json<VideoInfo>> {
    let view = kms.cancel_video_shred(&caller, &ctx, &video_id).await?;
    Ok(Json(video_info(view)))
}

/// A JSON body already read, as the request type `T`.
fn body_as<T: serde::de::DeserializeOwned>(body: serde_json::Value) -> ApiResult<T> {
    serde_json::from_value(body).map_err(|e| ApiError::malformed(format!("invalid JSON body: {e}")))
}

/// A query string that did not parse, as 400 `MalformedRequest`.
fn query_or_malformed<T>(
    query: Result<Query<T>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Query<T>> {
    query.map_err(|e| ApiError::malformed(format!("invalid query: {e}")))
}

/// Authenticate and authorize before validate: a request refused for its
/// body or fields is first checked for a valid token of a role that may make
/// it, so a caller without one learns only 401 (or 403). The service checks
/// accepted requests itself (and audits them).
async fn after_auth<T>(
    kms: &Kms,
    token: &BearerToken,
    role: Role,
    checked: ApiResult<T>,
) -> ApiResult<T> {
    if checked.is_err() {
        kms.authenticate(token.0.as_ref())
            .await?
            .require_role(role)?;
    }
    checked
}

/// The same for admin calls, whose caller is already authenticated.
fn admin_first<T>(caller: &crate::service::Caller, checked: ApiResult<T>) -> ApiResult<T> {
    if checked.is_err() {
        caller.require_admin()?;
    }
    checked
}

fn data_key_spec(key_spec: Option<&str>, number_of_bytes: Option<u32>) -> ApiResult<DataKeySpec> {
    DataKeySpec::from_request(key_spec, number_of_bytes)
        .map(|spec| spec.unwrap_or(DataKeySpec::Aes128))
        .map_err(|m| ApiError::from(crate::service::KmsError::invalid(m)))
}

async fn generate(
    kms: Kms,
    token: BearerToken,
    ctx: crate::service::RequestContext,
    req: GenerateDataKeyRequest,
    with_plaintext: bool,
) -> ApiResult<SecretJson<GenerateDataKeyResponse>> {
    let spec = data_key_spec(req.key_spec.as_deref(), req.number_of_bytes);
    let spec = after_auth(&kms, &token, Role::Generate, spec).await?;
    let req = DataKeyRequest {
        key_id: req.key_id,
        spec,
        context: req.encryption_context.unwrap_or_default(),
    };
    let out = kms
        .generate_data_key(token.0.as_ref(), &ctx, req, with_plaintext)
        .await?;
    Ok(SecretJson(GenerateDataKeyResponse {
        key_id: out.key_id,
        key_version_id: out.version,
        plaintext: out.plaintext.map(Base64Secret),
        ciphertext_blob: out.blob.to_text(),
    }))
}

/// `POST /v1/generate-data-keys`: up to 1000 keys, idempotent by ClientToken.
pub async fn generate_data_keys(
    State(kms): State<Kms>,
    token: BearerToken,
    Ctx(ctx): Ctx,
    body: ApiResult<JsonBody<GenerateDataKeysRequest>>,
) -> ApiResult<SecretJson<GenerateDataKeysResponse>> {
    let JsonBody(req) = after_auth(&kms, &token, Role::Generate, body).await?;
    let spec = data_key_spec(req.key_spec.as_deref(), req.number_of_bytes);
    let spec = after_auth(&kms, &token, Role::Generate, spec).await?;
    let out = kms
        .generate_data_keys(
            token.0.as_ref(),
            &ctx,
            DataKeyRequest {
                key_id: req.key_id,
                spec,
                context: req.encryption_context.unwrap_or_default(),
            },
            req.count,
            req.client_token,
        )
        .await?;
    let mut data_keys = Vec::with_capacity(out.keys.len());
    for k in out.keys {
        let plaintext = k.plaintext.ok_or_else(|| {
            ApiError::from(crate::service::KmsError::Internal(
                "a batch key without its plaintext".into(),
            ))
        })?;
        data_keys.push(BatchDataKey {
            plaintext: Base64Secret(plaintext),
            ciphertext_blob: k.blob.to_text(),
            key_version_id: k.version,
        });
    }
    Ok(SecretJson(GenerateDataKeysResponse {
        key_id: out.key_id,
        data_keys,
    }))
}

pub async fn generate_data_key(
    State(kms): State<Kms>,
    token: BearerToken,
    Ctx(ctx): Ctx,
    body: ApiResult<JsonBody<GenerateDataKeyRequest>>,
) -> ApiResult<SecretJson<GenerateDataKeyResponse>> {
    let JsonBody(req) = after_auth(&kms, &token, Role::Generate, body).await?;
    generate(kms, token, ctx, req, true).await
}

pub async fn generate_data_key_without_plaintext(
    State(kms): State<Kms>,
    token: BearerToken,
    Ctx(ctx): Ctx,
    body: ApiResult<JsonBody<GenerateDataKeyRequest>>,
) -> ApiResult<SecretJson<GenerateDataKeyResponse>> {
    let JsonBody(req) = after_auth(&kms, &token, Role::Generate, body).await?;
    generate(kms, token, ctx, req, false).await
}

pub async fn decrypt(
    State(kms): State<Kms>,
    bearer: BearerToken,
    Ctx(ctx): Ctx,
    body: ApiResult<JsonBody<DecryptRequest>>,
) -> ApiResult<SecretJson<DecryptResponse>> {
    let JsonBody(req) = after_auth(&kms, &bearer, Role::Decrypt, body).await?;
    let token = bearer.0;
    let context = req.encryption_context.unwrap_or_default();
    let out = kms
        .decrypt(token.as_ref(), &ctx, &req.ciphertext_blob, context)
        .await?;
    Ok(SecretJson(DecryptResponse {
        key_id: out.key_id,
        key_version_id: out.version,
        plaintext: Base64Secret(out.plaintext),
    }))
}

pub async fn encrypt(
    State(kms): State<Kms>,
    bearer: BearerToken,
    Ctx(ctx): Ctx,
    body: ApiResult<JsonBody<EncryptRequest>>,
) -> ApiResult<Json<EncryptResponse>> {
    let JsonBody(req) = after_auth(&kms, &bearer, Role::Generate, body).await?;
    let token = bearer.0;
    let context = req.encryption_context.unwrap_or_default();
    let out = kms
        .encrypt(token.as_ref(), &ctx, &req.key_id, req.plaintext.0, context)
        .await?;
    Ok(Json(EncryptResponse {
        key_id: out.key_id,
        key_version_id: out.version,
        ciphertext_blob: out.blob.to_text(),
    }))
}

pub async fn generate_random(
    State(kms): State<Kms>,
    bearer: BearerToken,
    Ctx(ctx): Ctx,
    body: ApiResult<JsonBody<GenerateRandomRequest>>,
) -> ApiResult<SecretJson<GenerateRandomResponse>> {
    let JsonBody(req) = after_auth(&kms, &bearer, Role::Generate, body).await?;
    let token = bearer.0;
    let bytes = kms
        .generate_random(token.as_ref(), &ctx, req.number_of_bytes)
        .await?;
    Ok(SecretJson(GenerateRandomResponse {
        plaintext: Base64Secret(bytes),
    }))
}

/// `POST /v1/re-encrypt`: one request object, or a JSON array of up to
/// 1000 of them (answered by an array, in order, each item its re-sealed
/// blob or its own `Error`).
pub async fn re_encrypt(
    State(kms): State<Kms>,
    bearer: BearerToken,
    Ctx(ctx): Ctx,
    body: Result<JsonObjectOrArray, HttpError>,
) -> ApiResult<Json<serde_json::Value>> {
    let parsed = body
        .map_err(ApiError::from)
        .and_then(|JsonObjectOrArray(v)| {
            if v.is_array() {
                body_as(v).map(ReEncryptBody::Many)
            } else {
                body_as(v).map(ReEncryptBody::One)
            }
        });
    let token = bearer.0.clone();
    let body = after_auth(&kms, &bearer, Role::Generate, parsed).await?;
    let answer = |out: crate::service::ReEncrypted| ReEncryptResponse {
        key_id: out.key_id,
        key_version_id: out.version,
        source_key_id: out.source_key_id,
        source_key_version_id: out.source_version,
        ciphertext_blob: out.blob.to_text(),
    };
    match body {
        ReEncryptBody::One(req) => {
            let out = kms
                .re_encrypt(
                    token.as_ref(),
                    &ctx,
                    &req.ciphertext_blob,
                    req.source_encryption_context.unwrap_or_default(),
                    req.destination_key_id.as_deref(),
                    req.destination_encryption_context,
                )
                .await?;
            Ok(Json(serde_json::to_value(answer(out)).unwrap_or_default()))
        }
        ReEncryptBody::Many(reqs) => {
            let items = reqs
                .into_iter()
                .map(|r| crate::service::ReEncryptItem {
                    ciphertext_blob: r.ciphertext_blob,
                    source_context: r.source_encryption_context.unwrap_or_default(),
                    destination_key: r.destination_key_id,
                    destination_context: r.destination_encryption_context,
                })
                .collect();
            let results: Vec<ReEncryptResult> = kms
                .re_encrypt_batch(token.as_ref(), &ctx, items)
                .await?
                .into_iter()
                .map(|r| match r {
                    Ok(out) => ReEncryptResult {
                        ok: Some(answer(out)),
                        error: None,
                    },
                    Err(e) => ReEncryptResult {
                        ok: None,
                        error: Some(ItemError {
                            code: e.code().to_owned(),
                            message: if super::status_of(&e).is_server_error() {
                                "the service is unavailable for this item; retry it".to_owned()
                            } else {
                                e.to_string()
                            },
                        }),
                    },
                })
                .collect();
            Ok(Json(serde_json::to_value(results).unwrap_or_default()))
        }
    }
}

pub async fn create_client(
    State(kms): State<Kms>,
    Authenticated(caller): Authenticated,
    Ctx(ctx): Ctx,
    body: ApiResult<JsonBody<CreateClientRequest>>,
) -> ApiResult<(StatusCode, Json<CreateClientResponse>)> {
    let JsonBody(req) = admin_first(&caller, body)?;
    let roles = admin_first(&caller, client_roles(req.role, req.roles))?;
    let created = kms
        .create_client(
            &caller,
            &ctx,
            NewClient {
                name: req.name,
                roles,
                key_ids: req.key_ids,
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreateClientResponse {
            token: created.token.expose_secret().to_owned(),
            client: client_info(created.client),
        }),
    ))
}

fn client_roles(role: Option<String>, roles: Option<Vec<String>>) -> ApiResult<Roles> {
    let names = match (role, roles) {
        (Some(role), None) => vec![role],
        (None, Some(roles)) => roles,
        (None, None) => return Err(ApiError::malformed("Role or Roles is required")),
        (Some(_), Some(_)) => return Err(ApiError::malformed("give Role or Roles, not both")),
    };
    let invalid = |why: &str| ApiError::from(crate::service::KmsError::invalid(why));
    let list: Vec<Role> = names
        .iter()
        .map(|n| Role::parse(n))
        .collect::<Option<_>>()
        .ok_or_else(|| invalid("Role must be admin, generate, decrypt or issuer"))?;
    Roles::new(&list).map_err(invalid)
}

/// How often an idle change stream says it is alive.
const CHANGES_PING: std::time::Duration = std::time::Duration::from_secs(15);

/// `GET /v1/changes`: the change feed as newline-delimited JSON, open until
/// the server stops (see `service::feed`).
pub async fn changes(
    State(kms): State<Kms>,
    Authenticated(caller): Authenticated,
) -> ApiResult<axum::response::Response> {
    use crate::service::FeedEvent;
    use axum::response::IntoResponse as _;
    use kms_api::api::ChangeEvent;
    let subscription = kms.subscribe_changes(&caller)?;
    let line = |e: ChangeEvent| {
        let mut text = serde_json::to_string(&e).unwrap_or_default();
        text.push('\n');
        Ok::<_, std::convert::Infallible>(text)
    };
    let ready = ChangeEvent::Ready {
        client_id: subscription.client_id,
    };
    let stream = futures_util::stream::unfold(
        (Some(ready), subscription),
        move |(first, mut sub)| async move {
            if let Some(ready) = first {
                return Some((line(ready), (None, sub)));
            }
            let event = match tokio::time::timeout(CHANGES_PING, sub.next()).await {
                Err(_) => ChangeEvent::Ping,
                Ok(None) => return None,
                Ok(Some(FeedEvent::Key(key_id))) => ChangeEvent::Key { key_id },
                Ok(Some(FeedEvent::Client(client_id))) => ChangeEvent::Client { client_id },
                Ok(Some(FeedEvent::Video(video_id))) => ChangeEvent::Video { video_id },
                Ok(Some(FeedEvent::Reset)) => ChangeEvent::Reset,
            };
            Some((line(event), (None, sub)))
        },
    );
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "application/x-ndjson"),
            (axum::http::header::CACHE_CONTROL, "no-store"),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}

/// The caller's own identity: lets the broker check admin and issuer tokens
/// without reading KMS tables.
pub async fn whoami(Authenticated(caller): Authenticated) -> Json<ClientInfo> {
    Json(client_info(caller.client().clone()))
}

pub async fn list_clients(
    State(kms): State<Kms>,
    Authenticated(caller): Authenticated,
) -> ApiResult<Json<ListClientsResponse>> {
    let clients = kms.list_clients(&caller).await?;
    Ok(Json(ListClientsResponse {
        clients: clients.into_iter().map(client_info).collect(),
    }))
}

pub async fn revoke_client(
    State(kms): State<Kms>,
    Authenticated(caller): Authenticated,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    kms.revoke_client(&caller, &ctx, client_id_param(&id)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn client_id_param(id: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(id).map_err(|_| ApiError::from(crate::service::KmsError::ClientNotFound))
}

fn access_key_info(k: crate::model::AccessKeyRecord) -> AccessKeyInfo {
    AccessKeyInfo {
        access_key_id: k.id,
        client_id: k.client_id,
        creation_date: k.created_at,
    }
}

/// The secret access key as JSON text, from its zeroizing holder.
struct SecretText(crate::crypto::SecretBytes);

impl serde::Serialize for SecretText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Secrets are generated as ASCII (URL-safe base64).
        s.serialize_str(std::str::from_utf8(self.0.expose_secret()).unwrap_or_default())
    }
}

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreatedAccessKey {
    #[serde(flatten)]
    access_key: AccessKeyInfo,
    secret_access_key: SecretText,
}

pub async fn create_access_key(
    State(kms): State<Kms>,
    Authenticated(caller): Authenticated,
    Ctx(ctx): Ctx,
    Path(client_id): Path<String>,
    body: ApiResult<JsonBody<Option<serde_json::Value>>>,
) -> ApiResult<(StatusCode, SecretJson<CreatedAccessKey>)> {
    let JsonBody(body) = admin_first(&caller, body)?;
    if body.is_some_and(|b| b.as_object().is_none_or(|o| !o.is_empty())) {
        admin_first(
            &caller,
            Err(ApiError::malformed("this call takes no parameters")),
        )?;
    }
    let created = kms
        .create_access_key(&caller, &ctx, client_id_param(&client_id)?)
        .await?;
    Ok((
        StatusCode::CREATED,
        SecretJson(CreatedAccessKey {
            access_key: access_key_info(created.record),
            secret_access_key: SecretText(created.secret),
        }),
    ))
}

pub async fn list_access_keys(
    State(kms): State<Kms>,
    Authenticated(caller): Authenticated,
    Path(client_id): Path<String>,
) -> ApiResult<Json<ListAccessKeysResponse>> {
    let keys = kms
        .list_access_keys(&caller, client_id_param(&client_id)?)
        .await?;
    Ok(Json(ListAccessKeysResponse {
        access_keys: keys.into_iter().map(access_key_info).collect(),
    }))
}

pub async fn delete_access_key(
    State(kms): State<Kms>,
    Authenticated(caller): Authenticated,
    Ctx(ctx): Ctx,
    Path((client_id, access_key_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    kms.delete_access_key(&caller, &ctx, client_id_param(&client_id)?, &access_key_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct AuditQuery {
    key_id: Option<Uuid>,
    client_id: Option<Uuid>,
    #[serde(default, deserialize_with = "foundation::http::extract::non_empty")]
    access_key_id: Option<String>,
    operation: Option<String>,
    start_time: Option<DateTime<Utc>>,
    end_time: Option<DateTime<Utc>>,
    limit: Option<u32>,
    next_token: Option<String>,
}

pub const MAX_AUDIT_PAGE: u32 = 1000;

/// The audit query as the store takes it.
fn audit_filter(
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<AuditFilter> {
    let Query(q) =
        query.map_err(|e| ApiError::malformed(format!("invalid query: {}", e.body_text())))?;
    let invalid = |m: &str| ApiError::from(crate::service::KmsError::invalid(m));
    let operation = q
        .operation
        .as_deref()
        .map(|o| Operation::parse(o).ok_or_else(|| invalid("unknown Operation")))
        .transpose()?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_AUDIT_PAGE).contains(&limit) {
        return Err(invalid("Limit must be 1..=1000"));
    }
    let before_seq = q
        .next_token
        .as_deref()
        .map(|t| {
            t.parse::<i64>()
                .ok()
                .filter(|seq| *seq >= 0 && t.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| invalid("NextToken is not valid"))
        })
        .transpose()?;
    let filter = AuditFilter {
        key_id: q.key_id,
        client_id: q.client_id,
        access_key_id: q.access_key_id,
        operation,
        since: q.start_time,
        until: q.end_time,
        before_seq,
        limit,
    };
    Ok(filter)
}

pub async fn audit(
    State(kms): State<Kms>,
    Authenticated(caller): Authenticated,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<AuditResponse>> {
    let filter = admin_first(&caller, audit_filter(query))?;
    let limit = filter.limit;
    let rows = kms.query_audit(&caller, &filter).await?;
    let next_token = (rows.len() == limit as usize)
        .then(|| rows.last().map(|(seq, _)| seq.to_string()))
        .flatten();
    let records = rows
        .into_iter()
        .map(|(_, r)| AuditEntry {
            event_id: r.id,
            event_time: r.time,
            client_id: r.client_id,
            operation: r.operation.as_str().to_owned(),
            key_id: r.key_id,
            key_version_id: r.key_version,
            encryption_context: r.encryption_context,
            outcome: r.outcome,
            request_id: r.request_id,
            detail: r.detail,
            protocol: r.protocol,
            access_key_id: r.access_key_id,
        })
        .collect();
    Ok(Json(AuditResponse {
        records,
        next_token,
    }))
}
