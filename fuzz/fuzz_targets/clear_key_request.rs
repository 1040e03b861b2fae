#![no_main]
//! Key ids as the broker reads them: in the W3C licence request (base64url,
//! 16 bytes), in registrations and key URIs (32 hex digits or a UUID), and
//! in the manifests and playlists it serves for Clear Key (MPD default_KIDs,
//! the Clear Key element inserted, the CENC key tag variants). Never a panic;
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
    // Both CENC key tag variants of a playlist: every KID found is one the
    // rendering names (as a key URI for Shaka, as the data: URI for hls.js).
    let Ok(playlist) = hls::playlist::Playlist::parse(text) else {
        return;
    };
    let targets = hls::rewrite::TokenTargets::default();
    for cenc in [
        hls::rewrite::CencKeyTags::Identity,
        hls::rewrite::CencKeyTags::ClearKey,
    ] {
        if let Ok(t) =
            hls::rewrite::Template::new(&playlist, &targets, "/v1/hls/playlist/v.m3u8", cenc)
        {
            let out = t.render("T");
            if cenc == hls::rewrite::CencKeyTags::Identity {
                for kid in &t.kids {
                    let hex: String = kid.iter().map(|b| format!("{b:02x}")).collect();
                    assert!(out.contains(&format!("kid={hex}&token=T")));
                }
            }
        }
    }
});
