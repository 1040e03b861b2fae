//! Transcoder commands: `vodkms datakey` and `vodkms hls encrypt`. Clients of
//! the KMS API; the API token comes from VODKMS_TOKEN (never a flag).

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use hls::cipher::hex;
use hls::keyuri::KeyUriBase;
use hls::package::{DataKey, DataKeySource, EncryptOptions, Progress};
use kms_api::api::{GenerateDataKeyRequest, GenerateDataKeysRequest};
use kms_api::client::{ClientConfig, KmsClient};
use rand::RngCore as _;
use zeroize::Zeroizing;

#[derive(Args)]
pub struct KmsTarget {
    /// Base URL of the KMS, e.g. http://127.0.0.1:8200.
    #[arg(long, env = "VODKMS_KMS_URL")]
    kms_url: String,
    /// Master key: id or alias/NAME.
    #[arg(long)]
    key: String,
    /// The video the data key protects (its EncryptionContext).
    #[arg(long)]
    video_id: String,
    /// PEM file of a private CA to trust for an https:// KMS.
    #[arg(long, env = "VODKMS_CA_FILE")]
    ca_file: Option<PathBuf>,
}

#[derive(Args)]
pub struct DatakeyArgs {
    #[command(flatten)]
    target: KmsTarget,
    /// Write an ffmpeg key info file (and its 16-byte key file, mode 0600)
    /// instead of printing JSON. Run again to rotate (-hls_flags periodic_rekey).
    #[arg(long, requires = "key_uri_base")]
    ffmpeg_keyinfo: Option<PathBuf>,
    /// The broker's URL (its key endpoint is /v1/hls/key) or the key endpoint itself.
    #[arg(long)]
    key_uri_base: Option<String>,
    /// A CENC content key id (32 hex digits or a UUID), or `auto` for a
    /// random one: the key is registered at the broker (--broker-url) under
    /// it, for Clear Key licences.
    #[arg(long, requires = "broker_url")]
    kid: Option<String>,
    /// The broker that keeps content keys (with --kid).
    #[arg(long, env = "VODKMS_BROKER_URL")]
    broker_url: Option<String>,
    /// With --kid: print the `--keys label=...:key_id=...:key=...` argument
    /// for Shaka Packager (`--enable_raw_key_encryption`).
    #[arg(long, requires = "kid")]
    shaka_packager: bool,
    /// The stream label in the Shaka Packager argument (default: every stream).
    #[arg(long, default_value = "", requires = "shaka_packager")]
    label: String,
}

#[derive(Subcommand)]
pub enum HlsCommand {
    /// Encrypt an unencrypted HLS output (media or master playlist) into OUTPUT_DIR.
    Encrypt(Box<EncryptArgs>),
    /// Re-seal every EDK in ORIGIN_DIR's playlists (and the broker's content
    /// keys) under the current master key version, so old ones can be retired.
    Rewrap(Box<crate::rewrap::RewrapArgs>),
}

#[derive(Args)]
pub struct EncryptArgs {
    #[command(flatten)]
    target: KmsTarget,
    /// The broker's URL (its key endpoint is /v1/hls/key) or the key endpoint itself.
    #[arg(long)]
    key_uri_base: String,
    /// A fresh data key every N segments (default: one key for the video).
    #[arg(long)]
    rekey_every: Option<NonZeroUsize>,
    /// Makes the job repeatable: run again with the same token within 24 h
    /// (a retry after a crash), it gets the same data keys, so no two
    /// different keys are ever published for it. Up to 56 characters.
    #[arg(long)]
    client_token: Option<String>,
    /// Replace OUTPUT_DIR if it exists and is not empty.
    #[arg(long)]
    force: bool,
    /// The unencrypted playlist (as ffmpeg wrote it).
    input_playlist: PathBuf,
    /// Folder for the encrypted copy; written whole or not at all.
    output_dir: PathBuf,
}

/// Data keys from the KMS, bound to the video by their EncryptionContext.
struct KmsDataKeys {
    client: KmsClient,
    key: String,
    /// For batches: chunk N of the job asks with `TOKEN/N`.
    client_token: Option<String>,
}

/// Keys per `generate-data-keys` call (the KMS's most).
const KEYS_PER_BATCH: usize = 1000;
/// Longest --client-token: room for `/N` within the KMS's 64.
const MAX_JOB_TOKEN_LEN: usize = 56;

impl KmsDataKeys {
    fn connect(target: &KmsTarget) -> Result<Self> {
        let token = std::env::var("VODKMS_TOKEN")
            .ok()
            .map(Zeroizing::new)
            .filter(|t| !t.trim().is_empty())
            .context("set VODKMS_TOKEN to an API client token of role `generate`")?;
        if !broker::token::valid_video_id(&target.video_id) {
            bail!("--video-id must be 1 to 256 printable characters without spaces");
        }
        let ca_pem = target
            .ca_file
            .as_ref()
            .map(|p| std::fs::read(p).with_context(|| format!("reading {}", p.display())))
            .transpose()?;
        let client = KmsClient::new(
            &target.kms_url,
            kms_api::ApiToken::from_presented(token.trim()),
            ClientConfig {
                ca_pem,
                ..ClientConfig::default()
            },
        )?;
        Ok(Self {
            client,
            key: target.key.clone(),
            client_token: None,
        })
    }
}

#[async_trait::async_trait]
impl DataKeySource for KmsDataKeys {
    async fn data_key(&self, video_id: &str) -> Result<DataKey, String> {
        let out = self
            .client
            .generate_data_key(&GenerateDataKeyRequest {
                key_id: self.key.clone(),
                key_spec: Some("AES_128".into()),
                number_of_bytes: None,
                encryption_context: Some([("video_id".to_owned(), video_id.to_owned())].into()),
            })
            .await
            .map_err(|e| e.to_string())?;
        let plaintext = out.plaintext.ok_or("the KMS sent no Plaintext")?;
        DataKey::from_plaintext(plaintext.0.expose_secret(), out.ciphertext_blob)
    }

    async fn data_keys(
        &self,
        video_id: &str,
        count: usize,
    ) -> Option<Result<Vec<DataKey>, String>> {
        Some(self.batch(video_id, count).await)
    }
}

impl KmsDataKeys {
    /// `count` keys in calls of up to a thousand.
    async fn batch(&self, video_id: &str, count: usize) -> Result<Vec<DataKey>, String> {
        let mut out = Vec::with_capacity(count);
        let mut chunk = 0usize;
        while out.len() < count {
            let n = (count - out.len()).min(KEYS_PER_BATCH);
            let resp = self
                .client
                .generate_data_keys(&GenerateDataKeysRequest {
                    key_id: self.key.clone(),
                    key_spec: Some("AES_128".into()),
                    number_of_bytes: None,
                    count: u32::try_from(n).map_err(|e| e.to_string())?,
                    encryption_context: Some([("video_id".to_owned(), video_id.to_owned())].into()),
                    client_token: self.client_token.as_ref().map(|t| format!("{t}/{chunk}")),
                })
                .await
                .map_err(|e| e.to_string())?;
            for k in resp.data_keys {
                out.push(DataKey::from_plaintext(
                    k.plaintext.0.expose_secret(),
                    k.ciphertext_blob,
                )?);
            }
            chunk += 1;
        }
        Ok(out)
    }
}

pub async fn datakey(args: DatakeyArgs) -> Result<()> {
    let base = args
        .key_uri_base
        .as_deref()
        .map(KeyUriBase::parse)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let keys = KmsDataKeys::connect(&args.target)?;
    let data_key = keys
        .data_key(&args.target.video_id)
        .await
        .map_err(anyhow::Error::msg)?;
    let key_uri = base
        .as_ref()
        .map(|b| b.key_uri(&args.target.video_id, &data_key.ciphertext_blob));
    let mut iv = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut iv);
    if let Some(kid) = &args.kid {
        return content_key(&args, kid, &data_key).await;
    }
    match (args.ffmpeg_keyinfo, key_uri) {
        (Some(path), Some(uri)) => {
            let key_file = hls::keyinfo::write(&path, &uri, &data_key.key, &iv)
                .with_context(|| format!("writing {}", path.display()))?;
            let out = serde_json::json!({
                "KeyInfoFile": path,
                "KeyFile": key_file,
                "KeyUri": uri,
                "Iv": hex(&iv),
            });
            println!("{out}");
        }
        (_, uri) => {
            use base64::Engine as _;
            let plaintext = Zeroizing::new(
                base64::engine::general_purpose::STANDARD.encode(data_key.key.as_ref()),
            );
            let mut out = serde_json::json!({
                "VideoId": args.target.video_id,
                "CiphertextBlob": data_key.ciphertext_blob,
                "Plaintext": plaintext.as_str(),
                "Iv": hex(&iv),
            });
            if let Some(uri) = uri {
                out["KeyUri"] = uri.into();
            }
            let text = Zeroizing::new(out.to_string());
            drop(out);
            println!("{}", text.as_str());
        }
    }
    Ok(())
}

/// `--kid`: registers the data key as a content key at the broker, then
/// prints it for the packager (plaintext on stdout only, as without --kid).
async fn content_key(args: &DatakeyArgs, kid: &str, data_key: &DataKey) -> Result<()> {
    let kid = if kid == "auto" {
        let mut bytes = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        hex(&bytes)
    } else {
        let plain: String = kid.chars().filter(|c| *c != '-').collect();
        if plain.len() != 32 || !plain.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("--kid must be 32 hex digits, a UUID, or auto");
        }
        plain.to_ascii_lowercase()
    };
    let broker = args
        .broker_url
        .as_deref()
        .context("--kid needs --broker-url (or VODKMS_BROKER_URL)")?
        .trim_end_matches('/');
    let token = std::env::var("VODKMS_TOKEN")
        .ok()
        .map(Zeroizing::new)
        .context("set VODKMS_TOKEN to an API client token of role `generate`")?;
    let resp = reqwest::Client::new()
        .post(format!("{broker}/v1/content-keys"))
        .bearer_auth(token.trim())
        .json(&serde_json::json!({
            "VideoId": args.target.video_id,
            "Kid": kid,
            "CiphertextBlob": data_key.ciphertext_blob,
        }))
        .send()
        .await
        .with_context(|| format!("registering the content key at {broker}"))?;
    if !resp.status().is_success() {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        bail!("the broker refused the content key ({status}): {body}");
    }
    let key_hex = Zeroizing::new(hex(data_key.key.as_ref()));
    if args.shaka_packager {
        // The argument itself on stdout, for `--keys "$(vodkms datakey ...)"`;
        // what was registered (no key) on stderr.
        let arg = Zeroizing::new(format!(
            "label={}:key_id={kid}:key={}",
            args.label,
            key_hex.as_str()
        ));
        println!("{}", arg.as_str());
        eprintln!(
            "{}",
            serde_json::json!({
                "VideoId": args.target.video_id,
                "Kid": kid,
                "CiphertextBlob": data_key.ciphertext_blob,
            })
        );
        return Ok(());
    }
    let out = serde_json::json!({
        "VideoId": args.target.video_id,
        "Kid": kid,
        "CiphertextBlob": data_key.ciphertext_blob,
        "Key": key_hex.as_str(),
    });
    let text = Zeroizing::new(out.to_string());
    drop(out);
    println!("{}", text.as_str());
    Ok(())
}

pub async fn hls(command: HlsCommand) -> Result<()> {
    match command {
        HlsCommand::Encrypt(args) => encrypt(*args).await,
        HlsCommand::Rewrap(args) => crate::rewrap::rewrap(*args).await,
    }
}

async fn encrypt(args: EncryptArgs) -> Result<()> {
    let options = EncryptOptions {
        video_id: args.target.video_id.clone(),
        key_uri_base: KeyUriBase::parse(&args.key_uri_base).map_err(anyhow::Error::msg)?,
        rekey_every: args.rekey_every,
        replace: args.force,
    };
    if let Some(t) = &args.client_token {
        if t.is_empty() || t.len() > MAX_JOB_TOKEN_LEN || !t.bytes().all(|b| b.is_ascii_graphic()) {
            bail!("--client-token must be 1 to {MAX_JOB_TOKEN_LEN} printable characters");
        }
    }
    let mut source = KmsDataKeys::connect(&args.target)?;
    source.client_token = args.client_token.clone();
    let keys: Arc<dyn DataKeySource> = Arc::new(source);
    // Ctrl-C asks the packager to stop after the segment in hand, so its
    // staging folder is removed with nothing still writing into it.
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&interrupted);
    let watcher = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            flag.store(true, Ordering::Relaxed);
        }
    });
    let mut bar = ProgressBar::new();
    let mut show = |p| {
        bar.show(p);
        !interrupted.load(Ordering::Relaxed)
    };
    let result = hls::encrypt_hls(
        &args.input_playlist,
        &args.output_dir,
        &options,
        keys,
        &mut show,
    )
    .await;
    watcher.abort();
    bar.finish();
    let summary = result.map_err(|e| anyhow::anyhow!("{}: {e}", e.code()))?;
    let out = serde_json::json!({
        "Playlist": summary.playlist,
        "Playlists": summary.playlists,
        "Segments": summary.segments,
        "Keys": summary.keys,
        "Bytes": summary.bytes,
    });
    println!("{out}");
    Ok(())
}

/// `hls encrypt`'s progress on a terminal's stderr (indicatif hides it
/// when stderr is not a terminal, so scripts see only the JSON summary).
struct ProgressBar(indicatif::ProgressBar);

impl ProgressBar {
    fn new() -> Self {
        let bar = indicatif::ProgressBar::new(0);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "encrypting [{bar:30}] {pos}/{len} segments, {elapsed} (eta {eta})",
        ) {
            bar.set_style(style.progress_chars("#>."));
        }
        Self(bar)
    }

    fn show(&mut self, p: Progress) {
        self.0.set_length(p.total as u64);
        self.0.set_position(p.done as u64);
    }

    fn finish(&mut self) {
        self.0.finish();
    }
}
