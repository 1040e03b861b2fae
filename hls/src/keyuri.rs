//! The key URIs vodkms writes into playlists: the broker's key endpoint with
//! the video id and the EDK (`…/v1/hls/key?vid=V&Ciphertext=EDK`). Absolute,
//! because relative key URIs are resolved wrongly by several players after
//! redirects.

use url::Url;

/// Where the broker answers key requests when a base URL names no path.
pub const KEY_PATH: &str = "/v1/hls/key";

/// A checked `--key-uri-base`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUriBase(Url);

impl KeyUriBase {
    /// `https://broker.example` (the key endpoint is then
    /// `/v1/hls/key`) or the endpoint itself, `https://broker.example/v1/hls/key`
    /// or an Alibaba-style `https://decrypt.example/`... with a path: taken as is.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut url = Url::parse(text.trim())
            .map_err(|e| format!("the key URI base {text:?} is not an absolute URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "the key URI base {text:?} must be http:// or https://"
            ));
        }
        if url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
            return Err(format!(
                "the key URI base {text:?} must not carry a #fragment or credentials"
            ));
        }
        if url.path() == "/" && !text.trim().ends_with('/') {
            url.set_path(KEY_PATH);
        }
        Ok(Self(url))
    }

    /// The key URI of one data key of one video.
    pub fn key_uri(&self, video_id: &str, ciphertext_blob: &str) -> String {
        let mut url = self.0.clone();
        url.query_pairs_mut()
            .append_pair("vid", video_id)
            .append_pair("Ciphertext", ciphertext_blob);
        url.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bases() {
        let k = |base: &str| KeyUriBase::parse(base).unwrap().key_uri("film 1", "AbC-_9");
        assert_eq!(
            k("http://127.0.0.1:8300"),
            "http://127.0.0.1:8300/v1/hls/key?vid=film+1&Ciphertext=AbC-_9"
        );
        assert_eq!(
            k("https://b.example/v1/hls/key"),
            "https://b.example/v1/hls/key?vid=film+1&Ciphertext=AbC-_9"
        );
        // A trailing slash means "this path": Alibaba's `/?Ciphertext=`.
        assert_eq!(
            k("https://d.example/"),
            "https://d.example/?vid=film+1&Ciphertext=AbC-_9"
        );
        assert_eq!(
            k("https://b.example/k?tenant=a"),
            "https://b.example/k?tenant=a&vid=film+1&Ciphertext=AbC-_9"
        );
        for bad in [
            "",
            "/v1/hls/key",
            "ftp://x/",
            "http://u:p@x/",
            "http://x/#f",
        ] {
            assert!(KeyUriBase::parse(bad).is_err(), "{bad}");
        }
    }
}
