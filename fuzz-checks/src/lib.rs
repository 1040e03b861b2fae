//! What each fuzz target asserts, as plain functions of the input bytes.
//!
//! cargo-fuzz drives them under nightly (`fuzz/`, `scripts/fuzz`); the
//! replay test runs every committed seed (`fuzz/seeds/TARGET/`) through them
//! on stable, in every CI run. A function returns for inputs it does not
//! apply to and panics when a property breaks: that is how libFuzzer and the
//! test harness see a failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::IpAddr;

mod reference;

/// A target's checks: returns, or panics on a broken property.
pub type Check = fn(&[u8]);

/// Every target, by the name of its seed folder and its fuzz binary.
pub const TARGETS: &[(&str, Check)] = &[
    ("audit_export_line", audit_export_line),
    ("audit_key_text", audit_key_text),
    ("blob_text", blob_text),
    ("cenc_segment", cenc_segment),
    ("clear_key_request", clear_key_request),
    ("cloud_signatures", cloud_signatures),
    ("config_file", config_file),
    ("device_cookie", device_cookie),
    ("encryption_context_text", encryption_context_text),
    ("forwarded_address", forwarded_address),
    ("key_query", key_query),
    ("page_origin", page_origin),
    ("playback_token", playback_token),
    ("playlist_rewrap", playlist_rewrap),
    ("playlist_tokens", playlist_tokens),
    ("url_path", url_path),
];

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The CiphertextBlob text form, as it arrives in key URIs and API bodies,
/// and its decryption: parsing never panics, a parsed blob's parts add up to
/// its bytes and print back the same, no input opens under a master key it
/// was not sealed with, and what is sealed under the parsed header opens.
pub fn blob_text(data: &[u8]) {
    use kms::crypto::{
        Blob, BlobError, EncryptionContext, Envelope, Key256, MasterKey, SecretBytes,
    };
    use rand::SeedableRng;
    let Some(text) = text(data) else { return };
    let Ok(blob) = Blob::from_text(text) else {
        return;
    };
    let parts = blob.header_bytes().len() + blob.nonce().len() + blob.sealed().len();
    assert_eq!(parts, blob.as_bytes().len());
    assert_eq!(Blob::from_text(&blob.to_text()).as_ref(), Ok(&blob));
    // A key the fuzzer cannot know: opening would be a forgery.
    let key = MasterKey::new(Key256::from_bytes([0x5a; 32]));
    let context: EncryptionContext =
        [("VideoId".to_owned(), text.chars().take(8).collect())].into();
    assert_eq!(
        blob.open(&key, &context).err(),
        Some(BlobError::AuthenticationFailed)
    );
    let plaintext = SecretBytes::new(blob.nonce().to_vec());
    let mut rng = rand::rngs::StdRng::seed_from_u64(data.len() as u64);
    let sealed = Blob::seal(&key, blob.header, &plaintext, &context, &mut rng).unwrap();
    let opened = sealed.open(&key, &context).unwrap();
    assert_eq!(opened.expose_secret(), plaintext.expose_secret());
    assert!(sealed.open(&key, &EncryptionContext::new()).is_err());
}

/// EncryptionContext as Python prints a dict (what aliyun-python-sdk-kms
/// sends when handed one): parsing never panics, and what it reads, printed
/// back as Python would (repr of str), reads the same.
pub fn encryption_context_text(data: &[u8]) {
    let Some(text) = text(data) else { return };
    if let Some(ctx) = kms_api::context::parse_python_dict(text) {
        let printed: Vec<String> = ctx
            .iter()
            .map(|(k, v)| format!("{}: {}", reference::py_repr(k), reference::py_repr(v)))
            .collect();
        let again = kms_api::context::parse_python_dict(&format!("{{{}}}", printed.join(", ")));
        assert_eq!(again, Some(ctx));
    }
}

fn token_keys() -> broker::token::TokenKeys {
    broker::token::TokenKeys::new(
        Some(foundation::SecretBytes::new(vec![7u8; 32])),
        None,
        60,
        86_400,
    )
    .unwrap()
}

/// Playback tokens from query strings, headers and cookies: verified or
/// refused, never a panic, and never accepted without the secret.
pub fn playback_token(data: &[u8]) {
    let Some(token) = text(data) else { return };
    assert!(token_keys().verify(token, 1_800_000_000).is_err());
}

/// Device cookies as a browser (or an attacker) sends them back: no input
/// forges one for this account.
pub fn device_cookie(data: &[u8]) {
    let Some(cookie) = text(data) else { return };
    assert!(!token_keys().device_known("vera", cookie, 1_800_000_000));
}

/// X-Forwarded-For as an attacker writes it: the caller found is always the
/// peer or an address from the header, and a peer outside the trusted
/// ranges is never overridden.
pub fn forwarded_address(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let trusted = broker::http::parse_trusted_proxies("10.0.0.0/8,192.0.2.10,::1").unwrap();
    let peer: IpAddr = if selector & 1 == 0 {
        "10.1.1.1".parse().unwrap()
    } else {
        "203.0.113.9".parse().unwrap()
    };
    let lines: Vec<&[u8]> = rest.split(|b| *b == b'\n').collect();
    let client = broker::http::client_address(peer, lines.iter().copied(), &trusted);
    if selector & 1 == 1 {
        assert_eq!(client, peer);
    }
    let _ = broker::http::ipv6_prefix(client);
}

/// `Origin` and `Referer` as a browser or an attacker sends them, and
/// allow-list entries as an admin types them (lines: Origin, Referer, then
/// entries): never a panic; a page origin found is normalized (lowercase
/// `scheme://host[:port]`, nothing after) and reads back as itself; an
/// accepted list prints entries that parse to the same list; a list allows
/// an origin only if it names it, a wildcard covers it, or it is "none" for
/// no page at all.
pub fn page_origin(data: &[u8]) {
    use broker::page_origin::{OriginList, PageOrigin};
    let mut lines = data.split(|b| *b == b'\n');
    let origin = lines.next().filter(|l| !l.is_empty());
    let referer = lines.next().filter(|l| !l.is_empty());
    let page = PageOrigin::from_headers(origin, referer);
    if let PageOrigin::Origin(o) = &page {
        assert_eq!(o, &o.to_lowercase());
        let (_, rest) = o.split_once("://").unwrap();
        assert!(!rest.contains(['/', '?', '#', '@']), "{o}");
        assert_eq!(
            PageOrigin::from_headers(Some(o.as_bytes()), None),
            page.clone()
        );
    }
    let entries: Vec<String> = lines
        .filter_map(|l| std::str::from_utf8(l).ok())
        .map(str::to_owned)
        .collect();
    if let Ok(list) = OriginList::parse(&entries) {
        let again = OriginList::parse(&list.entries()).unwrap();
        assert_eq!(again, list);
        if list.allows(&page) {
            match &page {
                PageOrigin::None => assert!(list.entries().iter().any(|e| e == "none")),
                PageOrigin::Opaque => panic!("an opaque page was allowed"),
                PageOrigin::Origin(o) => assert!(list.entries().iter().any(|e| {
                    e == o
                        || e.split_once("://*").is_some_and(|(scheme, suffix)| {
                            o.starts_with(&format!("{scheme}://")) && o.ends_with(suffix)
                        })
                })),
            }
        }
    }
}

/// URL paths of `/web/` requests and resolved media playlist URIs, decoded
/// and turned into a file path under the served folder: never a panic, and
/// what is accepted is plain names only (no `..`, root, prefix or hidden
/// name), however the path was percent-encoded.
pub fn url_path(data: &[u8]) {
    use std::path::Component;
    let Some(path) = text(data) else { return };
    let Some(segments) = hls::rewrite::path_segments(path) else {
        return;
    };
    assert!(!segments.is_empty());
    if let Some(relative) = broker::http::safe_relative(&segments.join("/")) {
        assert!(relative.is_relative());
        for part in relative.components() {
            let Component::Normal(name) = part else {
                panic!("{part:?} in {relative:?}");
            };
            let name = name.to_string_lossy();
            assert!(!name.starts_with('.') && !name.contains(['\\', '\0']));
        }
    }
}

/// Playlists from the origin folder, cut into templates: never a panic, and
/// every media playlist gets a token.
pub fn playlist_tokens(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let targets = hls::rewrite::TokenTargets::new(&["https://keys.example".to_owned()]).unwrap();
    for line in text.lines() {
        let _ = targets.key_uri("/v1/hls/playlist/v/index.m3u8", line);
        let _ = targets.playlist_uri("/v1/hls/playlist/v/index.m3u8", line);
    }
    let Ok(playlist) = hls::playlist::Playlist::parse(text) else {
        return;
    };
    if let Ok(template) = hls::rewrite::Template::new(
        &playlist,
        &targets,
        "/v1/hls/playlist/v/index.m3u8",
        hls::rewrite::CencKeyTags::Identity,
    ) {
        let out = template.render("T0KEN");
        assert!(out.matches("T0KEN").count() >= template.media_playlists.len());
    }
}

/// The audit signing and public key files (PEM or base64) and off-box
/// checkpoint lines: never a panic; a signing key read gives a public key
/// that reads back the same; a checkpoint read never verifies under a key
/// that did not sign it.
pub fn audit_key_text(data: &[u8]) {
    let Some(text) = text(data) else { return };
    if let Ok(key) = audit_chain::SigningKey::from_text(text) {
        let public = audit_chain::verifying_key_from_text(&key.public_pem()).unwrap();
        assert_eq!(public, key.verifying_key());
    }
    let _ = audit_chain::verifying_key_from_text(text);
    if let Ok(cp) = serde_json::from_str::<audit_chain::Checkpoint>(text) {
        let stranger = audit_chain::SigningKey::from_seed(&[0x5a; 32]);
        assert!(!cp.verify(&stranger.verifying_key()) || cp.signature.is_empty());
    }
}

/// Lines of an audit export (`vodkms audit verify --from`): never a panic;
/// a record line read as the verifier reads it, written back and read again
/// gives the same record (same link, same canonical bytes), and a
/// checkpoint line prints back to itself.
pub fn audit_export_line(data: &[u8]) {
    use audit_chain::export::Line;
    let Some(text) = text(data) else { return };
    let _ = audit_chain::export::from_hex(text);
    let Ok(line) = Line::parse(text) else { return };
    match line.clone().into_row() {
        Some((trail, row)) => {
            let again = Line::parse(&serde_json::to_string(&Line::record(&trail, &row)).unwrap())
                .unwrap()
                .into_row()
                .unwrap();
            assert_eq!(again.0, trail);
            assert_eq!(again.1.link, row.link);
            assert_eq!(again.1.canonical, row.canonical);
            assert_eq!(again.1.id, row.id);
        }
        None => {
            let printed = serde_json::to_string(&line).unwrap();
            assert_eq!(Line::parse(&printed).unwrap(), line);
        }
    }
}

/// Playlists `vodkms hls rewrap` reads: never a panic; replacing every
/// EDK found replaces exactly those key URIs, leaves the rest of the text
/// as it was, and finds the new EDKs (and no old one) afterwards.
pub fn playlist_rewrap(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let Ok(found) = hls::rewrap::playlist_keys(text) else {
        return;
    };
    let map: std::collections::HashMap<String, String> = found
        .keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.ciphertext_blob.clone(), format!("NEW{i}")))
        .collect();
    let (out, changed) = hls::rewrap::replace_key_blobs(text, &map).unwrap();
    if map.is_empty() {
        assert_eq!(changed, 0);
        return;
    }
    assert!(changed >= 1);
    let again = hls::rewrap::playlist_keys(&out).unwrap();
    for k in &again.keys {
        assert!(
            !map.contains_key(&k.ciphertext_blob) || map.values().any(|v| *v == k.ciphertext_blob),
            "an old EDK survived: {k:?}"
        );
    }
    // Idempotent: nothing left to replace.
    let (_, changed) = hls::rewrap::replace_key_blobs(&out, &map).unwrap();
    assert_eq!(changed, 0);
}

/// The cloud doors' signature parsers and verifiers (AWS SigV4, Tencent TC3,
/// Alibaba ACS3 and RPC v1) on arbitrary requests: never a panic, and never
/// a signature accepted under a secret it was not made with. The input is a
/// path and query, header lines and a body, split by blank lines.
pub fn cloud_signatures(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, "\n\n");
    let target = parts.next().unwrap_or("/");
    let head = parts.next().unwrap_or("");
    let body = parts.next().unwrap_or("").as_bytes();
    let Ok(uri) = target.parse::<http::Uri>() else {
        return;
    };
    let mut headers = http::HeaderMap::new();
    for line in head.lines() {
        if let Some((k, v)) = line.split_once(':') {
            if let (Ok(k), Ok(v)) = (
                http::HeaderName::from_bytes(k.trim().as_bytes()),
                http::HeaderValue::from_str(v.trim()),
            ) {
                headers.append(k, v);
            }
        }
    }
    let req = cloudsig::Request {
        method: &http::Method::POST,
        uri: &uri,
        headers: &headers,
        body,
    };
    // A fixed secret the fuzzer cannot know: a match would be a forgery.
    let secret = b"fuzz-secret-never-in-the-input-\x00\xff";
    if let Ok(c) = cloudsig::sigv4::parse(&req) {
        assert_ne!(cloudsig::sigv4::verify(&c, &req, secret), Ok(true));
    }
    if let Ok(c) = cloudsig::tc3::parse(&req) {
        assert_ne!(cloudsig::tc3::verify(&c, &req, secret), Ok(true));
    }
    if let Ok(c) = cloudsig::acs3::parse(&req) {
        assert_ne!(cloudsig::acs3::verify(&c, &req, secret), Ok(true));
    }
    let params: Vec<(String, String)> = uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    if let Ok(c) = cloudsig::rpc::parse(&params) {
        assert!(!cloudsig::rpc::verify(&c, "POST", &params, secret));
    }
}

/// The W3C Clear Key licence body and key ids as the broker reads them (in
/// registrations and key URIs: 32 hex digits or a UUID), and the manifests
/// and playlists it serves for Clear Key (MPD default_KIDs, the Clear Key
/// element inserted, the CENC key tag variants). Never a panic; a parsed KID
/// prints back to what parses the same.
pub fn clear_key_request(data: &[u8]) {
    use base64::Engine as _;
    if let Ok(kids) = broker::http::licence_kids(data) {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let body =
            serde_json::json!({ "kids": kids.iter().map(|k| b64.encode(k)).collect::<Vec<_>>() });
        assert_eq!(
            broker::http::licence_kids(body.to_string().as_bytes()),
            Ok(kids)
        );
    }
    let Some(text) = text(data) else { return };
    if let Some(kid) = broker::service::parse_kid(text) {
        assert_eq!(broker::service::parse_kid(&hex(&kid)), Some(kid));
    }
    let _ = broker::dash::default_kids(text);
    let with = broker::dash::with_clear_key(text, "https://b.example/l?token=a&b");
    // Idempotent: a manifest already naming Clear Key is left alone.
    assert_eq!(broker::dash::with_clear_key(&with, "x"), with);
    // Both CENC key tag variants of a playlist: every KID found is one the
    // rendering names (as a key URI for Shaka, as the data: URI for hls.js).
    let Ok(playlist) = hls::playlist::Playlist::parse(text) else {
        return;
    };
    let targets = hls::rewrite::TokenTargets::default();
    for cenc in [
        hls::rewrite::CencKeyTags::Identity,
        hls::rewrite::CencKeyTags::ClearKey,
    ] {
        if let Ok(t) =
            hls::rewrite::Template::new(&playlist, &targets, "/v1/hls/playlist/v.m3u8", cenc)
        {
            let out = t.render("T");
            if cenc == hls::rewrite::CencKeyTags::Identity {
                for kid in &t.kids {
                    assert!(out.contains(&format!("kid={}&token=T", hex(kid))));
                }
            }
        }
    }
}

/// CMAF boxes as `hls::cenc` reads them: an init segment's `tenc`, a media
/// segment's `moof`/`trun`/`senc`. Never a panic, never a write outside what
/// parsed; a re-key there and back gives the input again.
pub fn cenc_segment(data: &[u8]) {
    let _ = hls::cenc::track_encryption(data);
    for iv_size in [8, 16] {
        let tracks = [hls::cenc::TrackEncryption {
            track_id: 1,
            kid: [0; 16],
            iv_size,
        }];
        let mut segment = data.to_vec();
        if hls::cenc::rekey_segment(&mut segment, &tracks, &[1; 16], &[2; 16]).is_ok() {
            hls::cenc::rekey_segment(&mut segment, &tracks, &[2; 16], &[1; 16])
                .expect("what parsed once parses again");
            assert_eq!(segment, data);
        } else {
            assert_eq!(segment, data, "a refused segment is left as it was");
        }
    }
}

/// The key request's query string: never a panic; what it reads is what a
/// standard form decoder reads, and it refuses only a repeated parameter or
/// a value that is not valid percent-encoded UTF-8.
pub fn key_query(data: &[u8]) {
    let Some(raw) = text(data) else { return };
    let pairs: Vec<(&str, &str)> = raw
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    let known = ["vid", "Ciphertext", "MtsHlsUriToken", "token", "kid"];
    let values = |name: &str| -> Vec<&str> {
        pairs
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .collect()
    };
    match broker::http::KeyQuery::parse(raw) {
        Ok(q) => {
            let read = [
                &q.vid,
                &q.ciphertext,
                &q.mts_hls_uri_token,
                &q.token,
                &q.kid,
            ];
            for (name, got) in known.iter().zip(read) {
                let sent = values(name);
                assert!(sent.len() <= 1, "{name} repeated yet accepted");
                assert_eq!(
                    got.as_deref().map(str::to_owned),
                    sent.first().map(|v| reference::form_value(v)),
                    "{name}"
                );
            }
        }
        Err(_) => assert!(known.iter().any(|name| {
            let sent = values(name);
            sent.len() > 1 || sent.iter().any(|v| !reference::strict_form_value(v))
        })),
    }
}

/// The configuration file: never a panic; an error names the file; what it
/// reads turns only into the variables the servers read.
pub fn config_file(data: &[u8]) {
    let Some(text) = text(data) else { return };
    match vodkms::config::parse(text, "fuzz.toml") {
        Err(message) => assert!(message.starts_with("config file fuzz.toml: ")),
        Ok(file) => {
            let kms = file.kms.as_ref().map(|s| s.vars()).unwrap_or_default();
            let broker = file.broker.as_ref().map(|s| s.vars()).unwrap_or_default();
            for (var, _) in kms.iter().chain(&broker) {
                assert!(var.starts_with("VODKMS_") || *var == "DATABASE_URL_FILE");
                assert!(!matches!(
                    *var,
                    "DATABASE_URL" | "VODKMS_ROOT_KEY" | "VODKMS_KMS_TOKEN" | "VODKMS_TOKEN_SECRET"
                ));
            }
        }
    }
}
