//! METHOD=AES-128 (RFC 8216 §5.2): each segment is AES-128-CBC with PKCS#7
//! padding, under the key and IV its EXT-X-KEY names.

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use zeroize::Zeroizing;

pub const KEY_LEN: usize = 16;
pub const IV_LEN: usize = 16;

/// A segment key; wiped on drop.
pub type SegmentKey = Zeroizing<[u8; KEY_LEN]>;

type Encryptor = cbc::Encryptor<aes::Aes128>;
type Decryptor = cbc::Decryptor<aes::Aes128>;

/// Encrypts one whole segment.
pub fn encrypt_segment(key: &SegmentKey, iv: &[u8; IV_LEN], plain: &[u8]) -> Vec<u8> {
    Encryptor::new(key.as_ref().into(), iv.into()).encrypt_padded_vec_mut::<Pkcs7>(plain)
}

/// Decrypts one whole segment; `None` if the padding is wrong (wrong key or IV).
pub fn decrypt_segment(key: &SegmentKey, iv: &[u8; IV_LEN], data: &[u8]) -> Option<Vec<u8>> {
    Decryptor::new(key.as_ref().into(), iv.into())
        .decrypt_padded_vec_mut::<Pkcs7>(data)
        .ok()
}

/// `0x` and 32 hex digits, as EXT-X-KEY's IV attribute wants it.
pub fn iv_attribute(iv: &[u8; IV_LEN]) -> String {
    format!("0x{}", hex(iv))
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answer_and_round_trip() {
        // NIST SP 800-38A F.2.1 CBC-AES128, first block; PKCS#7 adds a block.
        let key = Zeroizing::new([
            0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6, 0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf,
            0x4f, 0x3c,
        ]);
        let iv: [u8; 16] = core::array::from_fn(|i| i as u8);
        let plain = [
            0x6b, 0xc1, 0xbe, 0xe2, 0x2e, 0x40, 0x9f, 0x96, 0xe9, 0x3d, 0x7e, 0x11, 0x73, 0x93,
            0x17, 0x2a,
        ];
        let out = encrypt_segment(&key, &iv, &plain);
        assert_eq!(out.len(), 32);
        assert_eq!(hex(&out[..16]), "7649abac8119b246cee98e9b12e9197d");
        assert_eq!(decrypt_segment(&key, &iv, &out).unwrap(), plain);
        // Every length gets 1..=16 bytes of padding.
        for n in [0usize, 1, 15, 16, 17, 188 * 7] {
            let data = vec![0x47u8; n];
            let enc = encrypt_segment(&key, &iv, &data);
            assert_eq!(enc.len(), (n / 16 + 1) * 16);
            assert_eq!(decrypt_segment(&key, &iv, &enc).unwrap(), data);
        }
        assert_eq!(iv_attribute(&iv), "0x000102030405060708090a0b0c0d0e0f");
    }
}
