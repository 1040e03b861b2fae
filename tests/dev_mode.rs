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

/// Signs in as the demo viewer, fetches the playlist and its first key, and
/// decrypts the first segment: it must equal the shipped sample's.
async fn play_first_segment(url: &str, user: &str, password: &str) {
    let http = reqwest::Client::new();
    let login = http
        .post(format!("{url}/v1/login"))
        .json(&json!({"Username": user, "Password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let token = login.json::<Value>().await.unwrap()["Token"]
        .as_str()
        .unwrap()
        .to_owned();
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
    let generated = || async {
        api.get("/kms/v1/audit?Operation=GenerateDataKey&Limit=100", admin)
            .await
            .ok()["Records"]
            .as_array()
            .unwrap()
            .len()
    };
    common::eventually(20, "the sample's data keys audited", || async {
        generated().await >= 3
    })
    .await;
    assert_eq!(generated().await, 3, "one data key per sample segment");
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
    let clients = api.get("/kms/v1/clients", admin).await;
    assert_eq!(
        clients.ok()["Clients"].as_array().unwrap().len(),
        4,
        "no new clients"
    );
    let generated_after = api
        .get("/kms/v1/audit?Operation=GenerateDataKey&Limit=100", admin)
        .await
        .ok()["Records"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(generated_after, 3, "no new data keys");
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
}
