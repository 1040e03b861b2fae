//! What the KMS and the broker both stand on, and nothing of either's rules:
//! secret types and encodings, the clock, the audit pipeline, HTTP plumbing
//! and database plumbing. No master-key code lives here, so a crate that
//! depends on this one and not on `kms` cannot reach it.

pub mod audit;
pub mod clock;
pub mod db;
pub mod encoding;
pub mod http;
pub mod secret;
pub mod token;

pub use clock::{Clock, ManualClock, SystemClock};
pub use secret::SecretBytes;
pub use token::{ApiToken, TokenDigest};
