//! Errors become `{Code, Message, RequestId}` with one status per code, the
//! same shape as the KMS's. 5xx bodies say nothing internal.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use foundation::http::{ErrorInfo, HttpError};

use crate::service::BrokerError;

#[derive(Debug)]
pub enum ApiError {
    Broker(BrokerError),
    /// Errors found before the service is called (routing, body parsing).
    Http(HttpError),
}

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> Self {
        Self::Broker(e)
    }
}

impl From<HttpError> for ApiError {
    fn from(e: HttpError) -> Self {
        Self::Http(e)
    }
}

impl ApiError {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Broker(BrokerError::invalid(message))
    }
}

pub fn status_of(e: &BrokerError) -> StatusCode {
    use BrokerError::*;
    match e {
        MissingToken | InvalidToken(_) | TokenExpired | TokenRevoked | InvalidCredentials
        | Unauthenticated => StatusCode::UNAUTHORIZED,
        NotEntitled | VideoRevoked | KeyNotForVideo | KeyDisabled | KeyNotInScope
        | AccessDenied(_) | StreamLimit(_) | AddressMismatch | TokenShared | OriginNotAllowed
        | KeyVersionRetired | VideoPendingShred => StatusCode::FORBIDDEN,
        VideoShredded => StatusCode::GONE,
        KeyNotFound | ViewerNotFound | RevocationNotFound | UnknownKid | SessionNotFound
        | PolicyNotFound => StatusCode::NOT_FOUND,
        MissingVideoId | InvalidParameter(_) | InvalidCiphertext(_) | NotAnHlsKey => {
            StatusCode::BAD_REQUEST
        }
        RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
        ViewerExists | SigningNotConfigured | KidTaken => StatusCode::CONFLICT,
        KmsUnavailable(_) | StoreUnavailable(_) | AuditUnavailable => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut retry_after = None;
        let (status, code, message, log_detail) = match self {
            ApiError::Broker(e) => {
                let status = status_of(&e);
                if let BrokerError::RateLimited(wait) = &e {
                    retry_after = Some(wait.as_secs_f64().ceil().max(1.0) as u64);
                }
                if status.is_server_error() {
                    let public = match &e {
                        BrokerError::Internal(_) => {
                            "internal error; see the server log for this request id".to_owned()
                        }
                        // Says which dependency is away, not its internals.
                        _ => e.to_string(),
                    };
                    let detail = match &e {
                        BrokerError::KmsUnavailable(d) => d.clone(),
                        _ => format!("{e}: {:?}", std::error::Error::source(&e)),
                    };
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
        let info = ErrorInfo {
            code,
            message,
            log_detail,
        };
        foundation::http::error_response(status, info, retry_after)
    }
}
