//! One error per refusal, each with a stable code; the HTTP layer picks the
//! status from the variant, never from the message.

use std::time::Duration;

use foundation::db::StoreError;

use crate::token::TokenError;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("a playback token is required (query MtsHlsUriToken or token, cookie, or Authorization: Bearer)")]
    MissingToken,
    #[error("{0}")]
    InvalidToken(TokenError),
    #[error("the playback token has expired")]
    TokenExpired,
    #[error("the playback token has been revoked")]
    TokenRevoked,
    #[error("the token does not entitle its viewer to this video")]
    NotEntitled,
    #[error("keys of this video are no longer released")]
    VideoRevoked,
    #[error("this key does not belong to this video")]
    KeyNotForVideo,
    #[error("the key is disabled")]
    KeyDisabled,
    #[error(
        "this key is sealed under a retired master key version; the playlist needs rewrapping"
    )]
    KeyVersionRetired,
    #[error("this video was crypto-shredded; its keys can never be released again")]
    VideoShredded,
    #[error("this video is scheduled to be shredded; its keys are not released")]
    VideoPendingShred,
    #[error("this token's issuer may not release keys of this master key")]
    KeyNotInScope,
    #[error("no such key")]
    KeyNotFound,
    #[error("vid is required unless the token names exactly one video")]
    MissingVideoId,
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    #[error("invalid Ciphertext: {0}")]
    InvalidCiphertext(String),
    #[error("this ciphertext does not hold a 16-byte HLS key")]
    NotAnHlsKey,
    #[error("too many requests; retry later")]
    RateLimited(Duration),
    #[error("wrong username or password")]
    InvalidCredentials,
    #[error("an API client token is required (Authorization: Bearer)")]
    Unauthenticated,
    #[error("access denied: {0}")]
    AccessDenied(String),
    #[error("no such viewer")]
    ViewerNotFound,
    #[error("a viewer with this username exists")]
    ViewerExists,
    #[error("no such revocation")]
    RevocationNotFound,
    #[error("this broker has no HS256 secret (VODKMS_TOKEN_SECRET), so it cannot mint tokens")]
    SigningNotConfigured,
    #[error("the KMS is unavailable; retry later")]
    KmsUnavailable(String),
    #[error("the database is unavailable; retry later")]
    StoreUnavailable(#[source] StoreError),
    #[error("the audit log is not keeping up; retry later")]
    AuditUnavailable,
    #[error("internal error: {0}")]
    Internal(String),
    #[error("no content key is registered under this key id (KID)")]
    UnknownKid,
    #[error("this key id (KID) is registered to another video or key")]
    KidTaken,
    #[error("this viewer already has {0} playback streams; one must end or go idle first")]
    StreamLimit(u32),
    #[error("this token may not be used from this address")]
    AddressMismatch,
    #[error("this token was used in a way that looks shared, and has been revoked")]
    TokenShared,
    #[error("this video may not be played from this page")]
    OriginNotAllowed,
    #[error("no such playback session")]
    SessionNotFound,
    #[error("this video has no playback policy of its own")]
    PolicyNotFound,
}

impl BrokerError {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidParameter(message.into())
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingToken => "MissingToken",
            Self::InvalidToken(_) => "InvalidToken",
            Self::TokenExpired => "TokenExpired",
            Self::TokenRevoked => "TokenRevoked",
            Self::NotEntitled => "NotEntitled",
            Self::VideoRevoked => "VideoRevoked",
            Self::KeyNotForVideo => "KeyNotForVideo",
            Self::KeyDisabled => "KeyDisabled",
            Self::KeyVersionRetired => "KeyVersionRetired",
            Self::VideoShredded => "VideoShredded",
            Self::VideoPendingShred => "VideoPendingShred",
            Self::KeyNotInScope => "KeyNotInScope",
            Self::KeyNotFound => "KeyNotFound",
            Self::MissingVideoId => "MissingVideoId",
            Self::InvalidParameter(_) => "InvalidParameter",
            Self::InvalidCiphertext(_) => "InvalidCiphertext",
            Self::NotAnHlsKey => "NotAnHlsKey",
            Self::RateLimited(_) => "TooManyRequests",
            Self::InvalidCredentials => "InvalidCredentials",
            Self::Unauthenticated => "Unauthenticated",
            Self::AccessDenied(_) => "AccessDenied",
            Self::ViewerNotFound => "ViewerNotFound",
            Self::ViewerExists => "ViewerExists",
            Self::RevocationNotFound => "RevocationNotFound",
            Self::SigningNotConfigured => "SigningNotConfigured",
            Self::KmsUnavailable(_) => "KmsUnavailable",
            Self::StoreUnavailable(_) => "ServiceUnavailable",
            Self::AuditUnavailable => "AuditUnavailable",
            Self::Internal(_) => "InternalError",
            Self::UnknownKid => "UnknownKid",
            Self::KidTaken => "KidTaken",
            Self::StreamLimit(_) => "StreamLimit",
            Self::AddressMismatch => "AddressMismatch",
            Self::TokenShared => "TokenShared",
            Self::OriginNotAllowed => "OriginNotAllowed",
            Self::SessionNotFound => "SessionNotFound",
            Self::PolicyNotFound => "PolicyNotFound",
        }
    }
}

impl From<StoreError> for BrokerError {
    fn from(e: StoreError) -> Self {
        Self::StoreUnavailable(e)
    }
}

impl From<TokenError> for BrokerError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Expired(_) => Self::TokenExpired,
            other => Self::InvalidToken(other),
        }
    }
}
