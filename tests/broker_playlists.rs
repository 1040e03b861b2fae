//! Playlist delivery by the broker (`--origin-dir`): who gets a playlist,
//! what the re-issued token in it may do, and what is never served.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::brokers::{fetch_from, token_payload, BrokerSetup, ORIGIN};
use serde_json::{json, Value};

fn token_in(uri: &str) -> String {
    uri.split(['?', '&'])
        .find_map(|p| p.strip_prefix("token="))
        .unwrap_or_else(|| panic!("no token in {uri}"))
        .to_owned()
}

fn key_uri(playlist: &str) -> String {
    let line = playlist
        .lines()
        .find(|l| l.starts_with("#EXT-X-KEY:") || l.starts_with("#EXT-X-SESSION-KEY:"))
        .unwrap();
    let start = line.find("URI=\"").unwrap() + 5;
    line[start..start + line[start..].find('"').unwrap()].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playlists_are_rewritten_for_entitled_viewers_only() {
    let dir = tempfile::tempdir().unwrap();
    let origin = dir.path();
    let b = BrokerSetup::with_env(&[("VODKMS_ORIGIN_DIR", origin.to_str().unwrap())]).await;
    let (key, edk) = b.data_key("v").await;
    let key_uri_text = format!("{}/v1/hls/key?vid=v&Ciphertext={edk}", b.broker.url);
    std::fs::create_dir_all(origin.join("v/lo")).unwrap();
    let media = format!(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n\
         #EXT-X-KEY:METHOD=AES-128,URI=\"{key_uri_text}\",IV=0x000102030405060708090a0b0c0d0e0f\n\
         #EXTINF:2,\ns0.ts\n#EXT-X-ENDLIST\n"
    );
    std::fs::write(origin.join("v/lo/index.m3u8"), &media).unwrap();
    let segment: Vec<u8> = (0..4096u32).map(|i| (i * 7) as u8).collect();
    std::fs::write(origin.join("v/lo/s0.ts"), &segment).unwrap();
    std::fs::write(
        origin.join("v/master.m3u8"),
        format!(
            "#EXTM3U\n#EXT-X-SESSION-KEY:METHOD=AES-128,URI=\"{key_uri_text}\"\n\
             #EXT-X-STREAM-INF:BANDWIDTH=100000\nlo/index.m3u8\n\
             #EXT-X-STREAM-INF:BANDWIDTH=200000\nhttps://cdn.example/hi/index.m3u8\n"
        ),
    )
    .unwrap();
    std::fs::write(origin.join("v/lo/secret.key"), &key).unwrap();
    std::fs::write(origin.join("v/lo/.hidden.ts"), b"x").unwrap();
    std::fs::write(origin.join("broken.m3u8"), "<html>").unwrap();

    let issued = b.issue("alice", &["v", "w"], 60).await;
    let token = issued["Token"].as_str().unwrap().to_owned();
    let fetch = |path: String, cookie: Option<String>| {
        let api = &b.api;
        async move { fetch_from(api, &path, None, cookie.as_deref()).await }
    };

    // An entitled viewer: the media playlist with a fresh token in the key URI.
    let (status, headers, body) = fetch(
        format!("/v1/hls/playlist/v/lo/index.m3u8?token={token}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["content-type"], "application/vnd.apple.mpegurl");
    assert_eq!(headers["cache-control"], "private, no-store");
    assert_eq!(headers["access-control-allow-origin"], ORIGIN);
    let text = String::from_utf8(body).unwrap();
    assert_eq!(
        text.replace(&format!("&token={}", token_in(&key_uri(&text))), ""),
        media
    );
    let fresh = token_in(&key_uri(&text));
    let (old, new) = (token_payload(&token), token_payload(&fresh));
    assert_eq!(new["jti"], old["jti"]);
    assert_eq!(new["iat"], old["iat"]);
    assert_eq!(new["sub"], "alice");
    assert_eq!(
        new["vids"],
        json!(["v"]),
        "narrowed to the playlist's video"
    );
    assert!(new["exp"].as_i64().unwrap() >= old["exp"].as_i64().unwrap() + 3000);
    // ...which releases the key, and only this video's.
    let (status, _, got) = b
        .fetch(&key_uri(&text).replace(&b.broker.url, ""), None, None)
        .await;
    assert_eq!((status, got), (200, key.clone()));
    let (other_key, other_edk) = b.data_key("w").await;
    drop(other_key);
    assert_eq!(
        b.key_status(&format!("vid=w&Ciphertext={other_edk}&token={fresh}"))
            .await,
        (403, "NotEntitled".into())
    );

    // The cookie works too; so does MtsHlsUriToken.
    let (status, _, _) = fetch(
        "/v1/hls/playlist/v/lo/index.m3u8".into(),
        Some(token.clone()),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, _) = fetch(
        format!("/v1/hls/playlist/v/lo/index.m3u8?MtsHlsUriToken={token}"),
        None,
    )
    .await;
    assert_eq!(status, 200);

    // A master playlist: session key and relative variant get the token, the CDN variant does not.
    let (status, _, body) = fetch(
        format!("/v1/hls/playlist/v/master.m3u8?token={token}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[1].contains("&token="), "{text}");
    assert!(lines[3].starts_with("lo/index.m3u8?token="), "{text}");
    assert_eq!(lines[5], "https://cdn.example/hi/index.m3u8");
    let variant_token = token_in(lines[3]);
    let (status, _, _) = fetch(
        format!("/v1/hls/playlist/v/lo/index.m3u8?token={variant_token}"),
        None,
    )
    .await;
    assert_eq!(status, 200);

    // Segments as they are, cacheable, with ranges; nothing but media is served.
    let (status, headers, body) = fetch("/v1/hls/playlist/v/lo/s0.ts".into(), None).await;
    assert_eq!((status, body), (200, segment.clone()));
    assert_eq!(headers["cache-control"], "public, max-age=86400");
    let ranged = b
        .api
        .request(reqwest::Method::GET, "/v1/hls/playlist/v/lo/s0.ts", None)
        .header("Range", "bytes=0-99");
    let (status, _, body) = b.api.raw_bytes(ranged).await;
    assert_eq!((status, body.as_slice()), (206, &segment[..100]));

    // A playlist changed on disk is served changed within a second or so.
    std::fs::write(
        origin.join("v/lo/index.m3u8"),
        media.replace("#EXT-X-ENDLIST", "#EXTINF:2,\ns1.ts\n#EXT-X-ENDLIST"),
    )
    .unwrap();
    common::eventually(5, "the changed playlist", || async {
        let (_, _, body) = fetch(
            format!("/v1/hls/playlist/v/lo/index.m3u8?token={token}"),
            None,
        )
        .await;
        String::from_utf8(body).unwrap().contains("s1.ts")
    })
    .await;

    // Refusals, each with its code.
    let code = |body: &[u8]| serde_json::from_slice::<Value>(body).unwrap()["Code"].clone();
    let other = b.token("mallory", &["w"]).await;
    for (path, want_status, want_code) in [
        (
            "/v1/hls/playlist/v/lo/index.m3u8".to_owned(),
            401,
            "MissingToken",
        ),
        (
            format!("/v1/hls/playlist/v/lo/index.m3u8?token={other}"),
            403,
            "NotEntitled",
        ),
        (
            "/v1/hls/playlist/v/lo/index.m3u8?token=junk".to_owned(),
            401,
            "InvalidToken",
        ),
        (
            "/v1/hls/playlist/v/lo/secret.key".to_owned(),
            404,
            "NotFound",
        ),
        (
            "/v1/hls/playlist/v/lo/.hidden.ts".to_owned(),
            400,
            "InvalidParameter",
        ),
        (
            "/v1/hls/playlist/v/..%2f..%2fetc%2fpasswd".to_owned(),
            400,
            "InvalidParameter",
        ),
        ("/v1/hls/playlist/v/lo/nope.ts".to_owned(), 404, "NotFound"),
        (
            format!("/v1/hls/playlist/nope.m3u8?token={token}"),
            404,
            "NotFound",
        ),
        (
            format!("/v1/hls/playlist/broken.m3u8?token={token}"),
            502,
            "InvalidOriginPlaylist",
        ),
    ] {
        let (status, headers, body) = fetch(path.clone(), None).await;
        assert_eq!(
            (status, code(&body)),
            (want_status, json!(want_code)),
            "{path}"
        );
        assert_eq!(headers["access-control-allow-origin"], ORIGIN, "{path}");
    }

    // Revoking the original token revokes the re-issued one: same token id.
    let r = b
        .api
        .post(
            "/v1/revocations",
            &b.kms.admin,
            json!({"Type": "Token", "Id": issued["TokenId"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(
        b.key_status(&format!("vid=v&Ciphertext={edk}&token={fresh}"))
            .await,
        (401, "TokenRevoked".into())
    );
    let (status, _, _) = fetch(
        format!("/v1/hls/playlist/v/lo/index.m3u8?token={fresh}"),
        None,
    )
    .await;
    assert_eq!(status, 401);

    // Every playlist decision is audited.
    b.api
        .audit_until(&b.kms.admin, "Operation=DeliverPlaylist", |rs| {
            rs.iter()
                .any(|r| r["Outcome"] == "Success" && r["Viewer"] == "alice")
                && rs
                    .iter()
                    .any(|r| r["Outcome"] == "NotEntitled" && r["Viewer"] == "mallory")
                && rs.iter().any(|r| r["Outcome"] == "TokenRevoked")
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_origin_folder_there_is_no_playlist_route() {
    let b = BrokerSetup::new().await;
    let token = b.token("alice", &["v"]).await;
    let (status, _, body) = b
        .fetch(
            &format!("/v1/hls/playlist/v/index.m3u8?token={token}"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 404);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert!(v["Message"].as_str().unwrap().contains("--origin-dir"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reissued_tokens_live_no_longer_than_a_playback_session() {
    let dir = tempfile::tempdir().unwrap();
    // The playlist only needs a key URI naming the video; no key is fetched.
    let edk = "AAAA";
    std::fs::write(
        dir.path().join("index.m3u8"),
        format!(
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n\
             #EXT-X-KEY:METHOD=AES-128,URI=\"http://b/v1/hls/key?vid=v&Ciphertext={edk}\",IV=0x00\n\
             #EXTINF:2,\ns0.ts\n"
        ),
    )
    .unwrap();
    let origin = dir.path().to_str().unwrap();
    for (sessions, want_extra) in [("0", 0), ("600", 540)] {
        let b = BrokerSetup::with_env(&[
            ("VODKMS_ORIGIN_DIR", origin),
            ("VODKMS_KEY_URI_BASE", "http://b"),
            ("VODKMS_SESSION_IDLE_SECS", sessions),
            ("VODKMS_SESSION_MAX_SECS", "600"),
        ])
        .await;
        let issued = b.issue("alice", &["v"], 60).await;
        let token = issued["Token"].as_str().unwrap();
        let (status, _, body) = b
            .fetch(
                &format!("/v1/hls/playlist/index.m3u8?token={token}"),
                None,
                None,
            )
            .await;
        assert_eq!(status, 200);
        let fresh = token_in(&key_uri(&String::from_utf8(body).unwrap()));
        let (old, new) = (token_payload(token), token_payload(&fresh));
        // Sessions off: the original's exp; on: up to iat + the session max (600 s).
        assert_eq!(
            new["exp"].as_i64().unwrap() - old["exp"].as_i64().unwrap(),
            want_extra,
            "sessions idle {sessions}"
        );
    }
}
