//! Finding and replacing the EDKs in a playlist's broker key URIs
//! (`…?vid=V&Ciphertext=EDK`), for `vodkms hls rewrap`: after a master key
//! rotation every published EDK is re-sealed under the current version and
//! the playlist rewritten with the new one, everything else left as it was.

use std::collections::HashMap;

use crate::playlist::{Attributes, Line, Playlist, PlaylistError};
use crate::rewrite::{for_each_key_uri, query_param, split_uri, KEY_TAGS};

/// One broker key URI's video and EDK (as written).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyRef {
    pub video_id: String,
    pub ciphertext_blob: String,
}

/// What a playlist's key tags hold.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PlaylistKeys {
    /// Broker key URIs with a video id, each once, in order.
    pub keys: Vec<KeyRef>,
    /// Broker key URIs without `vid` (Alibaba style: the token names the
    /// video), which cannot be re-sealed without knowing it.
    pub without_video: usize,
}

/// The broker key URIs of a playlist.
pub fn playlist_keys(text: &str) -> Result<PlaylistKeys, PlaylistError> {
    let playlist = Playlist::parse(text)?;
    let mut out = PlaylistKeys::default();
    for_each_key_uri(&playlist, |uri| {
        if !quotable(uri) {
            return;
        }
        let Some(blob) = query_param(uri, "Ciphertext") else {
            return;
        };
        match query_param(uri, "vid") {
            Some(video_id) => {
                let key = KeyRef {
                    video_id,
                    ciphertext_blob: blob,
                };
                if !out.keys.contains(&key) {
                    out.keys.push(key);
                }
            }
            None => out.without_video += 1,
        }
    })?;
    Ok(out)
}

/// The playlist with each key URI's EDK replaced as `new_blobs` says (keyed
/// by the old EDK as written), and how many URIs changed. Other parameters,
/// their order and every other line stay byte for byte.
pub fn replace_key_blobs(
    text: &str,
    new_blobs: &HashMap<String, String>,
) -> Result<(String, usize), PlaylistError> {
    let mut playlist = Playlist::parse(text)?;
    let mut changed = 0;
    let mut rewritten: Vec<(usize, String)> = Vec::new();
    for (i, line) in playlist.lines.iter().enumerate() {
        let Line::Tag { name, value } = line else {
            continue;
        };
        if !KEY_TAGS.contains(name) {
            continue;
        }
        let mut attrs = Attributes::parse(value.unwrap_or_default())
            .map_err(|e| PlaylistError::new(i + 1, e))?;
        let Some(uri) = attrs.get("URI").filter(|u| quotable(u)) else {
            continue;
        };
        let Some(new_uri) = replace_blob_param(uri, new_blobs) else {
            continue;
        };
        attrs.set_quoted("URI", &new_uri);
        rewritten.push((i, attrs.to_string()));
        changed += 1;
    }
    for (i, value) in &rewritten {
        if let Line::Tag { value: v, .. } = &mut playlist.lines[*i] {
            *v = Some(value.as_str());
        }
    }
    Ok((playlist.render(), changed))
}

/// A URI that can be written back as a quoted string: an unquoted value
/// holding `"` is no key URI any player reads, and is left alone.
fn quotable(uri: &str) -> bool {
    !uri.contains('"')
}

/// `uri` with its `Ciphertext` value swapped for the mapped one, if any.
fn replace_blob_param(uri: &str, new_blobs: &HashMap<String, String>) -> Option<String> {
    let (base, query, fragment) = split_uri(uri);
    let query = query?;
    let mut replaced = false;
    // Only the first `Ciphertext` counts, as for the broker reading it.
    let mut first = true;
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| {
            // Names and values as the broker reads them: form-decoded.
            let (name, value) = url::form_urlencoded::parse(pair.as_bytes())
                .next()
                .map(|(n, v)| (n.into_owned(), v.into_owned()))
                .unwrap_or_default();
            if name != "Ciphertext" || !first {
                return pair.to_owned();
            }
            first = false;
            match new_blobs.get(&value) {
                // New EDKs are base64url: nothing in them needs escaping.
                Some(new) => {
                    replaced = true;
                    format!("Ciphertext={new}")
                }
                None => pair.to_owned(),
            }
        })
        .collect();
    replaced.then(|| format!("{base}?{}{fragment}", pairs.join("&")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEDIA: &str = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n\
        #EXT-X-KEY:METHOD=AES-128,URI=\"https://b.example/v1/hls/key?vid=film&Ciphertext=OLD1\",IV=0x01\n\
        #EXTINF:1.0,\nseg0.ts\n\
        #EXT-X-KEY:METHOD=AES-128,URI=\"https://b.example/v1/hls/key?vid=film&Ciphertext=OLD2&x=1\"\n\
        #EXTINF:1.0,\nseg1.ts\n\
        #EXT-X-KEY:METHOD=AES-128,URI=\"https://b.example/v1/hls/key?vid=film&Ciphertext=OLD1\",IV=0x02\n\
        #EXTINF:1.0,\nseg2.ts\n\
        #EXT-X-KEY:METHOD=AES-128,URI=\"https://a.example/?Ciphertext=ALI&MtsHlsUriToken=t\"\n\
        #EXTINF:1.0,\nseg3.ts\n#EXT-X-ENDLIST\n";

    #[test]
    fn finds_each_broker_key_once() {
        let keys = playlist_keys(MEDIA).unwrap();
        let blobs: Vec<&str> = keys
            .keys
            .iter()
            .map(|k| k.ciphertext_blob.as_str())
            .collect();
        assert_eq!(blobs, ["OLD1", "OLD2"]);
        assert!(keys.keys.iter().all(|k| k.video_id == "film"));
        assert_eq!(keys.without_video, 1);
    }

    #[test]
    fn replaces_only_the_edk() {
        let map: HashMap<String, String> = [("OLD1".into(), "NEW-1_x".into())].into();
        let (text, changed) = replace_key_blobs(MEDIA, &map).unwrap();
        assert_eq!(changed, 2);
        assert_eq!(text, MEDIA.replace("Ciphertext=OLD1", "Ciphertext=NEW-1_x"));
        // Idempotent: replacing again finds nothing to change.
        let (again, changed) = replace_key_blobs(&text, &map).unwrap();
        assert_eq!((again.as_str(), changed), (text.as_str(), 0));
    }

    #[test]
    fn a_percent_encoded_edk_is_found_by_its_value() {
        let text = MEDIA.replace("Ciphertext=OLD2", "Ciphertext=a%2Bb%3D");
        let keys = playlist_keys(&text).unwrap();
        assert_eq!(keys.keys[1].ciphertext_blob, "a+b=");
        let map: HashMap<String, String> = [("a+b=".into(), "NEW".into())].into();
        let (out, changed) = replace_key_blobs(&text, &map).unwrap();
        assert_eq!(changed, 1);
        assert!(out.contains("Ciphertext=NEW&x=1"));
    }

    #[test]
    fn not_a_playlist_is_an_error() {
        assert!(playlist_keys("hello").is_err());
        assert!(replace_key_blobs("hello", &HashMap::new()).is_err());
    }
}
