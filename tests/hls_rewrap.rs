//! `vodkms hls rewrap` on a library: 200 videos × 3 renditions × 10 key
//! periods encrypted across master key versions, rotated twice, rewrapped
//! (killed with SIGKILL half-way, then resumed), the old versions retired,
//! and still playing through the broker (ffmpeg framemd5 on a sample). Real
//! KMS on PostgreSQL, real broker, real ffmpeg.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::brokers::{q, BrokerSetup};
use common::media::{ffmpeg, frames, hls_encrypt, vodkms};
use common::BIN;
use serde_json::{json, Value};

const VIDEOS: usize = 200;
const RENDITIONS: usize = 3;
const PERIODS: usize = 10;

/// A master playlist with three renditions, 10 one-second segments each.
fn make_source(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let mut cmd = ffmpeg();
    cmd.args(["-f", "lavfi", "-i", "testsrc=size=160x120:rate=10"])
        .args(["-t", &PERIODS.to_string()])
        .args(["-map", "0:v", "-map", "0:v", "-map", "0:v"])
        .args(["-c:v", "libx264", "-g", "10", "-pix_fmt", "yuv420p"])
        .args(["-s:v:1", "128x96", "-s:v:2", "96x72"])
        // Without bit rates ffmpeg writes a master playlist with no variants.
        .args(["-b:v:0", "200k", "-b:v:1", "150k", "-b:v:2", "100k"])
        .args(["-f", "hls", "-hls_time", "1", "-hls_playlist_type", "vod"])
        .args(["-master_pl_name", "master.m3u8"])
        .args(["-var_stream_map", "v:0 v:1 v:2"])
        .arg("-hls_segment_filename")
        .arg(dir.join("v%v/seg%03d.ts"))
        .arg(dir.join("v%v/index.m3u8"));
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join("master.m3u8")
}

/// Every playlist under the origin with its text.
fn playlists(origin: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![origin.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "m3u8") {
                let text = std::fs::read_to_string(&p).unwrap();
                out.push((p, text));
            }
        }
    }
    out.sort();
    out
}

/// Every (video, EDK) the library's playlists name; panics on a playlist
/// that is not whole.
fn library_keys(origin: &Path) -> HashSet<(String, String)> {
    let mut keys = HashSet::new();
    for (path, text) in playlists(origin) {
        let found = hls::rewrap::playlist_keys(&text)
            .unwrap_or_else(|e| panic!("{} is not a valid playlist: {e}", path.display()));
        assert!(!found.keys.is_empty(), "{} lost its keys", path.display());
        for k in found.keys {
            keys.insert((k.video_id, k.ciphertext_blob));
        }
    }
    keys
}

fn version_of(blob: &str) -> u32 {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(blob)
        .unwrap();
    u32::from_be_bytes(bytes[17..21].try_into().unwrap())
}

/// Every EDK opens, for its video, through the KMS.
async fn all_open(b: &BrokerSetup, keys: &HashSet<(String, String)>) {
    for (video, blob) in keys {
        let r = b.kms.api.decrypt(&b.kms.decryptor, blob, video).await;
        assert_eq!(r.status, 200, "{video}: {:?}", r.body);
    }
}

fn rewrap(b: &BrokerSetup, origin: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["hls", "rewrap", "--kms-url", &b.kms.kms.url];
    args.extend_from_slice(extra);
    args.push(origin.to_str().unwrap());
    let out = vodkms(&b.kms.generator, &args);
    assert!(
        out.status.success(),
        "rewrap: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn rotate(b: &BrokerSetup) {
    b.kms
        .api
        .post(
            &format!("/v1/keys/{}/rotate", b.kms.key_id),
            &b.kms.admin,
            json!({}),
        )
        .await
        .ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_library_is_rewrapped_through_a_crash_retired_and_still_plays() {
    let dir = tempfile::tempdir().unwrap();
    let origin = dir.path().join("origin");
    std::fs::create_dir(&origin).unwrap();
    let b = BrokerSetup::with_env(&[("VODKMS_ORIGIN_DIR", origin.to_str().unwrap())]).await;
    let source = make_source(&dir.path().join("src"));
    let reference = frames(source.to_str().unwrap()).unwrap();

    // Half the library under version 1, half under version 2; then the
    // primary moves on to 3.
    let encrypt_range = |from: usize, to: usize| {
        std::thread::scope(|scope| {
            for lane in 0..2 {
                let (b, source, origin) = (&b, &source, &origin);
                scope.spawn(move || {
                    for i in (from..to).filter(|i| i % 2 == lane) {
                        let video = format!("film-{i:03}");
                        let out = hls_encrypt(
                            b,
                            "alias/vod",
                            &video,
                            &["--rekey-every", "1"],
                            source.to_str().unwrap(),
                            origin.join(&video).to_str().unwrap(),
                        );
                        assert!(
                            out.status.success(),
                            "{}",
                            String::from_utf8_lossy(&out.stderr)
                        );
                    }
                });
            }
        });
    };
    // A CENC content key registered at the broker (the CMAF registry).
    let (_, cenc_blob) = b.data_key("film-000").await;
    let kid = "00112233445566778899aabbccddeeff";
    let r = b
        .api
        .post(
            "/v1/content-keys",
            &b.kms.generator,
            json!({ "Kid": kid, "VideoId": "film-000", "CiphertextBlob": cenc_blob }),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    encrypt_range(0, VIDEOS / 2);
    rotate(&b).await;
    encrypt_range(VIDEOS / 2, VIDEOS);
    rotate(&b).await;

    let before = library_keys(&origin);
    assert_eq!(
        before.len(),
        VIDEOS * PERIODS,
        "renditions share their period keys"
    );
    assert_eq!(playlists(&origin).len(), VIDEOS * (RENDITIONS + 1));
    let versions: HashSet<u32> = before.iter().map(|(_, b)| version_of(b)).collect();
    assert_eq!(versions, HashSet::from([1, 2]));
    // A viewer mid-stream holds an old key URI.
    let viewer = b.token("viewer", &["film-000", "film-199"]).await;
    let (old_video, old_blob) = before
        .iter()
        .find(|(v, _)| v == "film-000")
        .unwrap()
        .clone();
    let old_key = format!(
        "vid={old_video}&Ciphertext={}&token={}",
        q(&old_blob),
        q(&viewer)
    );
    assert_eq!(b.key_status(&old_key).await.0, 200);

    // A dry run counts everything and changes nothing.
    let snapshot: Vec<(PathBuf, String)> = playlists(&origin);
    let dry = rewrap(&b, &origin, &["--dry-run", "--broker-url", &b.broker.url]);
    assert_eq!(dry["DryRun"], true);
    assert_eq!(dry["PlaylistsRewritten"], VIDEOS * (RENDITIONS + 1));
    assert_eq!(dry["ContentKeysRewrapped"], 1);
    assert_eq!(playlists(&origin), snapshot);
    assert!(!origin.join(".vodkms-rewrap.journal").exists());

    // Killed (SIGKILL) half-way: every playlist is still whole and every
    // EDK in it opens.
    let journal = origin.join(".vodkms-rewrap.journal");
    let mut child = Command::new(BIN)
        .args([
            "hls",
            "rewrap",
            "--kms-url",
            &b.kms.kms.url,
            "--batch",
            "10",
        ])
        .arg(&origin)
        .env("VODKMS_TOKEN", &b.kms.generator)
        .env_remove("VODKMS_KMS_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let lines = std::fs::read_to_string(&journal)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if lines >= 300 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "rewrap ended before it could be killed"
        );
        assert!(Instant::now() < deadline, "the journal never grew");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let midway = library_keys(&origin);
    let versions: HashSet<u32> = midway.iter().map(|(_, b)| version_of(b)).collect();
    assert!(
        versions.contains(&3),
        "some playlists were rewritten: {versions:?}"
    );
    assert!(versions.len() > 1, "and some were not yet: {versions:?}");
    all_open(&b, &midway).await;

    // Resumed: finishes, the journal's EDKs reused, the journal removed.
    let started = Instant::now();
    let done = rewrap(&b, &origin, &["--broker-url", &b.broker.url]);
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(done["Failed"], 0);
    // A video killed between its playlists names old and new EDKs.
    let keys = done["Keys"].as_u64().unwrap();
    assert!(keys >= (VIDEOS * PERIODS + 1) as u64, "{done}");
    // Those in playlists rewritten before the kill are current already.
    let (rewrapped, current) = (
        done["KeysRewrapped"].as_u64().unwrap(),
        done["KeysAlreadyCurrent"].as_u64().unwrap(),
    );
    assert_eq!(rewrapped + current, keys, "{done}");
    assert!(current > 0 && rewrapped > 0, "{done}");
    assert_eq!(done["ContentKeysRewrapped"], 1);
    assert!(!journal.exists());
    let after = library_keys(&origin);
    assert_eq!(after.len(), VIDEOS * PERIODS);
    assert!(after.iter().all(|(_, b)| version_of(b) == 3));
    // No leftovers of the interrupted atomic replacements.
    for e in walk(&origin) {
        assert!(
            !e.to_string_lossy().ends_with(".vodkms-rewrap.tmp"),
            "{e:?}"
        );
    }
    println!(
        "rewrap (resumed part): {} keys, {} playlists in {secs:.2} s; summary {done}",
        done["KeysRewrapped"], done["PlaylistsRewritten"]
    );

    // Idempotent: nothing left to do, one KMS call to learn the version.
    let again = rewrap(&b, &origin, &["--broker-url", &b.broker.url]);
    assert_eq!(again["KeysRewrapped"], 0);
    assert_eq!(again["PlaylistsRewritten"], 0);
    assert_eq!(again["KmsCalls"], 1);
    assert_eq!(library_keys(&origin), after);

    // Old and new URIs both open until the old versions are retired.
    assert_eq!(b.key_status(&old_key).await.0, 200);
    let r = b
        .kms
        .api
        .post(
            &format!("/v1/keys/{}/retire-versions", b.kms.key_id),
            &b.kms.admin,
            json!({ "MinDecryptionVersion": 3 }),
        )
        .await;
    assert_eq!(r.ok()["MinDecryptionVersion"], 3);
    common::eventually(10, "the broker refuses the retired version", || async {
        b.key_status(&old_key).await == (403, "KeyVersionRetired".into())
    })
    .await;
    all_open(&b, &after).await;
    let listed = b.api.get("/v1/content-keys", &b.kms.admin).await;
    let registered = listed.ok()["ContentKeys"][0]["CiphertextBlob"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(version_of(&registered), 3);
    assert_ne!(registered, cenc_blob);

    // A sample plays through the broker, frame for frame.
    for video in ["film-000", "film-199"] {
        let url = format!(
            "{}/v1/hls/playlist/{video}/master.m3u8?token={}",
            b.broker.url, viewer
        );
        assert_eq!(frames(&url).unwrap(), reference, "{video}");
    }
    let by_video: HashMap<String, usize> = after.iter().fold(HashMap::new(), |mut m, (v, _)| {
        *m.entry(v.clone()).or_default() += 1;
        m
    });
    assert!(by_video.values().all(|n| *n == PERIODS));
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
