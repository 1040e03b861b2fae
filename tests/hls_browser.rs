//! End to end in a browser: hls.js in Debian's headless Chromium plays an
//! encrypted stream from a page the broker serves, with the token in a cookie
//! (after `/v1/login`), in an `Authorization` header (`xhrSetup`), or in the
//! playlist the broker rewrote; without a token it sees a key load error.
//! Driven by `tests/browser/play.mjs` (playwright-core); `scripts/test`
//! installs Chromium and the npm packages.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::brokers::BrokerSetup;
use common::media::{browser_dir, hls_encrypt, make_fmp4_source, make_source, play};
use serde_json::json;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// A broker with `DIR/origin` and `DIR/web`; `source` encrypted by `vodkms
/// hls encrypt` (a key every 2 segments) as `video` into the origin; the
/// test page, hls.js and the published (token-free) copy into the web folder.
async fn published(dir: &Path, video: &str, source: std::path::PathBuf) -> BrokerSetup {
    published_with(dir, video, source, &[]).await
}

/// As `published`, the broker started with `env` too.
async fn published_with(
    dir: &Path,
    video: &str,
    source: std::path::PathBuf,
    env: &[(&str, &str)],
) -> BrokerSetup {
    let hls_js = browser_dir().join("node_modules/hls.js/dist/hls.min.js");
    assert!(
        hls_js.exists(),
        "{} is missing: run the tests through scripts/test (it runs npm ci)",
        hls_js.display()
    );
    let origin = dir.join("origin");
    let web = dir.join("web");
    std::fs::create_dir_all(&origin).unwrap();
    std::fs::create_dir_all(&web).unwrap();
    let mut all = vec![
        ("VODKMS_ORIGIN_DIR", origin.to_str().unwrap()),
        ("VODKMS_WEB_DIR", web.to_str().unwrap()),
    ];
    all.extend_from_slice(env);
    let b = BrokerSetup::with_env(&all).await;
    let out = hls_encrypt(
        &b,
        "alias/vod",
        video,
        &["--rekey-every", "2"],
        source.to_str().unwrap(),
        origin.join(video).to_str().unwrap(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::copy(browser_dir().join("player.html"), web.join("player.html")).unwrap();
    std::fs::copy(&hls_js, web.join("hls.min.js")).unwrap();
    copy_dir(&origin.join(video), &web.join(video));
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_js_in_chromium_plays_only_with_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let b = published(
        dir.path(),
        "film-w",
        make_source(&dir.path().join("src"), 6),
    )
    .await;

    let r = b
        .api
        .post(
            "/v1/viewers",
            &b.kms.admin,
            json!({"Username": "vera", "Password": "correct horse", "Entitlements": ["film-w"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let page = format!("{}/web/player.html", b.broker.url);
    let published = "/web/film-w/index.m3u8";

    // 1. Signed in: the cookie /v1/login set goes with every key request.
    let got = play(&format!(
        "{page}?mode=cookie&user=vera&pass=correct%20horse&src={published}"
    ));
    assert_eq!(got["ok"], true, "cookie: {got}");
    assert!(got["currentTime"].as_f64().unwrap() > 2.0);
    assert!(
        !got["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["fatal"] == true),
        "{got}"
    );

    // 2. A token in the Authorization header, set by xhrSetup.
    let token = b.token("walt", &["film-w"]).await;
    let got = play(&format!("{page}?mode=header&token={token}&src={published}"));
    assert_eq!(got["ok"], true, "header: {got}");

    // 3. The playlist through the broker: key URIs carry a fresh token.
    let got = play(&format!(
        "{page}?mode=query&src={}",
        common::brokers::q(&format!("/v1/hls/playlist/film-w/index.m3u8?token={token}"))
    ));
    assert_eq!(got["ok"], true, "rewritten playlist: {got}");

    // 4. No token: the playlist and segments load, the key does not.
    let got = play(&format!("{page}?mode=none&src={published}"));
    assert_eq!(got["ok"], false, "played without a token: {got}");
    assert_eq!(got["reason"], "keyLoadError", "{got}");
    let errors = got["errors"].as_array().unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e["details"] == "keyLoadError" && e["status"] == 401),
        "{got}"
    );

    let records = b
        .api
        .audit_until(&b.kms.admin, "Operation=ReleaseKey&VideoId=film-w", |rs| {
            ["vera", "walt"].iter().all(|v| {
                rs.iter()
                    .any(|r| r["Viewer"] == *v && r["Outcome"] == "Success")
            }) && rs.iter().any(|r| r["Outcome"] == "MissingToken")
        })
        .await;
    assert!(records
        .iter()
        .all(|r| r["KeyVersionId"] == 1 || r["Outcome"] != "Success"));
}

/// Every risk rule on (one stream per viewer, one address per token,
/// sharing detection, a page-origin allow-list, playlist tokens bound to the
/// address): hls.js still plays a 14 s film (a key every 2 s) through the
/// broker's playlist past 9 s, across the key rotations; the same playlist
/// asked for from a page origin the video does not allow is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_js_plays_through_key_rotations_with_every_risk_rule_on() {
    let dir = tempfile::tempdir().unwrap();
    let b = published_with(
        dir.path(),
        "film-r",
        make_source(&dir.path().join("src"), 14),
        &[
            ("VODKMS_MAX_STREAMS_PER_VIEWER", "1"),
            ("VODKMS_MAX_ADDRESSES_PER_TOKEN", "1"),
            ("VODKMS_SHARE_MAX_ADDRESSES", "2"),
            ("VODKMS_SHARE_MAX_VIDEOS", "2"),
            ("VODKMS_ALLOWED_PAGE_ORIGINS", "https://www.example.com"),
            ("VODKMS_BIND_PLAYLIST_TOKENS", "true"),
        ],
    )
    .await;
    // This video may be played from the broker's own pages (the test page).
    let r = b
        .api
        .request(
            reqwest::Method::PUT,
            "/v1/videos/film-r/playback-policy",
            Some(&b.kms.admin),
        )
        .json(&json!({ "AllowedOrigins": [b.broker.url] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let page = format!("{}/web/player.html", b.broker.url);
    let token = b.token("rita", &["film-r"]).await;
    let src = common::brokers::q(&format!("/v1/hls/playlist/film-r/index.m3u8?token={token}"));
    let got = play(&format!("{page}?mode=query&until=9&src={src}"));
    assert_eq!(got["ok"], true, "every rule on: {got}");
    assert!(got["currentTime"].as_f64().unwrap() > 9.0, "{got}");
    assert!(
        !got["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["fatal"] == true),
        "{got}"
    );
    // Five keys or more were released to this viewer (identical releases
    // are merged into one record with a Count).
    let records = b
        .api
        .audit_until(&b.kms.admin, "Operation=ReleaseKey&VideoId=film-r", |rs| {
            let released: u64 = rs
                .iter()
                .filter(|r| r["Viewer"] == "rita" && r["Outcome"] == "Success")
                .map(|r| r["Detail"]["Count"].as_u64().unwrap_or(1))
                .sum();
            released >= 5
        })
        .await;
    assert!(
        records.iter().all(|r| r["Outcome"] == "Success"),
        "{records:?}"
    );
    // The same page on a page origin the video does not allow: refused.
    let elsewhere = b
        .api
        .request(
            reqwest::Method::GET,
            &format!("/v1/hls/playlist/film-r/index.m3u8?token={token}"),
            None,
        )
        .header("Origin", "https://www.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), 403);
}

/// fMP4 HLS encrypted by `vodkms hls encrypt` (the init section too): hls.js
/// and Shaka Player play it through the broker's rewritten playlist past
/// 2 s, and fail without a token (hls.js: a key load error).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_js_and_shaka_player_play_aes_128_over_fmp4() {
    let dir = tempfile::tempdir().unwrap();
    let b = published(
        dir.path(),
        "film-m",
        make_fmp4_source(&dir.path().join("src"), 5),
    )
    .await;
    let page = format!("{}/web/player.html", b.broker.url);

    let token = b.token("mira", &["film-m"]).await;
    let got = play(&format!(
        "{page}?mode=query&src={}",
        common::brokers::q(&format!("/v1/hls/playlist/film-m/index.m3u8?token={token}"))
    ));
    assert_eq!(got["ok"], true, "fMP4 through the broker: {got}");
    assert!(got["currentTime"].as_f64().unwrap() > 2.0, "{got}");

    let got = play(&format!("{page}?mode=none&src=/web/film-m/index.m3u8"));
    assert_eq!(got["ok"], false, "played without a token: {got}");
    assert_eq!(got["reason"], "keyLoadError", "{got}");

    let web = dir.path().join("web");
    std::fs::copy(browser_dir().join("shaka.html"), web.join("shaka.html")).unwrap();
    std::fs::copy(
        browser_dir().join("node_modules/shaka-player/dist/shaka-player.compiled.js"),
        web.join("shaka-player.compiled.js"),
    )
    .unwrap();
    let shaka = format!("{}/web/shaka.html", b.broker.url);
    let got = play(&format!(
        "{shaka}?src={}",
        common::brokers::q(&format!("/v1/hls/playlist/film-m/index.m3u8?token={token}"))
    ));
    assert_eq!(
        got["ok"], true,
        "Shaka Player, fMP4 through the broker: {got}"
    );
    assert!(got["decodedFrames"].as_u64().unwrap() > 10, "{got}");
    let got = play(&format!("{shaka}?src=/web/film-m/index.m3u8"));
    assert_eq!(got["ok"], false, "Shaka Player without a token: {got}");
    // BAD_HTTP_STATUS (network 1001) on the key URI: the key was refused.
    assert_eq!(got["reason"], "error 1/1001", "{got}");
    assert!(got["errors"][0]["data"]
        .as_str()
        .unwrap()
        .contains("/v1/hls/key?"));
}
