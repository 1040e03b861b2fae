//! Request extractors that turn every malformed input into our JSON errors.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use super::error::HttpError;
use crate::token::ApiToken;

/// JSON body, whatever the Content-Type (curl users forget it). An empty body
/// reads as `{}` so that optional-only requests may omit it.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // Every body is an object: serde would also read a struct from an
        // array of its fields in order, which no document allows.
        read_json(req, state, b"{", "the body must be a JSON object")
            .await
            .map(JsonBody)
    }
}

/// A JSON object or array (a batch of requests), whatever the Content-Type.
pub struct JsonObjectOrArray(pub serde_json::Value);

impl<S: Send + Sync> FromRequest<S> for JsonObjectOrArray {
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        read_json(req, state, b"{[", "the body must be a JSON object or array")
            .await
            .map(JsonObjectOrArray)
    }
}

/// Reads a JSON body whose first byte is one of `openers`; an empty body
/// reads as `{}`.
async fn read_json<S: Send + Sync, T: DeserializeOwned>(
    req: Request,
    state: &S,
    openers: &[u8],
    wrong_shape: &str,
) -> Result<T, HttpError> {
    let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
        if super::server::is_body_timeout(&rejection) {
            HttpError::body_timeout()
        } else if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            HttpError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                code: "PayloadTooLarge",
                // Shared by servers with different limits: say so without a number.
                message: "the request body is larger than this server accepts".to_owned(),
            }
        } else {
            HttpError::malformed("could not read the request body")
        }
    })?;
    let body: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &bytes
    };
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(first) if openers.contains(first) => {}
        _ => return Err(HttpError::malformed(wrong_shape)),
    }
    serde_json::from_slice(body)
        .map_err(|e| HttpError::malformed(format!("invalid JSON body: {e}")))
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

/// For optional query parameters (`#[serde(default, deserialize_with =
/// "non_empty")]`): present means at least one character, as the documents
/// say; `?VideoId=` is refused rather than read as a filter matching nothing.
pub fn non_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let value = <String as serde::Deserialize>::deserialize(d)?;
    if value.is_empty() {
        return Err(serde::de::Error::custom("an empty value"));
    }
    Ok(Some(value))
}
