//! The broker's per-viewer playlist rewriting: key URIs (and, in a master
//! playlist, the URIs of its media playlists) get the viewer's playback
//! token; segment URIs stay untouched so any CDN can cache the segments.

use url::Url;

use crate::playlist::{Attributes, Kind, Line, Playlist, PlaylistError};

/// Query parameters that carry a playback token; replaced, never repeated.
const TOKEN_PARAMS: &[&str] = &["token", "MtsHlsUriToken"];

/// Tags whose URI attribute names a key.
pub(crate) const KEY_TAGS: &[&str] = &["EXT-X-KEY", "EXT-X-SESSION-KEY"];
/// Master tags whose URI attribute names a media playlist.
const PLAYLIST_TAGS: &[&str] = &["EXT-X-MEDIA", "EXT-X-I-FRAME-STREAM-INF"];

/// The video ids (`vid`) of the broker key URIs (those with a `Ciphertext`)
/// the playlist names, each once. Key URIs without a `vid` add none.
pub fn key_video_ids(playlist: &Playlist<'_>) -> Result<Vec<String>, PlaylistError> {
    let mut out: Vec<String> = Vec::new();
    for_each_key_uri(playlist, |uri| {
        if !is_broker_key_uri(uri) {
            return;
        }
        // Alibaba-style key URIs name no video: the token names it, and the
        // key request checks it.
        let Some(vid) = query_param(uri, "vid") else {
            return;
        };
        if !out.contains(&vid) {
            out.push(vid);
        }
    })?;
    Ok(out)
}

/// Calls `f` with the URI of every key tag (`EXT-X-KEY`, `EXT-X-SESSION-KEY`).
pub(crate) fn for_each_key_uri(
    playlist: &Playlist<'_>,
    mut f: impl FnMut(&str),
) -> Result<(), PlaylistError> {
    for (i, line) in playlist.lines.iter().enumerate() {
        let Line::Tag { name, value } = line else {
            continue;
        };
        if !KEY_TAGS.contains(name) {
            continue;
        }
        let attrs = Attributes::parse(value.unwrap_or_default())
            .map_err(|e| PlaylistError::new(i + 1, e))?;
        if let Some(uri) = attrs.get("URI") {
            f(uri);
        }
    }
    Ok(())
}

/// The broker's own key endpoints: the only places a viewer's token is sent.
/// URIs are judged as a browser resolves them (WHATWG URL rules, against the
/// playlist's own address), so `//host/...`, `HTTPS://Host:443/...` and the
/// like are recognised for what they are.
#[derive(Debug, Clone)]
pub struct TokenTargets {
    /// Absolute endpoints (scheme, host, port and path).
    endpoints: Vec<Url>,
    /// Paths that are key endpoints on the playlist's own host.
    local_paths: Vec<String>,
}

/// Stands for the playlist's own origin when resolving relative URIs: a URI
/// that keeps it stays on the host that served the playlist.
const PLAYLIST_ORIGIN: &str = "https://playlist.invalid";
const PLAYLIST_HOST: &str = "playlist.invalid";

/// The broker's key endpoint path, when a base names no path.
pub const KEY_PATH: &str = "/v1/hls/key";
/// The broker's raw-key-by-KID endpoint, for CENC `identity` key tags.
pub const CLEAR_KEY_PATH: &str = "/v1/clearkey/key";

/// How a CENC playlist's key tags are served. Shaka Packager writes
/// `METHOD=SAMPLE-AES` (`cbcs`) or `SAMPLE-AES-CTR` (`cenc`) tags with
/// `KEYFORMAT="identity"` and the KID in a `data:` URI. Players disagree on
/// what they need, and hls.js fails on `cbcs` while an `identity` tag is
/// present, so each gets its own variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CencKeyTags {
    /// `KEYFORMAT="identity"` with the broker's raw-key endpoint for the
    /// KID, token included: Shaka Player and Safari fetch the key there.
    #[default]
    Identity,
    /// `KEYFORMAT="org.w3.clearkey"` with the KID `data:` URI kept: hls.js
    /// asks the licence server its page configures.
    ClearKey,
}

const DATA_URI_BASE64: &str = "data:text/plain;base64,";
const IDENTITY_FORMAT: &str = "identity";
const CLEAR_KEY_FORMAT: &str = "org.w3.clearkey";

/// The KID of a CENC key tag as Shaka Packager writes it (sample
/// encryption, an `identity` or Clear Key format, the KID base64 in a
/// `data:` URI); `None` for any other tag.
fn cenc_kid(attrs: &Attributes<'_>) -> Option<[u8; 16]> {
    use base64::Engine as _;
    let sample_aes = matches!(
        attrs.get("METHOD"),
        Some("SAMPLE-AES" | "SAMPLE-AES-CTR" | "SAMPLE-AES-CENC")
    );
    let format = attrs.get("KEYFORMAT");
    if !sample_aes || !matches!(format, Some(IDENTITY_FORMAT | CLEAR_KEY_FORMAT)) {
        return None;
    }
    let encoded = attrs.get("URI")?.strip_prefix(DATA_URI_BASE64)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    bytes.try_into().ok()
}

impl TokenTargets {
    /// From key URI bases as `vodkms hls encrypt --key-uri-base` takes them:
    /// a broker URL (its `/v1/hls/key` is the endpoint) or the endpoint itself.
    /// Relative key URIs reach the playlist's own host: its `/v1/hls/key`
    /// and `/` (Alibaba-style) and the bases' paths count.
    pub fn new(bases: &[String]) -> Result<Self, String> {
        let Self {
            mut endpoints,
            mut local_paths,
        } = Self::default();
        for base in bases {
            let mut url = Url::parse(base.trim())
                .map_err(|e| format!("{base:?} is not an absolute URL: {e}"))?;
            if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
                return Err(format!("{base:?} is not an http(s) URL"));
            }
            if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
                return Err(format!("{base:?} must have no query, fragment or user"));
            }
            if url.path() == "/" && !base.trim().ends_with('/') {
                url.set_path(KEY_PATH);
            }
            if !local_paths.iter().any(|p| p == url.path()) {
                local_paths.push(url.path().to_owned());
            }
            endpoints.push(url);
        }
        Ok(Self {
            endpoints,
            local_paths,
        })
    }

    /// `scheme://host[:port]` of the first key URI base, if any: the
    /// broker's public address for URLs it writes into manifests.
    pub fn first_origin(&self) -> Option<String> {
        self.endpoints
            .first()
            .map(|u| u.origin().ascii_serialization())
    }

    /// The `identity` key URI for a KID, a hole where the token goes: on
    /// the first key URI base's origin, or the playlist's own host.
    fn clear_key_uri(&self, kid: &[u8; 16]) -> String {
        format!(
            "{}{CLEAR_KEY_PATH}?kid={}&token={HOLE}",
            self.first_origin().unwrap_or_default(),
            crate::cipher::hex(kid)
        )
    }

    /// Where a URI of the playlist served at `playlist_path` really goes, or
    /// `None` if it is no URL a player follows.
    fn resolve(playlist_path: &str, uri: &str) -> Option<Url> {
        // Browsers read `\` as `/` in http(s) URLs, other parsers do not:
        // never guess which one the player is.
        if uri.contains('\\') {
            return None;
        }
        let base = Url::parse(PLAYLIST_ORIGIN).ok()?.join(playlist_path).ok()?;
        base.join(uri).ok()
    }

    /// Still on the playlist's origin (`.invalid` names no real host).
    fn same_host(url: &Url) -> bool {
        url.scheme() == "https" && url.host_str() == Some(PLAYLIST_HOST) && url.port().is_none()
    }

    /// A key URI that may carry the viewer's token.
    pub fn key_uri(&self, playlist_path: &str, uri: &str) -> bool {
        let Some(url) = Self::resolve(playlist_path, uri) else {
            return false;
        };
        if Self::same_host(&url) {
            return self.local_paths.iter().any(|p| p == url.path());
        }
        self.endpoints
            .iter()
            .any(|e| e.origin() == url.origin() && e.path() == url.path())
    }

    /// A media playlist URI (in a master playlist) that may carry the token:
    /// only one served by the same host as the master.
    pub fn playlist_uri(&self, playlist_path: &str, uri: &str) -> bool {
        Self::local_path(playlist_path, uri).is_some()
    }

    /// The path a same-host URI resolves to (percent-encoded), if it is one.
    pub fn local_path(playlist_path: &str, uri: &str) -> Option<String> {
        Self::resolve(playlist_path, uri)
            .filter(Self::same_host)
            .map(|url| url.path().to_owned())
    }
}

impl Default for TokenTargets {
    /// No absolute endpoint: only key URIs relative to the playlist's host.
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            local_paths: vec![KEY_PATH.to_owned(), "/".to_owned()],
        }
    }
}

/// The decoded segments of a percent-encoded URL path; `None` if one is not
/// UTF-8.
pub fn path_segments(path: &str) -> Option<Vec<String>> {
    path.trim_start_matches('/')
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .ok()
                .map(|c| c.into_owned())
        })
        .collect()
}

/// The playlist with `token` on every key URI of the broker's (`targets`)
/// and, in a master playlist, on every media playlist URI of the same host.
/// URIs that point elsewhere are left alone: the token is not sent away.
pub fn with_token(
    playlist: &Playlist<'_>,
    targets: &TokenTargets,
    playlist_path: &str,
    token: &str,
) -> Result<String, PlaylistError> {
    Ok(Template::new(playlist, targets, playlist_path, CencKeyTags::Identity)?.render(token))
}

/// A playlist cut where tokens go, so serving it to a viewer is one
/// concatenation: parse once, render per request.
#[derive(Debug, Clone)]
pub struct Template {
    pieces: Vec<String>,
    /// As [`key_video_ids`].
    pub video_ids: Vec<String>,
    /// The KIDs of its CENC key tags, each once.
    pub kids: Vec<[u8; 16]>,
    /// In a master playlist: the paths (percent-encoded) of its media
    /// playlists on the same host, whose keys its viewers will ask for.
    pub media_playlists: Vec<String>,
}

/// Marks a token's place while cutting; parsing refuses NUL in playlists.
const HOLE: &str = "\0";

impl Template {
    /// `playlist_path`: the URL path the playlist is served at, against
    /// which its relative URIs resolve.
    pub fn new(
        playlist: &Playlist<'_>,
        targets: &TokenTargets,
        playlist_path: &str,
        cenc: CencKeyTags,
    ) -> Result<Self, PlaylistError> {
        let mut out = String::new();
        let mut media_playlists = Vec::new();
        let mut kids: Vec<[u8; 16]> = Vec::new();
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
                    let is_key = KEY_TAGS.contains(name);
                    let kid = if is_key { cenc_kid(&attrs) } else { None };
                    let uri = attrs.get("URI").map(str::to_owned);
                    let changed = match (uri, kid) {
                        (_, Some(kid)) => {
                            if !kids.contains(&kid) {
                                kids.push(kid);
                            }
                            match cenc {
                                CencKeyTags::Identity => {
                                    attrs.set_quoted("URI", &targets.clear_key_uri(&kid));
                                    attrs.set_quoted("KEYFORMAT", IDENTITY_FORMAT);
                                }
                                CencKeyTags::ClearKey => {
                                    attrs.set_quoted("KEYFORMAT", CLEAR_KEY_FORMAT);
                                    attrs.set_quoted("KEYFORMATVERSIONS", "1");
                                }
                            }
                            true
                        }
                        (Some(uri), None)
                            if is_key
                                && is_broker_key_uri(&uri)
                                && targets.key_uri(playlist_path, &uri) =>
                        {
                            attrs.set_quoted("URI", &set_token(&uri));
                            true
                        }
                        (Some(uri), None)
                            if !is_key && targets.playlist_uri(playlist_path, &uri) =>
                        {
                            media_playlists.extend(TokenTargets::local_path(playlist_path, &uri));
                            attrs.set_quoted("URI", &set_token(&uri));
                            true
                        }
                        _ => false,
                    };
                    out.push('#');
                    out.push_str(name);
                    out.push(':');
                    if changed {
                        out.push_str(&attrs.to_string());
                    } else {
                        out.push_str(value);
                    }
                }
                Line::Uri(uri)
                    if next_uri_is_playlist && targets.playlist_uri(playlist_path, uri) =>
                {
                    media_playlists.extend(TokenTargets::local_path(playlist_path, uri));
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
            kids,
            media_playlists,
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

pub(crate) fn split_uri(uri: &str) -> (&str, Option<&str>, &str) {
    let (rest, fragment) = match uri.find('#') {
        Some(at) => uri.split_at(at),
        None => (uri, ""),
    };
    match rest.split_once('?') {
        Some((base, query)) => (base, Some(query), fragment),
        None => (rest, None, fragment),
    }
}

pub(crate) fn query_param(uri: &str, wanted: &str) -> Option<String> {
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

/// A playlist with `prefix` put before each URI line (segments and child
/// playlists; not the URIs inside tags): how a playlist is republished
/// under another path.
pub fn prefix_uris(text: &str, prefix: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for line in text.lines() {
        if !line.is_empty() && !line.starts_with('#') {
            out.push_str(prefix);
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_uri_lines_only() {
        let text =
            "#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI=\"k\"\n#EXTINF:4,\nseg0.ts\n\n#EXT-X-ENDLIST";
        assert_eq!(
            prefix_uris(text, "/p/"),
            "#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI=\"k\"\n#EXTINF:4,\n/p/seg0.ts\n\n#EXT-X-ENDLIST\n"
        );
    }

    const AT: &str = "/v1/hls/playlist/p/index.m3u8";

    fn targets(bases: &[&str]) -> TokenTargets {
        TokenTargets::new(&bases.iter().map(|b| b.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn tokens_go_only_to_the_brokers_key_endpoints() {
        let t = targets(&["https://keys.example", "https://decrypt.example/"]);
        for (uri, ok) in [
            ("https://keys.example/v1/hls/key?Ciphertext=E", true),
            ("HTTPS://KEYS.example:443/v1/hls/key?Ciphertext=E", true),
            ("https://keys.example/v1/hls/%6Bey?Ciphertext=E", false),
            ("https://decrypt.example/?Ciphertext=E", true),
            ("https://keys.example:8443/v1/hls/key?Ciphertext=E", false),
            ("http://keys.example/v1/hls/key?Ciphertext=E", false),
            ("https://keys.example.evil/v1/hls/key?Ciphertext=E", false),
            (
                "https://keys.example@evil.example/v1/hls/key?Ciphertext=E",
                false,
            ),
            ("https://evil.example/v1/hls/key?Ciphertext=E", false),
            ("https://keys.example/other?Ciphertext=E", false),
            // Relative: the playlist's own host.
            ("/v1/hls/key?Ciphertext=E", true),
            ("../../key?Ciphertext=E", true),
            ("../../../key?Ciphertext=E", false),
            ("/?Ciphertext=E", true),
            // Scheme-relative and backslashed: another host, whatever they look like.
            ("//evil.example/v1/hls/key?Ciphertext=E", false),
            ("\\\\evil.example/v1/hls/key?Ciphertext=E", false),
            ("/\\evil.example/v1/hls/key?Ciphertext=E", false),
            ("http:\\\\evil.example/v1/hls/key?Ciphertext=E", false),
            ("https:evil.example/v1/hls/key?Ciphertext=E", false),
            ("\t//evil.example/v1/hls/key?Ciphertext=E", false),
        ] {
            assert_eq!(t.key_uri(AT, uri), ok, "{uri}");
        }
        for (uri, ok) in [
            ("lo/index.m3u8", true),
            ("/v1/hls/playlist/x.m3u8", true),
            ("//cdn.example/i.m3u8", false),
            ("\\\\cdn.example/i.m3u8", false),
            ("https://cdn.example/i.m3u8", false),
        ] {
            assert_eq!(t.playlist_uri(AT, uri), ok, "{uri}");
        }
        assert!(TokenTargets::new(&["keys.example".into()]).is_err());
        assert!(TokenTargets::new(&["ftp://keys.example".into()]).is_err());
    }

    #[test]
    fn media_key_uris_get_the_token_and_segments_do_not() {
        let text = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n\
            #EXT-X-KEY:METHOD=AES-128,URI=\"https://b/v1/hls/key?vid=film%201&Ciphertext=E0&token=old\",IV=0x01\n\
            #EXTINF:2,\ns0.ts\n\
            #EXT-X-KEY:METHOD=AES-128,URI=\"https://other/key.bin\",IV=0x02\n\
            #EXTINF:2,\ns1.ts?x=1\n#EXT-X-ENDLIST\n";
        let p = Playlist::parse(text).unwrap();
        assert_eq!(key_video_ids(&p).unwrap(), ["film 1"]);
        let out = with_token(&p, &targets(&["https://b"]), AT, "T.k-n").unwrap();
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
        let out = with_token(&p, &targets(&["https://b/"]), AT, "TOK").unwrap();
        assert_eq!(
            out,
            "#EXTM3U\n#EXT-X-SESSION-KEY:METHOD=AES-128,URI=\"https://b/?Ciphertext=E&vid=v&token=TOK\"\n\
            #EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"en\",URI=\"audio/a.m3u8?token=TOK\"\n\
            #EXT-X-STREAM-INF:BANDWIDTH=1,AUDIO=\"a\"\nv0/i.m3u8?token=TOK\n\
            #EXT-X-STREAM-INF:BANDWIDTH=2\nhttps://cdn.example/v1/i.m3u8\n"
        );
    }

    #[test]
    fn cenc_key_tags_per_player() {
        let text = "#EXTM3U\n#EXT-X-MAP:URI=\"v/init.mp4\"\n\
            #EXT-X-KEY:METHOD=SAMPLE-AES,URI=\"data:text/plain;base64,ABEiM0RVZneImaq7zN3u/w==\",KEYFORMAT=\"identity\"\n\
            #EXT-X-KEY:METHOD=SAMPLE-AES-CTR,URI=\"data:text/plain;base64,ABEiM0RVZneImaq7zN3u/w==\",KEYFORMAT=\"org.w3.clearkey\"\n\
            #EXT-X-KEY:METHOD=AES-128,URI=\"https://b/v1/hls/key?vid=v\",KEYFORMAT=\"identity\"\n\
            #EXT-X-KEY:METHOD=SAMPLE-AES,URI=\"data:text/plain;base64,AAEC\",KEYFORMAT=\"identity\"\n\
            #EXT-X-KEY:METHOD=AES-128,URI=\"data:text/plain;base64,ABEiM0RVZneImaq7zN3u/w==\"\n\
            #EXTINF:4,\nv/1.m4s\n";
        let p = Playlist::parse(text).unwrap();
        let kid = "00112233445566778899aabbccddeeff";
        let t = targets(&["https://b"]);

        let shaka = Template::new(&p, &t, AT, CencKeyTags::Identity).unwrap();
        assert_eq!(shaka.kids.len(), 1);
        assert_eq!(crate::cipher::hex(&shaka.kids[0]), kid);
        let out = shaka.render("T");
        let identity =
            format!("URI=\"https://b/v1/clearkey/key?kid={kid}&token=T\",KEYFORMAT=\"identity\"\n");
        assert_eq!(out.matches(&identity).count(), 2, "{out}");
        assert!(out.contains("METHOD=SAMPLE-AES-CTR,URI=\"https://b/v1/clearkey/key"));
        assert!(!out.contains("org.w3.clearkey"));

        let hls_js = Template::new(&p, &t, AT, CencKeyTags::ClearKey).unwrap();
        let out = hls_js.render("T");
        assert!(!out.contains("token=T"), "{out}");
        let clear_key = "URI=\"data:text/plain;base64,ABEiM0RVZneImaq7zN3u/w==\",\
            KEYFORMAT=\"org.w3.clearkey\",KEYFORMATVERSIONS=\"1\"\n";
        assert_eq!(out.matches(clear_key).count(), 2, "{out}");

        for out in [shaka.render("T"), hls_js.render("T")] {
            // Not CENC (an AES-128 key endpoint, a short data: URI, an
            // AES-128 key given inline): unchanged.
            assert!(out.contains("URI=\"https://b/v1/hls/key?vid=v\",KEYFORMAT=\"identity\"\n"));
            assert!(out.contains("URI=\"data:text/plain;base64,AAEC\",KEYFORMAT=\"identity\"\n"));
            assert!(out.contains(
                "METHOD=AES-128,URI=\"data:text/plain;base64,ABEiM0RVZneImaq7zN3u/w==\"\n"
            ));
        }
        // Without a base the key URI is on the playlist's own host.
        let local = Template::new(&p, &TokenTargets::default(), AT, CencKeyTags::Identity).unwrap();
        assert!(local
            .render("T")
            .contains(&format!("URI=\"/v1/clearkey/key?kid={kid}&token=T\"")));
    }

    #[test]
    fn broken_key_tags_are_errors() {
        let p =
            Playlist::parse("#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI=\"open\n#EXTINF:1,\na.ts\n")
                .unwrap();
        assert!(key_video_ids(&p).is_err());
        assert!(with_token(&p, &targets(&[]), AT, "t").is_err());
        // Alibaba style: no vid, still gets the token.
        let p = Playlist::parse(
            "#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI=\"https://b/?Ciphertext=E\"\n#EXTINF:1,\na.ts\n",
        )
        .unwrap();
        assert!(key_video_ids(&p).unwrap().is_empty());
        assert!(with_token(&p, &targets(&["https://b/"]), AT, "T")
            .unwrap()
            .contains("URI=\"https://b/?Ciphertext=E&token=T\""));
    }
}
