//! The error answer both servers give: `{Code, Message, RequestId}`, one
//! status per code. 5xx bodies say nothing internal; the detail goes to the
//! log with the request id (added by the request-id middleware).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    pub request_id: String,
}

/// An error found before a service is called (routing, body parsing), or
/// one a server has already mapped to its status and code.
#[derive(Debug)]
pub struct HttpError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl HttpError {
    pub fn malformed(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "MalformedRequest",
            message: message.into(),
        }
    }

    /// A request body that did not arrive within the body timeout.
    pub fn body_timeout() -> Self {
        Self {
            status: StatusCode::REQUEST_TIMEOUT,
            code: "RequestTimeout",
            message: "the request body did not arrive in time".into(),
        }
    }

    /// A 500 whose detail is only logged.
    pub fn internal(detail: impl std::fmt::Display) -> Response {
        error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorInfo {
                code: "InternalError",
                message: "internal error; see the server log for this request id".to_owned(),
                log_detail: Some(detail.to_string()),
            },
            None,
        )
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        error_response(
            self.status,
            ErrorInfo {
                code: self.code,
                message: self.message,
                log_detail: None,
            },
            None,
        )
    }
}

/// Carried in the response extensions so the middleware can add the request
/// id to the body and log server-side detail.
#[derive(Debug, Clone)]
pub struct ErrorInfo {
    pub code: &'static str,
    pub message: String,
    pub log_detail: Option<String>,
}

/// The error answer of both servers: the JSON body (the request-id
/// middleware adds the id), `Retry-After` on 503 (5 s) or as given (429),
/// `WWW-Authenticate` on 401, `Connection: close` on 413, never cached.
pub fn error_response(status: StatusCode, info: ErrorInfo, retry_after: Option<u64>) -> Response {
    let mut resp = (status, render(&info, "")).into_response();
    let headers = resp.headers_mut();
    let retry_after = retry_after.or((status == StatusCode::SERVICE_UNAVAILABLE).then_some(5));
    if let Some(secs) = retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        // The body was left unread, so this connection cannot carry another
        // request: say so, or clients reuse it and see it drop.
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"vodkms\""),
        );
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.extensions_mut().insert(info);
    resp
}

pub fn render(info: &ErrorInfo, request_id: &str) -> axum::Json<ErrorBody> {
    axum::Json(ErrorBody {
        code: info.code.to_owned(),
        message: info.message.clone(),
        request_id: request_id.to_owned(),
    })
}
