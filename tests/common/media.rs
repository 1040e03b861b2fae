//! Media fixtures: real ffmpeg making, encrypting and decoding HLS, and the
//! `vodkms` transcoder commands.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::BIN;

pub fn ffmpeg() -> Command {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"]);
    cmd
}

fn run(mut cmd: Command, what: &str) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run ({e}); scripts/test installs ffmpeg"));
    out
}

/// `seconds` of test video (testsrc + a sine tone, H.264 + AAC) as unencrypted
/// HLS in `dir`, 1 s MPEG-TS segments: what a transcoder hands over.
pub fn make_source(dir: &Path, seconds: u32) -> PathBuf {
    make_hls(dir, seconds, &[], "seg%03d.ts")
}

/// The same source as fMP4 HLS (`-hls_segment_type fmp4`: an EXT-X-MAP
/// initialization section `init.mp4` and `.m4s` segments).
pub fn make_fmp4_source(dir: &Path, seconds: u32) -> PathBuf {
    make_hls(
        dir,
        seconds,
        &[
            "-hls_segment_type",
            "fmp4",
            "-hls_fmp4_init_filename",
            "init.mp4",
        ],
        "seg%03d.m4s",
    )
}

fn make_hls(dir: &Path, seconds: u32, hls_args: &[&str], segments: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let playlist = dir.join("index.m3u8");
    let mut cmd = ffmpeg();
    cmd.args(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args(["-t", &seconds.to_string()])
        .args([
            "-c:v", "libx264", "-g", "25", "-pix_fmt", "yuv420p", "-c:a", "aac",
        ])
        .args(["-f", "hls", "-hls_time", "1", "-hls_playlist_type", "vod"])
        .args(hls_args)
        .arg("-hls_segment_filename")
        .arg(dir.join(segments))
        .arg(&playlist);
    let out = run(cmd, "ffmpeg (making the source)");
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    playlist
}

/// Opens `url` in headless Chromium (tests/browser/play.mjs, playwright-core)
/// and returns the page's `window.__result`.
pub fn play(url: &str) -> serde_json::Value {
    let out = Command::new("node")
        .arg(browser_dir().join("play.mjs"))
        .arg(url)
        .output()
        .expect("node: scripts/test installs Node packages and Chromium");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "play.mjs failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// The browser tests' folder: pages, play.mjs and the npm packages.
pub fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Decoded frames of every stream of `input` as `(stream, size, md5)`,
/// timestamps left out (a remux may shift them). `Err(stderr)` if ffmpeg
/// fails.
pub fn frames(input: &str) -> Result<Vec<String>, String> {
    let mut cmd = ffmpeg();
    cmd.args(["-protocol_whitelist", "file,crypto,data,http,tcp"])
        .args(["-i", input, "-f", "framemd5", "-"]);
    let out = run(cmd, "ffmpeg (decoding)");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let frames: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').map(str::trim).collect();
            format!("{},{},{}", f[0], f[4], f[5])
        })
        .collect();
    Ok(frames)
}

/// Video frames as `framemd5` lines (timestamps and all), decrypting with
/// `key` (hex) when given.
pub fn video_frames(input: &Path, key: Option<&str>) -> Result<Vec<String>, String> {
    let mut cmd = ffmpeg();
    if let Some(k) = key {
        cmd.args(["-decryption_key", k]);
    }
    let out = cmd
        .arg("-i")
        .arg(input)
        .args(["-map", "0:v", "-f", "framemd5", "-"])
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_owned)
        .collect())
}

/// `vodkms ARGS` with the KMS API token in VODKMS_TOKEN.
pub fn vodkms(token: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("VODKMS_TOKEN", token)
        .env_remove("VODKMS_KMS_URL")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The URIs of the EXT-X-KEY tags of a playlist, in order.
pub fn key_uris(playlist: &str) -> Vec<String> {
    playlist
        .lines()
        .filter(|l| l.starts_with("#EXT-X-KEY:"))
        .map(|l| {
            let start = l.find("URI=\"").unwrap() + 5;
            let end = start + l[start..].find('"').unwrap();
            l[start..end].to_owned()
        })
        .collect()
}

/// A master playlist with two renditions (320x240 and 160x120, each with
/// audio) as ffmpeg's `-var_stream_map` writes it: `dir/master.m3u8`,
/// `dir/v0/…`, `dir/v1/…`.
pub fn make_master_source(dir: &Path, seconds: u32) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let mut cmd = ffmpeg();
    cmd.args(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args(["-t", &seconds.to_string()])
        .args(["-map", "0:v", "-map", "0:v", "-map", "1:a", "-map", "1:a"])
        .args([
            "-c:v", "libx264", "-g", "25", "-pix_fmt", "yuv420p", "-s:v:1", "160x120",
        ])
        .args([
            "-c:a",
            "aac",
            "-f",
            "hls",
            "-hls_time",
            "1",
            "-hls_playlist_type",
            "vod",
        ])
        .args([
            "-master_pl_name",
            "master.m3u8",
            "-var_stream_map",
            "v:0,a:0 v:1,a:1",
        ])
        .arg("-hls_segment_filename")
        .arg(dir.join("v%v/seg%03d.ts"))
        .arg(dir.join("v%v/index.m3u8"));
    let out = run(cmd, "ffmpeg (making the master source)");
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join("master.m3u8")
}

/// `vodkms hls encrypt` against `b`'s KMS and broker with master key `key`;
/// `extra` goes before the two paths.
pub fn hls_encrypt(
    b: &super::brokers::BrokerSetup,
    key: &str,
    video: &str,
    extra: &[&str],
    input: &str,
    output: &str,
) -> Output {
    let mut args = vec!["hls", "encrypt", "--kms-url", &b.kms.kms.url, "--key", key];
    args.extend(["--video-id", video, "--key-uri-base", &b.broker.url]);
    args.extend_from_slice(extra);
    args.extend([input, output]);
    vodkms(&b.kms.generator, &args)
}
