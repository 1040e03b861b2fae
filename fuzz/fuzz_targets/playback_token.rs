//! Playback tokens from query strings, headers and cookies: verified or
//! refused, never a panic, and never accepted without the secret.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|token: &str| {
    let keys = broker::token::TokenKeys::new(
        Some(foundation::SecretBytes::new(vec![7u8; 32])),
        None,
        60,
        86_400,
    )
    .unwrap();
    assert!(keys.verify(token, 1_800_000_000).is_err());
});
