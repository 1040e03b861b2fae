//! Secret-holding types: wiped on drop, redacted in `Debug`, never `Serialize`.
//! Reading one takes an explicit `expose_secret()`, so every use is greppable.

use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

pub use foundation::SecretBytes;

/// A 256-bit key (root key or master key version material).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Key256([u8; 32]);

impl Key256 {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn try_from_slice(bytes: &[u8]) -> Option<Self> {
        let arr: [u8; 32] = bytes.try_into().ok()?;
        Some(Self(arr))
    }

    pub fn expose_secret(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Key256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key256([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_key_bytes() {
        let k = Key256::from_bytes([0xCD; 32]);
        let printed = format!("{k:?}");
        assert!(
            !printed.contains("205") && !printed.to_lowercase().contains("cd"),
            "{printed}"
        );
        assert!(printed.contains("REDACTED"));
    }
}
