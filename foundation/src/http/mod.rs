//! HTTP plumbing both servers use: the error answer, request ids and the
//! access log, extractors, metrics, OpenAPI helpers, TLS and serving.

mod error;
pub mod extract;
pub mod metrics;
pub mod openapi;
pub mod secret_body;
pub mod server;
pub mod tls;

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

pub use error::{error_response, render, ErrorBody, ErrorInfo, HttpError};

pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id of one request, always our own (a caller's id is not trusted to be
/// unique, and must not name our audit records), with the caller's
/// well-formed `X-Request-Id`, if any, kept beside it.
#[derive(Debug, Clone)]
pub struct RequestId {
    pub id: String,
    pub client_request_id: Option<String>,
}

/// Fallback for unknown routes.
pub async fn not_found() -> HttpError {
    HttpError {
        status: StatusCode::NOT_FOUND,
        code: "NotFound",
        message: "no such route".into(),
    }
}

pub async fn method_not_allowed() -> HttpError {
    HttpError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: "MethodNotAllowed",
        message: "this route does not take this method".into(),
    }
}

fn valid_request_id(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?;
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    ok.then(|| s.to_owned())
}

/// Sets the request id, echoes it in a header and in error bodies, and writes
/// one log event per request (never a credential).
pub async fn request_id(mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let client_request_id = req.headers().get(&REQUEST_ID).and_then(valid_request_id);
    req.extensions_mut().insert(RequestId {
        id: id.clone(),
        client_request_id: client_request_id.clone(),
    });
    // Only pay for the log fields when the event will be written.
    let log_fields = tracing::enabled!(tracing::Level::INFO).then(|| {
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map(|p| p.as_str().to_owned());
        (
            req.method().clone(),
            route.unwrap_or_else(|| "unmatched".to_owned()),
            credential_hash(&req),
        )
    });

    let mut resp = next.run(req).await;

    if let Some(info) = resp.extensions_mut().remove::<ErrorInfo>() {
        if let Some(detail) = &info.log_detail {
            tracing::error!(request_id = %id, code = info.code, detail = %detail, "request failed");
        }
        let (mut parts, _) = resp.into_parts();
        parts.headers.remove(axum::http::header::CONTENT_LENGTH);
        let body = render(&info, &id).into_response().into_body();
        resp = Response::from_parts(parts, body);
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID.clone(), v);
    }
    if let Some((method, route, credential)) = log_fields {
        tracing::info!(
            target: "vodkms::access",
            request_id = %id, client_request_id = client_request_id.as_deref().unwrap_or("-"),
            %method, route, status = resp.status().as_u16(),
            latency_us = started.elapsed().as_micros() as u64,
            credential = credential.as_deref().unwrap_or("-"), "request"
        );
    }
    resp
}

/// Who called, without saying with what: the first 12 hex digits of the
/// SHA-256 of the bearer token, else of the `vodkms_token` cookie, else of a
/// `token`/`MtsHlsUriToken` query parameter. Lets one follow a caller through
/// the logs; cannot be turned back into the credential.
fn credential_hash(req: &Request) -> Option<String> {
    use sha2::{Digest, Sha256};
    let headers = req.headers();
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let cookie = || {
        headers
            .get_all(axum::http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|p| p.trim().strip_prefix("vodkms_token="))
    };
    let query = || {
        req.uri().query().and_then(|q| {
            q.split('&').find_map(|p| {
                p.strip_prefix("token=")
                    .or_else(|| p.strip_prefix("MtsHlsUriToken="))
            })
        })
    };
    let secret = bearer.or_else(cookie).or_else(query)?;
    let digest = Sha256::digest(secret.trim().as_bytes());
    Some(digest[..6].iter().map(|b| format!("{b:02x}")).collect())
}

/// How long shutdown keeps trying to write buffered audit records.
pub const SHUTDOWN_FLUSH_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);
