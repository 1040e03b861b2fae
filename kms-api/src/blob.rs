//! CiphertextBlob formats (the EDK that travels in key URIs), as anyone may
//! read them without a key: which master key and version sealed it, and
//! whether it is bound to a video's secret.
//!
//! ```text
//! offset 0   format   u8      = 0x01 (v1), 0x02 (v2: bound to a video's secret)
//! offset 1   key id   16 B    UUID of the master key
//! offset 17  version  u32 BE  master key version that sealed it
//! offset 21  nonce    12 B    random, per blob
//! offset 33  sealed   AES-256-GCM ciphertext || 16 B tag
//! AAD = bytes 0..21 (the header) || canonical EncryptionContext
//! ```
//! v1 seals with the master key version itself. v2 seals with a key derived
//! from the version and the secret of the video named by the context's
//! `video_id` (see DESIGN.md, "Per-video crypto-shredding"): destroying that
//! secret makes every v2 blob of the video undecryptable.
//! Decrypt needs no KeyId: the blob names its key and version. The text form is
//! base64url without padding; standard base64 (padded or not) is accepted too.
//! Sealing and opening are the KMS's (`kms::crypto::Envelope`).

use base64::Engine as _;
use uuid::Uuid;

pub const FORMAT_V1: u8 = 0x01;
pub const FORMAT_V2_PER_VIDEO: u8 = 0x02;
pub const HEADER_LEN: usize = 1 + 16 + 4;
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
/// Largest plaintext we seal: what Encrypt takes (4 KiB, as AWS KMS).
pub const MAX_PLAINTEXT: usize = 4096;
/// Largest data key (NumberOfBytes 1..=1024) and GenerateRandom answer.
pub const MAX_DATA_KEY_BYTES: usize = 1024;
pub const MIN_BLOB_LEN: usize = HEADER_LEN + NONCE_LEN + TAG_LEN + 1;
pub const MAX_BLOB_LEN: usize = HEADER_LEN + NONCE_LEN + MAX_PLAINTEXT + TAG_LEN;
/// Longest text form we try to decode (base64 of MAX_BLOB_LEN, with slack for padding).
pub const MAX_BLOB_TEXT_LEN: usize = (MAX_BLOB_LEN * 4).div_ceil(3) + 4;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BlobError {
    #[error("CiphertextBlob is not valid base64")]
    BadEncoding,
    #[error("CiphertextBlob has the wrong length")]
    BadLength,
    #[error("CiphertextBlob has an unknown format version")]
    UnknownFormat,
    #[error("CiphertextBlob was tampered with, or the EncryptionContext does not match")]
    AuthenticationFailed,
}

/// Which master key version sealed a blob, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlobHeader {
    pub key_id: Uuid,
    pub version: u32,
    /// v2: sealed under a key derived with the video's secret.
    pub per_video: bool,
}

impl BlobHeader {
    pub fn v1(key_id: Uuid, version: u32) -> Self {
        Self {
            key_id,
            version,
            per_video: false,
        }
    }

    pub fn per_video(key_id: Uuid, version: u32) -> Self {
        Self {
            key_id,
            version,
            per_video: true,
        }
    }

    pub fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0] = if self.per_video {
            FORMAT_V2_PER_VIDEO
        } else {
            FORMAT_V1
        };
        h[1..17].copy_from_slice(self.key_id.as_bytes());
        h[17..21].copy_from_slice(&self.version.to_be_bytes());
        h
    }
}

/// A structurally valid blob, not yet authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub header: BlobHeader,
    bytes: Vec<u8>,
}

impl Blob {
    pub fn parse(bytes: Vec<u8>) -> Result<Self, BlobError> {
        if bytes.len() < MIN_BLOB_LEN || bytes.len() > MAX_BLOB_LEN {
            return Err(BlobError::BadLength);
        }
        let per_video = match bytes[0] {
            FORMAT_V1 => false,
            FORMAT_V2_PER_VIDEO => true,
            _ => return Err(BlobError::UnknownFormat),
        };
        let key_id = Uuid::from_slice(&bytes[1..17]).map_err(|_| BlobError::BadLength)?;
        let mut v = [0u8; 4];
        v.copy_from_slice(&bytes[17..21]);
        let header = BlobHeader {
            key_id,
            version: u32::from_be_bytes(v),
            per_video,
        };
        Ok(Self { header, bytes })
    }

    /// Parses the text form: base64url without padding, or standard base64.
    pub fn from_text(text: &str) -> Result<Self, BlobError> {
        let text = text.trim();
        if text.len() > MAX_BLOB_TEXT_LEN {
            return Err(BlobError::BadLength);
        }
        let bytes = foundation::encoding::decode_base64_any(text).ok_or(BlobError::BadEncoding)?;
        Self::parse(bytes)
    }

    /// Puts a sealed blob together: `sealed` is the ciphertext with its tag.
    pub fn assemble(
        header: BlobHeader,
        nonce: &[u8; NONCE_LEN],
        sealed: &[u8],
    ) -> Result<Self, BlobError> {
        let mut bytes = Vec::with_capacity(HEADER_LEN + NONCE_LEN + sealed.len());
        bytes.extend_from_slice(&header.to_bytes());
        bytes.extend_from_slice(nonce);
        bytes.extend_from_slice(sealed);
        Self::parse(bytes)
    }

    pub fn to_text(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&self.bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The header bytes as sealed (the first part of the AAD).
    pub fn header_bytes(&self) -> &[u8] {
        &self.bytes[..HEADER_LEN]
    }

    pub fn nonce(&self) -> &[u8] {
        &self.bytes[HEADER_LEN..HEADER_LEN + NONCE_LEN]
    }

    /// Ciphertext and tag.
    pub fn sealed(&self) -> &[u8] {
        &self.bytes[HEADER_LEN + NONCE_LEN..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header() -> BlobHeader {
        BlobHeader::v1(Uuid::new_v4(), 7)
    }

    #[test]
    fn parts_and_text_forms() {
        let h = header();
        let blob = Blob::assemble(h, &[3; NONCE_LEN], &[9; 16 + TAG_LEN]).unwrap();
        assert_eq!(blob.header, h);
        assert_eq!(blob.header_bytes(), &h.to_bytes());
        assert_eq!(blob.nonce(), &[3; NONCE_LEN]);
        assert_eq!(blob.sealed(), &[9; 16 + TAG_LEN]);
        let text = blob.to_text();
        assert!(!text.contains(['+', '/', '=']));
        assert_eq!(Blob::from_text(&text).unwrap(), blob);
        let std_text = base64::engine::general_purpose::STANDARD.encode(blob.as_bytes());
        assert_eq!(Blob::from_text(&std_text).unwrap(), blob);
        let v2 = BlobHeader::per_video(h.key_id, 3);
        let blob = Blob::assemble(v2, &[3; NONCE_LEN], &[9; 16 + TAG_LEN]).unwrap();
        assert_eq!(blob.as_bytes()[0], FORMAT_V2_PER_VIDEO);
        assert_eq!(Blob::from_text(&blob.to_text()).unwrap().header, v2);
    }

    #[test]
    fn malformed_inputs_are_rejected() {
        assert_eq!(Blob::from_text("not base64!!"), Err(BlobError::BadEncoding));
        assert_eq!(Blob::from_text("AAAA"), Err(BlobError::BadLength));
        let mut bytes = vec![0u8; MIN_BLOB_LEN];
        bytes[0] = 3;
        assert_eq!(Blob::parse(bytes), Err(BlobError::UnknownFormat));
        assert_eq!(
            Blob::from_text(&"A".repeat(10_000)),
            Err(BlobError::BadLength)
        );
        assert_eq!(
            Blob::assemble(header(), &[0; NONCE_LEN], &[]),
            Err(BlobError::BadLength)
        );
    }

    proptest! {
        // Arbitrary bytes never panic the parser, nor reading a parsed blob.
        #[test]
        fn parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1200)) {
            if let Ok(b) = Blob::parse(bytes.clone()) {
                prop_assert_eq!(b.as_bytes(), &bytes[..]);
                prop_assert_eq!(b.header_bytes().len() + b.nonce().len() + b.sealed().len(), bytes.len());
            }
        }
    }
}
