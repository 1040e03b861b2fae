//! Pure cryptography: no I/O, no clock. Randomness is passed in.

pub mod blob;
pub mod context;
pub mod keys;
pub mod secret;
pub mod token;

pub use blob::{Blob, BlobError, BlobHeader};
pub use context::{validate_context, ContextError, EncryptionContext};
pub use keys::{generate_data_key, DataKeySpec, KeyError, MasterKey, RootKey};
pub use secret::{Key256, SecretBytes};
pub use token::{ApiToken, TokenDigest};
