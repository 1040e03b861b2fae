//! One error enum for the service boundary. Each variant has a stable code;
//! the HTTP layer picks the status. Messages never carry secrets.

use crate::crypto::BlobError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    #[error("{0}")]
    InvalidParameter(String),
    #[error("{0}")]
    InvalidCiphertext(BlobError),
    #[error("missing, unknown or revoked API token")]
    Unauthenticated,
    #[error("{0}")]
    AccessDenied(String),
    #[error("no such key")]
    KeyNotFound,
    #[error("no active API client with this id")]
    ClientNotFound,
    #[error("the alias is already in use")]
    AliasExists,
    #[error("the key is disabled")]
    KeyDisabled,
    #[error("the key is pending deletion; cancel the deletion to use it again")]
    KeyPendingDeletion,
    #[error("{0}")]
    InvalidKeyState(String),
    #[error("the key was deleted; data encrypted under it cannot be decrypted any more")]
    KeyDeleted,
    #[error("an admin client already exists (use --force to create another)")]
    AdminExists,
    #[error("the audit log cannot keep up; key operations are paused until it does")]
    AuditUnavailable,
    #[error("the database is unavailable")]
    StoreUnavailable(#[source] StoreError),
    #[error("the root key does not match the one this database was initialised with; check VODKMS_ROOT_KEY / VODKMS_ROOT_KEY_FILE")]
    RootKeyMismatch,
    #[error("internal error: {0}")]
    Internal(String),
    #[error("no such access key")]
    AccessKeyNotFound,
    #[error("{0}")]
    LimitExceeded(String),
    /// The request's signature does not match its access key's secret.
    #[error(
        "the request signature does not match; check the secret access key and signing method"
    )]
    SignatureMismatch,
    /// A signed request outside the clock window.
    #[error("{0}")]
    RequestExpired(String),
    /// A signature or nonce seen before within the clock window.
    #[error("this request was already received (replayed signature or nonce)")]
    Replayed,
    /// A ClientToken reused within a day for a different request.
    #[error("this ClientToken was used for a different request; use a new one")]
    IdempotentParameterMismatch,
    /// The blob's master key version is below the key's MinDecryptionVersion.
    #[error("this ciphertext is sealed under a retired key version (below MinDecryptionVersion {0}); rewrap it, or lower MinDecryptionVersion")]
    KeyVersionRetired(u32),
    /// The video's secret was destroyed: its per-video data keys are gone.
    #[error("the video was crypto-shredded; its data keys can never be decrypted again")]
    VideoShredded,
    /// The video's shred is scheduled; cancel it to use the keys again.
    #[error("the video is scheduled to be shredded; cancel the shred to use its keys again")]
    VideoPendingShred,
    #[error("{0}")]
    InvalidVideoState(String),
}

impl KmsError {
    /// Stable, greppable code sent to clients and written to the audit log.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidParameter(_) => "InvalidParameter",
            Self::InvalidCiphertext(_) => "InvalidCiphertext",
            Self::Unauthenticated => "Unauthenticated",
            Self::AccessDenied(_) => "AccessDenied",
            Self::KeyNotFound => "KeyNotFound",
            Self::ClientNotFound => "ClientNotFound",
            Self::AliasExists => "AliasExists",
            Self::KeyDisabled => "KeyDisabled",
            Self::KeyPendingDeletion => "KeyPendingDeletion",
            Self::InvalidKeyState(_) => "InvalidKeyState",
            Self::KeyDeleted => "KeyDeleted",
            Self::AdminExists => "AdminExists",
            Self::AuditUnavailable => "AuditUnavailable",
            Self::StoreUnavailable(_) => "ServiceUnavailable",
            Self::RootKeyMismatch => "RootKeyMismatch",
            Self::Internal(_) => "InternalError",
            Self::AccessKeyNotFound => "AccessKeyNotFound",
            Self::LimitExceeded(_) => "LimitExceeded",
            Self::SignatureMismatch => "SignatureDoesNotMatch",
            Self::RequestExpired(_) => "RequestExpired",
            Self::Replayed => "ReplayedRequest",
            Self::IdempotentParameterMismatch => "IdempotentParameterMismatch",
            Self::KeyVersionRetired(_) => "KeyVersionRetired",
            Self::VideoShredded => "VideoShredded",
            Self::VideoPendingShred => "VideoPendingShred",
            Self::InvalidVideoState(_) => "InvalidVideoState",
        }
    }

    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::InvalidParameter(msg.into())
    }
}

impl From<StoreError> for KmsError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::AliasExists => Self::AliasExists,
            StoreError::Conflict => {
                Self::InvalidKeyState("a concurrent change to this key won; retry".into())
            }
            other => Self::StoreUnavailable(other),
        }
    }
}

impl From<BlobError> for KmsError {
    fn from(e: BlobError) -> Self {
        Self::InvalidCiphertext(e)
    }
}
