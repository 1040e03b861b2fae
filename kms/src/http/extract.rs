//! Request extractors that turn every malformed input into our JSON errors.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

pub use foundation::http::extract::BearerToken;

use super::error::ApiError;
use crate::service::{Caller, Kms, RequestContext};

/// JSON body, whatever the Content-Type (see [`foundation::http::extract::JsonBody`]),
/// refused in the KMS's error type.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let foundation::http::extract::JsonBody(body) =
            foundation::http::extract::JsonBody::from_request(req, state).await?;
        Ok(Self(body))
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
