//! Text encodings of binary values that callers send us in several forms.

/// Decodes base64url or standard base64, with or without padding.
pub fn decode_base64_any(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    use base64::Engine as _;
    let url = text.contains(['-', '_']);
    let padded = text.ends_with('=');
    let engine = match (url, padded) {
        (true, true) => &URL_SAFE,
        (true, false) => &URL_SAFE_NO_PAD,
        (false, true) => &STANDARD,
        (false, false) => &STANDARD_NO_PAD,
    };
    engine.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_base64_dialect_decodes() {
        let bytes = [0xfb, 0xff, 0xfe, 0x01];
        for text in ["+//+AQ==", "+//+AQ", "-__-AQ==", "-__-AQ"] {
            assert_eq!(
                decode_base64_any(text).as_deref(),
                Some(&bytes[..]),
                "{text}"
            );
        }
        assert_eq!(decode_base64_any("not base64!"), None);
    }
}
