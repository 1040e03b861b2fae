//! Secret bytes: wiped on drop, redacted in `Debug`, never `Serialize`.
//! Reading one takes an explicit `expose_secret()`, so every use is greppable.

use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Variable-length secret bytes (data keys, decrypted plaintexts).
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Standard base64 of the secret, itself in a zeroizing string.
    pub fn to_base64(&self) -> Zeroizing<String> {
        use base64::Engine as _;
        Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl From<Zeroizing<Vec<u8>>> for SecretBytes {
    fn from(mut z: Zeroizing<Vec<u8>>) -> Self {
        Self(std::mem::take(&mut *z))
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes([REDACTED; {}])", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_secret_bytes() {
        let s = SecretBytes::new(vec![0xAB; 16]);
        let printed = format!("{s:?}");
        assert!(
            !printed.contains("171") && !printed.to_lowercase().contains("ab"),
            "{printed}"
        );
        assert!(printed.contains("REDACTED"));
    }
}
