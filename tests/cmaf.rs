//! CMAF keyed by vodkms: Shaka Packager (the static binary of the npm
//! package `shaka-packager`, pinned in tests/browser/package.json) packages
//! an ffmpeg H.264/AAC source as `cenc` and as `cbcs`, to DASH and HLS, with
//! a raw key from `vodkms datakey --kid auto --shaka-packager`. The broker's
//! Clear Key licence for an entitled viewer holds exactly that key: ffmpeg
//! decrypts the packaged video with it to the source's frames.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use common::brokers::BrokerSetup;
use common::media::{browser_dir, ffmpeg, play, video_frames};
use serde_json::json;

fn packager() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/browser/node_modules/shaka-packager/bin/packager-linux-x64");
    assert!(
        p.exists(),
        "{} is missing: run the tests through scripts/test (it runs npm ci)",
        p.display()
    );
    p
}

/// 4 s of H.264 + AAC in one MP4, as a transcoder would hand it over.
fn source(dir: &Path) -> PathBuf {
    let out = dir.join("src.mp4");
    let status = ffmpeg()
        .args(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args([
            "-t", "4", "-c:v", "libx264", "-g", "25", "-pix_fmt", "yuv420p",
        ])
        .args(["-c:a", "aac"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    out
}

/// `vodkms datakey --kid auto --shaka-packager` for `video`, as the
/// transcoder: the packager's `--keys` argument (stdout) and the
/// registration it printed without the key (stderr).
fn shaka_keys(b: &BrokerSetup, video: &str) -> (String, serde_json::Value) {
    let out = Command::new(common::BIN)
        .args(["datakey", "--key", "alias/vod", "--video-id", video])
        .args(["--kid", "auto", "--shaka-packager"])
        .env("VODKMS_TOKEN", &b.kms.generator)
        .env("VODKMS_KMS_URL", &b.kms.kms.url)
        .env("VODKMS_BROKER_URL", &b.broker.url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keys_arg = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let registered = serde_json::from_slice(&out.stderr).unwrap();
    (keys_arg, registered)
}

/// Shaka Packager: `src` as CMAF (video and audio, `v/` and `a/`) into
/// `dir`, encrypted with `keys_arg` under `scheme`, plus `outputs`.
fn shaka_package(src: &Path, dir: &Path, keys_arg: &str, scheme: &str, outputs: &[&str]) {
    std::fs::create_dir_all(dir).unwrap();
    let out = Command::new(packager())
        .current_dir(dir)
        .arg(format!(
            "in={},stream=video,init_segment=v/init.mp4,segment_template=v/$Number$.m4s",
            src.display()
        ))
        .arg(format!(
            "in={},stream=audio,init_segment=a/init.mp4,segment_template=a/$Number$.m4s",
            src.display()
        ))
        .args(["--enable_raw_key_encryption", "--keys", keys_arg])
        .args(["--protection_scheme", scheme, "--clear_lead", "0"])
        .args(outputs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{scheme}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shaka_packager_cmaf_with_vodkms_keys_decrypts_with_the_licence_key() {
    let b = BrokerSetup::new().await;
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path());
    let reference = video_frames(&src, None).unwrap();
    assert!(reference.len() >= 100, "{}", reference.len());

    for scheme in ["cenc", "cbcs"] {
        // A data key, registered at the broker under a fresh KID, as the
        // packager's --keys argument.
        let (keys_arg, registered) = shaka_keys(&b, "film-c");
        let fields: Vec<&str> = keys_arg.split(':').collect();
        assert_eq!(fields.len(), 3, "{keys_arg}");
        let kid = fields[1].strip_prefix("key_id=").unwrap().to_owned();
        let key = fields[2].strip_prefix("key=").unwrap().to_owned();
        assert_eq!((kid.len(), key.len()), (32, 32));
        assert_eq!(registered["Kid"], kid.as_str());
        assert!(!registered.to_string().contains(&key));

        // Shaka Packager: CMAF, DASH and HLS at once.
        let pkg = dir.path().join(scheme);
        shaka_package(
            &src,
            &pkg,
            &keys_arg,
            scheme,
            &[
                "--mpd_output",
                "manifest.mpd",
                "--hls_master_playlist_output",
                "master.m3u8",
            ],
        );
        let mpd = std::fs::read_to_string(pkg.join("manifest.mpd")).unwrap();
        let dashed = format!(
            "{}-{}-{}-{}-{}",
            &kid[..8],
            &kid[8..12],
            &kid[12..16],
            &kid[16..20],
            &kid[20..]
        );
        assert!(
            mpd.contains(&format!("cenc:default_KID=\"{dashed}\"")),
            "{mpd}"
        );
        assert!(mpd.contains(&format!("value=\"{scheme}\"")), "{mpd}");

        // The licence of an entitled viewer holds the packager's key.
        let token = b.token("cara", &["film-c"]).await;
        let kid_b64 =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hex::decode(&kid).unwrap());
        let r = b
            .api
            .raw(
                b.api
                    .request(
                        reqwest::Method::POST,
                        &format!("/v1/clearkey/license?token={token}"),
                        None,
                    )
                    .body(json!({ "kids": [kid_b64], "type": "temporary" }).to_string()),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let k = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(r.body["keys"][0]["k"].as_str().unwrap())
            .unwrap();
        assert_eq!(hex::encode(&k), key);

        // The packaged video is ciphertext; with the licence's key it decodes
        // to the source's frames (ffmpeg reads cenc; cbcs it cannot decrypt).
        let mut joined = std::fs::read(pkg.join("v/init.mp4")).unwrap();
        let mut n = 1;
        while let Ok(seg) = std::fs::read(pkg.join(format!("v/{n}.m4s"))) {
            joined.extend(seg);
            n += 1;
        }
        let whole = pkg.join("video.mp4");
        std::fs::write(&whole, joined).unwrap();
        if scheme == "cenc" {
            assert_eq!(
                video_frames(&whole, Some(&hex::encode(&k))).unwrap(),
                reference
            );
            assert_ne!(video_frames(&whole, None).ok(), Some(reference.clone()));
        }

        // hls::cenc re-keys the packaged segments (how `vodkms dev` puts its
        // shipped sample under a fresh key): ffmpeg decodes them with the
        // new key only. cbcs it refuses.
        let init = std::fs::read(pkg.join("v/init.mp4")).unwrap();
        let tracks = match hls::cenc::track_encryption(&init) {
            Ok(tracks) => tracks,
            Err(e) => {
                assert_eq!(scheme, "cbcs", "{e}");
                assert!(e.to_string().contains("only \"cenc\""), "{e}");
                continue;
            }
        };
        assert_eq!(hex::encode(tracks[0].kid), kid);
        let (old, new): ([u8; 16], [u8; 16]) = (k.as_slice().try_into().unwrap(), rand::random());
        let mut rekeyed = init;
        for i in 1..n {
            let mut seg = std::fs::read(pkg.join(format!("v/{i}.m4s"))).unwrap();
            hls::cenc::rekey_segment(&mut seg, &tracks, &old, &new).unwrap();
            rekeyed.extend(seg);
        }
        std::fs::write(&whole, rekeyed).unwrap();
        assert_eq!(
            video_frames(&whole, Some(&hex::encode(new))).unwrap(),
            reference,
            "re-keyed"
        );
        assert_ne!(
            video_frames(&whole, Some(&hex::encode(old))).ok(),
            Some(reference.clone())
        );
    }
}

/// Shaka Player and dash.js in Chromium play Shaka Packager's `cenc` DASH with the
/// broker's Clear Key licence for an entitled viewer, and reports a DRM
/// error (category 6) without a token, with another video's, and revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shaka_player_and_dash_js_play_clear_key_dash_only_for_entitled_viewers() {
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web");
    std::fs::create_dir_all(&web).unwrap();
    // The same folder is the origin: the broker also serves its MPD.
    let b = BrokerSetup::with_env(&[
        ("VODKMS_WEB_DIR", web.to_str().unwrap()),
        ("VODKMS_ORIGIN_DIR", web.to_str().unwrap()),
    ])
    .await;
    let src = source(dir.path());
    let (keys_arg, _) = shaka_keys(&b, "film-d");
    shaka_package(
        &src,
        &web.join("film-d"),
        &keys_arg,
        "cenc",
        &["--generate_static_live_mpd", "--mpd_output", "manifest.mpd"],
    );
    std::fs::copy(browser_dir().join("shaka.html"), web.join("shaka.html")).unwrap();
    std::fs::copy(
        browser_dir().join("node_modules/shaka-player/dist/shaka-player.compiled.js"),
        web.join("shaka-player.compiled.js"),
    )
    .unwrap();
    let page = format!("{}/web/shaka.html", b.broker.url);
    let manifest = "/web/film-d/manifest.mpd";
    let licence = |token: &str| common::brokers::q(&format!("/v1/clearkey/license?token={token}"));

    let token = b.token("dana", &["film-d"]).await;
    let got = play(&format!(
        "{page}?src={manifest}&license={}",
        licence(&token)
    ));
    assert_eq!(got["ok"], true, "entitled: {got}");
    assert!(got["decodedFrames"].as_u64().unwrap() > 10, "{got}");
    // The token in a header (a request filter), the licence URL bare.
    let got = play(&format!(
        "{page}?src={manifest}&license=/v1/clearkey/license&token={token}"
    ));
    assert_eq!(got["ok"], true, "header: {got}");

    // The MPD through the broker: a Clear Key element whose dashif:Laurl
    // carries the viewer's token; the player needs no licence setting.
    let served = b
        .fetch(
            &format!("/v1/hls/playlist/film-d/manifest.mpd?token={token}"),
            None,
            None,
        )
        .await;
    assert_eq!(served.0, 200);
    let text = String::from_utf8(served.2).unwrap();
    assert!(
        text.contains("urn:uuid:e2719d58-a985-b3c9-781a-b030af78d30e"),
        "{text}"
    );
    assert!(text.contains("<dashif:Laurl>"), "{text}");
    let (status, _, _) = b
        .fetch("/v1/hls/playlist/film-d/manifest.mpd", None, None)
        .await;
    assert_eq!(status, 401, "no token, no manifest");
    let got = play(&format!(
        "{page}?src={}",
        common::brokers::q(&format!(
            "/v1/hls/playlist/film-d/manifest.mpd?token={token}"
        ))
    ));
    assert_eq!(got["ok"], true, "broker-served MPD: {got}");

    // dash.js: from the broker-served MPD (its Clear Key element and
    // dashif:Laurl), and refused without a token in the licence URL.
    std::fs::copy(
        browser_dir().join("node_modules/dashjs/dist/modern/umd/dash.all.min.js"),
        web.join("dash.all.min.js"),
    )
    .unwrap();
    std::fs::copy(browser_dir().join("dashjs.html"), web.join("dashjs.html")).unwrap();
    let dash_page = format!("{}/web/dashjs.html", b.broker.url);
    let got = play(&format!(
        "{dash_page}?src={}",
        common::brokers::q(&format!(
            "/v1/hls/playlist/film-d/manifest.mpd?token={token}"
        ))
    ));
    assert_eq!(got["ok"], true, "dash.js: {got}");
    let got = play(&format!(
        "{dash_page}?src={}&license=/v1/clearkey/license",
        common::brokers::q(&format!(
            "/v1/hls/playlist/film-d/manifest.mpd?token={token}"
        ))
    ));
    assert_eq!(got["ok"], false, "dash.js without a licence token: {got}");

    // Refused: the player reports a DRM error (category 6).
    let other = b.token("dana", &["film-x"]).await;
    let revoked = b.issue("dora", &["film-d"], 600).await;
    let r = b
        .api
        .post(
            "/v1/revocations",
            &b.kms.admin,
            json!({ "Type": "Token", "Id": revoked["TokenId"] }),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let revoked = revoked["Token"].as_str().unwrap().to_owned();
    common::eventually(5, "the broker refuses the revoked token", || async {
        b.fetch(
            &format!("/v1/clearkey/key?kid=00&token={revoked}"),
            None,
            None,
        )
        .await
        .0 == 401
    })
    .await;
    for (what, url) in [
        (
            "a revoked token",
            format!("{page}?src={manifest}&license={}", licence(&revoked)),
        ),
        (
            "no token",
            format!("{page}?src={manifest}&license=/v1/clearkey/license"),
        ),
        (
            "another video's token",
            format!("{page}?src={manifest}&license={}", licence(&other)),
        ),
    ] {
        let got = play(&url);
        assert_eq!(got["ok"], false, "{what}: {got}");
        assert_eq!(got["errors"][0]["category"], 6, "{what}: {got}");
    }
    b.api
        .audit_until(
            &b.kms.admin,
            "Operation=ReleaseLicence&VideoId=film-d",
            |rs| {
                rs.iter()
                    .any(|r| r["Outcome"] == "Success" && r["Viewer"] == "dana")
                    && rs.iter().any(|r| r["Outcome"] == "NotEntitled")
            },
        )
        .await;
}

/// Shaka Packager's CENC HLS (`cbcs` and `cenc`) in Chromium: hls.js plays
/// it with EME Clear Key from the broker's `/v1/hls/clearkey/` variant (key
/// tags as `org.w3.clearkey`), Shaka Player from `/v1/hls/playlist/` (key
/// tags as `identity`, their URI the raw key by KID with the viewer's
/// token). Both fail for a viewer entitled to another video.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_js_and_shaka_player_play_clear_key_hls() {
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web");
    std::fs::create_dir_all(&web).unwrap();
    let b = BrokerSetup::with_env(&[
        ("VODKMS_WEB_DIR", web.to_str().unwrap()),
        ("VODKMS_ORIGIN_DIR", web.to_str().unwrap()),
    ])
    .await;
    let src = source(dir.path());
    std::fs::copy(
        browser_dir().join("node_modules/hls.js/dist/hls.min.js"),
        web.join("hls.min.js"),
    )
    .unwrap();
    std::fs::copy(
        browser_dir().join("hlsjs-clearkey.html"),
        web.join("hlsjs-clearkey.html"),
    )
    .unwrap();
    std::fs::copy(browser_dir().join("shaka.html"), web.join("shaka.html")).unwrap();
    std::fs::copy(
        browser_dir().join("node_modules/shaka-player/dist/shaka-player.compiled.js"),
        web.join("shaka-player.compiled.js"),
    )
    .unwrap();
    let page = format!("{}/web/hlsjs-clearkey.html", b.broker.url);
    let shaka_page = format!("{}/web/shaka.html", b.broker.url);
    let token = b.token("hana", &["film-h"]).await;
    let licence = common::brokers::q(&format!("/v1/clearkey/license?token={token}"));
    for scheme in ["cbcs", "cenc"] {
        let (keys_arg, _) = shaka_keys(&b, "film-h");
        shaka_package(
            &src,
            &web.join(format!("film-h-{scheme}")),
            &keys_arg,
            scheme,
            &["--hls_master_playlist_output", "master.m3u8"],
        );
        let master = format!("film-h-{scheme}/master.m3u8?token={token}");
        // The variant rewrites the identity tags; the packaged playlist has them.
        let (status, _, body) = b
            .fetch(
                &format!("/v1/hls/clearkey/film-h-{scheme}/stream_0.m3u8?token={token}"),
                None,
                None,
            )
            .await;
        assert_eq!(status, 200);
        let text = String::from_utf8(body).unwrap();
        assert!(text.contains("KEYFORMAT=\"org.w3.clearkey\""), "{text}");
        assert!(!text.contains("KEYFORMAT=\"identity\""), "{text}");

        let got = play(&format!(
            "{page}?src={}&license={licence}",
            common::brokers::q(&format!("/v1/hls/clearkey/{master}"))
        ));
        assert_eq!(
            got["ok"],
            true,
            "hls.js {scheme}: {got}\n{}",
            b.broker
                .log_text()
                .lines()
                .filter(|l| l.contains("route="))
                .map(|l| l.split("route=").nth(1).unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\n")
        );

        // As packaged, for Shaka: identity tags naming the broker's key by KID.
        let (status, _, body) = b
            .fetch(
                &format!("/v1/hls/playlist/film-h-{scheme}/stream_0.m3u8?token={token}"),
                None,
                None,
            )
            .await;
        assert_eq!(status, 200);
        let text = String::from_utf8(body).unwrap();
        assert!(text.contains("KEYFORMAT=\"identity\""), "{text}");
        assert!(text.contains("/v1/clearkey/key?kid="), "{text}");
        assert!(!text.contains("data:"), "{text}");
        let got = play(&format!(
            "{shaka_page}?src={}",
            common::brokers::q(&format!("/v1/hls/playlist/{master}"))
        ));
        assert_eq!(got["ok"], true, "Shaka Player {scheme}: {got}");
    }
    let other = b.token("hana", &["film-x"]).await;
    let got = play(&format!(
        "{shaka_page}?src={}",
        common::brokers::q(&format!(
            "/v1/hls/playlist/film-h-cenc/master.m3u8?token={other}"
        ))
    ));
    assert_eq!(
        got["ok"], false,
        "Shaka Player, another video's token: {got}"
    );
    let got = play(&format!(
        "{page}?src={}&license={}",
        common::brokers::q(&format!(
            "/v1/hls/clearkey/film-h-cenc/master.m3u8?token={token}"
        )),
        common::brokers::q(&format!("/v1/clearkey/license?token={other}"))
    ));
    assert_eq!(got["ok"], false, "another video's licence token: {got}");
}
