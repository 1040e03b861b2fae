#![no_main]
//! Key ids as the broker reads them: in the W3C licence request (base64url,
//! 16 bytes), in registrations and key URIs (32 hex digits or a UUID), and
//! in the manifests and playlists it serves for Clear Key (MPD default_KIDs,
//! the Clear Key element inserted, hls.js's key tag variant). Never a panic;
//! a parsed KID prints back to what parses the same.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(kid) = broker::service::parse_kid(text) {
        let hex: String = kid.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(broker::service::parse_kid(&hex), Some(kid));
    }
    if let Some(bytes) = foundation::encoding::decode_base64_any(text) {
        let _ = <[u8; 16]>::try_from(bytes);
    }
    let _ = serde_json::from_str::<serde_json::Value>(text);
    let _ = broker::dash::default_kids(text);
    let with = broker::dash::with_clear_key(text, "https://b.example/l?token=a&b");
    // Idempotent: a manifest already naming Clear Key is left alone.
    assert_eq!(broker::dash::with_clear_key(&with, "x"), with);
    let _ = hls::rewrite::clear_key_format(text);
});
