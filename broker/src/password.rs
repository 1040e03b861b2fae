//! Viewer passwords: argon2id PHC strings. Hashing is slow on purpose, so
//! callers run these on `spawn_blocking`.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use zeroize::Zeroizing;

pub const MIN_PASSWORD_LEN: usize = 8;
pub const MAX_PASSWORD_LEN: usize = 1024;

/// A password as typed: wiped on drop, never printed.
pub struct Password(Zeroizing<String>);

impl Password {
    pub fn new(text: String) -> Self {
        Self(Zeroizing::new(text))
    }

    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password([REDACTED])")
    }
}

/// argon2id with the crate's defaults (19 MiB, t=2, p=1: the OWASP minimum).
pub fn hash(password: &Password) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.expose_secret().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// `true` if `password` matches the PHC string `stored`. A malformed stored
/// hash never matches.
pub fn verify(password: &Password, stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.expose_secret().as_bytes(), &parsed)
        .is_ok()
}

/// A real hash of a random password, checked against when the user does not
/// exist so that "unknown user" costs the same time as "wrong password".
pub fn dummy_hash() -> String {
    let random: String = {
        use rand::Rng;
        rand::thread_rng()
            .sample_iter(rand::distributions::Alphanumeric)
            .take(24)
            .map(char::from)
            .collect()
    };
    hash(&Password::new(random)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = hash(&Password::new("correct horse".into())).unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify(&Password::new("correct horse".into()), &h));
        assert!(!verify(&Password::new("correct horsf".into()), &h));
        assert!(!verify(&Password::new("x".into()), "not a hash"));
        assert!(!format!("{:?}", Password::new("secret".into())).contains("secret"));
    }
}
