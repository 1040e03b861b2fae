//! Sealing and opening CiphertextBlobs (the format is the wire contract's,
//! [`kms_api::blob`]): AES-256-GCM under a master key version, with the
//! header and the canonical EncryptionContext as AAD.

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{AeadCore, Aes256Gcm};
use rand::{CryptoRng, RngCore};

pub use kms_api::blob::*;

use super::context::{encode_context, EncryptionContext};
use super::keys::MasterKey;
use super::secret::SecretBytes;

/// Seals and opens blobs: only the KMS holds master keys, so only it can.
pub trait Envelope: Sized {
    /// Seals `plaintext` under `key` (which must be `header`'s key version).
    fn seal(
        key: &MasterKey,
        header: BlobHeader,
        plaintext: &SecretBytes,
        context: &EncryptionContext,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<Self, BlobError>;

    /// Authenticates and decrypts with `key` (the version named in the header).
    fn open(&self, key: &MasterKey, context: &EncryptionContext) -> Result<SecretBytes, BlobError>;
}

impl Envelope for Blob {
    fn seal(
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
        Blob::assemble(header, &nonce.into(), &sealed)
    }

    fn open(&self, key: &MasterKey, context: &EncryptionContext) -> Result<SecretBytes, BlobError> {
        let aad = aad(self.header_bytes(), context);
        key.cipher()
            .decrypt(
                self.nonce().into(),
                Payload {
                    msg: self.sealed(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::secret::Key256;
    use base64::Engine as _;
    use proptest::prelude::*;
    use rand::rngs::OsRng;
    use uuid::Uuid;

    fn key(b: u8) -> MasterKey {
        MasterKey::new(Key256::from_bytes([b; 32]))
    }

    fn ctx(v: &str) -> EncryptionContext {
        [("video_id".to_string(), v.to_string())]
            .into_iter()
            .collect()
    }

    fn header() -> BlobHeader {
        BlobHeader::v1(Uuid::new_v4(), 7)
    }

    #[test]
    fn sealing_takes_1_to_max_plaintext_bytes() {
        let k = key(1);
        let seal = |n: usize| {
            Blob::seal(
                &k,
                header(),
                &SecretBytes::new(vec![5; n]),
                &ctx("a"),
                &mut OsRng,
            )
        };
        assert_eq!(seal(0).err(), Some(BlobError::BadLength));
        assert_eq!(seal(MAX_PLAINTEXT + 1).err(), Some(BlobError::BadLength));
        for n in [1, MAX_PLAINTEXT] {
            let blob = seal(n).unwrap();
            assert_eq!(blob.open(&k, &ctx("a")).unwrap().expose_secret().len(), n);
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
