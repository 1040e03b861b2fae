//! `vodkms`: the command line. Thin: parse, configure, call the libraries.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

mod admin;
mod audit;
use vodkms::config;
mod dev;
mod rewrap;
mod secret_env;
mod transcode;

/// See Cargo.toml: allocation is a tenth of the key path's CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use clap::{Args, Parser, Subcommand};
use kms::crypto::{Key256, MasterKey, RootKey};
use kms::service::{Kms, KmsConfig, SystemClock};
use kms::store::{PgStore, Store};

#[derive(Parser)]
#[command(name = "vodkms", version, about = "Self-hosted KMS and HLS key broker")]
struct Cli {
    /// TOML file of settings (flags and environment variables override it).
    #[arg(long, env = "VODKMS_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Log lines as `text` (for people) or `json` (one object per line, for collectors).
    #[arg(long, env = "VODKMS_LOG_FORMAT", default_value = "text", global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// The key management service.
    Kms {
        #[command(subcommand)]
        command: KmsCommand,
    },
    /// The key broker: playback tokens, viewer sign-in, HLS key delivery.
    Broker {
        #[command(subcommand)]
        command: BrokerCommand,
    },
    /// Create the first admin API client and print its token (once) as JSON.
    Bootstrap {
        #[command(flatten)]
        db: DbArgs,
        /// Name of the admin client.
        #[arg(long, default_value = "bootstrap-admin")]
        name: String,
        /// Create another admin even if an active one exists.
        #[arg(long)]
        force: bool,
    },
    /// Print a new random root key (base64) for VODKMS_ROOT_KEY.
    GenRootKey,
    /// Re-wrap every master key version under a new root key, in one
    /// transaction. Stop the servers first; restart them with the new key.
    /// The old key comes from VODKMS_ROOT_KEY(_FILE), the new one from
    /// VODKMS_NEW_ROOT_KEY or --new-root-key-file.
    RekeyRoot {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long, env = "VODKMS_NEW_ROOT_KEY_FILE")]
        new_root_key_file: Option<PathBuf>,
    },
    /// Everything in one process for trying vodkms out: KMS, broker and a
    /// /demo page on one address, state in ./vodkms-data (SQLite). Not for production.
    Dev(dev::DevArgs),
    /// Master keys: create, list, show, rotate, disable, enable, schedule or
    /// cancel deletion, retire old versions and see their usage.
    Keys {
        #[command(flatten)]
        target: admin::Target,
        #[command(subcommand)]
        command: admin::KeysCommand,
    },
    /// Videos' crypto-shredding (keys created with --per-video-keys): show,
    /// shred, cancel-shred.
    Videos {
        #[command(flatten)]
        target: admin::Target,
        #[command(subcommand)]
        command: admin::VideosCommand,
    },
    /// API clients of the KMS: create, list, revoke.
    Clients {
        #[command(flatten)]
        target: admin::Target,
        #[command(subcommand)]
        command: admin::ClientsCommand,
    },
    /// Viewer accounts of the broker.
    Viewers {
        #[command(flatten)]
        target: admin::Target,
        #[command(subcommand)]
        command: admin::ViewersCommand,
    },
    /// A viewer's playback sessions (streams): list, end one.
    Sessions {
        #[command(flatten)]
        target: admin::Target,
        #[command(subcommand)]
        command: admin::SessionsCommand,
    },
    /// A video's playback policy: the page origins it may be played from.
    Policy {
        #[command(flatten)]
        target: admin::Target,
        #[command(subcommand)]
        command: admin::PolicyCommand,
    },
    /// Playback tokens: mint (issuer), revoke.
    Tokens {
        #[command(flatten)]
        target: admin::Target,
        #[command(subcommand)]
        command: admin::TokensCommand,
    },
    /// The audit trail of the KMS, or of the broker with --broker; --follow
    /// keeps reading. `audit verify` checks the trails for tampering.
    #[command(args_conflicts_with_subcommands = true)]
    Audit {
        #[command(subcommand)]
        command: Option<audit::AuditCommand>,
        #[command(flatten)]
        target: admin::Target,
        #[command(flatten)]
        args: admin::AuditArgs,
    },
    /// The configuration file.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Exit 0 if URL answers 2xx within 3 s (container health checks; no curl needed).
    Probe { url: String },
    /// Mint a data key for a video: JSON, or an ffmpeg key info file.
    Datakey(Box<transcode::DatakeyArgs>),
    /// HLS packaging.
    Hls {
        #[command(subcommand)]
        command: transcode::HlsCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Check the file given by --config (or VODKMS_CONFIG) for both servers
    /// and say everything that is wrong; exit 1 if anything is.
    Check,
}

#[derive(Subcommand)]
enum KmsCommand {
    /// Serve the KMS HTTP API.
    Serve(ServeArgs),
}

#[derive(Subcommand)]
enum BrokerCommand {
    /// Serve the broker HTTP API.
    Serve(Box<BrokerArgs>),
}

#[derive(Args)]
struct BrokerArgs {
    #[command(flatten)]
    chain: audit::ChainArgs,
    #[arg(long, env = "VODKMS_BROKER_LISTEN", default_value = "127.0.0.1:8300")]
    listen: SocketAddr,
    /// Base URL of the KMS, e.g. http://127.0.0.1:8200.
    #[arg(long, env = "VODKMS_KMS_URL")]
    kms_url: String,
    /// PostgreSQL (may be the KMS's database).
    #[command(flatten)]
    database: Database,
    #[command(flatten)]
    tls: TlsArgs,
    #[command(flatten)]
    connections: ConnectionArgs,
    /// PEM file of the CA that signed the KMS's certificate, for an
    /// `https://` KMS with a private CA.
    #[arg(long, env = "VODKMS_KMS_CA_FILE")]
    kms_ca_file: Option<PathBuf>,
    /// File holding the broker's KMS token (a `decrypt` client), instead of VODKMS_KMS_TOKEN.
    #[arg(long, env = "VODKMS_KMS_TOKEN_FILE")]
    kms_token_file: Option<PathBuf>,
    /// File holding the HS256 token secret (base64), instead of VODKMS_TOKEN_SECRET.
    #[arg(long, env = "VODKMS_TOKEN_SECRET_FILE")]
    token_secret_file: Option<PathBuf>,
    /// File holding an Ed25519 public key (PEM or base64) for EdDSA tokens,
    /// instead of VODKMS_TOKEN_PUBLIC_KEY.
    #[arg(long, env = "VODKMS_TOKEN_PUBLIC_KEY_FILE")]
    token_public_key_file: Option<PathBuf>,
    /// Page origins allowed to fetch keys cross-origin, comma-separated (or *).
    #[arg(long, env = "VODKMS_CORS_ORIGINS", default_value = "")]
    cors_origins: String,
    /// Mark the sign-in cookie Secure (turn off only for plain-HTTP development).
    #[arg(long, env = "VODKMS_COOKIE_SECURE", default_value_t = true, action = clap::ArgAction::Set)]
    cookie_secure: bool,
    /// SameSite of the sign-in cookie: Lax, Strict or None.
    #[arg(long, env = "VODKMS_COOKIE_SAMESITE", default_value = "Lax")]
    cookie_same_site: String,
    /// Take the caller's address from this header set by your proxy (e.g.
    /// X-Forwarded-For), when the request comes from a --trusted-proxies peer.
    #[arg(long, env = "VODKMS_CLIENT_IP_HEADER")]
    client_ip_header: Option<String>,
    /// The key URI bases your playlists use (what `vodkms hls encrypt
    /// --key-uri-base` was given), comma-separated: served playlists get the
    /// viewer's token only in key URIs on these (or relative to the broker).
    #[arg(long, env = "VODKMS_KEY_URI_BASE", default_value = "")]
    key_uri_base: String,
    /// Proxies whose --client-ip-header is believed: addresses or CIDR
    /// ranges, comma-separated (e.g. 10.0.0.0/8,::1).
    #[arg(long, env = "VODKMS_TRUSTED_PROXIES", default_value = "")]
    trusted_proxies: String,
    /// Seconds a decrypted key is reused without asking the KMS (0: never).
    #[arg(long, env = "VODKMS_KEY_CACHE_TTL_SECS", default_value_t = 300)]
    key_cache_ttl_secs: u64,
    /// Most decrypted keys held at once (oldest out first); a million take
    /// about 180 MiB, and only as they are filled.
    #[arg(long, env = "VODKMS_KEY_CACHE_CAPACITY", default_value_t = 1_000_000)]
    key_cache_capacity: usize,
    /// Longest time a key learnt from the KMS is used without asking it again
    /// (bounds the key cache, so a key disabled at the KMS stops within it).
    #[arg(long, env = "VODKMS_MAX_STALE_SECS", default_value_t = 120)]
    max_stale_secs: u64,
    /// Upper bound of the key response's Cache-Control max-age.
    #[arg(long, env = "VODKMS_KEY_MAX_AGE_SECS", default_value_t = 60)]
    key_max_age_secs: u64,
    /// Clock difference allowed with token signers.
    #[arg(long, env = "VODKMS_TOKEN_LEEWAY_SECS", default_value_t = 60)]
    token_leeway_secs: u64,
    /// Longest token lifetime (exp - iat) accepted or issued.
    #[arg(long, env = "VODKMS_MAX_TOKEN_LIFETIME_SECS", default_value_t = 86_400)]
    max_token_lifetime_secs: u64,
    /// Lifetime of tokens from /v1/login.
    #[arg(long, env = "VODKMS_LOGIN_TOKEN_TTL_SECS", default_value_t = 3600)]
    login_token_ttl_secs: u64,
    /// Playback sessions: an expired token that released a key keeps working
    /// while keys are fetched at least this often (0: no sessions).
    #[arg(long, env = "VODKMS_SESSION_IDLE_SECS", default_value_t = 1800)]
    session_idle_secs: u64,
    /// ...and at most this long after the token was issued.
    #[arg(long, env = "VODKMS_SESSION_MAX_SECS", default_value_t = 43_200)]
    session_max_secs: u64,
    /// Key requests per second per token (0: unlimited), and the burst.
    #[arg(long, env = "VODKMS_TOKEN_RATE", default_value_t = 10.0)]
    token_rate: f64,
    #[arg(long, env = "VODKMS_TOKEN_BURST", default_value_t = 100.0)]
    token_burst: f64,
    /// Key requests per second per address (0: unlimited), and the burst.
    #[arg(long, env = "VODKMS_ADDRESS_RATE", default_value_t = 200.0)]
    address_rate: f64,
    #[arg(long, env = "VODKMS_ADDRESS_BURST", default_value_t = 1000.0)]
    address_burst: f64,
    /// Management calls (API client tokens, each unknown one a KMS call) per
    /// second per address (0: unlimited), and the burst.
    #[arg(long, env = "VODKMS_MANAGEMENT_RATE", default_value_t = 50.0)]
    management_rate: f64,
    #[arg(long, env = "VODKMS_MANAGEMENT_BURST", default_value_t = 500.0)]
    management_burst: f64,
    /// Unflushed audit records past which audited calls answer 503.
    #[arg(long, env = "VODKMS_AUDIT_BUFFER", default_value_t = 200_000)]
    audit_buffer: usize,
    #[arg(long, env = "VODKMS_AUDIT_FLUSH_MS", default_value_t = 100)]
    audit_flush_ms: u64,
    /// Folder of encrypted HLS output: its playlists are served at
    /// /v1/hls/playlist/PATH with a fresh token in their key URIs, its
    /// segments as they are.
    #[arg(long, env = "VODKMS_ORIGIN_DIR")]
    origin_dir: Option<PathBuf>,
    /// Lifetime of the tokens written into served playlists.
    #[arg(long, env = "VODKMS_PLAYLIST_TOKEN_TTL_SECS", default_value_t = 3600)]
    playlist_token_ttl_secs: u64,
    /// Folder of static files (a player page, hls.js) served at /web/.
    #[arg(long, env = "VODKMS_WEB_DIR")]
    web_dir: Option<PathBuf>,
    #[command(flatten)]
    risk: RiskArgs,
}

/// Risk control (README "Risk control"); every rule is off by default.
#[derive(Args)]
pub(crate) struct RiskArgs {
    /// Simultaneous playback streams per viewer (a device, or a token in
    /// use); the next one is refused with StreamLimit (0: no limit).
    #[arg(long, env = "VODKMS_MAX_STREAMS_PER_VIEWER", default_value_t = 0)]
    max_streams_per_viewer: u32,
    /// A stream with no key, licence or playlist fetch for this long has
    /// ended and no longer counts.
    #[arg(long, env = "VODKMS_STREAM_IDLE_SECS", default_value_t = 300)]
    stream_idle_secs: u64,
    /// Distinct addresses (an IPv4 /24 or IPv6 /64 each) a token may be
    /// used from in its life; past them AddressMismatch (0: no limit).
    #[arg(long, env = "VODKMS_MAX_ADDRESSES_PER_TOKEN", default_value_t = 0)]
    max_addresses_per_token: u32,
    /// Sharing detection: a token or viewer seen from more addresses than
    /// this within --share-window-secs is revoked (0: off).
    #[arg(long, env = "VODKMS_SHARE_MAX_ADDRESSES", default_value_t = 0)]
    share_max_addresses: u32,
    /// ...or fetching keys of more videos than this (0: off).
    #[arg(long, env = "VODKMS_SHARE_MAX_VIDEOS", default_value_t = 0)]
    share_max_videos: u32,
    #[arg(long, env = "VODKMS_SHARE_WINDOW_SECS", default_value_t = 3600)]
    share_window_secs: u64,
    /// Page origins every video may be played from, comma-separated
    /// (https://www.example.com, https://*.example.com, and `none` for
    /// requests without Origin or Referer). Unset: any page.
    #[arg(long, env = "VODKMS_ALLOWED_PAGE_ORIGINS")]
    allowed_page_origins: Option<String>,
    /// Bind the tokens in served playlists to the caller's address (an `ip`
    /// claim of its /24 or /64), so copied key URLs fail elsewhere.
    #[arg(long, env = "VODKMS_BIND_PLAYLIST_TOKENS", default_value_t = false, action = clap::ArgAction::Set)]
    bind_playlist_tokens: bool,
    /// POST a signed RiskEvent here when sharing is detected; the HMAC-SHA256
    /// key is VODKMS_RISK_WEBHOOK_SECRET (or its _FILE).
    #[arg(long, env = "VODKMS_RISK_WEBHOOK_URL")]
    risk_webhook_url: Option<String>,
    #[arg(long, env = "VODKMS_RISK_WEBHOOK_SECRET_FILE")]
    risk_webhook_secret_file: Option<PathBuf>,
}

impl RiskArgs {
    pub(crate) fn config(&self) -> Result<broker::service::RiskConfig> {
        let allowed_origins = match &self.allowed_page_origins {
            Some(text) => {
                let entries: Vec<&str> = text
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect();
                Some(
                    broker::page_origin::OriginList::parse(&entries)
                        .map_err(anyhow::Error::msg)
                        .context("VODKMS_ALLOWED_PAGE_ORIGINS")?,
                )
            }
            None => None,
        };
        let secret = secret_from(
            "VODKMS_RISK_WEBHOOK_SECRET",
            self.risk_webhook_secret_file.as_ref(),
        )?;
        let webhook = match (&self.risk_webhook_url, secret) {
            (Some(url), Some(secret)) => {
                let parsed = reqwest::Url::parse(url).context("VODKMS_RISK_WEBHOOK_URL")?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    bail!("VODKMS_RISK_WEBHOOK_URL must be an http:// or https:// URL");
                }
                if secret.len() < 16 {
                    bail!("VODKMS_RISK_WEBHOOK_SECRET must be at least 16 characters");
                }
                Some(broker::service::WebhookTarget {
                    url: url.clone(),
                    secret: Arc::new(kms::crypto::SecretBytes::new(secret.as_bytes().to_vec())),
                })
            }
            (Some(_), None) => bail!(
                "--risk-webhook-url needs VODKMS_RISK_WEBHOOK_SECRET (or VODKMS_RISK_WEBHOOK_SECRET_FILE): events are signed with it"
            ),
            (None, Some(_)) => bail!("VODKMS_RISK_WEBHOOK_SECRET without --risk-webhook-url"),
            (None, None) => None,
        };
        if self.stream_idle_secs == 0 {
            bail!("--stream-idle-secs must be at least 1");
        }
        if self.share_window_secs == 0 {
            bail!("--share-window-secs must be at least 1");
        }
        Ok(broker::service::RiskConfig {
            max_streams_per_viewer: self.max_streams_per_viewer,
            stream_idle: Duration::from_secs(self.stream_idle_secs),
            max_addresses_per_token: self.max_addresses_per_token,
            share_max_addresses: self.share_max_addresses,
            share_max_videos: self.share_max_videos,
            share_window: Duration::from_secs(self.share_window_secs),
            allowed_origins,
            bind_playlist_tokens: self.bind_playlist_tokens,
            webhook,
        })
    }
}

/// A secret from an environment variable or a file, never from a flag
/// (command lines are visible to every user of the machine).
fn secret_from(var: &str, file: Option<&PathBuf>) -> Result<Option<zeroize::Zeroizing<String>>> {
    // An empty variable counts as unset (how a wrapper blanks one).
    let from_env = secret_env::get(var);
    match (from_env, file) {
        (Some(_), Some(_)) => bail!("give {var} or {var}_FILE, not both"),
        (Some(v), None) => Ok(Some(v)),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Ok(Some(zeroize::Zeroizing::new(text.trim().to_owned())))
        }
        (None, None) => Ok(None),
    }
}

/// Limits on each connection to a server, against slow and abusive clients.
#[derive(Args)]
struct ConnectionArgs {
    /// Seconds a request's headers (and a TLS handshake) may take, counted
    /// from when the server waits for them: also how long a keep-alive
    /// connection may sit idle between requests.
    #[arg(long, env = "VODKMS_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    header_timeout_secs: u64,
    /// Seconds a connection may go with no byte moving either way.
    #[arg(long, env = "VODKMS_IDLE_TIMEOUT_SECS", default_value_t = 60)]
    idle_timeout_secs: u64,
    /// Seconds a request body may take to arrive.
    #[arg(long, env = "VODKMS_BODY_TIMEOUT_SECS", default_value_t = 30)]
    body_timeout_secs: u64,
    /// Open connections past which new ones get 503 (default: the open-file
    /// limit, raised to its hard limit, less 256).
    #[arg(long, env = "VODKMS_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
}

impl ConnectionArgs {
    fn limits(&self) -> Result<foundation::http::server::ConnectionLimits> {
        let secs = |name: &str, v: u64| {
            if v == 0 {
                anyhow::bail!("--{name} must be at least 1");
            }
            Ok(std::time::Duration::from_secs(v))
        };
        let limits = foundation::http::server::ConnectionLimits {
            header_timeout: secs("header-timeout-secs", self.header_timeout_secs)?,
            idle_timeout: secs("idle-timeout-secs", self.idle_timeout_secs)?,
            body_timeout: secs("body-timeout-secs", self.body_timeout_secs)?,
            max_connections: match self.max_connections {
                Some(0) => anyhow::bail!("--max-connections must be at least 1"),
                Some(n) => n,
                None => foundation::http::server::default_max_connections(),
            },
        };
        Ok(limits)
    }
}

/// HTTPS for a server: PEM files, read again on SIGHUP.
#[derive(Args)]
struct TlsArgs {
    /// PEM certificate chain; with --tls-key, serve HTTPS (reloaded on SIGHUP).
    #[arg(long, env = "VODKMS_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of the certificate.
    #[arg(long, env = "VODKMS_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

impl TlsArgs {
    fn files(&self) -> Option<kms::http::tls::TlsFiles> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(kms::http::tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        }
    }

    /// Plain HTTP beyond this machine sends tokens and keys in the clear.
    fn warn_if_plain(&self, listen: SocketAddr, what: &str) {
        if self.tls_cert.is_none() && !listen.ip().is_loopback() {
            tracing::warn!(
                %listen,
                "the {what} listens beyond loopback without TLS: tokens and keys cross the network \
                 in the clear. Give --tls-cert and --tls-key, or keep it behind a TLS proxy."
            );
        }
    }
}

/// Where PostgreSQL is: a URL, or a file holding it (for secrets mounted as
/// files, since the URL carries the password).
#[derive(Args)]
struct Database {
    /// PostgreSQL URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// File holding the PostgreSQL URL, instead of DATABASE_URL.
    #[arg(long, env = "DATABASE_URL_FILE")]
    database_url_file: Option<PathBuf>,
}

impl Database {
    fn url(&self) -> Result<zeroize::Zeroizing<String>> {
        let url = self.database_url.as_ref().filter(|u| !u.trim().is_empty());
        match (url, &self.database_url_file) {
            (Some(_), Some(_)) => bail!("give DATABASE_URL or DATABASE_URL_FILE, not both"),
            (Some(url), None) => Ok(zeroize::Zeroizing::new(url.clone())),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                Ok(zeroize::Zeroizing::new(text.trim().to_owned()))
            }
            (None, None) => {
                bail!("no database: set DATABASE_URL (postgres://...) or DATABASE_URL_FILE")
            }
        }
    }
}

#[derive(Args)]
struct DbArgs {
    #[command(flatten)]
    database: Database,
    /// File holding the root key (base64 text, or 32 raw bytes).
    #[arg(long, env = "VODKMS_ROOT_KEY_FILE")]
    root_key_file: Option<PathBuf>,
    /// How the KMS's audit records are chained and signed (also for the
    /// records of `bootstrap` and `rekey-root`).
    #[command(flatten)]
    chain: audit::ChainArgs,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    db: DbArgs,
    #[command(flatten)]
    tls: TlsArgs,
    #[command(flatten)]
    connections: ConnectionArgs,
    #[arg(long, env = "VODKMS_LISTEN", default_value = "127.0.0.1:8200")]
    listen: SocketAddr,
    /// Longest time a cached key or client is trusted without a change notification.
    #[arg(long, env = "VODKMS_CACHE_TTL_SECS", default_value_t = 30)]
    cache_ttl_secs: u64,
    /// Unflushed audit records past which key operations answer 503.
    #[arg(long, env = "VODKMS_AUDIT_BUFFER", default_value_t = 200_000)]
    audit_buffer: usize,
    /// Milliseconds between audit batch writes (a full batch is written at once).
    #[arg(long, env = "VODKMS_AUDIT_FLUSH_MS", default_value_t = 100)]
    audit_flush_ms: u64,
    /// Seconds between passes that carry out due rotations and deletions.
    #[arg(long, env = "VODKMS_MAINTENANCE_INTERVAL_SECS", default_value_t = 60)]
    maintenance_interval_secs: u64,
    /// Longest time cached keys and clients are used while this process
    /// cannot confirm with the database that nothing changed (past it, key
    /// operations it cannot confirm answer 503).
    #[arg(long, env = "VODKMS_MAX_STALE_SECS", default_value_t = 120)]
    max_stale_secs: u64,
    /// Encryptions per master key version before automatic rotation (max 2^32).
    #[arg(long, env = "VODKMS_MAX_ENCRYPTIONS_PER_VERSION", default_value_t = 1 << 32, hide = true)]
    max_encryptions_per_version: u64,
    #[command(flatten)]
    doors: DoorArgs,
}

/// The cloud doors at `POST /` (AWS, Alibaba Cloud, Tencent Cloud KMS).
#[derive(clap::Args, Debug, Clone)]
struct DoorArgs {
    /// The region AWS SDK requests must be signed for; key ARNs carry it.
    #[arg(long, env = "VODKMS_AWS_REGION", default_value = "us-east-1")]
    aws_region: String,
    /// The 12-digit account id in key ARNs.
    #[arg(long, env = "VODKMS_AWS_ACCOUNT_ID", default_value = "000000000000")]
    aws_account_id: String,
    /// Accept Alibaba Cloud requests only for this region (default: any).
    #[arg(long, env = "VODKMS_ALIBABA_REGION")]
    alibaba_region: Option<String>,
    /// Accept Tencent Cloud requests only for this region (default: any).
    #[arg(long, env = "VODKMS_TENCENT_REGION")]
    tencent_region: Option<String>,
}

impl DoorArgs {
    fn config(&self) -> Result<kms::http::doors::DoorConfig> {
        let region_ok = |r: &str| {
            !r.is_empty()
                && r.len() <= 64
                && r.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        if !region_ok(&self.aws_region) {
            bail!("--aws-region must look like us-east-1");
        }
        if self.aws_account_id.len() != 12
            || !self.aws_account_id.bytes().all(|b| b.is_ascii_digit())
        {
            bail!("--aws-account-id must be 12 digits");
        }
        Ok(kms::http::doors::DoorConfig {
            aws_region: self.aws_region.clone(),
            aws_account_id: self.aws_account_id.clone(),
            alibaba_region: self.alibaba_region.clone(),
            tencent_region: self.tencent_region.clone(),
        })
    }
}

impl DbArgs {
    /// The root key comes from VODKMS_ROOT_KEY (never a flag: command lines
    /// are visible to every user of the machine) or from a file.
    fn root_key(&self) -> Result<RootKey> {
        let from_env = secret_env::get("VODKMS_ROOT_KEY");
        match (&from_env, &self.root_key_file) {
            (Some(_), Some(_)) => bail!("give VODKMS_ROOT_KEY or VODKMS_ROOT_KEY_FILE, not both"),
            (None, None) => bail!(
                "no root key: set VODKMS_ROOT_KEY (base64 of 32 bytes; `vodkms gen-root-key` makes one) \
                 or VODKMS_ROOT_KEY_FILE"
            ),
            (Some(text), None) => Ok(RootKey::from_base64(text.as_str()).context("VODKMS_ROOT_KEY")?),
            (None, Some(path)) => {
                let bytes = zeroize::Zeroizing::new(
                    std::fs::read(path).with_context(|| format!("reading root key file {}", path.display()))?,
                );
                if let Some(k) = Key256::try_from_slice(&bytes) {
                    return Ok(RootKey::new(k));
                }
                let text = std::str::from_utf8(&bytes).ok().unwrap_or_default();
                Ok(RootKey::from_base64(text).with_context(|| format!("root key file {}", path.display()))?)
            }
        }
    }

    async fn store(&self) -> Result<Arc<dyn Store>> {
        let store = PgStore::connect(&self.database.url()?)
            .await
            .context("connecting to PostgreSQL (DATABASE_URL) and applying migrations")?;
        Ok(Arc::new(store))
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down: finishing requests in flight");
}

async fn serve_kms(args: ServeArgs) -> Result<()> {
    let doors = args.doors.config()?;
    let root = args.db.root_key()?;
    let store = args.db.store().await?;
    let config = KmsConfig {
        cache_ttl: Duration::from_secs(args.cache_ttl_secs),
        audit_buffer_capacity: args.audit_buffer,
        audit_flush_interval: Duration::from_millis(args.audit_flush_ms.max(1)),
        maintenance_interval: Duration::from_secs(args.maintenance_interval_secs.max(1)),
        max_encryptions_per_version: args.max_encryptions_per_version.clamp(1, 1 << 32),
        max_stale: Duration::from_secs(args.max_stale_secs),
        audit_chain: args.db.chain.config()?,
        ..KmsConfig::default()
    };
    let kms = Kms::start(store, root, Arc::new(SystemClock), config).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(listen = %listener.local_addr()?, "vodkms KMS listening");
    args.tls.warn_if_plain(args.listen, "KMS");
    let limits = args.connections.limits()?;
    kms::http::serve(
        listener,
        kms,
        doors,
        args.tls.files(),
        limits,
        shutdown_signal(),
    )
    .await?;
    Ok(())
}

async fn serve_broker(args: BrokerArgs) -> Result<()> {
    use broker::service::{Broker, BrokerConfig, Rate};
    use broker::token::TokenKeys;

    let kms_token = secret_from("VODKMS_KMS_TOKEN", args.kms_token_file.as_ref())?
        .context("no KMS token: set VODKMS_KMS_TOKEN (an API client of role `decrypt`) or VODKMS_KMS_TOKEN_FILE")?;
    let secret = secret_from("VODKMS_TOKEN_SECRET", args.token_secret_file.as_ref())?
        .map(|s| TokenKeys::secret_from_base64(&s))
        .transpose()
        .context("VODKMS_TOKEN_SECRET")?;
    let public = secret_from(
        "VODKMS_TOKEN_PUBLIC_KEY",
        args.token_public_key_file.as_ref(),
    )?
    .map(|s| TokenKeys::public_key_from_text(&s))
    .transpose()
    .context("VODKMS_TOKEN_PUBLIC_KEY")?;
    let to_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let tokens = TokenKeys::new(
        secret,
        public,
        to_i64(args.token_leeway_secs),
        to_i64(args.max_token_lifetime_secs),
    )
    .context("playback token keys (set VODKMS_TOKEN_SECRET and/or VODKMS_TOKEN_PUBLIC_KEY)")?;
    let cors = broker::http::CorsOrigins::parse(&args.cors_origins)
        .map_err(anyhow::Error::msg)
        .context("VODKMS_CORS_ORIGINS")?;
    let same_site = match args.cookie_same_site.to_ascii_lowercase().as_str() {
        "lax" => "Lax",
        "strict" => "Strict",
        "none" if args.cookie_secure => "None",
        "none" => bail!("VODKMS_COOKIE_SAMESITE=None needs VODKMS_COOKIE_SECURE=true (browsers refuse it otherwise)"),
        other => bail!("VODKMS_COOKIE_SAMESITE must be Lax, Strict or None, not {other:?}"),
    };
    let client_ip_header = args
        .client_ip_header
        .as_deref()
        .map(axum::http::HeaderName::try_from)
        .transpose()
        .context("VODKMS_CLIENT_IP_HEADER")?;
    let trusted_proxies = broker::http::parse_trusted_proxies(&args.trusted_proxies)
        .map_err(anyhow::Error::msg)
        .context("VODKMS_TRUSTED_PROXIES")?;
    let key_uri_bases: Vec<String> = args
        .key_uri_base
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let token_targets = hls::rewrite::TokenTargets::new(&key_uri_bases)
        .map_err(anyhow::Error::msg)
        .context("VODKMS_KEY_URI_BASE")?;
    if args.origin_dir.is_some() && key_uri_bases.is_empty() {
        tracing::warn!("--origin-dir without --key-uri-base: served playlists get tokens only in key URIs relative to the broker; absolute ones are left without");
    }
    if client_ip_header.is_some() && trusted_proxies.is_empty() {
        bail!("VODKMS_CLIENT_IP_HEADER needs VODKMS_TRUSTED_PROXIES (--trusted-proxies): the addresses of the proxies that set it; from anyone else the header is a lie");
    }
    let ca_pem = args
        .kms_ca_file
        .as_ref()
        .map(|p| std::fs::read(p).with_context(|| format!("reading {}", p.display())))
        .transpose()?;
    kms::http::tls::install_crypto_provider();
    let kms = kms::client::KmsClient::new(
        &args.kms_url,
        kms::crypto::ApiToken::from_presented(&kms_token),
        kms::client::ClientConfig {
            ca_pem,
            ..kms::client::ClientConfig::default()
        },
    )?;
    // Say at once when the token is wrong; a KMS that is not up yet is fine.
    match kms.whoami().await {
        Ok(me)
            if kms_api::Roles::parse(&me.role)
                .is_some_and(|r| r.contains(kms_api::Role::Decrypt)) => {}
        Ok(me) => bail!(
            "VODKMS_KMS_TOKEN belongs to a `{}` client; the broker needs one of role `decrypt`",
            me.role
        ),
        Err(e) if e.status() == Some(401) => {
            bail!("the KMS does not know VODKMS_KMS_TOKEN (unknown or revoked client token)")
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot reach the KMS yet; key requests answer 503 until it is up")
        }
    }
    let risk = args.risk.config()?;
    let address_rules = risk.max_addresses_per_token > 0
        || risk.share_max_addresses > 0
        || risk.bind_playlist_tokens;
    if address_rules && client_ip_header.is_none() {
        tracing::warn!("address rules are on but VODKMS_CLIENT_IP_HEADER is not set: behind a proxy every viewer has the proxy's address");
    }
    let store = broker::store::PgBrokerStore::connect(&args.database.url()?)
        .await
        .context("connecting to PostgreSQL (DATABASE_URL) and applying migrations")?;
    let config = BrokerConfig {
        key_cache_ttl: Duration::from_secs(args.key_cache_ttl_secs.min(args.max_stale_secs)),
        key_cache_capacity: args.key_cache_capacity.max(1),
        key_max_age: Duration::from_secs(args.key_max_age_secs),
        login_token_ttl: Duration::from_secs(
            args.login_token_ttl_secs
                .clamp(1, args.max_token_lifetime_secs.max(1)),
        ),
        session_idle: Duration::from_secs(args.session_idle_secs),
        session_max: Duration::from_secs(args.session_max_secs),
        playlist_token_ttl: Duration::from_secs(args.playlist_token_ttl_secs.max(1)),
        rate_per_token: Rate::new(args.token_rate, args.token_burst),
        rate_per_address: Rate::new(args.address_rate, args.address_burst),
        rate_management_per_address: Rate::new(args.management_rate, args.management_burst),
        audit_buffer_capacity: args.audit_buffer,
        audit_flush_interval: Duration::from_millis(args.audit_flush_ms.max(1)),
        risk,
        audit_chain: args.chain.config()?,
        ..BrokerConfig::default()
    };
    let service =
        Broker::start(Arc::new(store), kms, tokens, Arc::new(SystemClock), config).await?;
    let http = broker::http::HttpConfig {
        cors,
        cookie_secure: args.cookie_secure,
        cookie_same_site: same_site.to_owned(),
        client_ip_header,
        trusted_proxies,
        token_targets,
        origin_dir: args.origin_dir.clone(),
        web_dir: args.web_dir.clone(),
    };
    for (flag, dir) in [
        ("--origin-dir", &args.origin_dir),
        ("--web-dir", &args.web_dir),
    ] {
        if let Some(dir) = dir {
            if !dir.is_dir() {
                bail!("{flag} {} is not a folder", dir.display());
            }
        }
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(listen = %listener.local_addr()?, kms = %args.kms_url, "vodkms broker listening");
    args.tls.warn_if_plain(args.listen, "broker");
    let limits = args.connections.limits()?;
    broker::http::serve(
        listener,
        service,
        http,
        args.tls.files(),
        limits,
        shutdown_signal(),
    )
    .await?;
    Ok(())
}

async fn bootstrap(db: DbArgs, name: String, force: bool) -> Result<()> {
    let root = db.root_key()?;
    let store = db.store().await?;
    kms::service::verify_root_key(store.as_ref(), &root).await?;
    let chain = db.chain.config()?;
    let created =
        kms::service::bootstrap_admin(store, &SystemClock, name, force, chain.as_ref()).await?;
    let out = serde_json::json!({
        "ClientId": created.client.id,
        "Name": created.client.name,
        "Role": created.client.roles.as_string(),
        "Token": created.token.expose_secret(),
    });
    println!("{out}");
    Ok(())
}

async fn rekey_root(db: DbArgs, new_file: Option<PathBuf>) -> Result<()> {
    let old = db.root_key()?;
    let text = secret_from("VODKMS_NEW_ROOT_KEY", new_file.as_ref())?.context(
        "no new root key: set VODKMS_NEW_ROOT_KEY (`vodkms gen-root-key` makes one) or --new-root-key-file",
    )?;
    let new = RootKey::from_base64(&text).context("the new root key")?;
    let store = db.store().await?;
    let (versions, access_keys) =
        kms::service::rekey_root(store, &SystemClock, &old, &new, db.chain.config()?.as_ref())
            .await?;
    println!(
        "{}",
        serde_json::json!({ "Rewrapped": versions, "AccessKeys": access_keys })
    );
    eprintln!(
        "Done. Restart the servers with the new root key; the old one no longer opens anything."
    );
    Ok(())
}

fn check_config(path: Option<&std::path::Path>) -> Result<()> {
    let path =
        path.context("give the file: vodkms config check --config FILE (or VODKMS_CONFIG)")?;
    let problems = config::check(path);
    if problems.is_empty() {
        println!("{}: ok", path.display());
        return Ok(());
    }
    for p in &problems {
        eprintln!("{p}");
    }
    bail!("{}: {} problem(s)", path.display(), problems.len())
}

async fn probe(url: &str) -> Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()?;
    let status = client.get(url).send().await?.status();
    if !status.is_success() {
        bail!("{url} answered {status}");
    }
    Ok(())
}

fn gen_root_key() {
    use base64::Engine as _;
    let key = MasterKey::generate(&mut rand::rngs::OsRng);
    println!(
        "{}",
        base64::engine::general_purpose::STANDARD.encode(key.expose_secret())
    );
}

fn main() -> std::process::ExitCode {
    // The config file fills unset VODKMS_* variables before clap reads them
    // and before any thread exists.
    let args: Vec<String> = std::env::args().collect();
    let checking = config::command_of(&args) == Some("config");
    if let (Some(path), false) = (config::path_from(&args), checking) {
        match config::load(&path) {
            Ok(file) => {
                for (var, value) in config::missing_vars(&file, config::role_of(&args)) {
                    std::env::set_var(var, value);
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    // Still single-threaded: secrets leave the environment before anything
    // else can read it (or a thread can race the change).
    let mut warnings = Vec::new();
    if let Err(e) = secret_env::take() {
        warnings.push(format!("secret variables are out of the environment, but /proc/PID/environ could not be wiped ({e})"));
    }
    if args
        .iter()
        .any(|a| a == "--database-url" || a.starts_with("--database-url="))
    {
        warnings.push("--database-url puts the database password on the command line, visible to every user of this machine: use DATABASE_URL or --database-url-file".into());
    }
    // Confined to one core (taskset, a cgroup cpuset, a one-vCPU machine),
    // work stealing has nowhere to steal to: one thread runs everything and
    // no wakeup crosses threads. Blocking work still has its own pool.
    let one_core = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    let mut runtime = if one_core {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    match runtime.enable_all().build() {
        Ok(rt) => rt.block_on(run(warnings, one_core)),
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(warnings: Vec<String>, one_core: bool) -> std::process::ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => logs.json().flatten_event(true).init(),
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    if one_core {
        tracing::debug!("one CPU core available: the runtime runs on one thread");
    }
    for w in warnings {
        tracing::warn!("{w}");
    }
    let result = match cli.command {
        Command::Keys { target, command } => return admin::keys(target, command).await,
        Command::Videos { target, command } => return admin::videos(target, command).await,
        Command::Clients { target, command } => return admin::clients(target, command).await,
        Command::Viewers { target, command } => return admin::viewers(target, command).await,
        Command::Tokens { target, command } => return admin::tokens(target, command).await,
        Command::Sessions { target, command } => return admin::sessions(target, command).await,
        Command::Policy { target, command } => return admin::policy(target, command).await,
        Command::Audit {
            command: Some(command),
            ..
        } => return audit::run(command).await,
        Command::Audit {
            command: None,
            target,
            args,
        } => return admin::audit(target, args).await,
        Command::Kms {
            command: KmsCommand::Serve(args),
        } => serve_kms(args).await,
        Command::Broker {
            command: BrokerCommand::Serve(args),
        } => serve_broker(*args).await,
        Command::Bootstrap { db, name, force } => bootstrap(db, name, force).await,
        Command::Dev(args) => dev::run(args, shutdown_signal()).await,
        Command::Probe { url } => probe(&url).await,
        Command::Config {
            command: ConfigCommand::Check,
        } => check_config(cli.config.as_deref()),
        Command::RekeyRoot {
            db,
            new_root_key_file,
        } => rekey_root(db, new_root_key_file).await,
        Command::Datakey(args) => transcode::datakey(*args).await,
        Command::Hls { command } => transcode::hls(command).await,
        Command::GenRootKey => {
            gen_root_key();
            Ok(())
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
