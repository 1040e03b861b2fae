//! `vodkms hls rewrap ORIGIN_DIR`: re-seals every EDK published in an origin
//! folder's playlists (and in the broker's content key registry) under the
//! current master key version, or another master key, so old versions can
//! be retired. The data keys stay the same: segments are not touched, and
//! players mid-stream keep playing (old and new URIs both open until the old
//! version is retired).
//!
//! Crash-safe and idempotent: new EDKs are appended to a journal (fsync'd)
//! before any playlist names them, and each playlist is replaced atomically
//! (write a hidden sibling, fsync, rename), a few at a time. A run killed
//! anywhere leaves every playlist whole (old or new EDKs, both valid); the
//! next run reuses the journal and finishes. The journal is removed once a
//! run completes.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use kms_api::api::ReEncryptRequest;
use kms_api::client::{ClientConfig, KmsClient, Method};
use kms_api::Blob;
use zeroize::Zeroizing;

/// Re-encrypts per call (the KMS's most).
const DEFAULT_BATCH: usize = 1000;
const JOURNAL_NAME: &str = ".vodkms-rewrap.journal";
const TMP_SUFFIX: &str = ".vodkms-rewrap.tmp";
/// Playlists replaced at once.
const PARALLEL_WRITES: usize = 32;

#[derive(Args)]
pub struct RewrapArgs {
    /// Base URL of the KMS, e.g. http://127.0.0.1:8200.
    #[arg(long, env = "VODKMS_KMS_URL")]
    kms_url: String,
    /// Re-seal under this master key (id or alias/NAME) instead of each
    /// EDK's own: e.g. a PerVideoKeys key, to make old videos shreddable.
    #[arg(long)]
    to_key: Option<String>,
    /// Also re-seal the broker's content key registry (CMAF, Clear Key).
    #[arg(long, env = "VODKMS_BROKER_URL")]
    broker_url: Option<String>,
    /// Count what would change; write nothing (asks the KMS once per master
    /// key for its current version).
    #[arg(long)]
    dry_run: bool,
    /// Where the journal goes (default: ORIGIN_DIR/.vodkms-rewrap.journal).
    #[arg(long)]
    journal: Option<PathBuf>,
    /// EDKs per KMS call, 1 to 1000.
    #[arg(long, default_value_t = DEFAULT_BATCH)]
    batch: usize,
    /// PEM file of a private CA to trust for https:// URLs.
    #[arg(long, env = "VODKMS_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// The origin folder: every *.m3u8 under it (hidden entries skipped).
    origin_dir: PathBuf,
}

/// What an EDK is sealed under, as its header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sealing {
    key_id: uuid::Uuid,
    version: u32,
    per_video: bool,
}

fn sealing_of(blob: &str) -> Option<Sealing> {
    Blob::from_text(blob).ok().map(|b| Sealing {
        key_id: b.header.key_id,
        version: b.header.version,
        per_video: b.header.per_video,
    })
}

/// Old EDK → new EDK, remembered across crashes.
struct Journal {
    path: PathBuf,
    map: HashMap<String, String>,
    file: Option<std::fs::File>,
}

impl Journal {
    fn open(path: PathBuf, write: bool) -> Result<Self> {
        let mut map = HashMap::new();
        if let Ok(text) = std::fs::read_to_string(&path) {
            // A line cut short by a crash is not valid JSON: skipped, and its
            // EDK is simply re-sealed again.
            for line in text.lines() {
                if let Ok(entry) = serde_json::from_str::<(String, String)>(line) {
                    map.insert(entry.0, entry.1);
                }
            }
        }
        let file = if write {
            Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .with_context(|| format!("opening the journal {}", path.display()))?,
            )
        } else {
            None
        };
        Ok(Self { path, map, file })
    }

    fn record(&mut self, pairs: &[(String, String)]) -> Result<()> {
        if let Some(f) = &mut self.file {
            let mut text = String::new();
            for p in pairs {
                text.push_str(&serde_json::to_string(p)?);
                text.push('\n');
            }
            f.write_all(text.as_bytes())?;
            f.sync_data()?;
        }
        self.map.extend(pairs.iter().cloned());
        Ok(())
    }
}

#[derive(Default)]
struct Counts {
    playlists: usize,
    playlists_rewritten: usize,
    unreadable: usize,
    keys: usize,
    keys_rewrapped: usize,
    keys_current: usize,
    keys_without_video: usize,
    content_keys: usize,
    content_keys_rewrapped: usize,
    failed: usize,
    kms_calls: usize,
}

struct Rewrapper {
    kms: KmsClient,
    broker: Option<KmsClient>,
    to_key: Option<String>,
    batch: usize,
    dry_run: bool,
    journal: Journal,
    /// Per source master key: what a fresh seal looks like now.
    targets: HashMap<uuid::Uuid, Sealing>,
    counts: Counts,
    /// The first few refusals, shown at the end.
    errors: Vec<String>,
    /// EDKs already handled (a video's keys are named by all its
    /// playlists), by digest so a large library stays small in memory.
    seen: std::collections::HashSet<[u8; 16]>,
}

fn digest(blob: &str) -> [u8; 16] {
    use sha2::Digest as _;
    let full = sha2::Sha256::digest(blob.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

pub async fn rewrap(args: RewrapArgs) -> Result<()> {
    if !(1..=DEFAULT_BATCH).contains(&args.batch) {
        bail!("--batch must be 1 to {DEFAULT_BATCH}");
    }
    let origin = args.origin_dir.clone();
    if !origin.is_dir() {
        bail!("{} is not a folder", origin.display());
    }
    let token = std::env::var("VODKMS_TOKEN")
        .ok()
        .map(Zeroizing::new)
        .filter(|t| !t.trim().is_empty())
        .context("set VODKMS_TOKEN to an API client token of role `generate`")?;
    let ca_pem = args
        .ca_file
        .as_ref()
        .map(|p| std::fs::read(p).with_context(|| format!("reading {}", p.display())))
        .transpose()?;
    let client = |url: &str| {
        KmsClient::new(
            url,
            kms_api::ApiToken::from_presented(token.trim()),
            ClientConfig {
                ca_pem: ca_pem.clone(),
                retries: 4,
                request_timeout: std::time::Duration::from_secs(60),
                ..ClientConfig::default()
            },
        )
    };
    let journal_path = args
        .journal
        .clone()
        .unwrap_or_else(|| origin.join(JOURNAL_NAME));
    let started = Instant::now();
    let mut r = Rewrapper {
        kms: client(&args.kms_url)?,
        broker: args.broker_url.as_deref().map(client).transpose()?,
        to_key: args.to_key.clone(),
        batch: args.batch,
        dry_run: args.dry_run,
        journal: Journal::open(journal_path, !args.dry_run)?,
        targets: HashMap::new(),
        counts: Counts::default(),
        errors: Vec::new(),
        seen: std::collections::HashSet::new(),
    };
    let playlists = find_playlists(&origin, !args.dry_run)?;
    r.counts.playlists = playlists.len();
    let bar = progress_bar(playlists.len() as u64);
    // A few playlists at a time: their EDKs re-sealed and journaled, then
    // the playlists replaced. Memory stays bounded for any library size.
    let mut chunk: Vec<(PathBuf, String, Vec<hls::rewrap::KeyRef>)> = Vec::new();
    let mut pending = 0;
    for path in &playlists {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                r.note_error(format!("{}: {e}", path.display()));
                r.counts.unreadable += 1;
                bar.inc(1);
                continue;
            }
        };
        let keys = match hls::rewrap::playlist_keys(&text) {
            Ok(k) => k,
            Err(e) => {
                r.note_error(format!("{}: {e}", path.display()));
                r.counts.unreadable += 1;
                bar.inc(1);
                continue;
            }
        };
        r.counts.keys_without_video += keys.without_video;
        pending += keys.keys.len();
        chunk.push((path.clone(), text, keys.keys));
        if pending >= r.batch {
            r.process(std::mem::take(&mut chunk), &bar).await?;
            pending = 0;
        }
    }
    r.process(chunk, &bar).await?;
    bar.finish_and_clear();
    if r.broker.is_some() {
        r.rewrap_content_keys().await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let c = &r.counts;
    let done = c.failed == 0 && c.unreadable == 0;
    if done && !r.dry_run {
        // Everything is rewritten: the journal has served its purpose.
        let _ = std::fs::remove_file(&r.journal.path);
    }
    for e in &r.errors {
        eprintln!("vodkms hls rewrap: {e}");
    }
    let per_second = |n: usize| {
        if seconds > 0.0 {
            n as f64 / seconds
        } else {
            0.0
        }
    };
    let summary = serde_json::json!({
        "DryRun": r.dry_run,
        "Playlists": c.playlists,
        "PlaylistsRewritten": c.playlists_rewritten,
        "Unreadable": c.unreadable,
        "Keys": c.keys,
        "KeysRewrapped": c.keys_rewrapped,
        "KeysAlreadyCurrent": c.keys_current,
        "KeysWithoutVideoId": c.keys_without_video,
        "ContentKeys": c.content_keys,
        "ContentKeysRewrapped": c.content_keys_rewrapped,
        "Failed": c.failed,
        "KmsCalls": c.kms_calls,
        "Seconds": (seconds * 1000.0).round() / 1000.0,
        "KeysPerSecond": per_second(c.keys_rewrapped).round(),
        "PlaylistsPerSecond": per_second(c.playlists_rewritten).round(),
    });
    println!("{summary}");
    if !done {
        bail!(
            "{} EDKs could not be re-sealed and {} playlists not read; fix them and run again (the journal keeps what is done)",
            c.failed,
            c.unreadable
        );
    }
    Ok(())
}

impl Rewrapper {
    fn note_error(&mut self, e: String) {
        if self.errors.len() < 20 {
            self.errors.push(e);
        }
    }

    /// Re-seals the chunk's EDKs that need it, then rewrites its playlists.
    async fn process(
        &mut self,
        chunk: Vec<(PathBuf, String, Vec<hls::rewrap::KeyRef>)>,
        bar: &indicatif::ProgressBar,
    ) -> Result<()> {
        let mut wanted: Vec<hls::rewrap::KeyRef> = Vec::new();
        for (_, _, keys) in &chunk {
            for k in keys {
                if self.seen.insert(digest(&k.ciphertext_blob)) {
                    wanted.push(k.clone());
                }
            }
        }
        self.counts.keys += wanted.len();
        self.reseal(wanted).await?;
        let mut writes: Vec<(PathBuf, String)> = Vec::new();
        for (path, text, keys) in chunk {
            if !keys
                .iter()
                .any(|k| self.journal.map.contains_key(&k.ciphertext_blob))
            {
                bar.inc(1);
                continue;
            }
            let (new_text, changed) = hls::rewrap::replace_key_blobs(&text, &self.journal.map)
                .with_context(|| format!("rewriting {}", path.display()))?;
            if changed == 0 {
                bar.inc(1);
                continue;
            }
            self.counts.playlists_rewritten += 1;
            if self.dry_run {
                bar.inc(1);
            } else {
                writes.push((path, new_text));
            }
        }
        // Each replacement waits on two fsyncs; several at once share the
        // file system's journal commits (about 3x faster on this machine).
        let mut writes = writes.into_iter().peekable();
        while writes.peek().is_some() {
            let mut set = tokio::task::JoinSet::new();
            for (path, text) in writes.by_ref().take(PARALLEL_WRITES) {
                set.spawn_blocking(move || replace_atomically(&path, &text));
            }
            while let Some(done) = set.join_next().await {
                done.context("a playlist writer failed")??;
                bar.inc(1);
            }
        }
        Ok(())
    }

    /// Re-seals every EDK not yet current (and not in the journal).
    async fn reseal(&mut self, keys: Vec<hls::rewrap::KeyRef>) -> Result<()> {
        let mut todo: Vec<hls::rewrap::KeyRef> = Vec::new();
        for k in keys {
            if self.journal.map.contains_key(&k.ciphertext_blob) {
                self.counts.keys_rewrapped += 1;
                continue;
            }
            let Some(sealing) = sealing_of(&k.ciphertext_blob) else {
                self.counts.failed += 1;
                self.note_error(format!("{}: not an EDK of this KMS", k.video_id));
                continue;
            };
            // The first EDK of each master key learns what current means.
            if !self.targets.contains_key(&sealing.key_id) {
                self.reseal_batch(std::slice::from_ref(&k)).await?;
                continue;
            }
            if self.is_current(sealing) {
                self.counts.keys_current += 1;
            } else {
                todo.push(k);
            }
        }
        for batch in todo.chunks(self.batch) {
            self.reseal_batch(batch).await?;
        }
        Ok(())
    }

    /// Already sealed as a fresh seal of its key would be (version and format).
    fn is_current(&self, s: Sealing) -> bool {
        self.targets.get(&s.key_id) == Some(&s)
    }

    async fn reseal_batch(&mut self, batch: &[hls::rewrap::KeyRef]) -> Result<()> {
        let reqs: Vec<ReEncryptRequest> = batch
            .iter()
            .map(|k| ReEncryptRequest {
                ciphertext_blob: k.ciphertext_blob.clone(),
                source_encryption_context: Some(
                    [("video_id".to_owned(), k.video_id.clone())].into(),
                ),
                destination_key_id: self.to_key.clone(),
                destination_encryption_context: None,
            })
            .collect();
        self.counts.kms_calls += 1;
        let results = self
            .kms
            .re_encrypt_batch(&reqs)
            .await
            .map_err(|e| anyhow::anyhow!("the KMS refused the batch: {e}"))?;
        let mut fresh = Vec::new();
        for (k, result) in batch.iter().zip(results) {
            match (result.ok, result.error) {
                (Some(out), _) => {
                    let (Some(source), Some(target)) = (
                        sealing_of(&k.ciphertext_blob),
                        sealing_of(&out.ciphertext_blob),
                    ) else {
                        bail!("the KMS answered with a malformed CiphertextBlob");
                    };
                    self.targets.entry(source.key_id).or_insert(target);
                    if source == target {
                        // Already current: keep the published EDK.
                        self.counts.keys_current += 1;
                    } else {
                        self.counts.keys_rewrapped += 1;
                        fresh.push((k.ciphertext_blob.clone(), out.ciphertext_blob));
                    }
                }
                (None, Some(e)) => {
                    self.counts.failed += 1;
                    self.note_error(format!("video {}: {}: {}", k.video_id, e.code, e.message));
                }
                (None, None) => bail!("the KMS answered an item with neither a blob nor an error"),
            }
        }
        if !self.dry_run {
            self.journal.record(&fresh)?;
        } else {
            self.journal.map.extend(fresh);
        }
        Ok(())
    }

    /// The broker's registered content keys, re-sealed and registered again
    /// (the broker checks the new EDK opens to the same key).
    async fn rewrap_content_keys(&mut self) -> Result<()> {
        let Some(broker) = self.broker.clone() else {
            return Ok(());
        };
        let listed = broker
            .request_json(Method::GET, "/v1/content-keys", None, true)
            .await
            .map_err(|e| anyhow::anyhow!("listing the broker's content keys: {e}"))?;
        let entries: Vec<(String, String, String)> = listed["ContentKeys"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|k| {
                        Some((
                            k["Kid"].as_str()?.to_owned(),
                            k["VideoId"].as_str()?.to_owned(),
                            k["CiphertextBlob"].as_str()?.to_owned(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.counts.content_keys = entries.len();
        let refs: Vec<hls::rewrap::KeyRef> = entries
            .iter()
            .filter(|(_, _, blob)| self.seen.insert(digest(blob)))
            .map(|(_, video_id, blob)| hls::rewrap::KeyRef {
                video_id: video_id.clone(),
                ciphertext_blob: blob.clone(),
            })
            .collect();
        self.counts.keys += refs.len();
        for chunk in refs.chunks(self.batch) {
            self.reseal(chunk.to_vec()).await?;
        }
        for (kid, video_id, blob) in entries {
            let Some(new) = self.journal.map.get(&blob).cloned() else {
                continue;
            };
            self.counts.content_keys_rewrapped += 1;
            if self.dry_run {
                continue;
            }
            let body =
                serde_json::json!({ "Kid": kid, "VideoId": video_id, "CiphertextBlob": new });
            if let Err(e) = broker
                .request_json(Method::POST, "/v1/content-keys", Some(&body), true)
                .await
            {
                self.counts.failed += 1;
                self.note_error(format!("content key {kid}: {e}"));
            }
        }
        Ok(())
    }
}

/// Every `*.m3u8` under `dir`, sorted; hidden entries skipped. Leftovers of
/// a crashed run's atomic replacements are removed (with `clean`).
fn find_playlists(dir: &Path, clean: bool) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut entries: BTreeMap<String, PathBuf> = BTreeMap::new();
        for e in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            entries.insert(name, e.path());
        }
        for (name, path) in entries {
            if name.starts_with('.') {
                if clean && name.ends_with(TMP_SUFFIX) {
                    let _ = std::fs::remove_file(&path);
                }
                continue;
            }
            let kind = std::fs::symlink_metadata(&path)?.file_type();
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() && name.ends_with(".m3u8") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Writes a hidden sibling, syncs it, and renames it over `path`: readers
/// see the old playlist or the new one, never a part.
fn replace_atomically(path: &Path, text: &str) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}{TMP_SUFFIX}"));
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = f.set_permissions(meta.permissions());
    }
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Progress on a terminal's stderr (hidden when it is not a terminal).
fn progress_bar(len: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "rewrapping [{bar:30}] {pos}/{len} playlists, {elapsed} (eta {eta})",
    ) {
        bar.set_style(style.progress_chars("#>."));
    }
    bar
}
