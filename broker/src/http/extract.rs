//! Request extractors: the caller's address, playback tokens from headers,
//! and the API client behind management calls.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use kms::http::extract::BearerToken;

use super::error::ApiError;
use super::{AppState, COOKIE_NAME};
use crate::service::{Client, RequestContext};

/// Request id (set by the middleware) and the caller's address.
pub struct Ctx(pub RequestContext);

impl FromRequestParts<AppState> for Ctx {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, Self::Rejection> {
        let request_id = parts
            .extensions
            .get::<kms::http::RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_default();
        let forwarded = s.http.client_ip_header.as_ref().and_then(|name| {
            // The last hop is the one our own proxy added.
            let all = parts.headers.get_all(name).iter().next_back()?;
            let last = all.to_str().ok()?.rsplit(',').next()?.trim();
            last.parse::<std::net::IpAddr>().ok()
        });
        let address = forwarded
            .or_else(|| {
                parts
                    .extensions
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|c| c.0.ip())
            })
            .map(|ip| ip.to_string())
            .unwrap_or_default();
        Ok(Self(RequestContext {
            request_id,
            address,
        }))
    }
}

/// Playback tokens from `Authorization: Bearer` and the `vodkms_token`
/// cookie, in that order. Never logged.
pub struct PlaybackTokens(pub Vec<String>);

impl<S: Send + Sync> FromRequestParts<S> for PlaybackTokens {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, s: &S) -> Result<Self, Self::Rejection> {
        let Ok(BearerToken(bearer)) = BearerToken::from_request_parts(parts, s).await;
        let mut tokens: Vec<String> = bearer
            .map(|t| t.expose_secret().to_owned())
            .into_iter()
            .collect();
        for value in parts.headers.get_all(header::COOKIE) {
            let Ok(text) = value.to_str() else { continue };
            for pair in text.split(';') {
                if let Some((name, v)) = pair.trim().split_once('=') {
                    if name == COOKIE_NAME && !v.is_empty() {
                        tokens.push(v.trim_matches('"').to_owned());
                    }
                }
            }
        }
        Ok(Self(tokens))
    }
}

/// The API client (admin or issuer) making a management call, as the KMS
/// knows it. What it may do is the service's decision.
pub struct Admin(pub Client);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, Self::Rejection> {
        let Ok(BearerToken(token)) = BearerToken::from_request_parts(parts, s).await;
        Ok(Self(s.broker.authenticate(token.as_ref()).await?))
    }
}
