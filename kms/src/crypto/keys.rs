//! Root key, master key versions and data keys.

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{AeadCore, Aes256Gcm, KeyInit};
use rand::{CryptoRng, RngCore};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::blob::NONCE_LEN;
use super::secret::{Key256, SecretBytes};
use foundation::encoding::decode_base64_any;

const WRAP_AAD_PREFIX: &[u8] = b"vodkms/master-key/v1";
const ACCESS_SECRET_AAD_PREFIX: &[u8] = b"vodkms/access-key/v1";
const CHECK_AAD: &[u8] = b"vodkms/root-check/v1";
const VIDEO_SECRET_AAD_PREFIX: &[u8] = b"vodkms/video-secret/v1";
const PER_VIDEO_INFO: &[u8] = b"vodkms/blob/v2";
const CHECK_PLAINTEXT: &[u8] = b"vodkms root key check value";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("the root key must be 32 bytes, given as base64 (e.g. `openssl rand -base64 32`)")]
    BadRootKey,
    #[error("a wrapped master key could not be unwrapped with this root key")]
    UnwrapFailed,
}

// Compile-time proof that the AES-256 key schedule inside a cached cipher is
// wiped on drop (needs the `aes/zeroize` feature named in Cargo.toml).
const _: fn() = || {
    fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>() {}
    wiped_on_drop::<aes::Aes256>();
};

/// An AES-256-GCM key ready to use; its material is wiped on drop.
pub struct MasterKey {
    cipher: Aes256Gcm,
    // Kept (zeroizing) so the schedule's source is wiped even if the cipher
    // crate's own zeroize support changes; per-video keys derive from it.
    material: Key256,
}

impl MasterKey {
    pub fn new(material: Key256) -> Self {
        let cipher = Aes256Gcm::new(material.expose_secret().into());
        Self { cipher, material }
    }

    pub fn generate(rng: &mut (impl RngCore + CryptoRng)) -> Key256 {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut *bytes);
        Key256::from_bytes(*bytes)
    }

    pub(crate) fn cipher(&self) -> &Aes256Gcm {
        &self.cipher
    }

    /// The key that seals a v2 blob of one video: HKDF-SHA256 with this
    /// version's material as input key, the video's secret as salt, and the
    /// blob header and video id as info. Without the video's secret it
    /// cannot be made again, whoever holds the master key.
    pub fn for_video(&self, header: &[u8], video_id: &str, video_secret: &Key256) -> MasterKey {
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(
            Some(video_secret.expose_secret()),
            self.material.expose_secret(),
        );
        let mut okm = Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA256's limit of 8160, so this cannot fail.
        let _ = hk.expand_multi_info(&[PER_VIDEO_INFO, header, video_id.as_bytes()], &mut *okm);
        MasterKey::new(Key256::from_bytes(*okm))
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([REDACTED])")
    }
}

/// The key-encryption key. Never stored in the database.
#[derive(Debug)]
pub struct RootKey(MasterKey);

impl RootKey {
    pub fn new(material: Key256) -> Self {
        Self(MasterKey::new(material))
    }

    /// Parses base64 text (standard or url-safe) holding exactly 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let bytes = Zeroizing::new(decode_base64_any(text.trim()).ok_or(KeyError::BadRootKey)?);
        Key256::try_from_slice(&bytes)
            .map(Self::new)
            .ok_or(KeyError::BadRootKey)
    }

    /// Wraps one master key version; AAD binds key id and version so a wrapped
    /// version cannot be swapped onto another key or version in the database.
    pub fn wrap(
        &self,
        key_id: Uuid,
        version: u32,
        material: &Key256,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Vec<u8> {
        self.seal(&wrap_aad(key_id, version), material.expose_secret(), rng)
    }

    pub fn unwrap_key(
        &self,
        key_id: Uuid,
        version: u32,
        wrapped: &[u8],
    ) -> Result<MasterKey, KeyError> {
        let plain = self.open(&wrap_aad(key_id, version), wrapped)?;
        Key256::try_from_slice(&plain)
            .map(MasterKey::new)
            .ok_or(KeyError::UnwrapFailed)
    }

    /// Opens a wrapped version and seals it under `new`, for root key
    /// rotation; the material never leaves this module.
    pub fn rewrap(
        &self,
        new: &RootKey,
        key_id: Uuid,
        version: u32,
        wrapped: &[u8],
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<Vec<u8>, KeyError> {
        let aad = wrap_aad(key_id, version);
        let plain = self.open(&aad, wrapped)?;
        Ok(new.seal(&aad, &plain, rng))
    }

    /// Wraps an access key's secret; AAD binds the access key id and its
    /// client, so a wrapped secret cannot be moved to another key or client.
    pub fn wrap_access_secret(
        &self,
        access_key_id: &str,
        client_id: Uuid,
        secret: &SecretBytes,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Vec<u8> {
        let aad = access_secret_aad(access_key_id, client_id);
        self.seal(&aad, secret.expose_secret(), rng)
    }

    pub fn unwrap_access_secret(
        &self,
        access_key_id: &str,
        client_id: Uuid,
        wrapped: &[u8],
    ) -> Result<SecretBytes, KeyError> {
        self.open(&access_secret_aad(access_key_id, client_id), wrapped)
            .map(SecretBytes::from)
    }

    /// [`Self::rewrap`] for an access key's secret.
    pub fn rewrap_access_secret(
        &self,
        new: &RootKey,
        access_key_id: &str,
        client_id: Uuid,
        wrapped: &[u8],
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<Vec<u8>, KeyError> {
        let aad = access_secret_aad(access_key_id, client_id);
        let plain = self.open(&aad, wrapped)?;
        Ok(new.seal(&aad, &plain, rng))
    }

    /// Wraps a video's secret; AAD binds the video id, so a wrapped secret
    /// cannot be moved to another video.
    pub fn wrap_video_secret(
        &self,
        video_id: &str,
        secret: &Key256,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Vec<u8> {
        self.seal(&video_secret_aad(video_id), secret.expose_secret(), rng)
    }

    pub fn unwrap_video_secret(&self, video_id: &str, wrapped: &[u8]) -> Result<Key256, KeyError> {
        let plain = self.open(&video_secret_aad(video_id), wrapped)?;
        Key256::try_from_slice(&plain).ok_or(KeyError::UnwrapFailed)
    }

    /// [`Self::rewrap`] for a video's secret.
    pub fn rewrap_video_secret(
        &self,
        new: &RootKey,
        video_id: &str,
        wrapped: &[u8],
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<Vec<u8>, KeyError> {
        let aad = video_secret_aad(video_id);
        let plain = self.open(&aad, wrapped)?;
        Ok(new.seal(&aad, &plain, rng))
    }

    /// A value stored in the database so a wrong root key fails start-up.
    pub fn check_value(&self, rng: &mut (impl RngCore + CryptoRng)) -> Vec<u8> {
        self.seal(CHECK_AAD, CHECK_PLAINTEXT, rng)
    }

    pub fn verify_check_value(&self, stored: &[u8]) -> bool {
        self.open(CHECK_AAD, stored)
            .map(|p| p.as_slice() == CHECK_PLAINTEXT)
            .unwrap_or(false)
    }

    fn seal(&self, aad: &[u8], msg: &[u8], rng: &mut (impl RngCore + CryptoRng)) -> Vec<u8> {
        let nonce = Aes256Gcm::generate_nonce(rng);
        let mut out = nonce.to_vec();
        // Encryption of a 32-byte message cannot fail (only messages > 64 GiB do).
        if let Ok(ct) = self.0.cipher().encrypt(&nonce, Payload { msg, aad }) {
            out.extend_from_slice(&ct);
        }
        out
    }

    fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        if sealed.len() < NONCE_LEN {
            return Err(KeyError::UnwrapFailed);
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        self.0
            .cipher()
            .decrypt(nonce.into(), Payload { msg: ct, aad })
            .map(Zeroizing::new)
            .map_err(|_| KeyError::UnwrapFailed)
    }
}

fn video_secret_aad(video_id: &str) -> Vec<u8> {
    [VIDEO_SECRET_AAD_PREFIX, video_id.as_bytes()].concat()
}

fn wrap_aad(key_id: Uuid, version: u32) -> Vec<u8> {
    let mut aad = Vec::with_capacity(WRAP_AAD_PREFIX.len() + 20);
    aad.extend_from_slice(WRAP_AAD_PREFIX);
    aad.extend_from_slice(key_id.as_bytes());
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

fn access_secret_aad(access_key_id: &str, client_id: Uuid) -> Vec<u8> {
    let mut aad = Vec::with_capacity(ACCESS_SECRET_AAD_PREFIX.len() + 16 + access_key_id.len());
    aad.extend_from_slice(ACCESS_SECRET_AAD_PREFIX);
    // Fixed-length fields first, so the variable id cannot blur the boundary.
    aad.extend_from_slice(client_id.as_bytes());
    aad.extend_from_slice(access_key_id.as_bytes());
    aad
}

/// What a data key request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKeySpec {
    Aes128,
    Aes256,
    Bytes(u16),
}

impl DataKeySpec {
    /// `KeySpec` (AES_128 | AES_256) or `NumberOfBytes` (1..=1024), as every
    /// API names them; `None` when neither is given (each API has its own
    /// default, or none).
    pub fn from_request(
        key_spec: Option<&str>,
        number_of_bytes: Option<u32>,
    ) -> Result<Option<Self>, &'static str> {
        match (key_spec, number_of_bytes) {
            (Some(_), Some(_)) => Err("give KeySpec or NumberOfBytes, not both"),
            (None, None) => Ok(None),
            (Some("AES_128"), None) => Ok(Some(Self::Aes128)),
            (Some("AES_256"), None) => Ok(Some(Self::Aes256)),
            (Some(_), None) => Err("KeySpec must be AES_128 or AES_256"),
            (None, Some(n)) => u16::try_from(n)
                .ok()
                .filter(|n| (1..=1024).contains(n))
                .map(|n| Some(Self::Bytes(n)))
                .ok_or("NumberOfBytes must be 1..=1024"),
        }
    }

    /// Key length in bytes (never zero).
    pub fn byte_len(self) -> usize {
        match self {
            Self::Aes128 => 16,
            Self::Aes256 => 32,
            Self::Bytes(n) => usize::from(n),
        }
    }
}

pub fn generate_data_key(spec: DataKeySpec, rng: &mut (impl RngCore + CryptoRng)) -> SecretBytes {
    let mut bytes = Zeroizing::new(vec![0u8; spec.byte_len()]);
    rng.fill_bytes(&mut bytes);
    SecretBytes::from(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::OsRng;

    #[test]
    fn per_video_keys_need_the_video_secret() {
        use crate::crypto::{Blob, BlobHeader, Envelope};
        let mk = MasterKey::new(MasterKey::generate(&mut OsRng));
        let secret = MasterKey::generate(&mut OsRng);
        let header = BlobHeader::per_video(Uuid::new_v4(), 1);
        let head = header.to_bytes();
        let ctx: crate::crypto::EncryptionContext =
            [("video_id".to_string(), "a".to_string())].into();
        let pt = SecretBytes::new(vec![7; 16]);
        let sealing = mk.for_video(&head, "a", &secret);
        let blob = Blob::seal(&sealing, header, &pt, &ctx, &mut OsRng).unwrap();
        // The same derivation opens it; the master key alone, another
        // secret or another video's derivation does not.
        assert_eq!(
            blob.open(&mk.for_video(&head, "a", &secret), &ctx).unwrap(),
            pt
        );
        assert!(blob.open(&mk, &ctx).is_err());
        let other = MasterKey::generate(&mut OsRng);
        assert!(blob.open(&mk.for_video(&head, "a", &other), &ctx).is_err());
        assert!(blob.open(&mk.for_video(&head, "b", &secret), &ctx).is_err());
    }

    #[test]
    fn video_secret_wrap_binds_the_video() {
        let root = RootKey::new(MasterKey::generate(&mut OsRng));
        let secret = MasterKey::generate(&mut OsRng);
        let wrapped = root.wrap_video_secret("film", &secret, &mut OsRng);
        let back = root.unwrap_video_secret("film", &wrapped).unwrap();
        assert_eq!(back.expose_secret(), secret.expose_secret());
        assert!(root.unwrap_video_secret("film2", &wrapped).is_err());
        let new = RootKey::new(MasterKey::generate(&mut OsRng));
        let moved = root
            .rewrap_video_secret(&new, "film", &wrapped, &mut OsRng)
            .unwrap();
        assert!(root.unwrap_video_secret("film", &moved).is_err());
        assert!(new.unwrap_video_secret("film", &moved).is_ok());
    }

    #[test]
    fn wrap_binds_key_id_and_version() {
        let root = RootKey::new(MasterKey::generate(&mut OsRng));
        let id = Uuid::new_v4();
        let mk = MasterKey::generate(&mut OsRng);
        let wrapped = root.wrap(id, 1, &mk, &mut OsRng);
        assert!(root.unwrap_key(id, 1, &wrapped).is_ok());
        assert_eq!(
            root.unwrap_key(id, 2, &wrapped).err(),
            Some(KeyError::UnwrapFailed)
        );
        assert_eq!(
            root.unwrap_key(Uuid::new_v4(), 1, &wrapped).err(),
            Some(KeyError::UnwrapFailed)
        );
        assert_eq!(
            root.unwrap_key(id, 1, &wrapped[..5]).err(),
            Some(KeyError::UnwrapFailed)
        );
    }

    #[test]
    fn access_secret_wrap_binds_id_and_client() {
        let root = RootKey::new(MasterKey::generate(&mut OsRng));
        let other = RootKey::new(MasterKey::generate(&mut OsRng));
        let client = Uuid::new_v4();
        let secret = SecretBytes::new(b"s3cret-access".to_vec());
        let wrapped = root.wrap_access_secret("VKAK1", client, &secret, &mut OsRng);
        assert!(!wrapped.windows(6).any(|w| w == b"s3cret"));
        let back = root
            .unwrap_access_secret("VKAK1", client, &wrapped)
            .unwrap();
        assert_eq!(back.expose_secret(), secret.expose_secret());
        assert!(root
            .unwrap_access_secret("VKAK2", client, &wrapped)
            .is_err());
        assert!(root
            .unwrap_access_secret("VKAK1", Uuid::new_v4(), &wrapped)
            .is_err());
        let moved = root
            .rewrap_access_secret(&other, "VKAK1", client, &wrapped, &mut OsRng)
            .unwrap();
        assert!(root.unwrap_access_secret("VKAK1", client, &moved).is_err());
        let back = other.unwrap_access_secret("VKAK1", client, &moved).unwrap();
        assert_eq!(back.expose_secret(), secret.expose_secret());
    }

    #[test]
    fn check_value_detects_wrong_root_key() {
        let a = RootKey::new(MasterKey::generate(&mut OsRng));
        let b = RootKey::new(MasterKey::generate(&mut OsRng));
        let check = a.check_value(&mut OsRng);
        assert!(a.verify_check_value(&check));
        assert!(!b.verify_check_value(&check));
        assert!(!a.verify_check_value(b"short"));
    }

    #[test]
    fn root_key_parsing() {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert!(RootKey::from_base64(&b64).is_ok());
        assert!(RootKey::from_base64(&format!("{b64}\n")).is_ok());
        let short = base64::engine::general_purpose::STANDARD.encode([7u8; 16]);
        assert_eq!(
            RootKey::from_base64(&short).err(),
            Some(KeyError::BadRootKey)
        );
        assert_eq!(
            RootKey::from_base64("***").err(),
            Some(KeyError::BadRootKey)
        );
    }

    /// Seals a fixed message under `key` with a fixed nonce: equal outputs
    /// mean equal key material, without exposing it.
    fn fingerprint(key: &MasterKey) -> Vec<u8> {
        let nonce = [9u8; NONCE_LEN];
        key.cipher()
            .encrypt((&nonce).into(), b"fingerprint".as_slice())
            .unwrap()
    }

    #[test]
    fn debug_never_shows_key_material() {
        let material = Key256::from_bytes([0xAB; 32]);
        let key = MasterKey::new(material);
        assert_eq!(format!("{key:?}"), "MasterKey([REDACTED])");
        let root = RootKey::new(Key256::from_bytes([0xAB; 32]));
        let shown = format!("{root:?}");
        assert_eq!(shown, "RootKey(MasterKey([REDACTED]))");
        assert!(!shown.contains("171") && !shown.to_lowercase().contains("ab, "));
    }

    #[test]
    fn rewrap_moves_a_version_to_the_new_root_key_unchanged() {
        let old = RootKey::new(MasterKey::generate(&mut OsRng));
        let new = RootKey::new(MasterKey::generate(&mut OsRng));
        let id = Uuid::new_v4();
        let material = MasterKey::generate(&mut OsRng);
        let expected = fingerprint(&MasterKey::new(Key256::from_bytes(
            *material.expose_secret(),
        )));
        let wrapped = old.wrap(id, 3, &material, &mut OsRng);
        let moved = old.rewrap(&new, id, 3, &wrapped, &mut OsRng).unwrap();
        assert_eq!(moved.len(), NONCE_LEN + 32 + 16);
        assert_eq!(
            fingerprint(&new.unwrap_key(id, 3, &moved).unwrap()),
            expected
        );
        assert_eq!(
            old.unwrap_key(id, 3, &moved).err(),
            Some(KeyError::UnwrapFailed)
        );
        // The AAD still binds id and version after the move.
        assert!(new.unwrap_key(id, 4, &moved).is_err());
        // Only the right root key and binding can rewrap.
        assert_eq!(
            new.rewrap(&old, id, 3, &wrapped, &mut OsRng).err(),
            Some(KeyError::UnwrapFailed)
        );
        assert_eq!(
            old.rewrap(&new, id, 2, &wrapped, &mut OsRng).err(),
            Some(KeyError::UnwrapFailed)
        );
    }

    #[test]
    fn seals_carry_a_fresh_nonce_and_a_tag() {
        let root = RootKey::new(MasterKey::generate(&mut OsRng));
        let id = Uuid::new_v4();
        let material = MasterKey::generate(&mut OsRng);
        let a = root.wrap(id, 1, &material, &mut OsRng);
        let b = root.wrap(id, 1, &material, &mut OsRng);
        assert_eq!(a.len(), NONCE_LEN + 32 + 16);
        assert_ne!(a[..NONCE_LEN], b[..NONCE_LEN]);
        assert_ne!(a, b);
        // Exactly a nonce, or a nonce and a cut tag, is refused.
        assert!(root.unwrap_key(id, 1, &a[..NONCE_LEN]).is_err());
        assert!(root.unwrap_key(id, 1, &a[..a.len() - 1]).is_err());
        let mut flipped = a.clone();
        flipped[NONCE_LEN] ^= 1;
        assert!(root.unwrap_key(id, 1, &flipped).is_err());
    }

    #[test]
    fn a_check_value_with_other_text_is_refused() {
        let root = RootKey::new(MasterKey::generate(&mut OsRng));
        let other_text = root.seal(CHECK_AAD, b"something else", &mut OsRng);
        assert!(!root.verify_check_value(&other_text));
        let other_aad = root.seal(b"other", CHECK_PLAINTEXT, &mut OsRng);
        assert!(!root.verify_check_value(&other_aad));
    }

    #[test]
    fn generated_keys_are_random() {
        let a = MasterKey::generate(&mut OsRng);
        let b = MasterKey::generate(&mut OsRng);
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert_ne!(a.expose_secret(), &[0u8; 32]);
        let x = generate_data_key(DataKeySpec::Aes128, &mut OsRng);
        let y = generate_data_key(DataKeySpec::Aes128, &mut OsRng);
        assert_ne!(x.expose_secret(), y.expose_secret());
        assert_ne!(x.expose_secret(), &[0u8; 16]);
    }

    #[test]
    fn data_key_spec_from_each_api_field() {
        use DataKeySpec::*;
        assert_eq!(DataKeySpec::from_request(None, None), Ok(None));
        assert_eq!(
            DataKeySpec::from_request(Some("AES_128"), None),
            Ok(Some(Aes128))
        );
        assert_eq!(
            DataKeySpec::from_request(Some("AES_256"), None),
            Ok(Some(Aes256))
        );
        assert!(DataKeySpec::from_request(Some("AES_512"), None).is_err());
        assert!(DataKeySpec::from_request(Some("AES_128"), Some(16)).is_err());
        assert_eq!(DataKeySpec::from_request(None, Some(1)), Ok(Some(Bytes(1))));
        assert_eq!(
            DataKeySpec::from_request(None, Some(1024)),
            Ok(Some(Bytes(1024)))
        );
        for n in [0, 1025, 65_536 + 16, u32::MAX] {
            assert!(DataKeySpec::from_request(None, Some(n)).is_err(), "{n}");
        }
        assert_eq!(Aes128.byte_len(), 16);
        assert_eq!(Aes256.byte_len(), 32);
        assert_eq!(Bytes(7).byte_len(), 7);
    }

    #[test]
    fn data_key_lengths() {
        assert_eq!(generate_data_key(DataKeySpec::Aes128, &mut OsRng).len(), 16);
        assert_eq!(generate_data_key(DataKeySpec::Aes256, &mut OsRng).len(), 32);
        assert_eq!(
            generate_data_key(DataKeySpec::Bytes(1024), &mut OsRng).len(),
            1024
        );
    }
}
