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

/// What the edge of a request notes on the way in, to finish on the way out.
pub struct Edge {
    started: Instant,
    id: String,
    client_request_id: Option<String>,
    method: axum::http::Method,
    /// MatchedPath is a shared string: cloning it copies no text.
    route: Option<MatchedPath>,
    /// Only paid for when the access log event will be written.
    credential: Option<Option<String>>,
}

impl Edge {
    /// Gives the request its id (an extension handlers read).
    pub fn begin(req: &mut Request) -> Self {
        let started = Instant::now();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let client_request_id = req.headers().get(&REQUEST_ID).and_then(valid_request_id);
        req.extensions_mut().insert(RequestId {
            id: id.clone(),
            client_request_id: client_request_id.clone(),
        });
        Self {
            started,
            id,
            client_request_id,
            method: req.method().clone(),
            route: req.extensions().get::<MatchedPath>().cloned(),
            credential: tracing::enabled!(tracing::Level::INFO).then(|| credential_hash(req)),
        }
    }

    /// Renders an error body with the request id, echoes the id in a
    /// header, writes the access log event (never a credential) and counts
    /// the request in `metrics`.
    pub fn finish(self, mut resp: Response, metrics: &metrics::HttpMetrics) -> Response {
        let id = &self.id;
        if let Some(info) = resp.extensions_mut().remove::<ErrorInfo>() {
            if let Some(detail) = &info.log_detail {
                tracing::error!(request_id = %id, code = info.code, detail = %detail, "request failed");
            }
            let (mut parts, _) = resp.into_parts();
            parts.headers.remove(axum::http::header::CONTENT_LENGTH);
            let body = render(&info, id).into_response().into_body();
            resp = Response::from_parts(parts, body);
        }
        if let Ok(v) = HeaderValue::from_str(id) {
            resp.headers_mut().insert(REQUEST_ID.clone(), v);
        }
        let route = self.route.as_ref().map_or("unmatched", MatchedPath::as_str);
        let status = resp.status().as_u16();
        if let Some(credential) = &self.credential {
            tracing::info!(
                target: "vodkms::access",
                request_id = %id, client_request_id = self.client_request_id.as_deref().unwrap_or("-"),
                method = %self.method, route, status,
                latency_us = self.started.elapsed().as_micros() as u64,
                credential = credential.as_deref().unwrap_or("-"), "request"
            );
        }
        metrics.observe(route, &self.method, status, self.started);
        resp
    }
}

/// The edge of every request in one layer (one layer is cheaper than one
/// each): the request id, echoed in a header and in error bodies, one access
/// log event per request (never a credential), and the request metrics.
pub async fn edge(
    axum::extract::State(metrics): axum::extract::State<std::sync::Arc<metrics::HttpMetrics>>,
    mut req: Request,
    next: Next,
) -> Response {
    let edge = Edge::begin(&mut req);
    let resp = next.run(req).await;
    edge.finish(resp, &metrics)
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
