//! Chaining an audit trail as its writer sends it to the database
//! (DESIGN.md, "Tamper-evident audit"): records are linked when they first
//! leave the buffer, in the writer task, never on the request path; signed
//! checkpoints follow what the database has committed.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
pub use audit_chain::{Chain, Checkpoint, Link, SigningKey};
use chrono::Utc;
use uuid::Uuid;

use crate::db::StoreError;

/// A record of a tamper-evident trail.
pub trait Chained {
    /// Brings the record to the form its store gives back (times to
    /// microseconds, NUL to U+FFFD), so what is hashed is what is read.
    fn normalize(&mut self);
    /// The canonical bytes of the (normalized) record.
    fn canonical(&self) -> Vec<u8>;
    /// How the verifier names the record.
    fn id(&self) -> Uuid;
    /// When it was recorded (for `verify --unchained-before`).
    fn recorded_at(&self) -> chrono::DateTime<Utc>;
    fn link(&self) -> Option<&Link>;
    fn set_link(&mut self, link: Link);
}

/// Where a writer keeps its checkpoints beside its records.
#[async_trait]
pub trait CheckpointStore: Send + Sync + 'static {
    /// Idempotent by (writer, number).
    async fn append_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError>;
}

/// How a trail is chained and signed (from `VODKMS_AUDIT_*`).
#[derive(Debug, Clone)]
pub struct ChainConfig {
    /// `None`: chained but unsigned (verify reports such chains).
    pub signing_key: Option<Arc<SigningKey>>,
    /// The off-box copy: each checkpoint appended as a JSON line.
    pub copy_file: Option<PathBuf>,
    pub every_records: u64,
    pub every: Duration,
}

impl Default for ChainConfig {
    fn default() -> Self {
        Self {
            signing_key: None,
            copy_file: None,
            every_records: 10_000,
            every: Duration::from_secs(60),
        }
    }
}

/// Checkpoints queued for the database or the copy, past which the oldest
/// unsent are dropped, with a warning. Only a copy failing for days comes
/// near it (during a database outage nothing new commits, so nothing new is
/// signed); a checkpoint lost from the database shows in verify as a break
/// in the checkpoint chain, never as silence.
const MAX_UNSENT: usize = 10_000;

struct State {
    /// The newest record the database has committed.
    committed: (u64, [u8; 32]),
    last: Option<Checkpoint>,
    last_at: Instant,
    unstored: VecDeque<Checkpoint>,
    uncopied: VecDeque<Checkpoint>,
    copy_failing: bool,
}

/// Signs a writer's committed head now and then, and sends each checkpoint
/// to the database and the off-box copy.
pub struct Checkpointer {
    trail: &'static str,
    writer: Uuid,
    key: Arc<SigningKey>,
    store: Arc<dyn CheckpointStore>,
    copy_file: Option<PathBuf>,
    every_records: u64,
    every: Duration,
    state: Mutex<State>,
}

impl Checkpointer {
    /// Signs checkpoint 1 at once, before any record: a chain with no
    /// checkpoint at all is then one this writer never wrote.
    pub fn new(
        trail: &'static str,
        writer: Uuid,
        key: Arc<SigningKey>,
        store: Arc<dyn CheckpointStore>,
        config: &ChainConfig,
    ) -> Self {
        let cp = Self {
            trail,
            writer,
            key,
            store,
            copy_file: config.copy_file.clone(),
            every_records: config.every_records.max(1),
            every: config.every,
            state: Mutex::new(State {
                committed: (0, audit_chain::GENESIS),
                last: None,
                last_at: Instant::now(),
                unstored: VecDeque::new(),
                uncopied: VecDeque::new(),
                copy_failing: false,
            }),
        };
        cp.sign_if_due(false);
        cp
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn committed(&self, link: &Link) {
        self.lock().committed = (link.seq, link.hash);
    }

    /// Signs the committed head if `every_records` records or `every` time
    /// have passed since the last checkpoint and there is something new to
    /// sign; at once if there is none yet. `last`: the writer is ending, so
    /// sign that (once) whatever is new.
    fn sign_if_due(&self, last: bool) {
        let mut s = self.lock();
        let new_records = s
            .committed
            .0
            .saturating_sub(s.last.as_ref().map_or(0, |c| c.seq));
        let due = match &s.last {
            None => true,
            Some(prev) if last => !prev.last || new_records > 0,
            Some(_) if new_records == 0 => false,
            Some(_) => new_records >= self.every_records || s.last_at.elapsed() >= self.every,
        };
        if !due {
            return;
        }
        let cp = self.key.checkpoint_at(
            self.trail,
            self.writer,
            s.committed,
            s.last.as_ref(),
            Utc::now(),
            last,
        );
        // Also to the log (once, as signed), which shippers carry off the
        // box as well.
        if let Ok(line) = serde_json::to_string(&cp) {
            tracing::info!(target: "vodkms::audit::checkpoint", checkpoint = %line, "audit checkpoint signed");
        }
        let s = &mut *s;
        s.last = Some(cp.clone());
        s.last_at = Instant::now();
        for queue in [&mut s.unstored, &mut s.uncopied] {
            if queue.len() >= MAX_UNSENT {
                queue.pop_front();
                tracing::warn!(writer = %self.writer, "audit checkpoints could not be sent for long; dropping the oldest unsent");
            }
            queue.push_back(cp.clone());
        }
    }

    /// Sends queued checkpoints, oldest first: to the database (an error
    /// keeps them queued) and to the copy file (likewise).
    async fn send(&self) -> Result<(), StoreError> {
        self.copy().await;
        loop {
            let Some(cp) = self.lock().unstored.front().cloned() else {
                return Ok(());
            };
            self.store.append_checkpoint(&cp).await?;
            self.lock().unstored.pop_front();
        }
    }

    async fn copy(&self) {
        let batch: Vec<Checkpoint> = self.lock().uncopied.iter().cloned().collect();
        if batch.is_empty() {
            return;
        }
        if let Some(path) = &self.copy_file {
            let mut lines = String::new();
            for cp in &batch {
                if let Ok(line) = serde_json::to_string(cp) {
                    lines.push_str(&line);
                    lines.push('\n');
                }
            }
            if let Err(e) = append_file(path, lines.as_bytes()).await {
                // Once per failing stretch, not at every flush.
                if !std::mem::replace(&mut self.lock().copy_failing, true) {
                    tracing::warn!(error = %e, path = %path.display(), "audit checkpoint copy not written; will retry");
                }
                return;
            }
        }
        let mut s = self.lock();
        if std::mem::take(&mut s.copy_failing) {
            tracing::info!("audit checkpoint copy written again");
        }
        let n = batch.len().min(s.uncopied.len());
        s.uncopied.drain(..n);
    }
}

/// One `write` with `O_APPEND`, then synced: processes sharing the file
/// append whole lines.
async fn append_file(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut f = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await?;
    f.write_all(bytes).await?;
    f.sync_data().await
}

/// A trail's chain and its checkpoints, held by its [`super::AuditLog`].
pub(super) struct Chaining<R> {
    chain: Mutex<Chain>,
    link: fn(&mut R, &mut Chain),
    linked: fn(&R) -> Option<&Link>,
    signer: Option<Checkpointer>,
}

fn link_record<R: Chained>(record: &mut R, chain: &mut Chain) {
    if record.link().is_none() {
        record.normalize();
        let link = chain.append(&record.canonical());
        record.set_link(link);
    }
}

fn linked<R: Chained>(record: &R) -> Option<&Link> {
    record.link()
}

impl<R: Chained> Chaining<R> {
    pub(super) fn new(
        trail: &'static str,
        store: Arc<dyn CheckpointStore>,
        config: &ChainConfig,
    ) -> Self {
        let writer = Uuid::new_v4();
        tracing::debug!(trail, %writer, signed = config.signing_key.is_some(), "audit trail chained");
        Self {
            chain: Mutex::new(Chain::new(writer)),
            link: link_record::<R>,
            linked: linked::<R>,
            signer: config
                .signing_key
                .clone()
                .map(|key| Checkpointer::new(trail, writer, key, store, config)),
        }
    }
}

impl<R> Chaining<R> {
    /// Links the batch's records that have none yet: a batch put back after
    /// a failed write keeps its links, so its retry is byte-identical.
    pub(super) fn link(&self, batch: &mut [R]) {
        let mut chain = self.chain.lock().unwrap_or_else(|p| p.into_inner());
        for r in batch.iter_mut() {
            (self.link)(r, &mut chain);
        }
    }

    pub(super) fn committed(&self, batch: &[R]) {
        if let (Some(signer), Some(last)) = (&self.signer, batch.last().and_then(self.linked)) {
            signer.committed(last);
        }
    }

    /// Before records: checkpoints already signed (so a writer's first
    /// checkpoint is stored before its first record).
    pub(super) async fn send_signed(&self) -> Result<(), StoreError> {
        match &self.signer {
            Some(s) => s.send().await,
            None => Ok(()),
        }
    }

    /// After records: a checkpoint if one is due (or the writer's `last`),
    /// sent.
    pub(super) async fn checkpoint(&self, last: bool) -> Result<(), StoreError> {
        match &self.signer {
            Some(s) => {
                s.sign_if_due(last);
                s.send().await
            }
            None => Ok(()),
        }
    }
}
