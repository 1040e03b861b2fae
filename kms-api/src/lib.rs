//! The KMS's wire contract: what a caller of the KMS HTTP API needs and
//! nothing of the server. The broker, the CLI and the packaging tools use it.

pub mod api;
pub mod blob;
pub mod client;
pub mod context;

pub use blob::{Blob, BlobError, BlobHeader};
pub use roles::Roles;

mod roles;
pub use client::{ClientConfig, ClientError, KmsClient};
pub use context::EncryptionContext;
pub use foundation::ApiToken;

use serde::{Deserialize, Serialize};

/// One thing an API client may do (see [`Roles`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Keys, clients, audit. Never sees plaintext.
    Admin,
    /// generate-data-key and re-encrypt.
    Generate,
    /// decrypt.
    Decrypt,
    /// No KMS call: mints playback tokens at the broker for an app backend.
    Issuer,
}

impl Role {
    pub const ALL: [Role; 4] = [Self::Admin, Self::Generate, Self::Decrypt, Self::Issuer];

    /// generate and decrypt: the roles one client may hold together.
    pub fn is_data_role(self) -> bool {
        matches!(self, Self::Generate | Self::Decrypt)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Generate => "generate",
            Self::Decrypt => "decrypt",
            Self::Issuer => "issuer",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "admin" => Self::Admin,
            "generate" => Self::Generate,
            "decrypt" => Self::Decrypt,
            "issuer" => Self::Issuer,
            _ => return None,
        })
    }
}
