//! Server-side verification of the request signatures the cloud SDKs make,
//! so their KMS clients can talk to vodkms unchanged:
//!
//! - [`sigv4`]: AWS Signature Version 4 (boto3, the aws CLI, every AWS SDK);
//! - [`tc3`]: Tencent Cloud TC3-HMAC-SHA256 (API 3.0 SDKs);
//! - [`acs3`]: Alibaba Cloud ACS3-HMAC-SHA256 (the current alibabacloud-* SDKs);
//! - [`rpc`]: Alibaba Cloud RPC signature v1, HMAC-SHA1 (aliyun-python-sdk-core).
//!
//! Each has a `parse` that reads what the request claims (access key id,
//! time, signed parts) without any secret, so the caller can look the access
//! key up and check the clock; and a `verify` that rebuilds the string to
//! sign from the request as received and compares signatures in constant
//! time. Nothing here logs, keeps or prints a secret, and nothing panics on
//! any input (see fuzz/fuzz_targets/cloud_signatures.rs).

pub mod acs3;
mod canonical;
pub mod rpc;
pub mod sigv4;
pub mod tc3;

pub use canonical::{sha256_hex, Request};

/// Why a signed request could not even be checked. Each variant names the
/// part of the request at fault, never a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    /// No signature at all (no `Authorization`, no `Signature`).
    #[error("the request is not signed")]
    Unsigned,
    #[error("{0} is missing")]
    Missing(&'static str),
    #[error("{0} is malformed")]
    Malformed(&'static str),
    /// A part the door relies on was left out of the signature.
    #[error("{0} must be signed")]
    NotSigned(&'static str),
    #[error("{0}")]
    Unsupported(&'static str),
    /// The body is not what the signed body hash says.
    #[error("the body does not match its signed hash")]
    BodyHashMismatch,
}

/// Constant-time equality of two signatures (lengths are public).
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

pub(crate) fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(key) else {
        return [0; 32];
    };
    mac.update(msg);
    mac.finalize().into_bytes().into()
}
