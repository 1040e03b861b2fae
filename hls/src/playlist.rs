//! RFC 8216 playlists as a list of lines. Only what vodkms changes is
//! interpreted; every other line is written back exactly as it was read, so
//! tags this code does not know survive (clients must ignore unknown tags).

use std::borrow::Cow;
use std::fmt;

/// Largest playlist read (a 10 hour film in 2 s segments is ~1.5 MB).
pub const MAX_PLAYLIST_BYTES: usize = 16 << 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct PlaylistError {
    /// 1-based; 0 for the playlist as a whole.
    pub line: usize,
    pub reason: String,
}

impl PlaylistError {
    pub fn new(line: usize, reason: impl Into<String>) -> Self {
        Self {
            line,
            reason: reason.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line<'a> {
    /// `#EXT...`: the name without `#`, the text after the first `:`.
    Tag {
        name: &'a str,
        value: Option<&'a str>,
    },
    /// A segment or variant playlist URI.
    Uri(&'a str),
    /// A comment or a blank line, kept as is.
    Other(&'a str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Lists variant streams (EXT-X-STREAM-INF, EXT-X-MEDIA).
    Master,
    /// Lists segments (EXTINF).
    Media,
}

#[derive(Debug, Clone)]
pub struct Playlist<'a> {
    pub kind: Kind,
    pub lines: Vec<Line<'a>>,
}

const MASTER_TAGS: &[&str] = &[
    "EXT-X-STREAM-INF",
    "EXT-X-MEDIA",
    "EXT-X-I-FRAME-STREAM-INF",
    "EXT-X-SESSION-DATA",
    "EXT-X-SESSION-KEY",
];
const MEDIA_TAGS: &[&str] = &["EXTINF", "EXT-X-TARGETDURATION", "EXT-X-MEDIA-SEQUENCE"];

impl<'a> Playlist<'a> {
    pub fn parse(text: &'a str) -> Result<Self, PlaylistError> {
        if text.len() > MAX_PLAYLIST_BYTES {
            return Err(PlaylistError::new(0, "the playlist is larger than 16 MiB"));
        }
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut lines = Vec::new();
        let mut master_line = None;
        let mut media_line = None;
        for (i, raw) in text.split('\n').enumerate() {
            let number = i + 1;
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if line.contains(['\0', '\r']) {
                return Err(PlaylistError::new(
                    number,
                    "a control character inside a line",
                ));
            }
            if i == 0 {
                if line.trim_end() != "#EXTM3U" {
                    return Err(PlaylistError::new(
                        1,
                        "not an HLS playlist: the first line must be #EXTM3U",
                    ));
                }
                lines.push(Line::Other(line));
                continue;
            }
            let parsed = if line.starts_with("#EXT") {
                let tag = &line[1..];
                let (name, value) = match tag.split_once(':') {
                    Some((n, v)) => (n, Some(v)),
                    None => (tag.trim_end(), None),
                };
                if MASTER_TAGS.contains(&name) {
                    master_line.get_or_insert(number);
                }
                if MEDIA_TAGS.contains(&name) {
                    media_line.get_or_insert(number);
                }
                Line::Tag { name, value }
            } else if line.starts_with('#') || line.trim().is_empty() {
                Line::Other(line)
            } else {
                Line::Uri(line.trim())
            };
            lines.push(parsed);
        }
        // A final newline is not an empty last line.
        if text.ends_with('\n') {
            lines.pop();
        }
        let kind =
            match (master_line, media_line) {
                (Some(m), Some(s)) => return Err(PlaylistError::new(
                    m.max(s),
                    "the playlist mixes master tags (variant streams) and media tags (segments)",
                )),
                (Some(_), None) => Kind::Master,
                (None, Some(_)) => Kind::Media,
                (None, None) => {
                    return Err(PlaylistError::new(
                        0,
                        "the playlist lists neither segments (EXTINF) nor variant streams",
                    ))
                }
            };
        Ok(Self { kind, lines })
    }

    /// The playlist as text, one `\n` after every line.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(self.lines.len() * 48);
        for line in &self.lines {
            match line {
                Line::Tag { name, value } => {
                    out.push('#');
                    out.push_str(name);
                    if let Some(v) = value {
                        out.push(':');
                        out.push_str(v);
                    }
                }
                Line::Uri(u) | Line::Other(u) => out.push_str(u),
            }
            out.push('\n');
        }
        out
    }
}

/// An attribute list (RFC 8216 §4.2): `NAME=value,NAME="quoted"`, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes<'a> {
    /// Values as written, quotes included.
    pairs: Vec<(&'a str, Cow<'a, str>)>,
}

impl<'a> Attributes<'a> {
    pub fn parse(text: &'a str) -> Result<Self, String> {
        let mut pairs = Vec::new();
        let mut rest = text.trim();
        while !rest.is_empty() {
            let (name, after) = rest
                .split_once('=')
                .ok_or_else(|| format!("attribute without a value in {text:?}"))?;
            let name = name.trim();
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(format!("bad attribute name {name:?}"));
            }
            let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
                let end = quoted
                    .find('"')
                    .ok_or_else(|| format!("unterminated quoted string in {name}"))?;
                (&after[..end + 2], &quoted[end + 1..])
            } else {
                let end = after.find(',').unwrap_or(after.len());
                (&after[..end], &after[end..])
            };
            if pairs.iter().any(|(n, _)| *n == name) {
                return Err(format!("attribute {name} appears twice"));
            }
            pairs.push((name, Cow::Borrowed(value)));
            rest = match after.strip_prefix(',') {
                Some(r) => r.trim_start(),
                None if after.trim().is_empty() => "",
                None => return Err(format!("junk after attribute {name}")),
            };
        }
        Ok(Self { pairs })
    }

    /// The value, without quotes if it was quoted.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| {
            v.strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v)
        })
    }

    /// Replaces (in place) or appends a quoted-string attribute.
    /// `value` must not contain `"` or line breaks; callers pass URIs.
    pub fn set_quoted(&mut self, name: &'a str, value: &str) {
        let quoted = Cow::Owned(format!("\"{value}\""));
        match self.pairs.iter_mut().find(|(n, _)| *n == name) {
            Some(pair) => pair.1 = quoted,
            None => self.pairs.push((name, quoted)),
        }
    }
}

impl fmt::Display for Attributes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, value)) in self.pairs.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{name}={value}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEDIA: &str =
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n\
        #EXTINF:2.000000,\nseg0.ts\n# a comment\n#EXTINF:1.5,\nseg1.ts\n#EXT-X-ENDLIST\n";

    #[test]
    fn media_round_trips_byte_for_byte() {
        let p = Playlist::parse(MEDIA).unwrap();
        assert_eq!(p.kind, Kind::Media);
        assert_eq!(p.render(), MEDIA);
        let uris: Vec<_> = p
            .lines
            .iter()
            .filter_map(|l| match l {
                Line::Uri(u) => Some(*u),
                _ => None,
            })
            .collect();
        assert_eq!(uris, ["seg0.ts", "seg1.ts"]);
    }

    #[test]
    fn master_is_recognised_and_crlf_accepted() {
        let text =
            "#EXTM3U\r\n#EXT-X-STREAM-INF:BANDWIDTH=1000,RESOLUTION=64x48\r\nv0/index.m3u8\r\n";
        let p = Playlist::parse(text).unwrap();
        assert_eq!(p.kind, Kind::Master);
        assert_eq!(
            p.lines[1],
            Line::Tag {
                name: "EXT-X-STREAM-INF",
                value: Some("BANDWIDTH=1000,RESOLUTION=64x48")
            }
        );
    }

    #[test]
    fn refusals() {
        for (text, want) in [
            ("", "first line"),
            ("<html>", "first line"),
            ("#EXTM3U\n#EXT-X-VERSION:3\n", "neither"),
            (
                "#EXTM3U\n#EXTINF:1,\na.ts\n#EXT-X-STREAM-INF:BANDWIDTH=1\nb.m3u8\n",
                "mixes",
            ),
            ("#EXTM3U\n#EXTINF:1,\na\0.ts\n", "control"),
        ] {
            let e = Playlist::parse(text).unwrap_err();
            assert!(e.to_string().contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn attributes_parse_get_set_render() {
        let mut a =
            Attributes::parse(r#"METHOD=AES-128,URI="https://k/?a=1,b",IV=0x00ff"#).unwrap();
        assert_eq!(a.get("METHOD"), Some("AES-128"));
        assert_eq!(a.get("URI"), Some("https://k/?a=1,b"));
        assert_eq!(a.get("IV"), Some("0x00ff"));
        a.set_quoted("URI", "https://x/");
        assert_eq!(
            a.to_string(),
            r#"METHOD=AES-128,URI="https://x/",IV=0x00ff"#
        );
        a.set_quoted("KEYFORMAT", "identity");
        assert!(a.to_string().ends_with(r#",KEYFORMAT="identity""#));
        for bad in [
            r#"URI="open"#,
            "=1",
            "a=1",
            "X=1,X=2",
            r#"U="a"b"#,
            "NOVALUE",
        ] {
            assert!(Attributes::parse(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in "#EXTM3U\n[#A-Z:=,\"0-9a-z./\n-]{0,200}") {
            if let Ok(p) = Playlist::parse(&text) {
                for line in &p.lines {
                    if let Line::Tag { value: Some(v), .. } = line {
                        let _ = Attributes::parse(v);
                    }
                }
                let _ = p.render();
            }
        }
    }
}
