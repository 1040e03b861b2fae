//! Content keys and the W3C Clear Key licence over HTTP.
//!
//! - `POST /v1/content-keys {VideoId, Kid, CiphertextBlob}` (a KMS generate
//!   client or an admin), `GET /v1/content-keys?VideoId=`, `DELETE
//!   /v1/content-keys?VideoId=` (admin).
//! - `POST /v1/clearkey/license`: `{"kids": [base64url], "type": ...}` in,
//!   `{"keys": [{"kty": "oct", "kid", "k"}], "type": "temporary"}` out, with
//!   any Content-Type (players differ), the token by query, cookie or
//!   Authorization, as for keys.
//! - `GET /v1/clearkey/key?kid=HEX`: the raw 16 bytes, for HLS key tags
//!   with `KEYFORMAT="identity"` (Shaka, Safari).

use std::borrow::Cow;

use axum::body::Bytes;
use axum::extract::{Query, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use foundation::http::extract::JsonBody;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{Admin, Ctx, PlaybackTokens};
use super::key_query::KeyQuery;
use super::AppState;
use crate::model::ContentKeyRecord;
use crate::service::{parse_kid, LicenceRequest};

type ApiResult<T> = Result<T, ApiError>;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct RegisterContentKeyRequest {
    #[schemars(regex(pattern = r"^[!-~]{1,256}$"))]
    pub video_id: String,
    /// 32 hex digits, or a UUID.
    #[schemars(regex(
        pattern = r"^([0-9a-fA-F]{32}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
    ))]
    pub kid: String,
    /// The data key's EDK, as the KMS gave it.
    pub ciphertext_blob: String,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ContentKeyInfo {
    /// 32 lower-case hex digits.
    pub kid: String,
    pub video_id: String,
    pub ciphertext_blob: String,
    pub client_id: Option<uuid::Uuid>,
    pub creation_date: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ContentKeysResponse {
    pub content_keys: Vec<ContentKeyInfo>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct VideoQuery {
    #[serde(default, deserialize_with = "super::handlers::video_id")]
    pub video_id: Option<String>,
}

fn info(k: ContentKeyRecord) -> ContentKeyInfo {
    ContentKeyInfo {
        kid: hls::cipher::hex(&k.kid),
        video_id: k.video_id,
        ciphertext_blob: k.ciphertext_blob,
        client_id: k.client_id,
        creation_date: k.created_at,
    }
}

pub async fn register(
    State(s): State<AppState>,
    Admin(client): Admin,
    Ctx(ctx): Ctx,
    JsonBody(req): JsonBody<RegisterContentKeyRequest>,
) -> ApiResult<(StatusCode, Json<ContentKeyInfo>)> {
    let kid = parse_kid(&req.kid)
        .ok_or_else(|| ApiError::invalid("Kid must be 32 hex digits or a UUID"))?;
    let stored = s
        .broker
        .register_content_key(&ctx, &client, &req.video_id, kid, &req.ciphertext_blob)
        .await?;
    Ok((StatusCode::CREATED, Json(info(stored))))
}

pub async fn list(
    State(s): State<AppState>,
    Admin(client): Admin,
    query: Result<Query<VideoQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<ContentKeysResponse>> {
    let Query(q) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let keys = s
        .broker
        .list_content_keys(&client, q.video_id.as_deref())
        .await?;
    Ok(Json(ContentKeysResponse {
        content_keys: keys.into_iter().map(info).collect(),
    }))
}

pub async fn delete(
    State(s): State<AppState>,
    Admin(client): Admin,
    Ctx(ctx): Ctx,
    query: Result<Query<VideoQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let Query(q) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let video = q
        .video_id
        .ok_or_else(|| ApiError::invalid("VideoId is required"))?;
    let n = s.broker.delete_content_keys(&ctx, &client, &video).await?;
    Ok(Json(serde_json::json!({ "VideoId": video, "Deleted": n })))
}

/// The W3C Clear Key licence request (JSON Web Key set request).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct LicenceBody {
    /// 1 to 32 KIDs, each 16 bytes in base64url without padding.
    #[schemars(
        length(min = 1, max = 32),
        inner(regex(pattern = r"^[A-Za-z0-9_-]{21}[AQgw]$"))
    )]
    kids: Vec<String>,
    /// `temporary` (or `persistent-license`): either way the licence is temporary.
    #[serde(rename = "type", default)]
    #[schemars(regex(pattern = r"^(temporary|persistent-license)$"))]
    _type: Option<String>,
}

/// A KID as the CDM writes it: base64url without padding (padded and
/// standard base64 also read).
fn kid_from_base64(text: &str) -> Option<[u8; 16]> {
    let bytes = foundation::encoding::decode_base64_any(text)?;
    bytes.try_into().ok()
}

/// The KIDs of a W3C Clear Key licence request body, or why it cannot be
/// read. Fuzzed (`fuzz/`: clear_key_request).
pub fn licence_kids(body: &[u8]) -> Result<Vec<[u8; 16]>, String> {
    let parsed = serde_json::from_slice::<LicenceBody>(body).map_err(|e| {
        format!("the body must be a Clear Key licence request {{\"kids\": [...]}}: {e}")
    })?;
    parsed
        .kids
        .iter()
        .map(|k| kid_from_base64(k))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| "every kid must be 16 bytes in base64url".to_owned())
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// One key of the answer; `k` serialized from its zeroizing holder.
struct JsonWebKey {
    kid: [u8; 16],
    key: std::sync::Arc<foundation::SecretBytes>,
}

impl Serialize for JsonWebKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let k = zeroize::Zeroizing::new(b64url(self.key.expose_secret()));
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("kty", "oct")?;
        m.serialize_entry("kid", &b64url(&self.kid))?;
        m.serialize_entry("k", k.as_str())?;
        m.end()
    }
}

#[derive(Serialize)]
struct LicenceAnswer {
    keys: Vec<JsonWebKey>,
    #[serde(rename = "type")]
    kind: &'static str,
}

fn tokens_of<'a>(q: &KeyQuery<'a>, from_headers: Vec<String>) -> Vec<Cow<'a, str>> {
    q.tokens()
        .chain(from_headers.into_iter().map(Cow::Owned))
        .collect()
}

pub async fn licence(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    RawQuery(raw): RawQuery,
    PlaybackTokens(from_headers): PlaybackTokens,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Response> {
    let raw = raw.unwrap_or_default();
    let q = KeyQuery::parse(&raw)?;
    // Read now, refused only after the token is checked (in the service):
    // an unreadable body (too large, too slow) too.
    let parsed = match &body {
        Ok(bytes) => Ok(bytes.as_ref()),
        Err(e) => Err(foundation::http::server::is_body_timeout(e)),
    };
    let (kids, malformed) = match parsed {
        Err(slow) => (
            Vec::new(),
            Some(if slow {
                "the request body did not arrive in time".to_owned()
            } else {
                "the request body could not be read (too large?)".to_owned()
            }),
        ),
        Ok(body) => match licence_kids(body) {
            Ok(kids) => (kids, None),
            Err(why) => (Vec::new(), Some(why)),
        },
    };
    let licence = s
        .broker
        .clear_key_licence(
            &ctx,
            LicenceRequest {
                tokens: tokens_of(&q, from_headers),
                kids,
                malformed,
            },
        )
        .await?;
    let answer = LicenceAnswer {
        keys: licence
            .keys
            .into_iter()
            .map(|(kid, key)| JsonWebKey { kid, key })
            .collect(),
        kind: "temporary",
    };
    let mut resp = foundation::http::secret_body::SecretJson(answer).into_response();
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    Ok(resp)
}

/// `GET /v1/clearkey/key?kid=HEX`: one content key's raw bytes.
pub async fn raw_key(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    RawQuery(raw): RawQuery,
    PlaybackTokens(from_headers): PlaybackTokens,
) -> ApiResult<Response> {
    let raw = raw.unwrap_or_default();
    let q = KeyQuery::parse(&raw)?;
    let kid = q.kid.as_deref().and_then(parse_kid);
    let mut licence = s
        .broker
        .clear_key_licence(
            &ctx,
            LicenceRequest {
                tokens: tokens_of(&q, from_headers),
                kids: kid.into_iter().collect(),
                malformed: kid
                    .is_none()
                    .then(|| "kid must be 32 hex digits or a UUID".to_owned()),
            },
        )
        .await?;
    let (_, key) = licence
        .keys
        .pop()
        .ok_or_else(|| ApiError::invalid("no key"))?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, no-store"),
            ),
        ],
        foundation::http::secret_body::key_body(key),
    )
        .into_response())
}
