//! Risk-control administration: a viewer's playback sessions, and per-video
//! playback policies.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use foundation::http::extract::JsonBody;
use serde::Deserialize;

use super::error::ApiError;
use super::extract::{Admin, Ctx};
use super::AppState;
use crate::api::{ListSessionsResponse, PlaybackPolicyInfo, PlaybackPolicyRequest, SessionInfo};
use crate::model::{StreamRecord, VideoPolicy};

type ApiResult<T> = Result<T, ApiError>;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct SessionsQuery {
    viewer: String,
}

fn session_info(s: StreamRecord) -> SessionInfo {
    SessionInfo {
        session_id: s.id,
        viewer: s.viewer,
        stream: s.stream,
        token_id: s.token_id,
        address: s.address,
        start_date: s.started_at,
        last_seen_date: s.last_seen,
    }
}

fn policy_info(p: VideoPolicy) -> PlaybackPolicyInfo {
    PlaybackPolicyInfo {
        video_id: p.video_id,
        allowed_origins: p.allowed_origins,
        update_date: p.updated_at,
    }
}

/// `GET /v1/sessions?Viewer=V`: the viewer's playback sessions not idle.
pub async fn list_sessions(
    State(s): State<AppState>,
    Admin(client): Admin,
    query: Result<Query<SessionsQuery>, QueryRejection>,
) -> ApiResult<Json<ListSessionsResponse>> {
    let Query(q) =
        query.map_err(|e| ApiError::invalid(format!("bad query string: {}", e.body_text())))?;
    let list = s.broker.list_sessions(&client, &q.viewer).await?;
    Ok(Json(ListSessionsResponse {
        sessions: list.into_iter().map(session_info).collect(),
    }))
}

/// `DELETE /v1/sessions/{id}`: ends the session and revokes its token.
pub async fn end_session(
    State(s): State<AppState>,
    Admin(client): Admin,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<SessionInfo>> {
    let ended = s.broker.end_session(&client, &ctx, &id).await?;
    Ok(Json(session_info(ended)))
}

pub async fn get_policy(
    State(s): State<AppState>,
    Admin(client): Admin,
    Path(video_id): Path<String>,
) -> ApiResult<Json<PlaybackPolicyInfo>> {
    let p = s.broker.playback_policy(&client, &video_id).await?;
    Ok(Json(policy_info(p)))
}

pub async fn put_policy(
    State(s): State<AppState>,
    Admin(client): Admin,
    Ctx(ctx): Ctx,
    Path(video_id): Path<String>,
    JsonBody(req): JsonBody<PlaybackPolicyRequest>,
) -> ApiResult<Json<PlaybackPolicyInfo>> {
    let p = s
        .broker
        .set_playback_policy(&client, &ctx, &video_id, req.allowed_origins)
        .await?;
    Ok(Json(policy_info(p)))
}

pub async fn delete_policy(
    State(s): State<AppState>,
    Admin(client): Admin,
    Ctx(ctx): Ctx,
    Path(video_id): Path<String>,
) -> ApiResult<StatusCode> {
    s.broker
        .delete_playback_policy(&client, &ctx, &video_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
