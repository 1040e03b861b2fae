//! URL paths of `/web/` requests and resolved media playlist URIs.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|path: &str| {
    if let Some(segments) = hls::rewrite::path_segments(path) {
        assert!(!segments.is_empty());
    }
});
