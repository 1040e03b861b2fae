//! CiphertextBlob format v1 (the EDK that travels in key URIs).
//!
//! ```text
//! offset 0   format   u8      = 0x01
//! offset 1   key id   16 B    UUID of the master key
//! offset 17  version  u32 BE  master key version that sealed it
//! offset 21  nonce    12 B    random, per blob
//! offset 33  sealed   AES-256-GCM ciphertext || 16 B tag
//! AAD = bytes 0..21 (the header) || canonical EncryptionContext
//! ```
//! Decrypt needs no KeyId: the blob names its key and version. The text form is
//! base64url without padding; standard base64 (padded or not) is accepted too.

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{AeadCore, Aes256Gcm};
use base64::Engine as _;
use rand::{CryptoRng, RngCore};
use uuid::Uuid;

use super::context::{encode_context, EncryptionContext};
use super::keys::MasterKey;
use super::secret::SecretBytes;

pub const FORMAT_V1: u8 = 0x01;
pub const HEADER_LEN: usize = 1 + 16 + 4;
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
/// Largest data key we seal (NumberOfBytes 1..=1024).
pub const MAX_PLAINTEXT: usize = 1024;
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

/// Which master key version sealed a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlobHeader {
    pub key_id: Uuid,
    pub version: u32,
}

impl BlobHeader {
    fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0] = FORMAT_V1;
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
        if bytes[0] != FORMAT_V1 {
            return Err(BlobError::UnknownFormat);
        }
        let key_id = Uuid::from_slice(&bytes[1..17]).map_err(|_| BlobError::BadLength)?;
        let mut v = [0u8; 4];
        v.copy_from_slice(&bytes[17..21]);
        let header = BlobHeader {
            key_id,
            version: u32::from_be_bytes(v),
        };
        Ok(Self { header, bytes })
    }

    /// Parses the text form: base64url without padding, or standard base64.
    pub fn from_text(text: &str) -> Result<Self, BlobError> {
        let text = text.trim();
        if text.len() > MAX_BLOB_TEXT_LEN {
            return Err(BlobError::BadLength);
        }
        Self::parse(decode_base64_any(text).ok_or(BlobError::BadEncoding)?)
    }

    pub fn to_text(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&self.bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Seals `plaintext` under `key` (which must be `header`'s key version).
    pub fn seal(
        key: &MasterKey,
        header: BlobHeader,
        plaintext: &SecretBytes,
        context: &EncryptionContext,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<Self, BlobError> {
        if plaintext.is_empty() || plaintext.len() > MAX_PLAINTEXT {
            return Err(BlobError::BadLength);
        }
        let head = header.to_bytes();
        let nonce = Aes256Gcm::generate_nonce(rng);
        let aad = aad(&head, context);
        let sealed = key
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.expose_secret(),
                    aad: &aad,
                },
            )
            .map_err(|_| BlobError::BadLength)?;
        let mut bytes = Vec::with_capacity(HEADER_LEN + NONCE_LEN + sealed.len());
        bytes.extend_from_slice(&head);
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&sealed);
        Ok(Self { header, bytes })
    }

    /// Authenticates and decrypts with `key` (the version named in the header).
    pub fn open(
        &self,
        key: &MasterKey,
        context: &EncryptionContext,
    ) -> Result<SecretBytes, BlobError> {
        let (head, rest) = self.bytes.split_at(HEADER_LEN);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let aad = aad(head, context);
        key.cipher()
            .decrypt(
                nonce.into(),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map(SecretBytes::new)
            .map_err(|_| BlobError::AuthenticationFailed)
    }
}

fn aad(head: &[u8], context: &EncryptionContext) -> Vec<u8> {
    let mut aad = Vec::with_capacity(HEADER_LEN + 64);
    aad.extend_from_slice(head);
    encode_context(context, &mut aad);
    aad
}

/// Decodes base64url or standard base64, with or without padding.
pub fn decode_base64_any(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let url = text.contains(['-', '_']);
    let padded = text.ends_with('=');
    let engine = match (url, padded) {
        (true, true) => &URL_SAFE,
        (true, false) => &URL_SAFE_NO_PAD,
        (false, true) => &STANDARD,
        (false, false) => &STANDARD_NO_PAD,
    };
    engine.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::secret::Key256;
    use proptest::prelude::*;
    use rand::rngs::OsRng;

    fn key(b: u8) -> MasterKey {
        MasterKey::new(Key256::from_bytes([b; 32]))
    }

    fn ctx(v: &str) -> EncryptionContext {
        [("video_id".to_string(), v.to_string())]
            .into_iter()
            .collect()
    }

    fn header() -> BlobHeader {
        BlobHeader {
            key_id: Uuid::new_v4(),
            version: 7,
        }
    }

    #[test]
    fn round_trip_and_text_forms() {
        let k = key(1);
        let pt = SecretBytes::new(vec![9; 16]);
        let blob = Blob::seal(&k, header(), &pt, &ctx("a"), &mut OsRng).unwrap();
        assert_eq!(blob.as_bytes().len(), HEADER_LEN + NONCE_LEN + 16 + TAG_LEN);
        let text = blob.to_text();
        assert!(!text.contains(['+', '/', '=']));
        let parsed = Blob::from_text(&text).unwrap();
        assert_eq!(parsed.header, blob.header);
        assert_eq!(parsed.open(&k, &ctx("a")).unwrap(), pt);
        let std_text = base64::engine::general_purpose::STANDARD.encode(blob.as_bytes());
        assert_eq!(Blob::from_text(&std_text).unwrap(), blob);
    }

    #[test]
    fn wrong_context_or_key_fails() {
        let pt = SecretBytes::new(vec![3; 16]);
        let blob = Blob::seal(&key(1), header(), &pt, &ctx("a"), &mut OsRng).unwrap();
        assert_eq!(
            blob.open(&key(1), &ctx("b")),
            Err(BlobError::AuthenticationFailed)
        );
        assert_eq!(
            blob.open(&key(1), &EncryptionContext::new()),
            Err(BlobError::AuthenticationFailed)
        );
        assert_eq!(
            blob.open(&key(2), &ctx("a")),
            Err(BlobError::AuthenticationFailed)
        );
    }

    #[test]
    fn header_is_authenticated() {
        // Moving a blob onto another version number must not decrypt.
        let k = key(1);
        let pt = SecretBytes::new(vec![3; 16]);
        let blob = Blob::seal(&k, header(), &pt, &ctx("a"), &mut OsRng).unwrap();
        let mut bytes = blob.as_bytes().to_vec();
        bytes[20] ^= 1;
        let moved = Blob::parse(bytes).unwrap();
        assert_eq!(
            moved.open(&k, &ctx("a")),
            Err(BlobError::AuthenticationFailed)
        );
    }

    #[test]
    fn malformed_inputs_are_rejected() {
        assert_eq!(Blob::from_text("not base64!!"), Err(BlobError::BadEncoding));
        assert_eq!(Blob::from_text("AAAA"), Err(BlobError::BadLength));
        let mut bytes = vec![0u8; MIN_BLOB_LEN];
        bytes[0] = 2;
        assert_eq!(Blob::parse(bytes), Err(BlobError::UnknownFormat));
        assert_eq!(
            Blob::from_text(&"A".repeat(10_000)),
            Err(BlobError::BadLength)
        );
    }

    proptest! {
        // Flipping any bit anywhere makes the blob fail to open (or to parse).
        #[test]
        fn any_bit_flip_is_detected(len in 1usize..64, pos in any::<prop::sample::Index>(), bit in 0u8..8) {
            let k = key(5);
            let pt = SecretBytes::new(vec![0x5A; len]);
            let blob = Blob::seal(&k, header(), &pt, &ctx("v"), &mut OsRng).unwrap();
            let mut bytes = blob.as_bytes().to_vec();
            let i = pos.index(bytes.len());
            bytes[i] ^= 1 << bit;
            // Either the parser refuses it, or authentication does.
            if let Ok(b) = Blob::parse(bytes) {
                prop_assert!(b.open(&k, &ctx("v")).is_err());
            }
        }

        // Arbitrary bytes never panic the parser.
        #[test]
        fn parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1200)) {
            if let Ok(b) = Blob::parse(bytes) {
                let _ = b.open(&key(1), &EncryptionContext::new());
            }
        }

        #[test]
        fn text_round_trip(len in 1usize..=1024) {
            let pt = SecretBytes::new(vec![1; len]);
            let blob = Blob::seal(&key(2), header(), &pt, &ctx("x"), &mut OsRng).unwrap();
            prop_assert_eq!(Blob::from_text(&blob.to_text()).unwrap(), blob);
        }
    }
}
