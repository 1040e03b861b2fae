//! Files from the origin folder: playlists rewritten per viewer (key URIs
//! carry a fresh token), segments as they are (encrypted, cacheable by any
//! CDN), for one-box set-ups without a separate web server.

use std::borrow::Cow;
use std::path::{Path as FsPath, PathBuf};

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use foundation::http::HttpError;
use hls::rewrite::CencKeyTags;
use tower::ServiceExt as _;

use super::error::ApiError;
use super::extract::{Ctx, PlaybackTokens};
use super::key_query::KeyQuery;
use super::origin::OriginError;
use super::AppState;

type ApiResult<T> = Result<T, ApiError>;

/// What may be served raw from the origin folder: media, never anything else
/// that happens to be there (a key file, say).
const SEGMENT_EXTENSIONS: &[&str] = &[
    "ts", "aac", "ac3", "ec3", "mp3", "m4s", "mp4", "m4a", "m4v", "vtt", "webvtt",
];

fn http_error(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::Http(HttpError {
        status,
        code,
        message: message.into(),
    })
}

/// `path` as a relative path of plain names: no `..`, no hidden names, no
/// backslashes, nothing absolute.
pub fn safe_relative(path: &str) -> Option<PathBuf> {
    if path.is_empty() || path.len() > 1024 {
        return None;
    }
    let mut out = PathBuf::new();
    for part in path.split('/') {
        if part.is_empty() || part.starts_with('.') || part.contains(['\\', '\0']) {
            return None;
        }
        out.push(part);
    }
    Some(out)
}

/// Files never served from the web or origin folders, whatever they are
/// named like: data keys written by `vodkms datakey`, ffmpeg key info files.
const SECRET_EXTENSIONS: &[&str] = &["key", "keyinfo", "pem"];

/// A file name's extension, lowercased ("" if none).
fn extension_of(path: &FsPath) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default()
}

/// `full` if it is inside `dir` once every symlink is followed, else `None`
/// (a link out of the folder, or no such file).
pub(super) async fn contained(dir: &FsPath, full: &FsPath) -> Option<PathBuf> {
    let dir = tokio::fs::canonicalize(dir).await.ok()?;
    let real = tokio::fs::canonicalize(full).await.ok()?;
    real.starts_with(&dir).then_some(real)
}

/// `GET /web/{path}`: a static file of `--web-dir` (`index.html` for a
/// folder). Never a redirect, a hidden file, a key file, or a file a symlink
/// takes out of the folder.
pub async fn web_file(
    State(s): State<AppState>,
    uri: axum::http::Uri,
    request: Request,
) -> ApiResult<Response> {
    let path = uri.path();
    let missing = || not_found(path);
    let dir = s.http.web_dir.as_deref().ok_or_else(missing)?;
    let mut segments = hls::rewrite::path_segments(path).ok_or_else(missing)?;
    if segments.last().is_none_or(|last| last.is_empty()) {
        segments.pop();
        segments.push("index.html".into());
    }
    let relative = safe_relative(&segments.join("/")).ok_or_else(missing)?;
    let extension = extension_of(&relative);
    if SECRET_EXTENSIONS.contains(&extension.as_str()) {
        return Err(missing());
    }
    let full = contained(dir, &dir.join(&relative))
        .await
        .ok_or_else(missing)?;
    if !tokio::fs::metadata(&full).await.is_ok_and(|m| m.is_file()) {
        return Err(missing());
    }
    let response = serve_file(&full, request).await;
    if response.status() == StatusCode::NOT_FOUND {
        return Err(missing());
    }
    Ok(response)
}

/// `GET /v1/hls/playlist/{path}`: `DIR/path` rewritten for the viewer if it
/// is a playlist (`.m3u8`) or a DASH manifest (`.mpd`), else a segment file
/// as it is. CENC key tags become `identity` ones whose URI is the raw key
/// by KID, with the token (Shaka Player, Safari).
pub async fn origin_file(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Path(path): Path<String>,
    RawQuery(raw): RawQuery,
    PlaybackTokens(from_headers): PlaybackTokens,
    request: Request,
) -> ApiResult<Response> {
    serve_origin(
        s,
        ctx,
        path,
        raw,
        from_headers,
        request,
        CencKeyTags::Identity,
    )
    .await
}

/// `GET /v1/hls/clearkey/{path}`: the same files, CENC playlists with
/// `KEYFORMAT="org.w3.clearkey"` key tags (hls.js with EME Clear Key).
/// Relative URIs stay under this path, so the media playlists are too.
pub async fn origin_file_clear_key(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Path(path): Path<String>,
    RawQuery(raw): RawQuery,
    PlaybackTokens(from_headers): PlaybackTokens,
    request: Request,
) -> ApiResult<Response> {
    serve_origin(
        s,
        ctx,
        path,
        raw,
        from_headers,
        request,
        CencKeyTags::ClearKey,
    )
    .await
}

async fn serve_origin(
    s: AppState,
    ctx: crate::service::RequestContext,
    path: String,
    raw: Option<String>,
    from_headers: Vec<String>,
    request: Request,
    cenc: CencKeyTags,
) -> ApiResult<Response> {
    let Some(origin) = s.origin.as_ref().map(|o| o.dir()) else {
        return Err(http_error(
            StatusCode::NOT_FOUND,
            "NotFound",
            "playlist delivery is off (start the broker with --origin-dir)",
        ));
    };
    let relative = safe_relative(&path).ok_or_else(|| {
        ApiError::invalid("the path must be plain names separated by /, without . or .. parts")
    })?;
    let extension = extension_of(&relative);
    let full = origin.join(&relative);
    if extension == "mpd" {
        let raw = raw.unwrap_or_default();
        let q = KeyQuery::parse(&raw)?;
        let tokens = q
            .tokens()
            .chain(from_headers.into_iter().map(Cow::Owned))
            .collect();
        return manifest(&s, &ctx, &full, &path, tokens).await;
    }
    if extension == "m3u8" {
        let raw = raw.unwrap_or_default();
        let q = KeyQuery::parse(&raw)?;
        let tokens = q
            .tokens()
            .chain(from_headers.into_iter().map(Cow::Owned))
            .collect();
        return playlist(&s, &ctx, &relative, &path, tokens, cenc).await;
    }
    if !SEGMENT_EXTENSIONS.contains(&extension.as_str()) {
        return Err(not_found(&path));
    }
    let full = contained(origin, &full)
        .await
        .ok_or_else(|| not_found(&path))?;
    let mut response = serve_file(&full, request).await;
    if response.status() == StatusCode::NOT_FOUND {
        return Err(not_found(&path));
    }
    if response.status().is_success() {
        // Encrypted, and the same for every viewer: any cache may keep it.
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=86400"),
        );
    }
    Ok(response)
}

fn not_found(path: &str) -> ApiError {
    http_error(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("no playlist or segment {path:?}"),
    )
}

async fn serve_file(full: &FsPath, request: Request) -> Response {
    match tower_http::services::ServeFile::new(full)
        .oneshot(request)
        .await
    {
        Ok(r) => r.map(Body::new),
        Err(never) => match never {},
    }
}

async fn playlist(
    s: &AppState,
    ctx: &crate::service::RequestContext,
    relative: &FsPath,
    path: &str,
    tokens: Vec<Cow<'_, str>>,
    cenc: CencKeyTags,
) -> ApiResult<Response> {
    let origin = s.origin.as_ref().ok_or_else(|| not_found(path))?;
    let template = origin.playlist(relative, cenc).await.map_err(|e| match e {
        OriginError::NotFound => not_found(path),
        OriginError::Invalid(why) => {
            tracing::warn!(path, error = %why, "a playlist in the origin folder is not usable HLS");
            invalid_origin(path)
        }
    })?;
    let token = s
        .broker
        .grant_playlist(ctx, tokens, &template.video_ids, &template.kids)
        .await?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/vnd.apple.mpegurl"),
            ),
            // Carries this viewer's token: for nobody else, kept nowhere.
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, no-store"),
            ),
        ],
        template.render(&token),
    )
        .into_response())
}

/// Largest MPD read from the origin folder.
const MAX_MPD_BYTES: u64 = 4 * 1024 * 1024;

/// A DASH MPD of the origin folder for an entitled viewer: each CENC
/// ContentProtection gets a Clear Key one beside it (dash.js needs it) whose
/// `dashif:Laurl` is the licence URL with the viewer's token (Shaka and
/// dash.js read it). The videos are those the MPD's KIDs are registered to.
async fn manifest(
    s: &AppState,
    ctx: &crate::service::RequestContext,
    full: &FsPath,
    path: &str,
    tokens: Vec<Cow<'_, str>>,
) -> ApiResult<Response> {
    let origin = s.origin.as_ref().ok_or_else(|| not_found(path))?.dir();
    let full = contained(origin, full)
        .await
        .ok_or_else(|| not_found(path))?;
    let meta = tokio::fs::metadata(&full)
        .await
        .map_err(|_| not_found(path))?;
    if meta.len() > MAX_MPD_BYTES {
        return Err(invalid_origin(path));
    }
    let text = tokio::fs::read_to_string(&full)
        .await
        .map_err(|_| invalid_origin(path))?;
    let kids = crate::dash::default_kids(&text);
    let token = s.broker.grant_playlist(ctx, tokens, &[], &kids).await?;
    let licence = format!(
        "{}/v1/clearkey/license?token={}",
        s.http.public_base(),
        token.as_str()
    );
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/dash+xml"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, no-store"),
            ),
        ],
        crate::dash::with_clear_key(&text, &licence),
    )
        .into_response())
}

fn invalid_origin(path: &str) -> ApiError {
    http_error(
        StatusCode::BAD_GATEWAY,
        "InvalidOriginPlaylist",
        format!("the playlist {path:?} in the origin folder cannot be read as HLS"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(safe_relative("a/b.m3u8"), Some(PathBuf::from("a/b.m3u8")));
        for bad in [
            "",
            "../x",
            "a/../b",
            "/etc/passwd",
            "a//b",
            ".hidden",
            "a/.b",
            "a\\b",
            "a/./b",
        ] {
            assert_eq!(safe_relative(bad), None, "{bad}");
        }
    }
}
