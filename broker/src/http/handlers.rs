//! Handlers: extract, call the service, shape the answer. No rules here.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use foundation::http::extract::JsonBody;
use serde::Deserialize;
use std::borrow::Cow;

use super::error::ApiError;
use super::extract::{Admin, Ctx, PlaybackTokens};
use super::key_query::KeyQuery;
use super::{AppState, DEVICE_COOKIE_NAME};
use crate::api::*;
use crate::model::{BrokerAuditFilter, BrokerAuditRecord, BrokerOperation, RevocationKind};
use crate::service::{
    IssuedToken, KeyRequest, NewViewer, RevocationView, ViewerUpdate, ViewerView,
};

type ApiResult<T> = Result<T, ApiError>;

pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "Status": "ok" }))
}

pub async fn readyz(State(s): State<AppState>) -> ApiResult<Json<serde_json::Value>> {
    s.broker.ready().await?;
    Ok(Json(serde_json::json!({
        "Status": "ready",
        "KeyCacheMaxAgeSeconds": s.broker.key_cache_max_age().as_secs(),
    })))
}

fn query_error(e: QueryRejection) -> ApiError {
    ApiError::invalid(format!("bad query string: {}", e.body_text()))
}

/// `GET /v1/hls/key?vid=V&Ciphertext=EDK` and Alibaba's `GET /?Ciphertext=EDK`:
/// exactly the 16 key bytes, or a JSON refusal.
pub async fn hls_key(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    // The URI, not RawQuery: its query is borrowed, where RawQuery copies it.
    uri: axum::http::Uri,
    PlaybackTokens(from_headers): PlaybackTokens,
) -> ApiResult<Response> {
    let q = KeyQuery::parse(uri.query().unwrap_or_default())?;
    let tokens = q
        .tokens()
        .chain(from_headers.into_iter().map(Cow::Owned))
        .collect();
    let released = s
        .broker
        .release_key(
            &ctx,
            KeyRequest {
                tokens,
                video_id: q.vid,
                ciphertext: q.ciphertext,
            },
        )
        .await?;
    let cache = if released.max_age_secs == 0 {
        HeaderValue::from_static("private, no-cache")
    } else if released.max_age_secs == s.key_cache_control.0 {
        s.key_cache_control.1.clone()
    } else {
        HeaderValue::from_str(&format!("private, max-age={}", released.max_age_secs))
            .unwrap_or(HeaderValue::from_static("private, no-cache"))
    };
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (header::CACHE_CONTROL, cache),
        ],
        // The cached key itself, not a copy: nothing is left to wipe.
        foundation::http::secret_body::key_body(released.key),
    )
        .into_response())
}

fn token_json(t: &IssuedToken) -> TokenResponse {
    TokenResponse {
        token: t.token.as_str().to_owned(),
        token_id: t.token_id.clone(),
        expires_at: t.expires_at,
    }
}

pub async fn login(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    JsonBody(req): JsonBody<LoginRequest>,
) -> ApiResult<Response> {
    let device = super::extract::cookie(&headers, DEVICE_COOKIE_NAME);
    let issued = s
        .broker
        .login(&ctx, &req.username, req.password, device.as_deref())
        .await?;
    let cookie = s.http.cookie(&issued.token, issued.ttl_secs);
    let mut resp = Json(token_json(&issued)).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    if let Some(device) = &issued.device_cookie {
        if let Ok(v) = HeaderValue::from_str(&s.http.device_cookie(device)) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// Clears the cookie and revokes the token it (or the bearer header) held.
pub async fn logout(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    PlaybackTokens(tokens): PlaybackTokens,
) -> ApiResult<Response> {
    for t in &tokens {
        s.broker.sign_out(&ctx, t).await?;
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&s.http.cookie("", 0)) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

pub async fn issue_token(
    State(s): State<AppState>,
    Admin(client): Admin,
    Ctx(ctx): Ctx,
    JsonBody(req): JsonBody<IssueTokenRequest>,
) -> ApiResult<(StatusCode, HeaderMap, Json<TokenResponse>)> {
    let issued = s
        .broker
        .issue_token(
            &client,
            &ctx,
            &req.viewer,
            req.video_ids,
            req.ttl_seconds,
            crate::service::TokenBinding {
                ip: req.ip,
                device: req.device,
            },
        )
        .await?;
    let mut headers = HeaderMap::new();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok((StatusCode::CREATED, headers, Json(token_json(&issued))))
}

fn viewer_info(v: ViewerView) -> ViewerInfo {
    ViewerInfo {
        username: v.username,
        entitlements: v.entitlements,
        enabled: v.enabled,
        max_streams: v.limits.max_streams,
        max_addresses_per_token: v.limits.max_addresses_per_token,
        creation_date: v.created_at,
        update_date: v.updated_at,
    }
}

pub async fn create_viewer(
    State(s): State<AppState>,
    Admin(client): Admin,
    Ctx(ctx): Ctx,
    JsonBody(req): JsonBody<CreateViewerRequest>,
) -> ApiResult<(StatusCode, Json<ViewerInfo>)> {
    let v = s
        .broker
        .create_viewer(
            &client,
            &ctx,
            NewViewer {
                username: req.username,
                password: req.password,
                entitlements: req.entitlements,
                limits: crate::model::ViewerLimits {
                    max_streams: req.max_streams,
                    max_addresses_per_token: req.max_addresses_per_token,
                },
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(viewer_info(v))))
}

pub async fn list_viewers(
    State(s): State<AppState>,
    Admin(client): Admin,
) -> ApiResult<Json<ListViewersResponse>> {
    let list = s.broker.list_viewers(&client).await?;
    Ok(Json(ListViewersResponse {
        viewers: list.into_iter().map(viewer_info).collect(),
    }))
}

pub async fn get_viewer(
    State(s): State<AppState>,
    Admin(client): Admin,
    Path(username): Path<String>,
) -> ApiResult<Json<ViewerInfo>> {
    Ok(Json(viewer_info(
        s.broker.viewer(&client, &username).await?,
    )))
}

pub async fn update_viewer(
    State(s): State<AppState>,
    Admin(client): Admin,
    Ctx(ctx): Ctx,
    Path(username): Path<String>,
    JsonBody(req): JsonBody<UpdateViewerRequest>,
) -> ApiResult<Json<ViewerInfo>> {
    let v = s
        .broker
        .update_viewer(
            &client,
            &ctx,
            &username,
            ViewerUpdate {
                password: req.password,
                entitlements: req.entitlements,
                enabled: req.enabled,
                max_streams: req.max_streams,
                max_addresses_per_token: req.max_addresses_per_token,
            },
        )
        .await?;
    Ok(Json(viewer_info(v)))
}

pub async fn delete_viewer(
    State(s): State<AppState>,
    Admin(client): Admin,
    Ctx(ctx): Ctx,
    Path(username): Path<String>,
) -> ApiResult<StatusCode> {
    s.broker.delete_viewer(&client, &ctx, &username).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn parse_kind(kind: &str) -> Result<RevocationKind, ApiError> {
    RevocationKind::parse(kind)
        .ok_or_else(|| ApiError::invalid("Type must be Token, Viewer or Video"))
}

fn revocation_info(r: RevocationView) -> RevocationInfo {
    RevocationInfo {
        kind: r.0.kind.as_str().to_owned(),
        id: r.0.subject,
        revoked_at: r.0.revoked_at,
        expires_at: r.0.expires_at,
    }
}

pub async fn revoke(
    State(s): State<AppState>,
    Admin(client): Admin,
    Ctx(ctx): Ctx,
    JsonBody(req): JsonBody<RevokeRequest>,
) -> ApiResult<(StatusCode, Json<RevocationInfo>)> {
    let kind = parse_kind(&req.kind)?;
    let r = s.broker.revoke(&client, &ctx, kind, &req.id).await?;
    Ok((StatusCode::CREATED, Json(revocation_info(r))))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct LiftQuery {
    #[serde(rename = "Type")]
    kind: String,
    id: String,
}

pub async fn lift_revocation(
    State(s): State<AppState>,
    Admin(client): Admin,
    Ctx(ctx): Ctx,
    query: Result<Query<LiftQuery>, QueryRejection>,
) -> ApiResult<StatusCode> {
    let Query(q) = query.map_err(query_error)?;
    let kind = parse_kind(&q.kind)?;
    s.broker.lift_revocation(&client, &ctx, kind, &q.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_revocations(
    State(s): State<AppState>,
    Admin(client): Admin,
) -> ApiResult<Json<ListRevocationsResponse>> {
    let list = s.broker.list_revocations(&client).await?;
    Ok(Json(ListRevocationsResponse {
        revocations: list.into_iter().map(revocation_info).collect(),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct AuditQuery {
    #[serde(default, deserialize_with = "foundation::http::extract::non_empty")]
    viewer: Option<String>,
    #[serde(default, deserialize_with = "video_id")]
    video_id: Option<String>,
    operation: Option<String>,
    #[serde(default, deserialize_with = "foundation::http::extract::non_empty")]
    outcome: Option<String>,
    start_time: Option<DateTime<Utc>>,
    end_time: Option<DateTime<Utc>>,
    limit: Option<u32>,
    next_token: Option<String>,
}

/// An optional `VideoId` query parameter: a video id when present.
pub(super) fn video_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let value = <String as serde::Deserialize>::deserialize(d)?;
    if !crate::token::valid_video_id(&value) {
        return Err(serde::de::Error::custom("not a video id"));
    }
    Ok(Some(value))
}

fn audit_entry(r: BrokerAuditRecord) -> BrokerAuditEntry {
    BrokerAuditEntry {
        event_id: r.id,
        event_time: r.time,
        operation: r.operation.as_str().to_owned(),
        outcome: r.outcome,
        request_id: r.request_id,
        viewer: r.viewer,
        video_id: r.video_id,
        key_id: r.key_id,
        key_version_id: r.key_version,
        token_id: r.token_id,
        client_id: r.client_id,
        address: r.address,
        detail: r.detail,
    }
}

pub async fn audit(
    State(s): State<AppState>,
    Admin(client): Admin,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> ApiResult<Json<BrokerAuditResponse>> {
    let Query(q) = query.map_err(query_error)?;
    let operation = q
        .operation
        .map(|o| {
            BrokerOperation::parse(&o)
                .ok_or_else(|| ApiError::invalid("Operation is not a broker operation"))
        })
        .transpose()?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("Limit must be 1 to 1000"));
    }
    let before_seq = q
        .next_token
        .map(|t| {
            t.parse::<i64>()
                .ok()
                .filter(|seq| *seq >= 0 && t.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| ApiError::invalid("NextToken is not valid"))
        })
        .transpose()?;
    let page = s
        .broker
        .query_audit(
            &client,
            BrokerAuditFilter {
                viewer: q.viewer,
                video_id: q.video_id,
                operation,
                outcome: q.outcome,
                since: q.start_time,
                until: q.end_time,
                before_seq,
                limit,
            },
        )
        .await?;
    Ok(Json(BrokerAuditResponse {
        records: page.records.into_iter().map(audit_entry).collect(),
        next_token: page.next.map(|n| n.to_string()),
    }))
}
