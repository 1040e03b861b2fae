//! `vodkms dev` from an empty folder: what it prints and writes, the demo key
//! through the broker with those credentials, a restart that reuses
//! everything, and the /demo page in headless Chromium.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use common::{free_port, ServerProcess};
use serde_json::{json, Value};

async fn start(dir: &Path, port: u16) -> ServerProcess {
    let d = dir.to_str().unwrap();
    let server = ServerProcess::spawn(&["dev", "--data-dir", d], port, &[], "dev")
        .await
        .unwrap_or_else(|log| panic!("vodkms dev did not start:\n{log}"));
    // /healthz answers before the first start has made the demo viewer.
    common::eventually(30, "the first start to finish", || async {
        server.log_text().contains("vodkms dev is running")
    })
    .await;
    server
}

fn credentials(dir: &Path) -> Value {
    let path = dir.join("dev-credentials.json");
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "dev-credentials.json must be private");
    }
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn hex16(text: &str) -> [u8; 16] {
    core::array::from_fn(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap())
}

/// The demo viewer's playback token, from `/v1/login`.
async fn sign_in(http: &reqwest::Client, url: &str, user: &str, password: &str) -> String {
    let login = http
        .post(format!("{url}/v1/login"))
        .json(&json!({"Username": user, "Password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    login.json::<Value>().await.unwrap()["Token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Signs in as the demo viewer, fetches the playlist and its first key, and
/// decrypts the first segment: it must equal the shipped sample's.
async fn play_first_segment(url: &str, user: &str, password: &str) {
    let http = reqwest::Client::new();
    let token = sign_in(&http, url, user, password).await;
    let playlist = http
        .get(format!(
            "{url}/v1/hls/playlist/demo/index.m3u8?token={token}"
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let key_line = playlist
        .lines()
        .find(|l| l.starts_with("#EXT-X-KEY:"))
        .unwrap_or_else(|| panic!("{playlist}"));
    let start = key_line.find("URI=\"").unwrap() + 5;
    let key_uri = &key_line[start..start + key_line[start..].find('"').unwrap()];
    assert!(
        key_uri.starts_with(&format!("{url}/v1/hls/key?vid=demo&")),
        "{key_uri}"
    );
    let iv = hex16(key_line.split("IV=0x").nth(1).unwrap());
    let key = http.get(key_uri).send().await.unwrap();
    assert_eq!(key.status(), 200);
    let key: [u8; 16] = key.bytes().await.unwrap().as_ref().try_into().unwrap();
    let sealed = http
        .get(format!("{url}/v1/hls/playlist/demo/seg0.ts"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let plain = hls::cipher::decrypt_segment(&zeroize::Zeroizing::new(key), &iv, &sealed).unwrap();
    let shipped =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/dev/sample/seg0.ts"))
            .unwrap();
    assert_eq!(plain, shipped);
}

/// The video frames of a CMAF folder's `v/` track decrypted with `key`,
/// segment by segment: ffmpeg 5.1 misreads Shaka Packager's segments
/// joined into one file ("subsample size exceeds the packet size").
fn cmaf_frames(folder: &Path, key: &[u8]) -> Vec<String> {
    let init = std::fs::read(folder.join("v/init.mp4")).unwrap();
    let work = tempfile::tempdir().unwrap();
    let mut frames = Vec::new();
    for n in 1..=3 {
        let mut joined = init.clone();
        joined.extend(std::fs::read(folder.join(format!("v/{n}.m4s"))).unwrap());
        let whole = work.path().join(format!("v{n}.mp4"));
        std::fs::write(&whole, joined).unwrap();
        frames.extend(common::media::video_frames(&whole, Some(&hex::encode(key))).unwrap());
    }
    frames
}

/// The CMAF sample's Clear Key licence, for the signed-in demo viewer: its
/// key is this install's own (not the shipping key), and the re-keyed
/// segments decode with it to the shipped sample's frames.
async fn cmaf_licence_key_decrypts_the_rekeyed_sample(
    url: &str,
    data: &Path,
    user: &str,
    password: &str,
) {
    let http = reqwest::Client::new();
    let token = sign_in(&http, url, user, password).await;
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/dev/sample-cmaf");
    let init = std::fs::read(shipped.join("v/init.mp4")).unwrap();
    let kid = hls::cenc::track_encryption(&init).unwrap()[0].kid;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let licence: Value = http
        .post(format!("{url}/v1/clearkey/license"))
        .bearer_auth(&token)
        .body(json!({"kids": [b64.encode(kid)], "type": "temporary"}).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = b64
        .decode(
            licence["keys"][0]["k"]
                .as_str()
                .unwrap_or_else(|| panic!("{licence}")),
        )
        .unwrap();
    let shipping_key = hex::decode("cbbae9c082b10f77083c80d56fdb0808").unwrap();
    assert_ne!(key, shipping_key, "the sample still has the shipping key");
    let reference = cmaf_frames(&shipped, &shipping_key);
    assert!(reference.len() >= 100, "{}", reference.len());
    assert_eq!(cmaf_frames(&data.join("origin/demo-cmaf"), &key), reference);
}

/// On one core the server runs a single-threaded runtime (no work stealing,
/// no cross-thread wakeups): sign-in (Argon2 on the blocking pool), the KMS,
/// the broker and key release all still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_one_core_everything_runs_on_one_thread() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("vodkms-data");
    let d = data.to_str().unwrap();
    let port = free_port();
    let server = ServerProcess::spawn_on_one_core(
        &["dev", "--data-dir", d],
        port,
        &[("RUST_LOG", "info,vodkms=debug")],
        "dev-one-core",
    )
    .await
    .unwrap_or_else(|log| panic!("vodkms dev did not start on one core:\n{log}"));
    common::eventually(30, "the first start to finish", || async {
        server.log_text().contains("vodkms dev is running")
    })
    .await;
    assert!(
        server.log_text().contains("the runtime runs on one thread"),
        "{}",
        server.log_text()
    );
    let c = credentials(&data);
    let (user, password) = (
        c["ViewerUsername"].as_str().unwrap(),
        c["ViewerPassword"].as_str().unwrap(),
    );
    play_first_segment(&server.url, user, password).await;
    assert!(server.terminate().success());
}

/// The risk rules on the embedded SQLite store: one stream per viewer, and
/// a video's own page-origin list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn risk_rules_hold_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("vodkms-data");
    let d = data.to_str().unwrap();
    let port = free_port();
    let server = ServerProcess::spawn(
        &["dev", "--data-dir", d, "--max-streams-per-viewer", "1"],
        port,
        &[],
        "dev-risk",
    )
    .await
    .unwrap_or_else(|log| panic!("vodkms dev did not start:\n{log}"));
    common::eventually(30, "the first start to finish", || async {
        server.log_text().contains("vodkms dev is running")
    })
    .await;
    let c = credentials(&data);
    let (user, password) = (
        c["ViewerUsername"].as_str().unwrap(),
        c["ViewerPassword"].as_str().unwrap(),
    );
    let admin = c["AdminToken"].as_str().unwrap();
    let http = reqwest::Client::new();
    let url = &server.url;
    let playlist = |token: String, origin: Option<&'static str>| {
        let http = http.clone();
        async move {
            let mut req = http.get(format!(
                "{url}/v1/hls/playlist/demo/index.m3u8?token={token}"
            ));
            if let Some(o) = origin {
                req = req.header("Origin", o);
            }
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.text().await.unwrap())
        }
    };
    // Two sign-ins are two streams: the second is refused.
    let first = sign_in(&http, url, user, password).await;
    let second = sign_in(&http, url, user, password).await;
    assert_eq!(playlist(first.clone(), None).await.0, 200);
    let (status, body) = playlist(second.clone(), None).await;
    assert_eq!(status, 403);
    assert!(body.contains("StreamLimit"), "{body}");
    // The admin ends the first; the second plays.
    let api = common::Api::new(url);
    let sessions = api.get(&format!("/v1/sessions?Viewer={user}"), admin).await;
    let list = sessions.ok()["Sessions"].as_array().unwrap().clone();
    assert_eq!(list.len(), 1, "{list:?}");
    let id = list[0]["SessionId"].as_str().unwrap();
    let ended = http
        .delete(format!("{url}/v1/sessions/{id}"))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), 200);
    assert_eq!(playlist(first, None).await.0, 401);
    assert_eq!(playlist(second.clone(), None).await.0, 200);
    // A page-origin list of the demo video, on the embedded store.
    let put = http
        .put(format!("{url}/v1/videos/demo/playback-policy"))
        .bearer_auth(admin)
        .json(&json!({ "AllowedOrigins": ["https://www.example.com"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let (status, body) = playlist(second.clone(), None).await;
    assert_eq!(status, 403);
    assert!(body.contains("OriginNotAllowed"), "{body}");
    assert_eq!(
        playlist(second, Some("https://www.example.com")).await.0,
        200
    );
    assert!(server.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_provisions_everything_and_a_restart_reuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("vodkms-data");
    let port = free_port();
    let server = start(&data, port).await;
    let url = server.url.clone();
    let printed = server.log_text();
    let c = credentials(&data);
    for field in [
        "AdminToken",
        "IssuerToken",
        "ViewerUsername",
        "ViewerPassword",
        "DemoVideoId",
        "DemoPlaylistUrl",
    ] {
        assert!(
            c[field].as_str().is_some_and(|v| !v.is_empty()),
            "{field}: {c}"
        );
    }
    assert_eq!(
        c["DemoPlaylistUrl"],
        format!("{url}/v1/hls/playlist/demo/index.m3u8")
    );
    assert!(printed.contains("WARNING: development mode"), "{printed}");
    // What was printed is what was written.
    let (user, password) = (
        c["ViewerUsername"].as_str().unwrap(),
        c["ViewerPassword"].as_str().unwrap(),
    );
    assert!(
        printed.contains(&format!("sign in as  {user} / {password}")),
        "{printed}"
    );
    assert!(printed.contains(c["AdminToken"].as_str().unwrap()));
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(data.join("root.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // The demo key through the broker, as the printed viewer; a wrong password is refused.
    play_first_segment(&url, user, password).await;
    cmaf_licence_key_decrypts_the_rekeyed_sample(&url, &data, user, password).await;
    let api = common::Api::new(&url);
    let wrong = api
        .raw(
            api.request(reqwest::Method::POST, "/v1/login", None)
                .json(&json!({"Username": user, "Password": "wrong"})),
        )
        .await;
    wrong.assert_error(401, "InvalidCredentials");
    // The other printed tokens work: the issuer mints, the admin reads both audit trails.
    let issued = api
        .post(
            "/v1/tokens",
            c["IssuerToken"].as_str().unwrap(),
            json!({"Viewer": "app-user", "VideoIds": ["demo"]}),
        )
        .await;
    assert_eq!(issued.status, 201, "{:?}", issued.body);
    let admin = c["AdminToken"].as_str().unwrap();
    let keys = api.get("/kms/v1/keys", admin).await;
    assert_eq!(keys.ok()["Keys"][0]["Aliases"], json!(["alias/demo"]));
    // Audit records are written in batches: wait for them, with a deadline.
    // Per video: (the TS sample's, the CMAF sample's).
    let generated = || async {
        let r = api
            .get("/kms/v1/audit?Operation=GenerateDataKey&Limit=100", admin)
            .await;
        let records = r.ok()["Records"].as_array().unwrap().clone();
        let count = |video: &str| {
            records
                .iter()
                .filter(|r| r["EncryptionContext"]["video_id"] == video)
                .count()
        };
        (count("demo"), count("demo-cmaf"))
    };
    common::eventually(20, "the samples' data keys audited", || async {
        let (ts, cmaf) = generated().await;
        ts >= 3 && cmaf >= 1
    })
    .await;
    assert_eq!(
        generated().await,
        (3, 1),
        "one data key per TS sample segment, one for the CMAF sample"
    );
    // The transcoder's access key, printed for the cloud SDKs, signs at
    // /kms/ (AWS, with the path in the signature) and at / (Tencent).
    let (id, secret) = (
        c["TranscoderAccessKeyId"].as_str().unwrap(),
        c["TranscoderSecretAccessKey"].as_str().unwrap(),
    );
    assert!(
        printed.contains(&format!(
            "AWS_ACCESS_KEY_ID={id} AWS_SECRET_ACCESS_KEY={secret}"
        )),
        "{printed}"
    );
    assert!(printed.contains(&format!("AWS_ENDPOINT_URL_KMS={url}/kms")));
    let now = chrono::Utc::now();
    // Encrypt, not GenerateDataKey: the data keys counted here are the sample's.
    let gdk = json!({"KeyId": "alias/demo", "Plaintext": "aGVsbG8="});
    let r = api
        .raw(common::cloud::aws_request_at(
            &api,
            "/kms/",
            (id, secret),
            "Encrypt",
            &gdk,
            now,
        ))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = api
        .raw(common::cloud::tencent_request(
            &api,
            (id, secret),
            "Encrypt",
            &gdk,
            now.timestamp(),
        ))
        .await;
    assert!(
        r.body["Response"]["CiphertextBlob"].is_string(),
        "{:?}",
        r.body
    );
    // L2: /web/ is not the origin folder (playlists without a token, key
    // files), and nothing under it redirects.
    for path in [
        "/web/demo/index.m3u8",
        "/web/",
        "/web///demo",
        "/web//demo/",
    ] {
        let r = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .get(format!("{}{path}", api.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    api.audit_until(admin, "Operation=ReleaseKey&Viewer=demo", |rs| {
        !rs.is_empty()
    })
    .await;

    // A restart: same credentials, same encrypted video, nothing new minted.
    let playlist_before = std::fs::read(data.join("origin/demo/index.m3u8")).unwrap();
    let creds_before = std::fs::read(data.join("dev-credentials.json")).unwrap();
    server.signal_term();
    assert!(server.wait_exit().success());
    let server = start(&data, port).await;
    assert!(server
        .log_text()
        .contains("running again with the same data"));
    assert_eq!(
        std::fs::read(data.join("dev-credentials.json")).unwrap(),
        creds_before
    );
    assert_eq!(
        std::fs::read(data.join("origin/demo/index.m3u8")).unwrap(),
        playlist_before
    );
    play_first_segment(&url, user, password).await;
    cmaf_licence_key_decrypts_the_rekeyed_sample(&url, &data, user, password).await;
    let clients = api.get("/kms/v1/clients", admin).await;
    assert_eq!(
        clients.ok()["Clients"].as_array().unwrap().len(),
        4,
        "no new clients"
    );
    assert_eq!(generated().await, (3, 1), "no new data keys");
    // Both runs' audit trails, chained and signed with the key the first
    // start made, verify clean on the embedded store.
    server.signal_term();
    assert!(server.wait_exit().success());
    let verify = std::process::Command::new(common::BIN)
        .args(["audit", "verify", "--sqlite"])
        .arg(data.join("vodkms.db"))
        .arg("--public-key")
        .arg(data.join("audit-public-key.pem"))
        .arg("--copy")
        .arg(data.join("audit-checkpoints.jsonl"))
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&verify.stdout);
    assert_eq!(verify.status.code(), Some(0), "{report}");
    assert!(
        report.contains("broker trail:") && report.contains(": clean"),
        "{report}"
    );
    let b64 = base64::engine::general_purpose::STANDARD;
    assert_eq!(
        b64.decode(c["TokenSecret"].as_str().unwrap())
            .unwrap()
            .len(),
        32
    );
}

fn demo(url: &str, args: &[&str]) -> Value {
    let out = Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/demo.mjs"))
        .arg(url)
        .args(args)
        .output()
        .expect("node: scripts/test installs Node packages and Chromium");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo.mjs failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_page_plays_for_the_viewer_and_refuses_everyone_else() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("vodkms-data");
    let server = start(&data, free_port()).await;
    let c = credentials(&data);
    let page = format!("{}/demo", server.url);
    let (user, password) = (
        c["ViewerUsername"].as_str().unwrap(),
        c["ViewerPassword"].as_str().unwrap(),
    );

    let got = demo(&page, &["signin", user, password]);
    assert_eq!(got["state"], "playing", "{got}");
    assert!(got["currentTime"].as_f64().unwrap() > 2.0, "{got}");
    let events = got["events"].to_string();
    assert!(
        events.contains("Token obtained") && events.contains("Key fetched"),
        "{events}"
    );
    // Beside it, the CMAF sample with Clear Key: re-keyed at first start,
    // its licence granted to the signed-in viewer.
    assert_eq!(got["cmaf"]["state"], "playing", "{got}");
    assert!(got["cmaf"]["currentTime"].as_f64().unwrap() > 2.0, "{got}");

    let got = demo(&page, &["signin", user, "not the password"]);
    assert_eq!(got["state"], "refused", "{got}");
    assert!(
        got["status"]
            .as_str()
            .unwrap()
            .contains("wrong username or password"),
        "{got}"
    );

    let got = demo(&page, &["anonymous"]);
    assert_eq!(got["state"], "refused", "{got}");
    assert!(
        got["status"]
            .as_str()
            .unwrap()
            .contains("refused the key (HTTP 401)"),
        "{got}"
    );
    assert_eq!(got["cmaf"]["state"], "refused", "{got}");
}
