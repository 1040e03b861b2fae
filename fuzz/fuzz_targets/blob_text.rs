#![no_main]
//! The CiphertextBlob text form, as it arrives in key URIs and API bodies:
//! parsing never panics, and a parsed blob's parts add up to its bytes.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(blob) = kms_api::Blob::from_text(text) {
        let parts = blob.header_bytes().len() + blob.nonce().len() + blob.sealed().len();
        assert_eq!(parts, blob.as_bytes().len());
        assert_eq!(kms_api::Blob::from_text(&blob.to_text()), Ok(blob));
    }
});
