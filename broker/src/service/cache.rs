//! Decrypted HLS keys, so repeated fetches of one key skip the KMS. Bounded
//! (oldest out first) and TTL-limited; an entry's key bytes are wiped when it
//! is evicted or expires (`SecretBytes` zeroizes on drop). A hit only saves
//! the KMS call: token, revocation and entitlement are checked every time.
//!
//! Sized for a library: each shard is a ring of fixed-size slots in
//! insertion order (the next insert overwrites the oldest) and an index of
//! 4-byte positions into it. An entry is named by a 32-byte digest of its
//! video and EDK, not by their bytes, so a million keys take about 180 MiB
//! (`broker/examples/key_cache_memory.rs` measures it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use foundation::SecretBytes;
use hashbrown::HashTable;
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

const SHARDS: usize = 16;

#[derive(Debug, Clone)]
pub struct CachedKey {
    pub key: Arc<SecretBytes>,
    pub key_id: Uuid,
    pub key_version: u32,
}

/// What an entry is cached under: SHA-256 over a per-process salt, the video
/// and the EDK's decoded bytes (so its text variants, padded or not, base64
/// or base64url, share one entry). The salt keeps callers from choosing
/// where their entries land in the index.
type Name = [u8; 32];

struct Slot {
    name: Name,
    value: CachedKey,
    inserted: Instant,
}

#[derive(Default)]
struct Shard {
    /// Entries in insertion order, as a ring once it holds `per_shard`;
    /// `None` where an entry was removed.
    ring: Vec<Option<Slot>>,
    /// Where the next insert goes once the ring is full: the oldest slot.
    next: usize,
    /// Positions in `ring`, found by name.
    index: HashTable<u32>,
}

fn hash_of(name: &Name) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&name[..8]);
    u64::from_le_bytes(first)
}

impl Shard {
    fn position(&self, name: &Name) -> Option<usize> {
        let ring = &self.ring;
        self.index
            .find(hash_of(name), |&i| {
                ring[i as usize].as_ref().is_some_and(|s| s.name == *name)
            })
            .map(|&i| i as usize)
    }

    /// Empties slot `at` and forgets its position.
    fn remove_at(&mut self, at: usize) {
        if let Some(old) = self.ring[at].take() {
            if let Ok(entry) = self
                .index
                .find_entry(hash_of(&old.name), |&i| i as usize == at)
            {
                entry.remove();
            }
        }
    }

    fn put(&mut self, slot: Slot, per_shard: usize) {
        if let Some(at) = self.position(&slot.name) {
            self.remove_at(at);
        }
        let hash = hash_of(&slot.name);
        let at = if self.ring.len() < per_shard {
            self.ring.push(Some(slot));
            self.ring.len() - 1
        } else {
            let at = self.next;
            self.remove_at(at);
            self.ring[at] = Some(slot);
            self.next = (at + 1) % per_shard;
            at
        };
        let Shard { ring, index, .. } = self;
        index.insert_unique(hash, at as u32, |&i| {
            ring[i as usize].as_ref().map_or(0, |s| hash_of(&s.name))
        });
    }

    /// Positions from the oldest entry to the newest.
    fn oldest_first(&self) -> impl Iterator<Item = usize> + '_ {
        let len = self.ring.len();
        (0..len).map(move |k| (self.next + k) % len.max(1))
    }
}

/// The cache's generation when a fetch began: an insert after a master key
/// was dropped (or the cache cleared) meanwhile is not made, so a key
/// disabled while the broker was asking the KMS for it is not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation(u64);

pub struct KeyCache {
    shards: Vec<Mutex<Shard>>,
    salt: [u8; 16],
    ttl: Duration,
    per_shard: usize,
    generation: AtomicU64,
}

impl KeyCache {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            salt: rand::random(),
            ttl,
            per_shard: capacity.div_ceil(SHARDS).clamp(1, u32::MAX as usize),
            generation: AtomicU64::new(0),
        }
    }

    fn name(&self, video_id: &str, blob: &[u8]) -> Name {
        // Video ids have no control characters, so the first '\n' ends the id.
        Sha256::new_with_prefix(self.salt)
            .chain_update(video_id.as_bytes())
            .chain_update(b"\n")
            .chain_update(blob)
            .finalize()
            .into()
    }

    fn shard(&self, name: &Name) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[usize::from(name[31]) % SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    pub fn generation(&self) -> Generation {
        Generation(self.generation.load(Ordering::Acquire))
    }

    pub fn get(&self, video_id: &str, blob: &[u8], now: Instant) -> Option<CachedKey> {
        if self.ttl.is_zero() {
            return None;
        }
        let name = self.name(video_id, blob);
        let mut shard = self.shard(&name);
        let at = shard.position(&name)?;
        let slot = shard.ring[at].as_ref()?;
        if now.saturating_duration_since(slot.inserted) < self.ttl {
            return Some(slot.value.clone());
        }
        shard.remove_at(at);
        None
    }

    /// Caches `value` unless a master key was dropped or the cache cleared
    /// since `fetched` (taken before asking the KMS).
    pub fn insert(
        &self,
        video_id: &str,
        blob: &[u8],
        value: CachedKey,
        now: Instant,
        fetched: Generation,
    ) {
        if self.ttl.is_zero() {
            return;
        }
        let name = self.name(video_id, blob);
        let mut shard = self.shard(&name);
        // Checked under the shard lock: a drop takes every shard's lock after
        // it bumps the generation, so it either sees this entry or this
        // insert sees the bump.
        if self.generation() != fetched {
            return;
        }
        let slot = Slot {
            name,
            value,
            inserted: now,
        };
        shard.put(slot, self.per_shard);
    }

    /// Drops expired entries now (wiping their keys) rather than on next use.
    pub fn sweep(&self, now: Instant) {
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            let expired: Vec<usize> = shard
                .oldest_first()
                .filter(|&at| shard.ring[at].is_some())
                .take_while(|&at| {
                    shard.ring[at]
                        .as_ref()
                        .is_some_and(|s| now.saturating_duration_since(s.inserted) >= self.ttl)
                })
                .collect();
            for at in expired {
                shard.remove_at(at);
            }
        }
    }

    /// Drops (and wipes) every key of this master key.
    pub fn drop_master_key(&self, key_id: Uuid) -> usize {
        self.generation.fetch_add(1, Ordering::AcqRel);
        let mut dropped = 0;
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            let of_key: Vec<usize> = (0..shard.ring.len())
                .filter(|&at| {
                    shard.ring[at]
                        .as_ref()
                        .is_some_and(|s| s.value.key_id == key_id)
                })
                .collect();
            dropped += of_key.len();
            for at in of_key {
                shard.remove_at(at);
            }
        }
        dropped
    }

    /// Drops (and wipes) every key.
    pub fn clear(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        for shard in &self.shards {
            *shard.lock().unwrap_or_else(|p| p.into_inner()) = Shard::default();
        }
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).index.len())
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

    fn put(c: &KeyCache, video: &str, edk: &[u8], v: CachedKey, at: Instant) {
        c.insert(video, edk, v, at, c.generation());
    }

    #[test]
    fn hit_miss_ttl_and_binding() {
        let c = KeyCache::new(100, Duration::from_secs(10));
        let t0 = Instant::now();
        put(&c, "v1", b"edk", value(1), t0);
        assert_eq!(
            c.get("v1", b"edk", t0).unwrap().key.expose_secret(),
            &[1; 16]
        );
        // Same EDK, other video: a miss, so the KMS checks the binding.
        assert!(c.get("v2", b"edk", t0).is_none());
        // The id ends at the separator: "v1\nx" + "edk" is not "v1" + "x\nedk".
        assert!(c.get("v1\nedk", b"", t0).is_none());
        assert!(c.get("v1", b"edk", t0 + Duration::from_secs(11)).is_none());
        assert!(c.is_empty());
    }

    #[test]
    fn bounded_oldest_out_first_and_swept() {
        let c = KeyCache::new(32, Duration::from_secs(10));
        let t0 = Instant::now();
        for i in 0..1000u32 {
            put(&c, "v", format!("edk{i}").as_bytes(), value(1), t0);
        }
        assert!(c.len() <= 32, "len {}", c.len());
        assert!(c.get("v", b"edk999", t0).is_some(), "the newest stays");
        assert!(c.get("v", b"edk0", t0).is_none(), "the oldest went");
        c.sweep(t0 + Duration::from_secs(10));
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn a_ring_overwrites_its_oldest_and_the_index_follows() {
        // One shard's worth: every slot is reused many times over.
        let c = KeyCache::new(SHARDS * 3, Duration::from_secs(60));
        let t0 = Instant::now();
        for round in 0..50u8 {
            for i in 0..SHARDS * 3 {
                put(&c, "v", format!("{round}-{i}").as_bytes(), value(round), t0);
            }
            // Re-inserting a live name replaces it without a second entry.
            put(&c, "v", format!("{round}-0").as_bytes(), value(round), t0);
        }
        // Every live entry is found under its name, and only those: the index
        // and the ring agree after all the overwrites.
        let live = c.len();
        assert!(live > 0 && live <= SHARDS * 3, "{live}");
        let found = (0..50u8)
            .flat_map(|round| (0..SHARDS * 3).map(move |i| format!("{round}-{i}")))
            .filter_map(|name| c.get("v", name.as_bytes(), t0))
            .count();
        assert_eq!(found, live);
        assert!(c.get("v", b"0-1", t0).is_none());
    }

    #[test]
    fn sweeping_stops_at_the_first_fresh_entry() {
        let c = KeyCache::new(1000, Duration::from_secs(10));
        let t0 = Instant::now();
        for i in 0..100u32 {
            put(&c, "v", format!("old{i}").as_bytes(), value(1), t0);
        }
        for i in 0..100u32 {
            put(
                &c,
                "v",
                format!("new{i}").as_bytes(),
                value(2),
                t0 + Duration::from_secs(5),
            );
        }
        c.sweep(t0 + Duration::from_secs(12));
        assert_eq!(c.len(), 100);
        assert!(c.get("v", b"new7", t0 + Duration::from_secs(12)).is_some());
    }

    #[test]
    fn dropping_a_master_key_wipes_its_entries_and_stale_inserts() {
        let c = KeyCache::new(1000, Duration::from_secs(60));
        let t0 = Instant::now();
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let of = |id: Uuid| CachedKey {
            key: Arc::new(SecretBytes::new(vec![7; 16])),
            key_id: id,
            key_version: 1,
        };
        for i in 0..50u32 {
            put(&c, "v", format!("a{i}").as_bytes(), of(a), t0);
            put(&c, "v", format!("b{i}").as_bytes(), of(b), t0);
        }
        // A fetch that began before the drop does not land after it.
        let before = c.generation();
        assert_eq!(c.drop_master_key(a), 50);
        c.insert("v", b"late", of(a), t0, before);
        assert!(c.get("v", b"late", t0).is_none());
        assert_eq!(c.len(), 50);
        assert!(c.get("v", b"b3", t0).is_some());
        let before = c.generation();
        c.clear();
        c.insert("v", b"late", of(b), t0, before);
        assert!(c.is_empty());
        put(&c, "v", b"after", of(b), t0);
        assert_eq!(c.len(), 1);
    }
}
