//! The broker's per-viewer playlist rewriting: key URIs (and, in a master
//! playlist, the URIs of its media playlists) get the viewer's playback
//! token; segment URIs stay untouched so any CDN can cache the segments.

use crate::playlist::{Attributes, Kind, Line, Playlist, PlaylistError};

/// Query parameters that carry a playback token; replaced, never repeated.
const TOKEN_PARAMS: &[&str] = &["token", "MtsHlsUriToken"];

/// Tags whose URI attribute names a key.
const KEY_TAGS: &[&str] = &["EXT-X-KEY", "EXT-X-SESSION-KEY"];
/// Master tags whose URI attribute names a media playlist.
const PLAYLIST_TAGS: &[&str] = &["EXT-X-MEDIA", "EXT-X-I-FRAME-STREAM-INF"];

/// The video ids (`vid`) of the broker key URIs (those with a `Ciphertext`)
/// the playlist names, each once. Key URIs without a `vid` add none.
pub fn key_video_ids(playlist: &Playlist<'_>) -> Result<Vec<String>, PlaylistError> {
    let mut out: Vec<String> = Vec::new();
    for (i, line) in playlist.lines.iter().enumerate() {
        let Line::Tag { name, value } = line else {
            continue;
        };
        if !KEY_TAGS.contains(name) {
            continue;
        }
        let attrs = Attributes::parse(value.unwrap_or_default())
            .map_err(|e| PlaylistError::new(i + 1, e))?;
        let Some(uri) = attrs.get("URI") else {
            continue;
        };
        if !is_broker_key_uri(uri) {
            continue;
        }
        // Alibaba-style key URIs name no video: the token names it, and the
        // key request checks it.
        let Some(vid) = query_param(uri, "vid") else {
            continue;
        };
        if !out.contains(&vid) {
            out.push(vid);
        }
    }
    Ok(out)
}

/// The playlist with `token` on every broker key URI and, in a master
/// playlist, on every relative media playlist URI. Absolute media playlist
/// URIs point elsewhere and are left alone: the token is not sent away.
pub fn with_token(playlist: &Playlist<'_>, token: &str) -> Result<String, PlaylistError> {
    Ok(Template::new(playlist)?.render(token))
}

/// A playlist cut where tokens go, so serving it to a viewer is one
/// concatenation: parse once, render per request.
#[derive(Debug, Clone)]
pub struct Template {
    pieces: Vec<String>,
    /// As [`key_video_ids`].
    pub video_ids: Vec<String>,
}

/// Marks a token's place while cutting; parsing refuses NUL in playlists.
const HOLE: &str = "\0";

impl Template {
    pub fn new(playlist: &Playlist<'_>) -> Result<Self, PlaylistError> {
        let mut out = String::new();
        let mut next_uri_is_playlist = false;
        for (i, line) in playlist.lines.iter().enumerate() {
            match line {
                Line::Tag {
                    name,
                    value: Some(value),
                } if KEY_TAGS.contains(name)
                    || (playlist.kind == Kind::Master && PLAYLIST_TAGS.contains(name)) =>
                {
                    let mut attrs =
                        Attributes::parse(value).map_err(|e| PlaylistError::new(i + 1, e))?;
                    let rewritten = match attrs.get("URI") {
                        Some(uri) if KEY_TAGS.contains(name) && is_broker_key_uri(uri) => {
                            Some(set_token(uri))
                        }
                        Some(uri) if !KEY_TAGS.contains(name) && is_relative(uri) => {
                            Some(set_token(uri))
                        }
                        _ => None,
                    };
                    out.push('#');
                    out.push_str(name);
                    out.push(':');
                    match rewritten {
                        Some(uri) => {
                            attrs.set_quoted("URI", &uri);
                            out.push_str(&attrs.to_string());
                        }
                        None => out.push_str(value),
                    }
                }
                Line::Uri(uri) if next_uri_is_playlist && is_relative(uri) => {
                    out.push_str(&set_token(uri));
                }
                Line::Tag { name, value } => {
                    out.push('#');
                    out.push_str(name);
                    if let Some(v) = value {
                        out.push(':');
                        out.push_str(v);
                    }
                }
                Line::Uri(text) | Line::Other(text) => out.push_str(text),
            }
            out.push('\n');
            next_uri_is_playlist = match line {
                Line::Tag { name, .. } => {
                    *name == "EXT-X-STREAM-INF"
                        || (next_uri_is_playlist && name.starts_with("EXT-X-"))
                }
                Line::Other(_) => next_uri_is_playlist,
                Line::Uri(_) => false,
            };
        }
        Ok(Self {
            pieces: out.split(HOLE).map(str::to_owned).collect(),
            video_ids: key_video_ids(playlist)?,
        })
    }

    /// The playlist with `token` (URL-encoded) in every hole.
    pub fn render(&self, token: &str) -> String {
        let token: String = url::form_urlencoded::byte_serialize(token.as_bytes()).collect();
        let holes = self.pieces.len().saturating_sub(1);
        let size = self.pieces.iter().map(String::len).sum::<usize>() + holes * token.len();
        let mut out = String::with_capacity(size);
        for (i, piece) in self.pieces.iter().enumerate() {
            if i > 0 {
                out.push_str(&token);
            }
            out.push_str(piece);
        }
        out
    }
}

fn is_broker_key_uri(uri: &str) -> bool {
    query_param(uri, "Ciphertext").is_some()
}

fn is_relative(uri: &str) -> bool {
    !uri.contains("://") && !uri.starts_with("//")
}

fn split_uri(uri: &str) -> (&str, Option<&str>, &str) {
    let (rest, fragment) = match uri.find('#') {
        Some(at) => uri.split_at(at),
        None => (uri, ""),
    };
    match rest.split_once('?') {
        Some((base, query)) => (base, Some(query), fragment),
        None => (rest, None, fragment),
    }
}

fn query_param(uri: &str, wanted: &str) -> Option<String> {
    let (_, query, _) = split_uri(uri);
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(name, _)| name == wanted)
        .map(|(_, value)| value.into_owned())
}

/// `uri` with its token parameters replaced by `token=` and a hole.
fn set_token(uri: &str) -> String {
    let (base, query, fragment) = split_uri(uri);
    let mut pairs: Vec<String> = query
        .unwrap_or_default()
        .split('&')
        .filter(|p| {
            !p.is_empty() && !TOKEN_PARAMS.contains(&p.split('=').next().unwrap_or_default())
        })
        .map(str::to_owned)
        .collect();
    pairs.push(format!("token={HOLE}"));
    format!("{base}?{}{fragment}", pairs.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_key_uris_get_the_token_and_segments_do_not() {
        let text = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n\
            #EXT-X-KEY:METHOD=AES-128,URI=\"https://b/v1/hls/key?vid=film%201&Ciphertext=E0&token=old\",IV=0x01\n\
            #EXTINF:2,\ns0.ts\n\
            #EXT-X-KEY:METHOD=AES-128,URI=\"https://other/key.bin\",IV=0x02\n\
            #EXTINF:2,\ns1.ts?x=1\n#EXT-X-ENDLIST\n";
        let p = Playlist::parse(text).unwrap();
        assert_eq!(key_video_ids(&p).unwrap(), ["film 1"]);
        let out = with_token(&p, "T.k-n").unwrap();
        assert_eq!(
            out,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n\
            #EXT-X-KEY:METHOD=AES-128,URI=\"https://b/v1/hls/key?vid=film%201&Ciphertext=E0&token=T.k-n\",IV=0x01\n\
            #EXTINF:2,\ns0.ts\n\
            #EXT-X-KEY:METHOD=AES-128,URI=\"https://other/key.bin\",IV=0x02\n\
            #EXTINF:2,\ns1.ts?x=1\n#EXT-X-ENDLIST\n"
        );
    }

    #[test]
    fn master_playlist_uris_get_the_token() {
        let text = "#EXTM3U\n#EXT-X-SESSION-KEY:METHOD=AES-128,URI=\"https://b/?Ciphertext=E&vid=v&MtsHlsUriToken=x\"\n\
            #EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"en\",URI=\"audio/a.m3u8\"\n\
            #EXT-X-STREAM-INF:BANDWIDTH=1,AUDIO=\"a\"\nv0/i.m3u8\n\
            #EXT-X-STREAM-INF:BANDWIDTH=2\nhttps://cdn.example/v1/i.m3u8\n";
        let p = Playlist::parse(text).unwrap();
        assert_eq!(key_video_ids(&p).unwrap(), ["v"]);
        let out = with_token(&p, "TOK").unwrap();
        assert_eq!(
            out,
            "#EXTM3U\n#EXT-X-SESSION-KEY:METHOD=AES-128,URI=\"https://b/?Ciphertext=E&vid=v&token=TOK\"\n\
            #EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"en\",URI=\"audio/a.m3u8?token=TOK\"\n\
            #EXT-X-STREAM-INF:BANDWIDTH=1,AUDIO=\"a\"\nv0/i.m3u8?token=TOK\n\
            #EXT-X-STREAM-INF:BANDWIDTH=2\nhttps://cdn.example/v1/i.m3u8\n"
        );
    }

    #[test]
    fn broken_key_tags_are_errors() {
        let p =
            Playlist::parse("#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI=\"open\n#EXTINF:1,\na.ts\n")
                .unwrap();
        assert!(key_video_ids(&p).is_err());
        assert!(with_token(&p, "t").is_err());
        // Alibaba style: no vid, still gets the token.
        let p = Playlist::parse(
            "#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI=\"https://b/?Ciphertext=E\"\n#EXTINF:1,\na.ts\n",
        )
        .unwrap();
        assert!(key_video_ids(&p).unwrap().is_empty());
        assert!(with_token(&p, "T")
            .unwrap()
            .contains("URI=\"https://b/?Ciphertext=E&token=T\""));
    }
}
