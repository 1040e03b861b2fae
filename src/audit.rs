//! The tamper-evident audit trails from the command line (DESIGN.md,
//! "Tamper-evident audit"): the servers' chaining settings, and `vodkms
//! audit verify|export|gen-signing-key`, which read the database (or an
//! export) directly, offline, with no server running.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use audit_chain::export::Line;
use audit_chain::{Checkpoint, Link, Report, Row, SigningKey, Verifier, VerifyingKey};
use clap::{Args, Subcommand, ValueEnum};
use foundation::audit::{ChainConfig, Chained};

/// How a server chains and signs its audit trail.
#[derive(Args, Debug, Clone)]
pub struct ChainArgs {
    /// Ed25519 private key (PEM, or the 32-byte seed in base64) that signs
    /// audit checkpoints. Never stored in the database. `vodkms audit
    /// gen-signing-key` makes one.
    #[arg(long, env = "VODKMS_AUDIT_SIGNING_KEY_FILE")]
    pub audit_signing_key_file: Option<PathBuf>,
    /// File each signed checkpoint is appended to (JSON Lines): the copy
    /// kept off the box, for `vodkms audit verify --copy`.
    #[arg(long, env = "VODKMS_AUDIT_CHECKPOINT_FILE")]
    pub audit_checkpoint_file: Option<PathBuf>,
    /// Seconds between checkpoints (when records were written meanwhile).
    #[arg(long, env = "VODKMS_AUDIT_CHECKPOINT_SECS", default_value_t = 60)]
    pub audit_checkpoint_secs: u64,
    /// Records after which a checkpoint is due sooner.
    #[arg(
        long,
        env = "VODKMS_AUDIT_CHECKPOINT_RECORDS",
        default_value_t = 10_000
    )]
    pub audit_checkpoint_records: u64,
    /// `off` writes records without chain fields: only for measuring what
    /// chaining costs (verify reports such records).
    #[arg(long, env = "VODKMS_AUDIT_CHAIN", default_value = "on")]
    pub audit_chain: Switch,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    On,
    Off,
}

impl ChainArgs {
    pub fn config(&self) -> Result<Option<ChainConfig>> {
        if self.audit_chain == Switch::Off {
            tracing::warn!("VODKMS_AUDIT_CHAIN=off: audit records are written without hash chains");
            return Ok(None);
        }
        let signing_key = match &self.audit_signing_key_file {
            Some(path) => Some(Arc::new(read_signing_key(path)?)),
            None => {
                tracing::warn!("no VODKMS_AUDIT_SIGNING_KEY_FILE: the audit trail is chained but its checkpoints are not signed, so `vodkms audit verify` cannot prove it");
                None
            }
        };
        if let Some(path) = &self.audit_checkpoint_file {
            // A copy that cannot be written shows at start, not hours later.
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| {
                    format!(
                        "opening the audit checkpoint copy {} (VODKMS_AUDIT_CHECKPOINT_FILE)",
                        path.display()
                    )
                })?;
        }
        Ok(Some(ChainConfig {
            signing_key,
            copy_file: self.audit_checkpoint_file.clone(),
            every_records: self.audit_checkpoint_records.max(1),
            every: Duration::from_secs(self.audit_checkpoint_secs.max(1)),
        }))
    }
}

pub fn read_signing_key(path: &Path) -> Result<SigningKey> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("reading the audit signing key {}", path.display()))?,
    );
    SigningKey::from_text(&text).with_context(|| {
        format!(
            "the audit signing key {} (VODKMS_AUDIT_SIGNING_KEY_FILE)",
            path.display()
        )
    })
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the audit trails for tampering: every chain (gaps, forks,
    /// edits), the signed checkpoints and their chain, and the off-box copy.
    /// Names the first bad record. Exit 0 clean, 1 tampered, 2 not checked.
    Verify(VerifyArgs),
    /// Write the audit trails with their chain fields and checkpoints as
    /// JSON Lines, which `verify --from` checks on their own.
    Export(ExportArgs),
    /// Write a new Ed25519 audit signing key (PEM, mode 0600) and print its
    /// public key, for VODKMS_AUDIT_SIGNING_KEY_FILE.
    GenSigningKey {
        /// Where to write the private key; it must not exist yet.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Where the trails are read from.
#[derive(Args)]
pub struct Source {
    #[command(flatten)]
    database: crate::Database,
    /// The SQLite database of `vodkms dev` (vodkms-data/vodkms.db) instead
    /// of PostgreSQL (DATABASE_URL is then not read).
    #[arg(long)]
    sqlite: Option<PathBuf>,
    /// Only this trail (default: both).
    #[arg(long)]
    trail: Option<Trail>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trail {
    Kms,
    Broker,
}

impl Trail {
    fn name(self) -> &'static str {
        match self {
            Self::Kms => kms::service::audit::TRAIL,
            Self::Broker => broker::service::AUDIT_TRAIL,
        }
    }
}

#[derive(Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    source: Source,
    /// The audit signing key's public half (PEM, or 32 bytes in base64).
    #[arg(long)]
    public_key: PathBuf,
    /// The off-box copy of the checkpoints (VODKMS_AUDIT_CHECKPOINT_FILE).
    #[arg(long)]
    copy: Option<PathBuf>,
    /// Records without chain fields older than this (RFC 3339) were written
    /// before an upgrade to chaining: count them, but not as tampering.
    /// Anyone with database access could add such records dated before it.
    #[arg(long)]
    unchained_before: Option<chrono::DateTime<chrono::Utc>>,
    /// Check an export (`vodkms audit export`) instead of the database
    /// (DATABASE_URL is then not read).
    #[arg(long, conflicts_with = "sqlite")]
    from: Option<PathBuf>,
}

#[derive(Args)]
pub struct ExportArgs {
    #[command(flatten)]
    source: Source,
    /// Write here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Exit codes: 0 clean, 1 tampered, 2 could not check.
pub async fn run(command: AuditCommand) -> std::process::ExitCode {
    let result = match command {
        AuditCommand::Verify(args) => verify(args).await,
        AuditCommand::Export(args) => export(args).await.map(|()| true),
        AuditCommand::GenSigningKey { out } => gen_signing_key(&out).map(|()| true),
    };
    match result {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn gen_signing_key(out: &Path) -> Result<()> {
    let seed = zeroize::Zeroizing::new(rand::random::<[u8; 32]>());
    let key = SigningKey::from_seed(&seed);
    write_new_private(out, key.private_pem().as_bytes())?;
    print!("{}", key.public_pem());
    eprintln!(
        "wrote the private key to {}: give it to the servers as VODKMS_AUDIT_SIGNING_KEY_FILE, \
         and keep the public key above for `vodkms audit verify --public-key`",
        out.display()
    );
    Ok(())
}

/// Creates `path` readable by its owner only; refuses to overwrite.
pub fn write_new_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

/// The two trails' stores, opened on one database.
struct Stores {
    kms: Arc<dyn kms::store::Store>,
    broker: Arc<dyn broker::store::BrokerStore>,
}

impl Source {
    async fn open(&self) -> Result<Stores> {
        if let Some(path) = &self.sqlite {
            if !path.is_file() {
                bail!("{} is not a file", path.display());
            }
            let pool = foundation::db::sqlite::open_read_only(path)
                .await
                .with_context(|| format!("opening {}", path.display()))?;
            return Ok(Stores {
                kms: Arc::new(kms::store::SqliteStore::with_pool(pool.clone())),
                broker: Arc::new(broker::store::SqliteBrokerStore::with_pool(pool)),
            });
        }
        // Read-only and unmigrated: an auditor's read-only role is enough.
        let pool = foundation::db::postgres::connect_read_only(&self.database.url()?)
            .await
            .context("connecting to PostgreSQL (DATABASE_URL)")?;
        Ok(Stores {
            kms: Arc::new(kms::store::PgStore::with_pool(pool.clone())),
            broker: Arc::new(broker::store::PgBrokerStore::with_pool(pool)),
        })
    }

    fn trails(&self) -> Vec<Trail> {
        match self.trail {
            Some(t) => vec![t],
            None => vec![Trail::Kms, Trail::Broker],
        }
    }
}

const PAGE: u32 = 5_000;

/// A stored record as the verifier takes it: chained (its row), or not
/// (its id, and its time when readable).
enum Stored {
    Chained(Row),
    Unchained(String, Option<chrono::DateTime<chrono::Utc>>),
}

impl Stored {
    /// An unreadable record (no canonical bytes) hashes as nothing: it
    /// shows as edited.
    fn of(
        link: Option<Link>,
        id: String,
        canonical: Option<Vec<u8>>,
        time: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Self {
        match link {
            Some(link) => Self::Chained(Row {
                link,
                canonical: canonical.unwrap_or_default(),
                id,
            }),
            None => Self::Unchained(id, time),
        }
    }
}

fn stored_page<R: Chained>(page: Vec<(i64, foundation::db::ChainRow<R>)>) -> Vec<(i64, Stored)> {
    page.into_iter()
        .map(|(seq, r)| match r {
            Ok(rec) => (
                seq,
                Stored::of(
                    rec.link().copied(),
                    rec.id().to_string(),
                    Some(rec.canonical()),
                    Some(rec.recorded_at()),
                ),
            ),
            Err(bad) => (seq, Stored::of(bad.link, bad.id, None, None)),
        })
        .collect()
}

/// A trail's records in storage order, a page at a time.
async fn for_each_record(
    stores: &Stores,
    trail: Trail,
    mut each: impl FnMut(Stored) -> Result<()>,
) -> Result<()> {
    let mut after = 0i64;
    loop {
        let page = match trail {
            Trail::Kms => stored_page(stores.kms.audit_page(after, PAGE).await?),
            Trail::Broker => stored_page(stores.broker.audit_page(after, PAGE).await?),
        };
        let Some(&(last, _)) = page.last() else {
            return Ok(());
        };
        for (_, stored) in page {
            each(stored)?;
        }
        after = last;
    }
}

async fn checkpoints(stores: &Stores, trail: Trail) -> Result<Vec<Checkpoint>> {
    Ok(match trail {
        Trail::Kms => stores.kms.audit_checkpoints().await?,
        Trail::Broker => stores.broker.audit_checkpoints().await?,
    })
}

fn read_public_key(path: &Path) -> Result<VerifyingKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the public key {}", path.display()))?;
    audit_chain::verifying_key_from_text(&text)
        .with_context(|| format!("the public key {}", path.display()))
}

/// Checkpoints of a JSON Lines file (the copy, or an export's); other
/// lines of an export are skipped here.
fn read_checkpoint_lines(path: &Path) -> Result<Vec<Checkpoint>> {
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("{} line {}: not JSON", path.display(), n + 1))?;
        let checkpoint = match value.get("Type").and_then(|t| t.as_str()) {
            Some("Checkpoint") | None => serde_json::from_value::<Checkpoint>(value)
                .with_context(|| format!("{} line {}: not a checkpoint", path.display(), n + 1))?,
            Some(_) => continue,
        };
        out.push(checkpoint);
    }
    Ok(out)
}

async fn verify(args: VerifyArgs) -> Result<bool> {
    let key = read_public_key(&args.public_key)?;
    let copy = args
        .copy
        .as_deref()
        .map(read_checkpoint_lines)
        .transpose()?;
    let mut clean = true;
    if let Some(path) = &args.from {
        let trails = read_export(path)?;
        for trail in args.source.trails() {
            let (rows, cps) = trails
                .iter()
                .find(|(name, _, _)| name == trail.name())
                .map(|(_, rows, cps)| (rows.as_slice(), cps.as_slice()))
                .unwrap_or_default();
            let copy = copy.as_ref().map(|c| of_trail(c, trail));
            let report = audit_chain::verify(rows, cps, copy.as_deref(), &key);
            clean &= print_report(trail, &report);
        }
        return Ok(clean);
    }
    let stores = args.source.open().await?;
    for trail in args.source.trails() {
        let cps = checkpoints(&stores, trail).await?;
        let copy = copy.as_ref().map(|c| of_trail(c, trail));
        let mut verifier = Verifier::new(&cps, copy.as_deref(), &key);
        let mut before_chaining = 0u64;
        for_each_record(&stores, trail, |stored| {
            match stored {
                Stored::Chained(row) => verifier.push(&row),
                Stored::Unchained(_, Some(t))
                    if args.unchained_before.is_some_and(|before| t < before) =>
                {
                    before_chaining += 1
                }
                Stored::Unchained(id, _) => verifier.push_unchained(&id),
            }
            Ok(())
        })
        .await?;
        clean &= print_report(trail, &verifier.finish());
        if before_chaining > 0 {
            println!(
                "  ({before_chaining} records from before --unchained-before carry no chain fields and were not checked)"
            );
        }
    }
    Ok(clean)
}

fn of_trail(checkpoints: &[Checkpoint], trail: Trail) -> Vec<Checkpoint> {
    checkpoints
        .iter()
        .filter(|c| c.trail == trail.name())
        .cloned()
        .collect()
}

/// Prints one trail's verdict; `true` when clean.
fn print_report(trail: Trail, report: &Report) -> bool {
    let name = trail.name();
    let summary = format!(
        "{name} trail: {} records from {} writers, {} checkpoints",
        report.records, report.writers, report.checkpoints
    );
    let Some(first) = report.problems.first() else {
        let tail = if report.unsigned_tail > 0 {
            format!(
                " ({} newest records await their writers' next checkpoint)",
                report.unsigned_tail
            )
        } else {
            String::new()
        };
        println!("{summary}: clean{tail}");
        return true;
    };
    println!("{summary}: TAMPERED");
    println!("  first: {first}");
    const SHOWN: usize = 20;
    for p in report.problems.iter().skip(1).take(SHOWN) {
        println!("  also: {p}");
    }
    if report.problems.len() > SHOWN + 1 {
        println!("  … and {} more", report.problems.len() - SHOWN - 1);
    }
    false
}

type ExportedTrail = (String, Vec<Row>, Vec<Checkpoint>);

/// An export's records and checkpoints, per trail.
fn read_export(path: &Path) -> Result<Vec<ExportedTrail>> {
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut trails: Vec<ExportedTrail> = Vec::new();
    fn entry<'a>(trails: &'a mut Vec<ExportedTrail>, name: &str) -> &'a mut ExportedTrail {
        let i = match trails.iter().position(|(n, _, _)| n == name) {
            Some(i) => i,
            None => {
                trails.push((name.to_owned(), Vec::new(), Vec::new()));
                trails.len() - 1
            }
        };
        &mut trails[i]
    }
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed = Line::parse(&line)
            .with_context(|| format!("{} line {}: not an export line", path.display(), n + 1))?;
        match parsed {
            Line::Checkpoint(cp) => entry(&mut trails, &cp.trail.clone()).2.push(cp),
            record => {
                if let Some((trail, row)) = record.into_row() {
                    entry(&mut trails, &trail).1.push(row);
                }
            }
        }
    }
    Ok(trails)
}

async fn export(args: ExportArgs) -> Result<()> {
    let stores = args.source.open().await?;
    let mut out: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut records = 0u64;
    for trail in args.source.trails() {
        for cp in checkpoints(&stores, trail).await? {
            serde_json::to_writer(&mut out, &Line::Checkpoint(cp))?;
            out.write_all(b"\n")?;
        }
        let mut count = 0u64;
        for_each_record(&stores, trail, |stored| {
            match stored {
                Stored::Chained(row) => {
                    serde_json::to_writer(&mut out, &Line::record(trail.name(), &row))?;
                    out.write_all(b"\n")?;
                    records += 1;
                }
                Stored::Unchained(..) => count += 1,
            }
            Ok(())
        })
        .await?;
        if count > 0 {
            eprintln!(
                "{}: {count} records without chain fields were left out (`vodkms audit verify` reports them)",
                trail.name()
            );
        }
    }
    out.flush()?;
    eprintln!("exported {records} records");
    Ok(())
}
