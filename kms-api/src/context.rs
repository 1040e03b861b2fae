//! EncryptionContext: string pairs bound into every blob's AAD.
//!
//! The canonical encoding is length-prefixed, so no two different contexts share
//! bytes (`{"a":"bc"}` vs `{"ab":"c"}`): u32 pair count, then per pair (sorted by
//! key, as `BTreeMap` iterates) u32 key length, key, u32 value length, value.

use std::collections::BTreeMap;

pub type EncryptionContext = BTreeMap<String, String>;

pub const MAX_CONTEXT_PAIRS: usize = 64;
pub const MAX_CONTEXT_KEY_BYTES: usize = 256;
pub const MAX_CONTEXT_VALUE_BYTES: usize = 1024;
/// The context entry naming the video a data key protects.
pub const VIDEO_ID_CONTEXT_KEY: &str = "video_id";
pub const MAX_VIDEO_ID_LEN: usize = 256;

/// A video id as key URIs, tokens and the KMS take it: 1 to 256 printable
/// ASCII characters, no spaces.
pub fn valid_video_id(v: &str) -> bool {
    !v.is_empty() && v.len() <= MAX_VIDEO_ID_LEN && v.bytes().all(|b| b.is_ascii_graphic())
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ContextError {
    #[error("EncryptionContext has more than {MAX_CONTEXT_PAIRS} pairs")]
    TooManyPairs,
    #[error("EncryptionContext keys must be 1..={MAX_CONTEXT_KEY_BYTES} bytes")]
    BadKeyLength,
    #[error("EncryptionContext values must be at most {MAX_CONTEXT_VALUE_BYTES} bytes")]
    BadValueLength,
    #[error("EncryptionContext keys and values may not contain NUL characters")]
    NulCharacter,
}

pub fn validate_context(ctx: &EncryptionContext) -> Result<(), ContextError> {
    if ctx.len() > MAX_CONTEXT_PAIRS {
        return Err(ContextError::TooManyPairs);
    }
    for (k, v) in ctx {
        if k.is_empty() || k.len() > MAX_CONTEXT_KEY_BYTES {
            return Err(ContextError::BadKeyLength);
        }
        if v.len() > MAX_CONTEXT_VALUE_BYTES {
            return Err(ContextError::BadValueLength);
        }
        // Storable everywhere (PostgreSQL text and jsonb reject NUL).
        if k.contains('\0') || v.contains('\0') {
            return Err(ContextError::NulCharacter);
        }
    }
    Ok(())
}

/// Appends the canonical encoding of `ctx` to `out`.
pub fn encode_context(ctx: &EncryptionContext, out: &mut Vec<u8>) {
    // Lengths fit in u32: validate_context bounds them far below; the cast is
    // still checked so an unvalidated huge context cannot alias another.
    let len32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes();
    out.extend_from_slice(&len32(ctx.len()));
    for (k, v) in ctx {
        out.extend_from_slice(&len32(k.len()));
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(&len32(v.len()));
        out.extend_from_slice(v.as_bytes());
    }
}

/// Reads a Python dict of strings as Python prints it (`{'k': 'v'}`): what
/// aliyun-python-sdk-kms sends as EncryptionContext when handed a dict
/// instead of a JSON string. Only string keys and values; `None` for
/// anything else. Strictly bounded: no recursion, one pass.
pub fn parse_python_dict(text: &str) -> Option<EncryptionContext> {
    let mut chars = text.trim().chars().peekable();
    let mut out = EncryptionContext::new();
    let skip_ws = |c: &mut std::iter::Peekable<std::str::Chars<'_>>| {
        while c.peek().is_some_and(|ch| ch.is_whitespace()) {
            c.next();
        }
    };
    if chars.next()? != '{' {
        return None;
    }
    skip_ws(&mut chars);
    if chars.peek() == Some(&'}') {
        chars.next();
        return chars.next().is_none().then_some(out);
    }
    loop {
        skip_ws(&mut chars);
        let key = python_string(&mut chars)?;
        skip_ws(&mut chars);
        if chars.next()? != ':' {
            return None;
        }
        skip_ws(&mut chars);
        let value = python_string(&mut chars)?;
        out.insert(key, value);
        skip_ws(&mut chars);
        match chars.next()? {
            ',' => continue,
            '}' => return chars.next().is_none().then_some(out),
            _ => return None,
        }
    }
}

/// One quoted Python string literal with its escapes.
fn python_string(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<String> {
    let quote = chars.next()?;
    if quote != '\'' && quote != '"' {
        return None;
    }
    let mut s = String::new();
    loop {
        match chars.next()? {
            c if c == quote => return Some(s),
            '\\' => {
                let e = chars.next()?;
                let hex = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>, n: usize| {
                    let digits: String = (0..n).map_while(|_| chars.next()).collect();
                    // from_str_radix alone would take a sign (`\x+f`).
                    (digits.len() == n && digits.chars().all(|c| c.is_ascii_hexdigit()))
                        .then(|| u32::from_str_radix(&digits, 16).ok())
                        .flatten()
                        .and_then(char::from_u32)
                };
                s.push(match e {
                    '\\' | '\'' | '"' => e,
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    '0' => '\0',
                    'x' => hex(chars, 2)?,
                    'u' => hex(chars, 4)?,
                    'U' => hex(chars, 8)?,
                    _ => return None,
                });
            }
            c => s.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn python_dicts_as_python_prints_them() {
        let ctx = |pairs: &[(&str, &str)]| -> EncryptionContext {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(parse_python_dict("{}"), Some(ctx(&[])));
        assert_eq!(
            parse_python_dict("{'video_id': 'film-1', \"it's\": 'a\\'b\\xe9\\u4e2d'}"),
            Some(ctx(&[
                ("video_id", "film-1"),
                ("it's", "a'b\u{e9}\u{4e2d}")
            ]))
        );
        for bad in [
            "",
            "{",
            "{'a'}",
            "{'a': 1}",
            "{'a': 'b',}",
            "{'a': 'b'} x",
            "['a']",
            "{'a': 'b\\q'}",
            "{'a': '\\x4'}",
            "{'a': '\\x+f'}",
        ] {
            assert_eq!(parse_python_dict(bad), None, "{bad}");
        }
    }

    fn enc(pairs: &[(&str, &str)]) -> Vec<u8> {
        let ctx: EncryptionContext = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut out = Vec::new();
        encode_context(&ctx, &mut out);
        out
    }

    #[test]
    fn shifted_boundaries_do_not_collide() {
        assert_ne!(enc(&[("a", "bc")]), enc(&[("ab", "c")]));
        assert_ne!(enc(&[("a", "b"), ("c", "d")]), enc(&[("a", "bcd")]));
        assert_ne!(enc(&[]), enc(&[("", "")]));
    }

    #[test]
    fn order_of_insertion_does_not_matter() {
        assert_eq!(
            enc(&[("x", "1"), ("a", "2")]),
            enc(&[("a", "2"), ("x", "1")])
        );
    }

    #[test]
    fn validation_limits() {
        let mut c = EncryptionContext::new();
        c.insert(String::new(), "v".into());
        assert_eq!(validate_context(&c), Err(ContextError::BadKeyLength));
        let c: EncryptionContext = (0..65).map(|i| (i.to_string(), String::new())).collect();
        assert_eq!(validate_context(&c), Err(ContextError::TooManyPairs));
        let c: EncryptionContext = [("k".to_string(), "a\0b".to_string())]
            .into_iter()
            .collect();
        assert_eq!(validate_context(&c), Err(ContextError::NulCharacter));
    }

    proptest! {
        // Injective: different contexts never encode to the same bytes.
        #[test]
        fn encoding_is_injective(
            a in proptest::collection::btree_map(".{0,6}", ".{0,6}", 0..4),
            b in proptest::collection::btree_map(".{0,6}", ".{0,6}", 0..4),
        ) {
            let (mut ea, mut eb) = (Vec::new(), Vec::new());
            encode_context(&a, &mut ea);
            encode_context(&b, &mut eb);
            prop_assert_eq!(a == b, ea == eb);
        }
    }
}
