//! Request extractors that turn every malformed input into our JSON errors.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::crypto::ApiToken;
use crate::service::{Caller, Kms, RequestContext};

/// JSON body, whatever the Content-Type (curl users forget it). An empty body
/// reads as `{}` so that optional-only requests may omit it.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::Http {
                    status: StatusCode::PAYLOAD_TOO_LARGE,
                    code: "PayloadTooLarge",
                    // Shared by servers with different limits: say so without a number.
                    message: "the request body is larger than this server accepts".to_owned(),
                }
            } else {
                ApiError::malformed("could not read the request body")
            }
        })?;
        let body: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(body)
            .map(JsonBody)
            .map_err(|e| ApiError::malformed(format!("invalid JSON body: {e}")))
    }
}

/// The `Authorization: Bearer` token, if any. Never logged.
pub struct BearerToken(pub Option<ApiToken>);

impl<S: Send + Sync> FromRequestParts<S> for BearerToken {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .filter(|t| !t.is_empty())
            .map(ApiToken::from_presented);
        Ok(Self(token))
    }
}

/// An authenticated client, for admin calls.
pub struct Authenticated(pub Caller);

impl FromRequestParts<Kms> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, kms: &Kms) -> Result<Self, Self::Rejection> {
        let Ok(BearerToken(token)) = BearerToken::from_request_parts(parts, kms).await;
        Ok(Self(kms.authenticate(token.as_ref()).await?))
    }
}

/// The request id set by the middleware, as the service wants it.
pub struct Ctx(pub RequestContext);

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let ids = parts.extensions.get::<super::RequestId>();
        let mut ctx = RequestContext::new(ids.map(|r| r.id.clone()).unwrap_or_default());
        ctx.client_request_id = ids.and_then(|r| r.client_request_id.clone());
        Ok(Self(ctx))
    }
}
