//! The KMS HTTP API: `app(kms)` builds the router; `serve` runs it.

pub mod doors;
mod error;
pub mod extract;
mod handlers;

use std::time::Instant;

use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};
use axum::Router;
pub use foundation::http::{
    edge, error_response, method_not_allowed, metrics, not_found, openapi, secret_body, tls,
    ErrorInfo, RequestId, SHUTDOWN_FLUSH_DEADLINE,
};

pub use error::{status_of, ApiError};

use crate::service::Kms;
use handlers as h;

/// Largest request body accepted (the biggest legitimate request is a
/// re-encrypt of a 1 KiB key with two full EncryptionContexts).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// The KMS API with the cloud doors in their default configuration.
pub fn app(kms: Kms) -> Router {
    app_with_doors(kms, doors::DoorConfig::default())
}

/// The KMS API: `/v1` and, at `POST /`, the AWS, Alibaba Cloud and Tencent
/// Cloud doors configured by `doors`.
pub fn app_with_doors(kms: Kms, doors: doors::DoorConfig) -> Router {
    let door_state = doors::DoorState::new(kms.clone(), doors);
    let source = kms.clone();
    let metrics = std::sync::Arc::new(metrics::HttpMetrics::new("vodkms_kms", move |out| {
        kms_metrics(&source, out)
    }));
    Router::new()
        .route("/metrics", get(metrics::scrape).with_state(metrics.clone()))
        .route("/openapi.json", get(openapi_document))
        .route("/", post(doors::root).with_state(door_state))
        .route("/healthz", get(h::healthz))
        .route("/readyz", get(h::readyz))
        .route("/v1/keys", post(h::create_key).get(h::list_keys))
        .route("/v1/keys/{key_id}", get(h::describe_key))
        .route("/v1/keys/{key_id}/{action}", post(h::key_action))
        .route("/v1/keys/{key_id}/version-usage", get(h::version_usage))
        .route(
            "/v1/videos/{video_id}",
            get(h::describe_video).delete(h::shred_video),
        )
        .route(
            "/v1/videos/{video_id}/cancel-shred",
            post(h::cancel_video_shred),
        )
        .route(
            "/v1/keys/alias/{*name}",
            get(h::describe_alias).post(h::alias_action),
        )
        .route("/v1/generate-data-key", post(h::generate_data_key))
        .route("/v1/generate-data-keys", post(h::generate_data_keys))
        .route(
            "/v1/generate-data-key-without-plaintext",
            post(h::generate_data_key_without_plaintext),
        )
        .route("/v1/decrypt", post(h::decrypt))
        .route("/v1/re-encrypt", post(h::re_encrypt))
        .route("/v1/encrypt", post(h::encrypt))
        .route("/v1/generate-random", post(h::generate_random))
        .route("/v1/clients", post(h::create_client).get(h::list_clients))
        .route(
            "/v1/clients/{client_id}",
            axum::routing::delete(h::revoke_client),
        )
        .route(
            "/v1/clients/{client_id}/access-keys",
            post(h::create_access_key).get(h::list_access_keys),
        )
        .route(
            "/v1/clients/{client_id}/access-keys/{access_key_id}",
            axum::routing::delete(h::delete_access_key),
        )
        .route("/v1/whoami", get(h::whoami))
        .route("/v1/changes", get(h::changes))
        .route("/v1/audit", get(h::audit))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(metrics, edge))
        .with_state(kms)
}

/// `GET /openapi.json`.
async fn openapi_document() -> axum::Json<serde_json::Value> {
    axum::Json(document())
}

/// The KMS's OpenAPI document: every route of `app`, with the schemas of
/// the types its handlers use.
pub fn document() -> serde_json::Value {
    use crate::api::*;
    use openapi::{schema, Answer, Auth, Op, Param, QueryParam, NEXT_TOKEN_PATTERN};
    use serde_json::Value;
    const AUDIT_QUERY: &[QueryParam] = &[
        ("KeyId", false, "only this key", Param::Uuid),
        ("ClientId", false, "only this API client", Param::Uuid),
        (
            "AccessKeyId",
            false,
            "only requests signed with this access key",
            Param::Text,
        ),
        (
            "Operation",
            false,
            "only this operation, e.g. Decrypt",
            Param::OneOf(&crate::model::Operation::NAMES),
        ),
        ("StartTime", false, "RFC 3339, inclusive", Param::DateTime),
        ("EndTime", false, "RFC 3339, exclusive", Param::DateTime),
        (
            "Limit",
            false,
            "1 to 1000, default 100",
            Param::Integer { min: 1, max: 1000 },
        ),
        (
            "NextToken",
            false,
            "from the previous page",
            Param::Pattern(NEXT_TOKEN_PATTERN),
        ),
    ];
    const VIDEO_PATH: &[(&str, Param)] = &[("video_id", Param::Pattern("^[!-~]{1,256}$"))];
    let ops = [
        Op::new("POST", "/", "The cloud doors, signed with an access key: AWS KMS JSON 1.1 (X-Amz-Target: TrentService.<Operation>, SigV4), Alibaba Cloud KMS 2016-01-20 (Action, ACS3-HMAC-SHA256 or RPC HMAC-SHA1) and Tencent Cloud KMS 2019-01-18 (X-TC-Action, TC3-HMAC-SHA256); each answers in its own format", Auth::None, Some(schema::<Value>), Answer::Json(200, schema::<Value>)),
        Op::new("POST", "/v1/keys", "Create a master key (admin)", Auth::ApiClient, Some(schema::<CreateKeyRequest>), Answer::Json(201, schema::<KeyMetadata>)),
        Op::new("GET", "/v1/keys", "List master keys (admin)", Auth::ApiClient, None, Answer::Json(200, schema::<ListKeysResponse>)),
        Op::new("GET", "/v1/keys/{key_id}", "Describe a key by id or alias%2FNAME (admin)", Auth::ApiClient, None, Answer::Json(200, schema::<KeyMetadata>)),
        Op::new("POST", "/v1/keys/{key_id}/{action}", "rotate, disable, enable, schedule-deletion ({PendingWindowInDays}) or cancel-deletion (admin)", Auth::ApiClient, Some(schema::<ScheduleDeletionRequest>), Answer::Json(200, schema::<Value>)),
        Op::new("GET", "/v1/keys/alias/{*name}", "Describe a key by alias (admin)", Auth::ApiClient, None, Answer::Json(200, schema::<KeyMetadata>)),
        Op::new("POST", "/v1/keys/alias/{*name}", "An action on a key by alias: alias/NAME/rotate, ... (admin)", Auth::ApiClient, Some(schema::<ScheduleDeletionRequest>), Answer::Json(200, schema::<Value>)),
        Op::new("POST", "/v1/generate-data-key", "A fresh data key and its envelope-encrypted copy (generate)", Auth::ApiClient, Some(schema::<GenerateDataKeyRequest>), Answer::Json(200, schema::<GenerateDataKeyResponse>)),
        Op::new("POST", "/v1/generate-data-keys", "Up to 1000 data keys in one call; a ClientToken makes a repeat within 24 h return the same keys (generate)", Auth::ApiClient, Some(schema::<GenerateDataKeysRequest>), Answer::Json(200, schema::<GenerateDataKeysResponse>)),
        Op::new("POST", "/v1/generate-data-key-without-plaintext", "The same without Plaintext (generate)", Auth::ApiClient, Some(schema::<GenerateDataKeyRequest>), Answer::Json(200, schema::<GenerateDataKeyResponse>)),
        Op::new("POST", "/v1/decrypt", "Open a CiphertextBlob (decrypt)", Auth::ApiClient, Some(schema::<DecryptRequest>), Answer::Json(200, schema::<DecryptResponse>)),
        Op::new("POST", "/v1/encrypt", "Seal up to 4 KiB of your own bytes under a master key (generate)", Auth::ApiClient, Some(schema::<EncryptRequest>), Answer::Json(200, schema::<EncryptResponse>)),
        Op::new("POST", "/v1/generate-random", "Random bytes, 1 to 1024 (generate)", Auth::ApiClient, Some(schema::<GenerateRandomRequest>), Answer::Json(200, schema::<GenerateRandomResponse>)),
        Op::new("POST", "/v1/re-encrypt", "Re-seal a blob under the key's current version, or another key or context (generate); a JSON array of up to 1000 requests is answered by an array, in order, each item its blob or its own Error", Auth::ApiClient, Some(schema::<ReEncryptBody>), Answer::Json(200, schema::<Value>)),
        Op::new("POST", "/v1/keys/{key_id}/retire-versions", "Set MinDecryptionVersion: blobs of older versions are refused as KeyVersionRetired; a lower value undoes it (admin)", Auth::ApiClient, Some(schema::<RetireVersionsRequest>), Answer::Json(200, schema::<KeyMetadata>)),
        Op::new("GET", "/v1/keys/{key_id}/version-usage", "Decrypts per key version over the last Days days, from the audit trail: when retiring is safe (admin)", Auth::ApiClient, None, Answer::Json(200, schema::<VersionUsageResponse>)).with_query(&[("Days", false, "1 to 366, default 30", Param::Integer { min: 1, max: 366 })]),
        Op::new("GET", "/v1/videos/{video_id}", "A video's crypto-shred state (admin)", Auth::ApiClient, None, Answer::Json(200, schema::<VideoInfo>)).with_path_params(VIDEO_PATH),
        Op::new("DELETE", "/v1/videos/{video_id}", "Crypto-shred a video: its per-video data keys are refused at once and, after PendingWindowInDays (0 to 30, default 7; 0 = now), can never be decrypted again (admin)", Auth::ApiClient, None, Answer::Json(200, schema::<VideoInfo>)).with_query(&[("PendingWindowInDays", false, "0 to 30, default 7", Param::Integer { min: 0, max: 30 })]).with_path_params(VIDEO_PATH),
        Op::new("POST", "/v1/videos/{video_id}/cancel-shred", "Cancel a scheduled shred before its date (admin)", Auth::ApiClient, None, Answer::Json(200, schema::<VideoInfo>)).with_path_params(VIDEO_PATH),
        Op::new("POST", "/v1/clients", "Create an API client; its token is shown once (admin)", Auth::ApiClient, Some(schema::<CreateClientRequest>), Answer::Json(201, schema::<CreateClientResponse>)),
        Op::new("GET", "/v1/clients", "List API clients (admin)", Auth::ApiClient, None, Answer::Json(200, schema::<ListClientsResponse>)),
        Op::new("DELETE", "/v1/clients/{client_id}", "Revoke a client at once (admin)", Auth::ApiClient, None, Answer::Empty(204)),
        Op::new("POST", "/v1/clients/{client_id}/access-keys", "Create an access key for the signed cloud doors; its secret is shown once (admin; at most 2 per client)", Auth::ApiClient, None, Answer::Json(201, schema::<CreateAccessKeyResponse>)),
        Op::new("GET", "/v1/clients/{client_id}/access-keys", "List a client's access keys, without secrets (admin)", Auth::ApiClient, None, Answer::Json(200, schema::<ListAccessKeysResponse>)),
        Op::new("DELETE", "/v1/clients/{client_id}/access-keys/{access_key_id}", "Delete an access key at once (admin)", Auth::ApiClient, None, Answer::Empty(204)),
        Op::new("GET", "/v1/whoami", "The calling client", Auth::ApiClient, None, Answer::Json(200, schema::<ClientInfo>)),
        Op::new("GET", "/v1/changes", "Key and client changes as they happen, one JSON object per line (decrypt or admin): {\"Type\":\"Ready\",\"ClientId\"}, then Key {KeyId}, Client {ClientId}, Reset (drop everything cached), and Ping every 15 s", Auth::ApiClient, None, Answer::Bytes(200, "application/x-ndjson")),
        Op::new("GET", "/v1/audit", "The audit trail, newest first (admin)", Auth::ApiClient, None, Answer::Json(200, schema::<AuditResponse>)).with_query(AUDIT_QUERY),
    ];
    openapi::document(
        "vodkms KMS",
        "Master keys, data keys (envelope encryption), API clients and the audit trail.",
        &ops,
        schema::<ErrorBody>,
    )
}

/// What the KMS adds to /metrics: its audit writer and database pool.
fn kms_metrics(kms: &Kms, out: &metrics::Exposition<'_>) {
    let (unconfirmed, max) = kms.staleness();
    out.metric(
        "vodkms_kms_cache_unconfirmed_seconds",
        "gauge",
        "Time since the caches were last confirmed current with the database.",
        unconfirmed.as_secs_f64(),
    );
    out.metric(
        "vodkms_kms_credential_lookups_total",
        "counter",
        "API client tokens looked up in the database (not in memory).",
        kms.credential_lookups(),
    );
    out.metric(
        "vodkms_kms_max_stale_seconds",
        "gauge",
        "Past this, cached keys and clients are read again (503 without the database).",
        max.as_secs(),
    );
    out.metric(
        "vodkms_kms_audit_buffered",
        "gauge",
        "Audit records waiting to be written.",
        kms.audit_buffered(),
    );
    out.metric(
        "vodkms_kms_audit_flush_failures_total",
        "counter",
        "Audit batch writes the database refused (retried).",
        kms.audit_flush_failures(),
    );
    if let Some((size, idle)) = kms.pool_stats() {
        out.metric(
            "vodkms_kms_db_connections",
            "gauge",
            "Open database connections.",
            size,
        );
        out.metric(
            "vodkms_kms_db_connections_idle",
            "gauge",
            "Idle database connections.",
            idle,
        );
    }
}

/// Serves until `shutdown` resolves (requests in flight finish), over TLS
/// when `tls` is given, then writes every buffered audit record, retrying
/// while the database is away. An error means records were lost, so the
/// caller can exit non-zero.
pub async fn serve(
    listener: tokio::net::TcpListener,
    kms: Kms,
    doors: doors::DoorConfig,
    tls: Option<tls::TlsFiles>,
    limits: foundation::http::server::ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = app_with_doors(kms.clone(), doors);
    // Open change streams would hold a graceful shutdown for its whole grace.
    let feeds = kms.clone();
    let shutdown = async move {
        shutdown.await;
        feeds.close_change_feed();
    };
    foundation::http::server::serve(listener, app, tls, limits, shutdown).await?;
    kms.drain_audit(Instant::now() + SHUTDOWN_FLUSH_DEADLINE)
        .await
        .map_err(|lost| std::io::Error::other(format!("{lost} audit records could not be written")))
}
