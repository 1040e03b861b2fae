//! The key request's query string (`/v1/hls/key`, the Clear Key doors):
//! parsed by hand, borrowing what needs no decoding, so the hot path copies
//! nothing. Fuzzed (`fuzz/`: key_query).

use std::borrow::Cow;

use super::error::ApiError;

/// The key request's query parameters, borrowed from the URL when they need
/// no decoding (base64url EDKs and JWTs never do): the hot path copies nothing.
/// No `Debug`: it holds tokens.
#[derive(Default)]
pub struct KeyQuery<'a> {
    pub vid: Option<Cow<'a, str>>,
    pub ciphertext: Option<Cow<'a, str>>,
    pub mts_hls_uri_token: Option<Cow<'a, str>>,
    pub token: Option<Cow<'a, str>>,
    /// A content key's id, for `/v1/clearkey/key`.
    pub kid: Option<Cow<'a, str>>,
}

impl<'a> KeyQuery<'a> {
    /// The query's tokens, to try before those of the headers: they are what
    /// the playlist carried.
    pub fn tokens(&self) -> impl Iterator<Item = Cow<'a, str>> + '_ {
        [&self.mts_hls_uri_token, &self.token]
            .into_iter()
            .flatten()
            .filter(|t| !t.is_empty())
            .cloned()
    }

    /// Unknown parameters are ignored (players add cache busters); a repeated
    /// one is refused, since which copy counts would be a guess.
    pub fn parse(raw: &'a str) -> Result<Self, ApiError> {
        let mut q = Self::default();
        for pair in raw.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match name {
                "vid" => &mut q.vid,
                "Ciphertext" => &mut q.ciphertext,
                "MtsHlsUriToken" => &mut q.mts_hls_uri_token,
                "token" => &mut q.token,
                "kid" => &mut q.kid,
                _ => continue,
            };
            if slot.is_some() {
                return Err(ApiError::invalid(format!(
                    "the query string repeats {name}"
                )));
            }
            *slot = Some(form_decode(value).ok_or_else(|| {
                ApiError::invalid(format!(
                    "the query parameter {name} is not valid URL encoding"
                ))
            })?);
        }
        Ok(q)
    }
}

/// `application/x-www-form-urlencoded` value decoding: `+` is a space, `%XX`
/// a byte; the result must be UTF-8.
fn form_decode(value: &str) -> Option<Cow<'_, str>> {
    if !value.contains(['%', '+']) {
        return Some(Cow::Borrowed(value));
    }
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                // Two hex digits: from_str_radix alone would take a sign ("%+d").
                let hex = bytes.get(i + 1..i + 3)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_query_parsing() {
        let q = KeyQuery::parse("vid=a%2Fb&Ciphertext=AZ-_x&token=t.u.v&x=1&&junk").unwrap();
        assert_eq!(q.vid.as_deref(), Some("a/b"));
        assert!(matches!(q.ciphertext, Some(Cow::Borrowed("AZ-_x"))));
        assert_eq!(q.token.as_deref(), Some("t.u.v"));
        assert_eq!(q.mts_hls_uri_token, None);
        assert!(KeyQuery::parse("vid=a&vid=b").is_err());
        assert!(KeyQuery::parse("vid=%zz").is_err());
        assert!(KeyQuery::parse("vid=%ff").is_err(), "not UTF-8");
        assert!(KeyQuery::parse("vid=%4").is_err());
        assert!(
            KeyQuery::parse("vid=%+d").is_err(),
            "a sign is not a hex digit"
        );
        assert_eq!(form_decode("a+b%20c").as_deref(), Some("a b c"));
        assert_eq!(form_decode("%C3%BC").as_deref(), Some("ü"));
    }
}
