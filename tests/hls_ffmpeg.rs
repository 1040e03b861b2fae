//! End to end with real ffmpeg: a transcoder's output encrypted by
//! `vodkms hls encrypt` (and by ffmpeg itself with `vodkms datakey` key info
//! files), played back by ffmpeg through the broker only for an entitled
//! viewer, frame for frame.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::brokers::BrokerSetup;
use common::media::{frames, hls_encrypt, key_uris, make_fmp4_source, make_source, vodkms};
use serde_json::Value;

struct Stage {
    b: BrokerSetup,
    dir: tempfile::TempDir,
}

impl Stage {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("origin")).unwrap();
        let origin = dir.path().join("origin");
        let b = BrokerSetup::with_env(&[("VODKMS_ORIGIN_DIR", origin.to_str().unwrap())]).await;
        Self { b, dir }
    }

    fn path(&self, rel: &str) -> String {
        self.dir.path().join(rel).to_str().unwrap().to_owned()
    }

    fn playlist_url(&self, rel: &str, token: Option<&str>) -> String {
        let url = format!("{}/v1/hls/playlist/{rel}", self.b.broker.url);
        match token {
            Some(t) => format!("{url}?token={t}"),
            None => url,
        }
    }

    /// The broker's audit records matching `query`, once one satisfies `want`.
    async fn audited(&self, query: &str, want: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.b
            .api
            .audit_until(&self.b.kms.admin, query, |rs| rs.iter().any(&want))
            .await
    }
}

/// fMP4 HLS (ffmpeg `-hls_segment_type fmp4`): the init section is
/// encrypted too, under the key tag before EXT-X-MAP, and ffmpeg plays the
/// copy through the broker frame for frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fmp4_hls_encrypt_output_plays_through_the_broker() {
    let s = Stage::new().await;
    let source = make_fmp4_source(&s.dir.path().join("src"), 4);
    let reference = frames(source.to_str().unwrap()).unwrap();
    assert!(reference.len() > 100, "{}", reference.len());
    let out = hls_encrypt(
        &s.b,
        "alias/vod",
        "film-f",
        &["--rekey-every", "2"],
        source.to_str().unwrap(),
        &s.path("origin/film-f"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (summary["Segments"].as_u64(), summary["Keys"].as_u64()),
        (Some(4), Some(2))
    );
    let text = std::fs::read_to_string(s.path("origin/film-f/index.m3u8")).unwrap();
    let key_at = text.find("#EXT-X-KEY:METHOD=AES-128").unwrap();
    let map_at = text.find("#EXT-X-MAP:").unwrap();
    assert!(
        key_at < map_at,
        "the init section's key tag comes first:\n{text}"
    );
    assert_eq!(text.matches(",IV=0x").count(), 2, "{text}");
    // The init section is ciphertext: no `ftyp` box where MP4 has it.
    let plain_init = std::fs::read(s.dir.path().join("src/init.mp4")).unwrap();
    let init = std::fs::read(s.path("origin/film-f/init.mp4")).unwrap();
    assert_eq!(&plain_init[4..8], b"ftyp");
    assert_ne!(&init[4..8], b"ftyp");
    assert_eq!(init.len(), (plain_init.len() / 16 + 1) * 16);

    let viewer = s.b.token("fiona", &["film-f"]).await;
    let played = frames(&s.playlist_url("film-f/index.m3u8", Some(&viewer))).unwrap();
    assert_eq!(played, reference);
    let other = s.b.token("fiona", &["film-a"]).await;
    assert!(frames(&s.playlist_url("film-f/index.m3u8", Some(&other))).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_encrypt_output_plays_through_the_broker_only_when_entitled() {
    let s = Stage::new().await;
    let source = make_source(&s.dir.path().join("src"), 6);
    let reference = frames(source.to_str().unwrap()).unwrap();
    assert!(
        reference.len() > 150,
        "6 s of video and audio: {}",
        reference.len()
    );

    let out = hls_encrypt(
        &s.b,
        "alias/vod",
        "film-a",
        &["--rekey-every", "2"],
        source.to_str().unwrap(),
        &s.path("origin/film-a"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["Segments"], 6);
    assert_eq!(summary["Keys"], 3);

    // Three key periods, each with its own key and an explicit IV; segments
    // are ciphertext; no key file anywhere in the output.
    let text = std::fs::read_to_string(s.path("origin/film-a/index.m3u8")).unwrap();
    let uris = key_uris(&text);
    assert_eq!(uris.len(), 3, "{text}");
    assert_eq!(
        uris.iter().collect::<std::collections::HashSet<_>>().len(),
        3
    );
    for uri in &uris {
        assert!(uri.starts_with(&format!(
            "{}/v1/hls/key?vid=film-a&Ciphertext=",
            s.b.broker.url
        )));
    }
    assert_eq!(text.matches(",IV=0x").count(), 3);
    for entry in std::fs::read_dir(s.path("origin/film-a")).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        assert!(
            name == "index.m3u8" || name.ends_with(".ts"),
            "unexpected {name}"
        );
        if name.ends_with(".ts") {
            let plain = std::fs::read(s.dir.path().join("src").join(&name)).unwrap();
            let sealed = std::fs::read(entry.path()).unwrap();
            assert_eq!(sealed.len(), (plain.len() / 16 + 1) * 16);
            assert_ne!(&sealed[..188], &plain[..188]);
        }
    }

    // An entitled viewer: the same frames as the unencrypted source.
    let alice = s.b.token("alice", &["film-a"]).await;
    let played = frames(&s.playlist_url("film-a/index.m3u8", Some(&alice))).unwrap();
    assert_eq!(played, reference);
    s.audited("Operation=ReleaseKey&Viewer=alice&Outcome=Success", |r| {
        r["VideoId"] == "film-a"
    })
    .await;

    // No token: the broker refuses the playlist...
    let err = frames(&s.playlist_url("film-a/index.m3u8", None)).unwrap_err();
    assert!(err.contains("401"), "{err}");
    // ...and, for the published playlist played straight from disk, the keys.
    match frames(&s.path("origin/film-a/index.m3u8")) {
        Ok(got) => assert_ne!(got, reference, "played without a token"),
        Err(e) => assert!(e.contains("401") || e.contains("nvalid"), "{e}"),
    }
    s.audited("Operation=ReleaseKey&Outcome=MissingToken", |r| {
        r["VideoId"].is_null() || r["VideoId"] == "film-a"
    })
    .await;

    // Another video's token: refused for the playlist and for the keys.
    let mallory = s.b.token("mallory", &["film-b"]).await;
    let err = frames(&s.playlist_url("film-a/index.m3u8", Some(&mallory))).unwrap_err();
    assert!(err.contains("403"), "{err}");
    let published = std::fs::read_to_string(s.path("origin/film-a/index.m3u8")).unwrap();
    let parsed = hls::playlist::Playlist::parse(&published).unwrap();
    let with_wrong_token = hls::rewrite::with_token(
        &parsed,
        &hls::rewrite::TokenTargets::new(std::slice::from_ref(&s.b.broker.url)).unwrap(),
        "/v1/hls/playlist/film-a/index.m3u8",
        &mallory,
    )
    .unwrap();
    std::fs::write(s.path("origin/film-a/mallory.m3u8"), with_wrong_token).unwrap();
    match frames(&s.path("origin/film-a/mallory.m3u8")) {
        Ok(got) => assert_ne!(got, reference, "played with another video's token"),
        Err(e) => assert!(e.contains("403") || e.contains("nvalid"), "{e}"),
    }
    s.audited(
        "Operation=ReleaseKey&Viewer=mallory&Outcome=NotEntitled",
        |r| r["VideoId"] == "film-a",
    )
    .await;
    s.audited(
        "Operation=DeliverPlaylist&Viewer=mallory&Outcome=NotEntitled",
        |r| r["VideoId"] == "film-a",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_periodic_rekey_with_datakey_keyinfo_plays_through_the_broker() {
    let s = Stage::new().await;
    let source = make_source(&s.dir.path().join("src"), 6);
    let reference = frames(source.to_str().unwrap()).unwrap();
    let keyinfo = s.path("enc.keyinfo");
    let datakey = || {
        let out = vodkms(
            &s.b.kms.generator,
            &[
                "datakey",
                "--kms-url",
                &s.b.kms.kms.url,
                "--key",
                "alias/vod",
                "--video-id",
                "film-c",
                "--ffmpeg-keyinfo",
                &keyinfo,
                "--key-uri-base",
                &s.b.broker.url,
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let first = datakey();
    let key_file = first["KeyFile"].as_str().unwrap().to_owned();
    assert_eq!(std::fs::read(&key_file).unwrap().len(), 16);
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // ffmpeg re-muxes the source at its own pace (-re, ~6 s) and re-reads the
    // key info file at every segment; we rotate the key while it runs.
    std::fs::create_dir(s.path("origin/film-c")).unwrap();
    let mut child = common::media::ffmpeg()
        .args(["-re", "-i", source.to_str().unwrap(), "-c", "copy"])
        .args(["-f", "hls", "-hls_time", "1", "-hls_playlist_type", "vod"])
        .args([
            "-hls_key_info_file",
            &keyinfo,
            "-hls_flags",
            "periodic_rekey",
        ])
        .args(["-hls_segment_filename", &s.path("origin/film-c/seg%03d.ts")])
        .arg(s.path("origin/film-c/index.m3u8"))
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut rotations = 0;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        datakey();
        rotations += 1;
        assert!(rotations < 40, "ffmpeg did not finish");
    };
    assert!(status.success());

    let text = std::fs::read_to_string(s.path("origin/film-c/index.m3u8")).unwrap();
    let distinct: std::collections::HashSet<_> = key_uris(&text).into_iter().collect();
    assert!(distinct.len() >= 2, "no key rotation happened: {text}");
    assert!(text.contains(",IV=0x"), "{text}");
    // At most two key files ever exist beside the key info file.
    let key_files = std::fs::read_dir(s.dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".key")
        })
        .count();
    assert_eq!(key_files, 2);

    let viewer = s.b.token("bob", &["film-c"]).await;
    let played = frames(&s.playlist_url("film-c/index.m3u8", Some(&viewer))).unwrap();
    assert_eq!(played, reference);
    let released = s
        .audited("Operation=ReleaseKey&Viewer=bob&Outcome=Success", |_| true)
        .await;
    assert!(!released.is_empty());
    let other = s.b.token("eve", &["film-a"]).await;
    let err = frames(&s.playlist_url("film-c/index.m3u8", Some(&other))).unwrap_err();
    assert!(err.contains("403"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_encrypt_refuses_bad_input_and_leaves_nothing_behind() {
    let s = Stage::new().await;
    let src = s.dir.path().join("src");
    let source = make_source(&src, 2);
    let encrypt =
        |input: &str, output: &str| hls_encrypt(&s.b, "alias/vod", "film-x", &[], input, output);
    let leftovers = |dir: &Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect::<Vec<_>>()
    };
    let write = |name: &str, text: &str| {
        let p = src.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_owned()
    };
    let cases = [
        (
            write(
                "missing.m3u8",
                "#EXTM3U\n#EXTINF:1,\nseg000.ts\n#EXTINF:1,\nnope.ts\n",
            ),
            "MissingSegment",
        ),
        (
            write("garbage.m3u8", "<html>not a playlist</html>\n"),
            "MalformedPlaylist",
        ),
        (
            write(
                "fmp4-range.m3u8",
                "#EXTM3U\n#EXT-X-MAP:URI=\"init.mp4\",BYTERANGE=\"100@0\"\n#EXTINF:1,\nseg000.ts\n",
            ),
            "byte-range initialization",
        ),
        (
            write(
                "fmp4-no-init.m3u8",
                "#EXTM3U\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:1,\nseg000.ts\n",
            ),
            "MissingSegment",
        ),
        (
            write(
                "range.m3u8",
                "#EXTM3U\n#EXTINF:1,\n#EXT-X-BYTERANGE:100@0\nseg000.ts\n",
            ),
            "byte-range",
        ),
        (
            write("escape.m3u8", "#EXTM3U\n#EXTINF:1,\n../../etc/passwd\n"),
            "leaves",
        ),
        (
            write(
                "done.m3u8",
                "#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI=\"k\"\n#EXTINF:1,\nseg000.ts\n",
            ),
            "already encrypted",
        ),
    ];
    for (input, want) in &cases {
        let out = encrypt(input, &s.path("out"));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{input}");
        assert!(err.contains(want), "{input}: {err}");
        assert!(
            !s.dir.path().join("out").exists(),
            "{input}: half-written output"
        );
        assert!(
            leftovers(s.dir.path()).is_empty(),
            "{input}: staging folder left"
        );
    }

    // A KMS refusal (unknown key) fails before anything is written.
    let out = hls_encrypt(
        &s.b,
        "alias/none",
        "film-x",
        &[],
        source.to_str().unwrap(),
        &s.path("out"),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("DataKeyUnavailable"));
    assert!(!s.dir.path().join("out").exists());

    // A good run, then a second one refuses to overwrite without --force.
    let out = encrypt(source.to_str().unwrap(), &s.path("out"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = std::fs::read_to_string(s.path("out/index.m3u8")).unwrap();
    let out = encrypt(source.to_str().unwrap(), &s.path("out"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    assert_eq!(
        std::fs::read_to_string(s.path("out/index.m3u8")).unwrap(),
        before
    );
    assert!(leftovers(s.dir.path()).is_empty());
    // No token: a clear refusal.
    let out = std::process::Command::new(common::BIN)
        .args([
            "hls",
            "encrypt",
            "--kms-url",
            &s.b.kms.kms.url,
            "--key",
            "alias/vod",
        ])
        .args([
            "--video-id",
            "v",
            "--key-uri-base",
            &s.b.broker.url,
            "in.m3u8",
            "out2",
        ])
        .env_remove("VODKMS_TOKEN")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("VODKMS_TOKEN"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_playlist_with_two_renditions_shares_keys_and_plays() {
    let s = Stage::new().await;
    let source = common::media::make_master_source(&s.dir.path().join("src"), 4);
    let reference = frames(source.to_str().unwrap()).unwrap();
    let out = hls_encrypt(
        &s.b,
        "alias/vod",
        "film-m",
        &["--rekey-every", "2"],
        source.to_str().unwrap(),
        &s.path("origin/film-m"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (summary["Playlists"].clone(), summary["Keys"].clone()),
        (3.into(), 2.into())
    );

    // Both renditions use the same two keys; the master names them up front.
    let v0 = key_uris(&std::fs::read_to_string(s.path("origin/film-m/v0/index.m3u8")).unwrap());
    let v1 = key_uris(&std::fs::read_to_string(s.path("origin/film-m/v1/index.m3u8")).unwrap());
    assert_eq!(v0.len(), 2);
    assert_eq!(v0, v1);
    let master = std::fs::read_to_string(s.path("origin/film-m/master.m3u8")).unwrap();
    for uri in &v0 {
        assert!(master.contains(&format!("#EXT-X-SESSION-KEY:METHOD=AES-128,URI=\"{uri}\"")));
    }

    let viewer = s.b.token("carol", &["film-m"]).await;
    let played = frames(&s.playlist_url("film-m/master.m3u8", Some(&viewer))).unwrap();
    assert_eq!(played, reference);
}
