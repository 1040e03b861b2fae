//! Device cookies as a browser (or an attacker) sends them back.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|cookie: &str| {
    let keys = broker::token::TokenKeys::new(
        Some(foundation::SecretBytes::new(vec![7u8; 32])),
        None,
        60,
        86_400,
    )
    .unwrap();
    // No input forges a cookie for this account.
    assert!(!keys.device_known("vera", cookie, 1_800_000_000));
});
