//! Pure cryptography: no I/O, no clock. Randomness is passed in.

pub mod blob;
pub mod keys;
pub mod secret;

/// EncryptionContext: string pairs bound into every blob's AAD (their format
/// and limits are the wire contract's).
pub mod context {
    pub use kms_api::context::*;
}

/// API client tokens (the type is the shared foundation's).
pub mod token {
    pub use foundation::token::*;
}

pub use blob::{Blob, BlobError, BlobHeader, Envelope};
pub use context::{validate_context, ContextError, EncryptionContext};
pub use keys::{generate_data_key, DataKeySpec, KeyError, MasterKey, RootKey};
pub use secret::{Key256, SecretBytes};
pub use token::{ApiToken, TokenDigest};
