//! Errors become `{Code, Message, RequestId}` with one status per code.
//! 5xx bodies say nothing internal; the detail goes to the log with the
//! request id (added by the request-id middleware, which fills `RequestId`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use foundation::http::{error_response, ErrorInfo, HttpError};

use crate::service::KmsError;

#[derive(Debug)]
pub enum ApiError {
    Kms(KmsError),
    /// Errors found before the service is called (routing, body parsing).
    Http(HttpError),
}

impl ApiError {
    pub fn malformed(message: impl Into<String>) -> Self {
        Self::Http(HttpError::malformed(message))
    }
}

impl From<HttpError> for ApiError {
    fn from(e: HttpError) -> Self {
        Self::Http(e)
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
        Unauthenticated | SignatureMismatch | RequestExpired(_) | Replayed => {
            StatusCode::UNAUTHORIZED
        }
        LimitExceeded(_) | IdempotentParameterMismatch => StatusCode::CONFLICT,
        AccessKeyNotFound => StatusCode::NOT_FOUND,
        AccessDenied(_) => StatusCode::FORBIDDEN,
        KeyNotFound | ClientNotFound => StatusCode::NOT_FOUND,
        AliasExists | KeyDisabled | KeyPendingDeletion | InvalidKeyState(_) | AdminExists => {
            StatusCode::CONFLICT
        }
        KeyVersionRetired(_) | VideoPendingShred | InvalidVideoState(_) => StatusCode::CONFLICT,
        KeyDeleted | VideoShredded => StatusCode::GONE,
        AuditUnavailable | StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        RootKeyMismatch | Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
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
            ApiError::Http(HttpError {
                status,
                code,
                message,
            }) => (status, code, message, None),
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
