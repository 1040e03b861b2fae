//! Errors become `{Code, Message, RequestId}` with one status per code.
//! 5xx bodies say nothing internal; the detail goes to the log with the
//! request id (added by the request-id middleware, which fills `RequestId`).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::api::ErrorBody;
use crate::service::KmsError;

#[derive(Debug)]
pub enum ApiError {
    Kms(KmsError),
    /// Errors found before the service is called (routing, body parsing).
    Http {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
}

impl ApiError {
    pub fn malformed(message: impl Into<String>) -> Self {
        Self::Http {
            status: StatusCode::BAD_REQUEST,
            code: "MalformedRequest",
            message: message.into(),
        }
    }
}

impl From<KmsError> for ApiError {
    fn from(e: KmsError) -> Self {
        Self::Kms(e)
    }
}

pub fn status_of(e: &KmsError) -> StatusCode {
    use KmsError::*;
    match e {
        InvalidParameter(_) | InvalidCiphertext(_) => StatusCode::BAD_REQUEST,
        Unauthenticated => StatusCode::UNAUTHORIZED,
        AccessDenied(_) => StatusCode::FORBIDDEN,
        KeyNotFound | ClientNotFound => StatusCode::NOT_FOUND,
        AliasExists | KeyDisabled | KeyPendingDeletion | InvalidKeyState(_) | AdminExists => {
            StatusCode::CONFLICT
        }
        KeyDeleted => StatusCode::GONE,
        AuditUnavailable | StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        RootKeyMismatch | Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message, log_detail) = match self {
            ApiError::Kms(e) => {
                let status = status_of(&e);
                if status.is_server_error() {
                    // Say what kind of trouble, not its internals.
                    let public = match &e {
                        KmsError::AuditUnavailable => e.to_string(),
                        KmsError::StoreUnavailable(_) => {
                            "the database is unavailable; retry later".to_owned()
                        }
                        _ => "internal error; see the server log for this request id".to_owned(),
                    };
                    let detail = format!("{e}: {:?}", std::error::Error::source(&e));
                    (status, e.code(), public, Some(detail))
                } else {
                    (status, e.code(), e.to_string(), None)
                }
            }
            ApiError::Http {
                status,
                code,
                message,
            } => (status, code, message, None),
        };
        error_response(
            status,
            ErrorInfo {
                code,
                message,
                log_detail,
            },
            None,
        )
    }
}

/// The error answer both servers give: the JSON body (the request-id
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
