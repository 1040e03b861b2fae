//! `vodkms dev`: the whole system in one process on one address, state in a
//! folder (SQLite, a root key file), provisioned on first start with a demo
//! key, clients, viewer and encrypted sample video, and a `/demo` page.
//! For trying vodkms out; never for production (the root key sits beside the
//! data it protects).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use axum::http::header;
use axum::routing::get;
use axum::Router;
use base64::Engine as _;
use clap::Args;
use hls::keyuri::KeyUriBase;
use hls::package::{DataKey, DataKeySource, EncryptOptions};
use kms::crypto::{ApiToken, DataKeySpec, RootKey};
use kms::model::Role;
use kms::service::{
    bootstrap_admin, ClientCreated, DataKeyRequest, Kms, KmsConfig, NewClient, NewKeyRequest,
    RequestContext, SystemClock,
};
use kms::store::{SqliteStore, Store};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

#[derive(Args)]
pub struct DevArgs {
    /// Folder for the database, the root key and the demo video.
    #[arg(long, env = "VODKMS_DATA_DIR", default_value = "vodkms-data")]
    data_dir: PathBuf,
    /// Address of the KMS API, the broker and /demo.
    #[arg(long, default_value = "127.0.0.1:8200")]
    listen: SocketAddr,
    /// The broker's risk rules (README "Risk control"), as `broker serve`
    /// takes them; all off by default.
    #[command(flatten)]
    risk: crate::RiskArgs,
    /// Audit chaining as the servers take it; the signing key and the
    /// checkpoint copy default to files in the data folder.
    #[command(flatten)]
    chain: crate::audit::ChainArgs,
}

const DEMO_VIDEO: &str = "demo";
const DEMO_CMAF_VIDEO: &str = "demo-cmaf";
const DEMO_VIEWER: &str = "demo";
const CREDENTIALS: &str = "dev-credentials.json";
const DEMO_PAGE: &str = include_str!("dev/demo.html");
/// hls.js 1.7.4 (Apache-2.0), served with the page so it works offline.
const HLS_JS: &str = include_str!("dev/hls.min.js");
/// The unencrypted sample (scripts/make-sample), encrypted at first start.
const SAMPLE: &[(&str, &[u8])] = &[
    ("index.m3u8", include_bytes!("dev/sample/index.m3u8")),
    ("seg0.ts", include_bytes!("dev/sample/seg0.ts")),
    ("seg1.ts", include_bytes!("dev/sample/seg1.ts")),
    ("seg2.ts", include_bytes!("dev/sample/seg2.ts")),
];
/// The CMAF sample (scripts/make-sample): Shaka Packager's CENC `cenc` HLS
/// and DASH, packaged under [`CMAF_SHIPPING_KEY`]. First start re-keys its
/// segments under a fresh data key and registers that key's EDK.
const CMAF_SAMPLE: &[(&str, &[u8])] = &[
    ("master.m3u8", include_bytes!("dev/sample-cmaf/master.m3u8")),
    (
        "stream_0.m3u8",
        include_bytes!("dev/sample-cmaf/stream_0.m3u8"),
    ),
    (
        "stream_1.m3u8",
        include_bytes!("dev/sample-cmaf/stream_1.m3u8"),
    ),
    (
        "manifest.mpd",
        include_bytes!("dev/sample-cmaf/manifest.mpd"),
    ),
    ("v/init.mp4", include_bytes!("dev/sample-cmaf/v/init.mp4")),
    ("v/1.m4s", include_bytes!("dev/sample-cmaf/v/1.m4s")),
    ("v/2.m4s", include_bytes!("dev/sample-cmaf/v/2.m4s")),
    ("v/3.m4s", include_bytes!("dev/sample-cmaf/v/3.m4s")),
    ("a/init.mp4", include_bytes!("dev/sample-cmaf/a/init.mp4")),
    ("a/1.m4s", include_bytes!("dev/sample-cmaf/a/1.m4s")),
    ("a/2.m4s", include_bytes!("dev/sample-cmaf/a/2.m4s")),
    ("a/3.m4s", include_bytes!("dev/sample-cmaf/a/3.m4s")),
];
/// The key the CMAF sample ships under: public on purpose (it is in
/// scripts/make-sample too). No install's sample stays under it.
const CMAF_SHIPPING_KEY: [u8; 16] = [
    0xcb, 0xba, 0xe9, 0xc0, 0x82, 0xb1, 0x0f, 0x77, 0x08, 0x3c, 0x80, 0xd5, 0x6f, 0xdb, 0x08, 0x08,
];

/// What the first start made, written to `DIR/dev-credentials.json` (0600).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Credentials {
    url: String,
    kms_url: String,
    demo_page_url: String,
    admin_token: String,
    issuer_token: String,
    transcoder_token: String,
    /// The transcoder's access key for the AWS, Alibaba and Tencent SDKs
    /// (absent from data made before the cloud doors).
    #[serde(default)]
    transcoder_access_key_id: String,
    #[serde(default)]
    transcoder_secret_access_key: String,
    /// The broker's own `decrypt` client.
    broker_kms_token: String,
    /// HS256 secret (base64) for app backends that sign their own tokens.
    token_secret: String,
    viewer_username: String,
    viewer_password: String,
    demo_video_id: String,
    demo_playlist_url: String,
}

impl Credentials {
    fn set_urls(&mut self, addr: SocketAddr) {
        self.url = format!("http://{addr}");
        self.kms_url = format!("http://{addr}/kms");
        self.demo_page_url = format!("http://{addr}/demo");
        self.demo_playlist_url = format!("http://{addr}/v1/hls/playlist/{DEMO_VIDEO}/index.m3u8");
    }
}

pub async fn run(
    args: DevArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let dir = &args.data_dir;
    create_private_dir(dir)?;
    let root_text = read_or_create_secret(&dir.join("root.key"))?;
    let root = RootKey::from_base64(&root_text).context("the root key file")?;
    eprintln!(
        "\n  WARNING: development mode. The root key is stored unprotected in {} beside the\n  \
         data it protects. Never use `vodkms dev` for real keys or real videos.\n",
        dir.join("root.key").display()
    );

    let pool = kms::store::sqlite::open_pool(&dir.join("vodkms.db"))
        .await
        .context("opening the SQLite database")?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::with_pool(pool.clone()));
    let clock = Arc::new(SystemClock);
    let audit_chain = dev_audit_chain(dir, args.chain.clone())?;
    let kms = Kms::start(
        store.clone(),
        root,
        clock.clone(),
        KmsConfig {
            audit_chain: audit_chain.clone(),
            ..KmsConfig::default()
        },
    )
    .await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;

    let credentials_path = dir.join(CREDENTIALS);
    let (mut creds, cmaf_key) = if credentials_path.exists() {
        let text = std::fs::read_to_string(&credentials_path)?;
        let creds: Credentials = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not what vodkms dev wrote",
                credentials_path.display()
            )
        })?;
        (creds, None)
    } else if store.any_active_admin().await? {
        bail!(
            "{} has data but no {CREDENTIALS}: an earlier first start did not finish. \
             Delete the folder and start again.",
            dir.display()
        );
    } else {
        let (creds, cmaf_key) = provision(&kms, audit_chain.as_ref(), store, dir, addr).await?;
        (creds, Some(cmaf_key))
    };
    if creds.url != format!("http://{addr}") {
        // The sample's key URIs are absolute: point them at the new address.
        let playlist = dir.join("origin").join(DEMO_VIDEO).join("index.m3u8");
        let text = std::fs::read_to_string(&playlist)?;
        std::fs::write(
            &playlist,
            text.replace(&creds.url, &format!("http://{addr}")),
        )?;
        creds.set_urls(addr);
        write_private(
            &credentials_path,
            serde_json::to_string_pretty(&creds)?.as_bytes(),
        )?;
    }

    let broker = start_broker(
        &creds,
        &pool,
        addr,
        clock,
        broker::service::BrokerConfig {
            risk: args.risk.config()?,
            audit_chain,
            ..broker::service::BrokerConfig::default()
        },
    )
    .await?;
    let kms_app = kms::http::app(kms.clone());
    let origin = dir.join("origin");
    let extras = Router::new()
        .route("/demo", get(demo_page))
        .route("/demo/hls.min.js", get(hls_js))
        .route(
            "/demo/published.m3u8",
            get(published_playlist).with_state(origin.clone()),
        )
        .nest("/kms", kms_app.clone())
        .fallback_service(kms_app.clone());
    let http = broker::http::HttpConfig {
        cors: broker::http::CorsOrigins::None,
        cookie_secure: false,
        cookie_same_site: "Lax".into(),
        client_ip_header: None,
        trusted_proxies: Vec::new(),
        token_targets: hls::rewrite::TokenTargets::new(&[format!("http://{addr}")])
            .map_err(anyhow::Error::msg)?,
        origin_dir: Some(origin),
        web_dir: None,
    };
    // POST / is the cloud doors' (the broker serves GET / as Alibaba-style key URIs).
    // `/kms` and `/kms/` both: SDKs differ in how they join an endpoint's path.
    let kms_slash =
        tower::ServiceExt::map_request(kms_app.clone(), |mut req: axum::extract::Request| {
            *req.uri_mut() = axum::http::Uri::from_static("/");
            req
        });
    let app = Router::new()
        .route("/", axum::routing::post_service(kms_app))
        .route("/kms/", axum::routing::post_service(kms_slash))
        .merge(broker::http::app_with_fallback(
            broker.clone(),
            http,
            extras,
        ));

    // The broker follows this KMS's change feed over HTTP: end that stream
    // at shutdown, or it would hold the graceful shutdown open.
    let feeds = kms.clone();
    let shutdown = async move {
        shutdown.await;
        feeds.close_change_feed();
    };
    let serving = foundation::http::server::serve(
        listener,
        app,
        None,
        foundation::http::server::ConnectionLimits::default(),
        shutdown,
    );
    let server = tokio::spawn(serving);
    if let Some(cmaf_key) = cmaf_key {
        register_content_key(addr, &creds, &cmaf_key).await?;
        create_demo_viewer(addr, &creds).await?;
        write_private(
            &credentials_path,
            serde_json::to_string_pretty(&creds)?.as_bytes(),
        )?;
        print_first_start(&creds, &credentials_path);
    } else {
        print_restart(&creds, &credentials_path);
    }
    server.await.context("the server task")??;
    let deadline = std::time::Instant::now() + kms::http::SHUTDOWN_FLUSH_DEADLINE;
    let broker_lost = broker.drain(deadline).await.err();
    let kms_lost = kms.drain_audit(deadline).await.err();
    if broker_lost.is_some() || kms_lost.is_some() {
        bail!("audit records could not be written before exit");
    }
    Ok(())
}

/// The CMAF sample's content key, registered with the broker once it answers.
struct ContentKey {
    kid: [u8; 16],
    ciphertext_blob: String,
}

/// The first start: a master key, clients, a token secret, the encrypted
/// samples. The CMAF sample's key is registered, and the demo viewer made,
/// once the broker answers.
async fn provision(
    kms: &Kms,
    chain: Option<&foundation::audit::ChainConfig>,
    store: Arc<dyn Store>,
    dir: &Path,
    addr: SocketAddr,
) -> Result<(Credentials, ContentKey)> {
    let ctx = RequestContext::new("dev-first-start");
    let admin = bootstrap_admin(store, &SystemClock, "dev-admin".into(), false, chain).await?;
    let caller = kms.authenticate(Some(&admin.token)).await?;
    kms.create_key(
        &caller,
        &ctx,
        NewKeyRequest {
            alias: Some("alias/demo".into()),
            description: Some("vodkms dev: the demo video's master key".into()),
            rotation_period_days: None,
            // So the demo library can be crypto-shredded per video.
            per_video_keys: true,
        },
    )
    .await?;
    let client = |name: &str, role: Role| {
        let caller = caller.clone();
        let ctx = ctx.clone();
        let name = name.to_owned();
        async move {
            let req = NewClient {
                name,
                roles: role.into(),
                key_ids: None,
            };
            kms.create_client(&caller, &ctx, req).await
        }
    };
    let token = |c: ClientCreated| c.token.expose_secret().to_owned();
    let issuer_token = token(client("dev-issuer", Role::Issuer).await?);
    let transcoder = client("dev-transcoder", Role::Generate).await?;
    let broker_kms_token = token(client("dev-broker", Role::Decrypt).await?);
    // The same transcoder through the cloud SDKs (GenerateDataKey).
    let access_key = kms
        .create_access_key(&caller, &ctx, transcoder.client.id)
        .await?;
    let transcoder_token = token(transcoder);

    let mut secret = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(secret.as_mut());
    let mut password = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut password);

    // The sample, unencrypted, then its encrypted copy for the broker.
    let sample = dir.join("sample");
    std::fs::create_dir_all(&sample)?;
    for (name, bytes) in SAMPLE {
        std::fs::write(sample.join(name), bytes)?;
    }
    let keys: Arc<dyn DataKeySource> = Arc::new(InProcessKeys {
        kms: kms.clone(),
        token: ApiToken::from_presented(&transcoder_token),
    });
    let options = EncryptOptions {
        video_id: DEMO_VIDEO.into(),
        key_uri_base: KeyUriBase::parse(&format!("http://{addr}")).map_err(anyhow::Error::msg)?,
        rekey_every: std::num::NonZeroUsize::new(1),
        replace: true,
    };
    hls::encrypt_hls(
        &sample.join("index.m3u8"),
        &dir.join("origin").join(DEMO_VIDEO),
        &options,
        keys.clone(),
        &mut |_| true,
    )
    .await
    .map_err(|e| anyhow::anyhow!("encrypting the sample: {e}"))?;
    let cmaf_key = rekey_cmaf_sample(keys.as_ref(), &dir.join("origin").join(DEMO_CMAF_VIDEO))
        .await
        .context("re-keying the CMAF sample")?;

    let mut creds = Credentials {
        url: String::new(),
        kms_url: String::new(),
        demo_page_url: String::new(),
        admin_token: admin.token.expose_secret().to_owned(),
        issuer_token,
        transcoder_token,
        transcoder_access_key_id: access_key.record.id.clone(),
        transcoder_secret_access_key: String::from_utf8_lossy(access_key.secret.expose_secret())
            .into_owned(),
        broker_kms_token,
        token_secret: base64::engine::general_purpose::STANDARD.encode(secret.as_ref()),
        viewer_username: DEMO_VIEWER.into(),
        viewer_password: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(password),
        demo_video_id: DEMO_VIDEO.into(),
        demo_playlist_url: String::new(),
    };
    creds.set_urls(addr);
    Ok((creds, cmaf_key))
}

/// Writes the CMAF sample to `out` under a fresh data key for its video:
/// each media segment is re-keyed from the shipping key (hls::cenc), the
/// playlists, manifest and init segments are copied as they are.
async fn rekey_cmaf_sample(keys: &dyn DataKeySource, out: &Path) -> Result<ContentKey> {
    let data_key = keys
        .data_key(DEMO_CMAF_VIDEO)
        .await
        .map_err(anyhow::Error::msg)?;
    let mut kid = None;
    for (name, bytes) in CMAF_SAMPLE {
        let path = out.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut bytes = bytes.to_vec();
        if name.ends_with(".m4s") {
            let (folder, _) = name.split_once('/').unwrap_or_default();
            let init = CMAF_SAMPLE
                .iter()
                .find(|(n, _)| *n == format!("{folder}/init.mp4"))
                .map(|(_, b)| *b)
                .context("the sample's init segment")?;
            let tracks = hls::cenc::track_encryption(init)?;
            kid = tracks.first().map(|t| t.kid);
            hls::cenc::rekey_segment(&mut bytes, &tracks, &CMAF_SHIPPING_KEY, &data_key.key)?;
        }
        std::fs::write(path, bytes)?;
    }
    Ok(ContentKey {
        kid: kid.context("the CMAF sample has no media segment")?,
        ciphertext_blob: data_key.ciphertext_blob,
    })
}

/// Data keys straight from the in-process KMS (as the transcoder client).
struct InProcessKeys {
    kms: Kms,
    token: ApiToken,
}

#[async_trait::async_trait]
impl DataKeySource for InProcessKeys {
    async fn data_key(&self, video_id: &str) -> Result<DataKey, String> {
        let req = DataKeyRequest {
            key_id: "alias/demo".into(),
            spec: DataKeySpec::Aes128,
            context: [("video_id".to_owned(), video_id.to_owned())].into(),
        };
        let out = self
            .kms
            .generate_data_key(
                Some(&self.token),
                &RequestContext::new("dev-sample"),
                req,
                true,
            )
            .await
            .map_err(|e| e.to_string())?;
        let plain = out.plaintext.ok_or("the KMS sent no Plaintext")?;
        DataKey::from_plaintext(plain.expose_secret(), out.blob.to_text())
    }
}

/// The data folder's audit signing key (made at first start, with its
/// public half beside it for `vodkms audit verify`) and checkpoint copy,
/// unless given otherwise.
fn dev_audit_chain(
    dir: &Path,
    mut chain: crate::audit::ChainArgs,
) -> Result<Option<foundation::audit::ChainConfig>> {
    if chain.audit_signing_key_file.is_none() {
        let path = dir.join("audit-signing-key.pem");
        if !path.exists() {
            let seed = Zeroizing::new(rand::random::<[u8; 32]>());
            let key = foundation::audit::SigningKey::from_seed(&seed);
            crate::audit::write_new_private(&path, key.private_pem().as_bytes())?;
            std::fs::write(dir.join("audit-public-key.pem"), key.public_pem())?;
        }
        chain.audit_signing_key_file = Some(path);
    }
    if chain.audit_checkpoint_file.is_none() {
        chain.audit_checkpoint_file = Some(dir.join("audit-checkpoints.jsonl"));
    }
    chain.config()
}

async fn start_broker(
    creds: &Credentials,
    pool: &sqlx::SqlitePool,
    addr: SocketAddr,
    clock: Arc<SystemClock>,
    config: broker::service::BrokerConfig,
) -> Result<broker::service::Broker> {
    use broker::token::TokenKeys;
    let secret = TokenKeys::secret_from_base64(&creds.token_secret)?;
    let tokens = TokenKeys::new(Some(secret), None, 60, 86_400)?;
    // The broker reaches the KMS the way it always does: over HTTP (here, to
    // this very process).
    let kms_client = kms::client::KmsClient::new(
        &format!("http://{addr}"),
        ApiToken::from_presented(&creds.broker_kms_token),
        kms::client::ClientConfig::default(),
    )?;
    let store = broker::store::SqliteBrokerStore::with_pool(pool.clone());
    Ok(broker::service::Broker::start(Arc::new(store), kms_client, tokens, clock, config).await?)
}

/// Through the broker's API, as an admin would (the broker checks the admin
/// token with the KMS, which is this process).
async fn create_demo_viewer(addr: SocketAddr, creds: &Credentials) -> Result<()> {
    let body = serde_json::json!({
        "Username": creds.viewer_username,
        "Password": creds.viewer_password,
        "Entitlements": [creds.demo_video_id, DEMO_CMAF_VIDEO],
    });
    post_to_self(addr, "/v1/viewers", &creds.admin_token, &body)
        .await
        .context("creating the demo viewer")
}

/// The CMAF sample's KID and EDK, as a transcoder registers them.
async fn register_content_key(
    addr: SocketAddr,
    creds: &Credentials,
    key: &ContentKey,
) -> Result<()> {
    let body = serde_json::json!({
        "VideoId": DEMO_CMAF_VIDEO,
        "Kid": hls::cipher::hex(&key.kid),
        "CiphertextBlob": key.ciphertext_blob,
    });
    post_to_self(addr, "/v1/content-keys", &creds.transcoder_token, &body)
        .await
        .context("registering the CMAF sample's content key")
}

/// POSTs to this process once it answers (for up to 5 s).
async fn post_to_self(
    addr: SocketAddr,
    path: &str,
    token: &str,
    body: &serde_json::Value,
) -> Result<()> {
    let url = format!("http://{addr}{path}");
    let client = reqwest::Client::new();
    let mut last = String::new();
    for _ in 0..50 {
        match client.post(&url).bearer_auth(token).json(body).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => last = format!("{} {}", r.status(), r.text().await.unwrap_or_default()),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{last}")
}

async fn demo_page() -> impl axum::response::IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        DEMO_PAGE,
    )
}

/// The demo's playlist as it is published (a CDN would serve this): key URIs
/// without a token, segments from the broker's origin route. What the demo
/// page plays without signing in. Not `/web/`: that never serves the origin.
async fn published_playlist(
    axum::extract::State(origin): axum::extract::State<PathBuf>,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let path = origin.join(DEMO_VIDEO).join("index.m3u8");
    let Ok(text) = tokio::fs::read_to_string(&path).await else {
        return axum::http::StatusCode::NOT_FOUND.into_response();
    };
    let out = hls::rewrite::prefix_uris(&text, &format!("/v1/hls/playlist/{DEMO_VIDEO}/"));
    (
        [
            (header::CONTENT_TYPE, "application/vnd.apple.mpegurl"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        out,
    )
        .into_response()
}

async fn hls_js() -> impl axum::response::IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        HLS_JS,
    )
}

fn print_first_start(c: &Credentials, path: &Path) {
    println!(
        r#"
  vodkms dev is running (first start: everything below was just made and is shown once)

    Demo page      {page}
                   sign in as  {user} / {password}
    Broker         {url}
    KMS API        {kms}

    export BROKER={url} KMS={kms}
    export ADMIN={admin}
    export ISSUER={issuer}
    export GEN={gen}

  The encrypted sample video is "{video}": {playlist}
  Its CMAF copy with Clear Key is "{cmaf}": {url}/v1/hls/playlist/{cmaf}/master.m3u8 (Shaka),
  {url}/v1/hls/clearkey/{cmaf}/master.m3u8 (hls.js), {url}/v1/hls/playlist/{cmaf}/manifest.mpd (DASH)
{sdks}
  Both audit trails are hash-chained and signed; after Ctrl-C, check them with
    vodkms audit verify --sqlite {dir}/vodkms.db --public-key {dir}/audit-public-key.pem \
        --copy {dir}/audit-checkpoints.jsonl

  Everything above is also in {file} (mode 0600). Ctrl-C stops; data stays in {dir}.
"#,
        sdks = sdk_lines(c),
        page = c.demo_page_url,
        user = c.viewer_username,
        password = c.viewer_password,
        url = c.url,
        kms = c.kms_url,
        admin = c.admin_token,
        issuer = c.issuer_token,
        gen = c.transcoder_token,
        video = c.demo_video_id,
        playlist = c.demo_playlist_url,
        cmaf = DEMO_CMAF_VIDEO,
        file = path.display(),
        dir = path
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
    );
}

/// Copy-paste environment for the cloud SDKs, as the transcoder.
fn sdk_lines(c: &Credentials) -> String {
    if c.transcoder_access_key_id.is_empty() {
        return String::new();
    }
    let host = c.url.trim_start_matches("http://");
    format!(
        r#"
  The transcoder through a cloud KMS SDK, unchanged (GenerateDataKey):
    AWS (boto3, aws CLI, AWS SDKs):
      export AWS_ENDPOINT_URL_KMS={kms} AWS_DEFAULT_REGION=us-east-1
      export AWS_ACCESS_KEY_ID={id} AWS_SECRET_ACCESS_KEY={secret}
    Alibaba Cloud (endpoint {host}, protocol http):
      export ALIBABA_CLOUD_ACCESS_KEY_ID={id} ALIBABA_CLOUD_ACCESS_KEY_SECRET={secret}
    Tencent Cloud (endpoint {host}, scheme http):
      export TENCENTCLOUD_SECRET_ID={id} TENCENTCLOUD_SECRET_KEY={secret}
"#,
        kms = c.kms_url,
        id = c.transcoder_access_key_id,
        secret = c.transcoder_secret_access_key,
    )
}

fn print_restart(c: &Credentials, path: &Path) {
    println!(
        "\n  vodkms dev is running again with the same data.\n\n    Demo page      {}\n    \
         Broker         {}\n    KMS API        {}\n\n  Tokens and the demo password: {}\n",
        c.demo_page_url,
        c.url,
        c.kms_url,
        path.display()
    );
}

fn create_private_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// A file only its owner may read, written whole.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    {
        use std::io::Write as _;
        let mut f = options.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// The base64 secret in `path`, made (32 random bytes) if the file is missing.
fn read_or_create_secret(path: &Path) -> Result<Zeroizing<String>> {
    if path.exists() {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        return Ok(Zeroizing::new(text.trim().to_owned()));
    }
    let mut bytes = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(bytes.as_mut());
    let text = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(bytes.as_ref()));
    write_private(path, text.as_bytes())?;
    Ok(text)
}
