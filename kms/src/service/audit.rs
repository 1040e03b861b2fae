//! Audit records are buffered in memory and written in batches off the request
//! path. A record leaves the buffer only after the database committed it, so a
//! database outage loses nothing; past `capacity` buffered records the service
//! refuses audited operations (503) rather than release keys unaudited.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::KmsError;
use crate::model::AuditRecord;
use crate::store::Store;

pub struct AuditLog {
    store: Arc<dyn Store>,
    buffer: Mutex<VecDeque<AuditRecord>>,
    capacity: usize,
    batch_size: usize,
    wake: Notify,
}

impl AuditLog {
    pub fn new(store: Arc<dyn Store>, capacity: usize, batch_size: usize) -> Self {
        Self {
            store,
            buffer: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            batch_size: batch_size.max(1),
            wake: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<AuditRecord>> {
        self.buffer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Call before an audited operation. Concurrent requests may overshoot the
    /// bound by at most the number in flight.
    pub fn ensure_capacity(&self) -> Result<(), KmsError> {
        if self.lock().len() >= self.capacity {
            return Err(KmsError::AuditUnavailable);
        }
        Ok(())
    }

    pub fn record(&self, record: AuditRecord) {
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
    async fn flush_batch(&self) -> Result<usize, KmsError> {
        let batch: Vec<AuditRecord> = {
            let mut buf = self.lock();
            let n = buf.len().min(self.batch_size);
            buf.drain(..n).collect()
        };
        if batch.is_empty() {
            return Ok(0);
        }
        match self.store.append_audit(&batch).await {
            Ok(()) => Ok(batch.len()),
            Err(e) => {
                // Put the batch back in front, in order; ids make a retry idempotent.
                let mut buf = self.lock();
                for r in batch.into_iter().rev() {
                    buf.push_front(r);
                }
                Err(e.into())
            }
        }
    }

    /// Writes until the buffer is empty or the database fails.
    pub async fn flush(&self) -> Result<(), KmsError> {
        while self.flush_batch().await? > 0 {}
        Ok(())
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
}
