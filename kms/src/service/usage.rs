//! Counting encryptions per master key version without a database round trip
//! per request. Each process reserves blocks of encryptions from a shared
//! counter in the database (which refuses to pass the limit, 2^32 by default:
//! the random-nonce GCM bound) and spends them locally. The next block is
//! fetched in the background once half the current one is used. Unused
//! reservations of a process that stops are simply lost: the count errs on the
//! safe side.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use uuid::Uuid;

use super::KmsError;
use crate::store::Store;

#[derive(Debug, Default)]
struct Lease {
    allowance: u64,
    refilling: bool,
    exhausted: bool,
}

pub struct UsageLeases {
    store: Arc<dyn Store>,
    leases: Mutex<HashMap<(Uuid, u32), Lease>>,
    block: u64,
    limit: u64,
}

pub enum Grant {
    Granted,
    /// The version reached its limit: rotate the key.
    Exhausted,
}

impl UsageLeases {
    pub fn new(store: Arc<dyn Store>, limit: u64) -> Arc<Self> {
        Arc::new(Self {
            store,
            leases: Mutex::new(HashMap::new()),
            block: (limit / 64).clamp(1, 65_536),
            limit,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(Uuid, u32), Lease>> {
        self.leases.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes one encryption for `(key_id, version)`.
    pub async fn take(self: &Arc<Self>, key_id: Uuid, version: u32) -> Result<Grant, KmsError> {
        {
            let mut leases = self.lock();
            let lease = leases.entry((key_id, version)).or_default();
            if lease.allowance > 0 {
                lease.allowance -= 1;
                if lease.allowance < self.block / 2 && !lease.refilling && !lease.exhausted {
                    lease.refilling = true;
                    let this = Arc::clone(self);
                    tokio::spawn(async move { this.refill(key_id, version).await });
                }
                return Ok(Grant::Granted);
            }
            if lease.exhausted {
                return Ok(Grant::Exhausted);
            }
        }
        // Cold or drained: reserve inline (once per block at most).
        let granted = self
            .store
            .reserve_encryptions(key_id, version, self.block, self.limit)
            .await?;
        let mut leases = self.lock();
        let lease = leases.entry((key_id, version)).or_default();
        if granted {
            lease.allowance += self.block - 1;
            Ok(Grant::Granted)
        } else {
            lease.exhausted = true;
            Ok(Grant::Exhausted)
        }
    }

    async fn refill(&self, key_id: Uuid, version: u32) {
        let result = self
            .store
            .reserve_encryptions(key_id, version, self.block, self.limit)
            .await;
        let mut leases = self.lock();
        let lease = leases.entry((key_id, version)).or_default();
        lease.refilling = false;
        match result {
            Ok(true) => lease.allowance += self.block,
            Ok(false) => lease.exhausted = true,
            Err(e) => tracing::warn!(error = %e, "could not reserve encryptions ahead; will retry"),
        }
    }

    /// Forgets leases of versions that can no longer encrypt.
    pub fn forget_key(&self, key_id: Uuid) {
        self.lock().retain(|(k, _), _| *k != key_id);
    }
}
