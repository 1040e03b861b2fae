//! `vodkms`: the command line. Thin: parse, configure, call the libraries.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use kms::crypto::{Key256, MasterKey, RootKey};
use kms::service::{Kms, KmsConfig, SystemClock};
use kms::store::{PgStore, Store};

#[derive(Parser)]
#[command(name = "vodkms", version, about = "Self-hosted KMS and HLS key broker")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The key management service.
    Kms {
        #[command(subcommand)]
        command: KmsCommand,
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
}

#[derive(Subcommand)]
enum KmsCommand {
    /// Serve the KMS HTTP API.
    Serve(ServeArgs),
}

#[derive(Args)]
struct DbArgs {
    /// PostgreSQL URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// File holding the root key (base64 text, or 32 raw bytes).
    #[arg(long, env = "VODKMS_ROOT_KEY_FILE")]
    root_key_file: Option<PathBuf>,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    db: DbArgs,
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
    /// Encryptions per master key version before automatic rotation (max 2^32).
    #[arg(long, env = "VODKMS_MAX_ENCRYPTIONS_PER_VERSION", default_value_t = 1 << 32, hide = true)]
    max_encryptions_per_version: u64,
}

impl DbArgs {
    /// The root key comes from VODKMS_ROOT_KEY (never a flag: command lines
    /// are visible to every user of the machine) or from a file.
    fn root_key(&self) -> Result<RootKey> {
        let from_env = std::env::var("VODKMS_ROOT_KEY")
            .ok()
            .map(zeroize::Zeroizing::new);
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
        let store = PgStore::connect(&self.database_url)
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
    let root = args.db.root_key()?;
    let store = args.db.store().await?;
    let config = KmsConfig {
        cache_ttl: Duration::from_secs(args.cache_ttl_secs),
        audit_buffer_capacity: args.audit_buffer,
        audit_flush_interval: Duration::from_millis(args.audit_flush_ms.max(1)),
        maintenance_interval: Duration::from_secs(args.maintenance_interval_secs.max(1)),
        max_encryptions_per_version: args.max_encryptions_per_version.clamp(1, 1 << 32),
        ..KmsConfig::default()
    };
    let kms = Kms::start(store, root, Arc::new(SystemClock), config).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(listen = %listener.local_addr()?, "vodkms KMS listening");
    kms::http::serve(listener, kms, shutdown_signal()).await?;
    Ok(())
}

async fn bootstrap(db: DbArgs, name: String, force: bool) -> Result<()> {
    let root = db.root_key()?;
    let store = db.store().await?;
    kms::service::verify_root_key(store.as_ref(), &root).await?;
    let created = kms::service::bootstrap_admin(store, &SystemClock, name, force).await?;
    let out = serde_json::json!({
        "ClientId": created.client.id,
        "Name": created.client.name,
        "Role": created.client.role.as_str(),
        "Token": created.token.expose_secret(),
    });
    println!("{out}");
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

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Kms {
            command: KmsCommand::Serve(args),
        } => serve_kms(args).await,
        Command::Bootstrap { db, name, force } => bootstrap(db, name, force).await,
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
