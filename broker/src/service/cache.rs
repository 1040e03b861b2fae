//! Decrypted HLS keys, so repeated fetches of one key skip the KMS. Bounded
//! (oldest out first) and TTL-limited; an entry's key bytes are wiped when it
//! is evicted or expires (`SecretBytes` zeroizes on drop). A hit only saves
//! the KMS call: token, revocation and entitlement are checked every time.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use foundation::SecretBytes;
use uuid::Uuid;

const SHARDS: usize = 16;

#[derive(Debug, Clone)]
pub struct CachedKey {
    pub key: Arc<SecretBytes>,
    pub key_id: Uuid,
    pub key_version: u32,
}

struct Entry {
    value: CachedKey,
    inserted: Instant,
}

#[derive(Default)]
struct Shard {
    map: HashMap<Vec<u8>, Entry>,
    /// Insertion order, for eviction; may hold keys already replaced or removed.
    order: VecDeque<(Vec<u8>, Instant)>,
}

pub struct KeyCache {
    shards: Vec<Mutex<Shard>>,
    hasher: RandomState,
    ttl: Duration,
    per_shard: usize,
}

/// The cache key: the EDK's decoded bytes (so its text variants, padded or
/// not, base64 or base64url, share one entry), bound to the video it was
/// decrypted for.
fn cache_key(video_id: &str, blob: &[u8]) -> Vec<u8> {
    // Video ids have no control characters, so the first '\n' ends the id.
    let mut k = Vec::with_capacity(video_id.len() + 1 + blob.len());
    k.extend_from_slice(video_id.as_bytes());
    k.push(b'\n');
    k.extend_from_slice(blob);
    k
}

impl KeyCache {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: RandomState::new(),
            ttl,
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    fn shard(&self, key: &[u8]) -> std::sync::MutexGuard<'_, Shard> {
        let i = (self.hasher.hash_one(key) as usize) % SHARDS;
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, video_id: &str, blob: &[u8], now: Instant) -> Option<CachedKey> {
        if self.ttl.is_zero() {
            return None;
        }
        let key = cache_key(video_id, blob);
        let mut shard = self.shard(&key);
        match shard.map.get(&key) {
            Some(e) if now.duration_since(e.inserted) < self.ttl => Some(e.value.clone()),
            Some(_) => {
                shard.map.remove(&key);
                None
            }
            None => None,
        }
    }

    pub fn insert(&self, video_id: &str, blob: &[u8], value: CachedKey, now: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        let key = cache_key(video_id, blob);
        let mut shard = self.shard(&key);
        shard.order.push_back((key.clone(), now));
        shard.map.insert(
            key,
            Entry {
                value,
                inserted: now,
            },
        );
        while shard.map.len() > self.per_shard || shard.order.len() > 2 * self.per_shard {
            let Some((old, at)) = shard.order.pop_front() else {
                break;
            };
            if shard.map.get(&old).is_some_and(|e| e.inserted == at) {
                shard.map.remove(&old);
            }
        }
    }

    /// Drops expired entries now (wiping their keys) rather than on next use.
    pub fn sweep(&self, now: Instant) {
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            while let Some((key, at)) = shard.order.front() {
                if now.duration_since(*at) < self.ttl {
                    break;
                }
                if shard.map.get(key).is_some_and(|e| e.inserted == *at) {
                    let key = key.clone();
                    shard.map.remove(&key);
                }
                shard.order.pop_front();
            }
        }
    }

    /// Drops (and wipes) every key of this master key.
    pub fn drop_master_key(&self, key_id: Uuid) -> usize {
        let mut dropped = 0;
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            let before = shard.map.len();
            shard.map.retain(|_, e| e.value.key_id != key_id);
            dropped += before - shard.map.len();
        }
        dropped
    }

    /// Drops (and wipes) every key.
    pub fn clear(&self) {
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            shard.map.clear();
            shard.order.clear();
        }
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).map.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(b: u8) -> CachedKey {
        CachedKey {
            key: Arc::new(SecretBytes::new(vec![b; 16])),
            key_id: Uuid::nil(),
            key_version: 1,
        }
    }

    #[test]
    fn hit_miss_ttl_and_binding() {
        let c = KeyCache::new(100, Duration::from_secs(10));
        let t0 = Instant::now();
        c.insert("v1", b"edk", value(1), t0);
        assert_eq!(
            c.get("v1", b"edk", t0).unwrap().key.expose_secret(),
            &[1; 16]
        );
        // Same EDK, other video: a miss, so the KMS checks the binding.
        assert!(c.get("v2", b"edk", t0).is_none());
        assert!(c.get("v1", b"edk", t0 + Duration::from_secs(11)).is_none());
        assert!(c.is_empty());
    }

    #[test]
    fn bounded_and_swept() {
        let c = KeyCache::new(32, Duration::from_secs(10));
        let t0 = Instant::now();
        for i in 0..1000 {
            c.insert("v", format!("edk{i}").as_bytes(), value(1), t0);
        }
        assert!(c.len() <= 32 + SHARDS, "len {}", c.len());
        c.sweep(t0 + Duration::from_secs(10));
        assert_eq!(c.len(), 0);
    }
}
