//! API client tokens: 256-bit random, shown once, stored only as SHA-256.
//! High-entropy secrets need no slow hash; argon2id is for human passwords.

use base64::Engine as _;
use rand::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Prefix that makes leaked tokens easy to spot for secret scanners.
pub const TOKEN_PREFIX: &str = "vkms_";

/// A plain API token as the client holds it.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ApiToken(String);

impl ApiToken {
    pub fn generate(rng: &mut (impl RngCore + CryptoRng)) -> Self {
        let mut raw = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut *raw);
        let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(*raw);
        Self(format!("{TOKEN_PREFIX}{body}"))
    }

    pub fn from_presented(text: &str) -> Self {
        Self(text.to_owned())
    }

    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    pub fn digest(&self) -> TokenDigest {
        TokenDigest(Sha256::digest(self.0.as_bytes()).into())
    }
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken([REDACTED])")
    }
}

/// SHA-256 of a token: what the database stores and lookups use.
#[derive(Clone, Copy, Eq)]
pub struct TokenDigest(pub [u8; 32]);

impl PartialEq for TokenDigest {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl std::fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A digest prefix is safe to log and helps correlate one client's requests.
        write!(
            f,
            "TokenDigest({:02x}{:02x}{:02x}{:02x}…)",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::OsRng;

    #[test]
    fn tokens_are_unique_prefixed_and_redacted() {
        let a = ApiToken::generate(&mut OsRng);
        let b = ApiToken::generate(&mut OsRng);
        assert!(a.expose_secret().starts_with(TOKEN_PREFIX));
        assert_eq!(a.expose_secret().len(), TOKEN_PREFIX.len() + 43);
        assert_ne!(a.digest(), b.digest());
        assert_eq!(
            a.digest(),
            ApiToken::from_presented(a.expose_secret()).digest()
        );
        assert!(!format!("{a:?}").contains(&a.expose_secret()[5..]));
    }
}
