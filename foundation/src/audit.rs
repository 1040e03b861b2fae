//! Audit records are buffered in memory and written in batches off the request
//! path. A record leaves the buffer only after the database committed it, so a
//! database outage loses nothing; past `capacity` buffered records callers
//! refuse audited operations (503) rather than release keys unaudited.
//!
//! Generic over the record type: the KMS and the broker each batch their own
//! records this way.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::db::StoreError;

mod chaining;
pub use audit_chain::{canonical_json, verifying_key_from_text, Sorted};
pub use chaining::{ChainConfig, Chained, Checkpoint, CheckpointStore, Link, SigningKey};

/// The outcome audit records carry when the operation succeeded; any other
/// outcome is the refusal's error code.
pub const OUTCOME_SUCCESS: &str = "Success";

/// Adds `name: value` to an audit record's `Detail` object (made if absent).
pub fn add_detail(
    detail: &mut Option<serde_json::Value>,
    name: &str,
    value: impl Into<serde_json::Value>,
) {
    match detail {
        Some(serde_json::Value::Object(map)) => {
            map.insert(name.to_owned(), value.into());
        }
        Some(_) => {}
        None => *detail = Some(serde_json::json!({ name: value.into() })),
    }
}

/// Where committed batches go. Must be idempotent by record id: a batch whose
/// commit could not be confirmed is written again.
#[async_trait]
pub trait AuditSink<R>: Send + Sync + 'static {
    async fn append(&self, records: &[R]) -> Result<(), StoreError>;
}

pub struct AuditLog<R> {
    sink: Arc<dyn AuditSink<R>>,
    buffer: Mutex<VecDeque<R>>,
    capacity: usize,
    batch_size: usize,
    wake: Notify,
    /// Batches the database refused (each retried later); for /metrics.
    failures: std::sync::atomic::AtomicU64,
    /// One flush at a time: a batch the background writer has taken out of
    /// the buffer is still being written when the buffer looks empty, so a
    /// shutdown drain must wait for it, not return past it (and exit with
    /// that batch unwritten).
    flushing: tokio::sync::Mutex<()>,
    /// Set for the audit trails (hash chains and signed checkpoints); not
    /// for the other batches (heartbeats, session writes).
    chaining: Option<chaining::Chaining<R>>,
}

impl<R: Send + 'static> AuditLog<R> {
    pub fn new(sink: Arc<dyn AuditSink<R>>, capacity: usize, batch_size: usize) -> Self {
        Self {
            sink,
            buffer: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            batch_size: batch_size.max(1),
            failures: std::sync::atomic::AtomicU64::new(0),
            wake: Notify::new(),
            flushing: tokio::sync::Mutex::new(()),
            chaining: None,
        }
    }

    /// A tamper-evident trail: records are chained as they leave the
    /// buffer, and the chain's committed head signed into checkpoints.
    pub fn chained(
        sink: Arc<dyn AuditSink<R>>,
        capacity: usize,
        batch_size: usize,
        trail: &'static str,
        checkpoints: Arc<dyn CheckpointStore>,
        config: &ChainConfig,
    ) -> Self
    where
        R: Chained,
    {
        let mut log = Self::new(sink, capacity, batch_size);
        log.chaining = Some(chaining::Chaining::new(trail, checkpoints, config));
        log
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<R>> {
        self.buffer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Call before an audited operation; `false` means refuse it. Concurrent
    /// requests may overshoot the bound by at most the number in flight.
    pub fn has_room(&self) -> bool {
        self.lock().len() < self.capacity
    }

    pub fn record(&self, record: R) {
        let len = {
            let mut buf = self.lock();
            buf.push_back(record);
            buf.len()
        };
        if len >= self.batch_size {
            self.wake.notify_one();
        }
    }

    pub fn buffered(&self) -> usize {
        self.lock().len()
    }

    /// Writes one batch. `Ok(n)`: n records committed (0 = buffer empty).
    async fn flush_batch(&self) -> Result<usize, StoreError> {
        let mut batch: Vec<R> = {
            let mut buf = self.lock();
            let n = buf.len().min(self.batch_size);
            buf.drain(..n).collect()
        };
        if batch.is_empty() {
            return Ok(0);
        }
        if let Some(chaining) = &self.chaining {
            chaining.link(&mut batch);
        }
        match self.sink.append(&batch).await {
            Ok(()) => {
                if let Some(chaining) = &self.chaining {
                    chaining.committed(&batch);
                }
                Ok(batch.len())
            }
            Err(e) => {
                // Put the batch back in front, in order; ids make a retry idempotent.
                let mut buf = self.lock();
                for r in batch.into_iter().rev() {
                    buf.push_front(r);
                }
                Err(e)
            }
        }
    }

    /// Writes until the buffer is empty or the database fails.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.flush_and_checkpoint(false).await
    }

    /// Writes the buffer, then (for a chained trail) a checkpoint if one is
    /// due, or at once if `final_checkpoint` (shutdown).
    async fn flush_and_checkpoint(&self, final_checkpoint: bool) -> Result<(), StoreError> {
        let _one_at_a_time = self.flushing.lock().await;
        let result = async {
            if let Some(chaining) = &self.chaining {
                chaining.send_signed().await?;
            }
            while self.flush_batch().await? > 0 {}
            if let Some(chaining) = &self.chaining {
                chaining.checkpoint(final_checkpoint).await?;
            }
            Ok(())
        }
        .await;
        if result.is_err() {
            self.failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        result
    }

    /// Failed batch writes since start.
    pub fn flush_failures(&self) -> u64 {
        self.failures.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Background writer: wakes on a full batch or every `interval`; backs off
    /// while the database is down.
    pub async fn run(self: Arc<Self>, interval: Duration) {
        let mut backoff = interval;
        loop {
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(backoff) => {}
            }
            match self.flush().await {
                Ok(()) => backoff = interval,
                Err(e) => {
                    tracing::warn!(error = %e, buffered = self.buffered(), "audit flush failed; will retry");
                    backoff = (backoff * 2).clamp(interval, Duration::from_secs(5));
                }
            }
        }
    }

    /// Writes everything and signs a final checkpoint (a writer that is
    /// about to end).
    pub async fn flush_final(&self) -> Result<(), StoreError> {
        self.flush_and_checkpoint(true).await
    }

    /// Flushes for graceful shutdown, retrying while the database is away
    /// until `deadline`. `Err(n)`: n records could not be written.
    pub async fn drain(&self, deadline: std::time::Instant) -> Result<(), usize> {
        loop {
            match self.flush_and_checkpoint(true).await {
                Ok(()) => return Ok(()),
                Err(e) if std::time::Instant::now() < deadline => {
                    tracing::warn!(error = %e, buffered = self.buffered(), "audit flush at shutdown failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    let lost = self.buffered();
                    tracing::error!(error = %e, lost, "audit records could not be written before shutdown");
                    return Err(lost);
                }
            }
        }
    }
}

/// A record that identical others may be merged into (see [`Aggregator`]).
pub trait Aggregate: Send + 'static {
    /// The fields that make two records "identical", borrowed.
    type Identity<'a>: std::hash::Hash + Eq
    where
        Self: 'a;
    fn identity(&self) -> Self::Identity<'_>;
    fn time(&self) -> chrono::DateTime<chrono::Utc>;
    /// Notes that `count` (> 1) identical records were merged, the last at `last`.
    fn merged(&mut self, count: u64, last: chrono::DateTime<chrono::Utc>);
}

/// The first record of a kind, how many there were, and the last one's time.
type Pending<R> = (R, u64, chrono::DateTime<chrono::Utc>);

/// By the identity's seeded hash, which needs no second seeded hashing.
type PendingMap<R> = std::collections::HashMap<u64, Vec<Pending<R>>, foldhash::fast::FixedState>;

/// Identical records within one flush interval become one record with a
/// count, so a flood (a hot key, or refusals of junk credentials) cannot
/// outrun the audit writer. Every record is still counted. Keyed by a hash of
/// the borrowed identity, compared in full on a hit, so adding copies no
/// strings.
pub struct Aggregator<R> {
    pending: Mutex<PendingMap<R>>,
    hasher: foldhash::quality::RandomState,
    /// Distinct pending records past which `has_room` says no.
    capacity: usize,
}

impl<R: Aggregate> Aggregator<R> {
    pub fn new(capacity: usize) -> Self {
        Self {
            pending: Mutex::new(PendingMap::default()),
            hasher: foldhash::quality::RandomState::default(),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PendingMap<R>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn has_room(&self) -> bool {
        self.lock().len() < self.capacity
    }

    pub fn add(&self, record: R) {
        use std::hash::BuildHasher;
        let hash = self.hasher.hash_one(record.identity());
        let time = record.time();
        let mut pending = self.lock();
        let bucket = pending.entry(hash).or_default();
        match bucket
            .iter_mut()
            .find(|(r, _, _)| r.identity() == record.identity())
        {
            Some((_, count, last)) => {
                *count += 1;
                *last = time;
            }
            None => bucket.push((record, 1, time)),
        }
    }

    /// Takes every pending aggregate as one record each.
    pub fn take(&self) -> Vec<R> {
        let pending = std::mem::take(&mut *self.lock());
        pending
            .into_values()
            .flatten()
            .map(|(mut r, count, last)| {
                if count > 1 {
                    r.merged(count, last);
                }
                r
            })
            .collect()
    }
}

#[cfg(test)]
mod flush_tests {
    use super::*;

    /// A sink whose first append waits until released.
    struct Gate {
        entered: Notify,
        release: Notify,
        written: Mutex<Vec<u32>>,
        first: std::sync::atomic::AtomicBool,
    }

    #[async_trait]
    impl AuditSink<u32> for Gate {
        async fn append(&self, records: &[u32]) -> Result<(), StoreError> {
            if self.first.swap(false, std::sync::atomic::Ordering::SeqCst) {
                self.entered.notify_one();
                self.release.notified().await;
            }
            self.written
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(records);
            Ok(())
        }
    }

    /// SIGTERM under load: the background writer has a batch out of the
    /// buffer and in the database call when the drain starts. The drain
    /// returns only once that batch is written too.
    #[tokio::test]
    async fn drain_waits_for_the_batch_the_writer_holds() {
        let gate = Arc::new(Gate {
            entered: Notify::new(),
            release: Notify::new(),
            written: Mutex::new(Vec::new()),
            first: true.into(),
        });
        let log = Arc::new(AuditLog::new(gate.clone(), 100, 10));
        for i in 0..3 {
            log.record(i);
        }
        let writer = tokio::spawn({
            let log = log.clone();
            async move { log.flush().await }
        });
        gate.entered.notified().await;
        assert_eq!(log.buffered(), 0, "the writer holds the batch");
        log.record(3);
        let drain = tokio::spawn({
            let log = log.clone();
            async move {
                log.drain(std::time::Instant::now() + Duration::from_secs(5))
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !drain.is_finished(),
            "the drain returned past a batch in flight"
        );
        gate.release.notify_one();
        assert!(drain.await.unwrap().is_ok());
        assert!(writer.await.unwrap().is_ok());
        let mut written = gate
            .written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        written.sort_unstable();
        assert_eq!(written, vec![0, 1, 2, 3]);
    }
}
