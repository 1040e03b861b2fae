//! In-memory caches that keep the database off the hot path.
//!
//! Entries are dropped when a change notification names them and all at once
//! on `Change::Reset` (sent when the change listener reconnects). Past `ttl`
//! an entry is still served while one background refresh re-reads it, so the
//! hot path never waits on the database, also during an outage (every change
//! goes through the database, so none can be missed meanwhile). Loads that
//! raced with an invalidation are not inserted (epoch check), so a stale read
//! never outlives the notification that should have removed it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::crypto::{Key256, MasterKey, TokenDigest};
use crate::model::{ClientRecord, KeyRecord};

/// A key with its unwrapped versions. Material is wiped when the last `Arc` drops.
#[derive(Debug)]
pub struct CachedKey {
    pub record: KeyRecord,
    /// Unwrapped versions by number.
    pub versions: BTreeMap<u32, Arc<MasterKey>>,
    loaded: Instant,
}

impl CachedKey {
    pub fn new(record: KeyRecord, versions: BTreeMap<u32, Arc<MasterKey>>) -> Self {
        Self {
            record,
            versions,
            loaded: Instant::now(),
        }
    }
}

/// A video's secret as the envelope operations need it.
#[derive(Debug)]
pub enum VideoState {
    /// The secret, unwrapped (wiped when the last `Arc` drops).
    Live(Key256),
    /// A shred is scheduled: the keys are refused until it is cancelled.
    PendingShred,
    /// The secret is gone for good (or never was, for a tombstone).
    Shredded,
}

type CachedVideo = (Arc<VideoState>, Instant);

type CachedClient = (Arc<ClientRecord>, Instant);

/// An access key as the doors need it: its client and its unwrapped secret
/// (wiped when the last `Arc` drops).
#[derive(Debug)]
pub struct AccessKeyEntry {
    pub client: Arc<ClientRecord>,
    pub secret: crate::crypto::SecretBytes,
}

type CachedAccessKey = (Arc<AccessKeyEntry>, Instant);

/// An entry being re-read in the background.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Refresh {
    Key(Uuid),
    Client([u8; 32]),
    Alias(String),
    AccessKey(String),
    Video(String),
}

/// Snapshot of the invalidation counter, taken before a load.
#[derive(Debug, Clone, Copy)]
pub struct Epoch(u64);

#[derive(Debug)]
pub struct Caches {
    ttl: Duration,
    epoch: AtomicU64,
    keys: RwLock<HashMap<Uuid, Arc<CachedKey>>>,
    aliases: RwLock<HashMap<String, (Uuid, Instant)>>,
    /// By token digest.
    clients: RwLock<HashMap<[u8; 32], CachedClient>>,
    refreshing: Mutex<HashSet<Refresh>>,
    /// The token digest of every client there is (revoked ones included):
    /// a digest not in it is refused without asking the database, so a
    /// flood of made-up tokens costs no query (L1 of the security review).
    /// Only grows; complete once loaded.
    known_clients: RwLock<HashSet<[u8; 32]>>,
    /// The same for access key ids (deleted ones may linger: a lookup of
    /// one finds nothing and is refused).
    known_access_keys: RwLock<HashSet<String>>,
    known_complete: std::sync::atomic::AtomicBool,
    access_keys: RwLock<HashMap<String, CachedAccessKey>>,
    /// Video secrets by video id (only videos that have a row).
    videos: RwLock<HashMap<String, CachedVideo>>,
}

// Lock poisoning only follows a panic in a critical section that cannot panic;
// recover the data rather than propagate.
macro_rules! read {
    ($l:expr) => {
        $l.read().unwrap_or_else(|p| p.into_inner())
    };
}
macro_rules! write {
    ($l:expr) => {
        $l.write().unwrap_or_else(|p| p.into_inner())
    };
}

impl Caches {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            epoch: AtomicU64::new(0),
            keys: RwLock::default(),
            aliases: RwLock::default(),
            clients: RwLock::default(),
            refreshing: Mutex::default(),
            known_clients: RwLock::default(),
            known_access_keys: RwLock::default(),
            access_keys: RwLock::default(),
            videos: RwLock::default(),
            known_complete: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether a client with this token digest exists; `None` until the
    /// list of clients has been loaded.
    pub fn known_client(&self, digest: &TokenDigest) -> Option<bool> {
        self.known_complete
            .load(Ordering::Acquire)
            .then(|| read!(self.known_clients).contains(&digest.0))
    }

    /// Whether an access key with this id exists; `None` until loaded.
    pub fn known_access_key(&self, id: &str) -> Option<bool> {
        self.known_complete
            .load(Ordering::Acquire)
            .then(|| read!(self.known_access_keys).contains(id))
    }

    /// Adds token digests and access key ids; `complete`: these are all
    /// there were.
    pub fn add_known(
        &self,
        digests: impl IntoIterator<Item = [u8; 32]>,
        access_key_ids: impl IntoIterator<Item = String>,
        complete: bool,
    ) {
        write!(self.known_clients).extend(digests);
        write!(self.known_access_keys).extend(access_key_ids);
        if complete {
            self.known_complete.store(true, Ordering::Release);
        }
    }

    pub fn epoch(&self) -> Epoch {
        Epoch(self.epoch.load(Ordering::Acquire))
    }

    fn fresh(&self, loaded: Instant) -> bool {
        loaded.elapsed() < self.ttl
    }

    fn unchanged_since(&self, e: Epoch) -> bool {
        self.epoch.load(Ordering::Acquire) == e.0
    }

    /// The cached key and whether it is still fresh.
    pub fn key(&self, id: &Uuid) -> Option<(Arc<CachedKey>, bool)> {
        read!(self.keys)
            .get(id)
            .map(|k| (k.clone(), self.fresh(k.loaded)))
    }

    pub fn put_key(&self, e: Epoch, key: Arc<CachedKey>) {
        let mut keys = write!(self.keys);
        if self.unchanged_since(e) {
            keys.insert(key.record.id, key);
        }
    }

    pub fn alias(&self, alias: &str) -> Option<(Uuid, bool)> {
        read!(self.aliases)
            .get(alias)
            .map(|(id, t)| (*id, self.fresh(*t)))
    }

    pub fn put_alias(&self, e: Epoch, alias: &str, id: Uuid) {
        let mut aliases = write!(self.aliases);
        if self.unchanged_since(e) {
            aliases.insert(alias.to_owned(), (id, Instant::now()));
        }
    }

    pub fn client(&self, digest: &TokenDigest) -> Option<(Arc<ClientRecord>, bool)> {
        read!(self.clients)
            .get(&digest.0)
            .map(|(c, t)| (c.clone(), self.fresh(*t)))
    }

    pub fn put_client(&self, e: Epoch, client: Arc<ClientRecord>) {
        let mut clients = write!(self.clients);
        if self.unchanged_since(e) {
            clients.insert(client.token_digest.0, (client, Instant::now()));
        }
    }

    pub fn access_key(&self, id: &str) -> Option<(Arc<AccessKeyEntry>, bool)> {
        read!(self.access_keys)
            .get(id)
            .map(|(k, t)| (k.clone(), self.fresh(*t)))
    }

    pub fn put_access_key(&self, e: Epoch, id: &str, entry: Arc<AccessKeyEntry>) {
        let mut keys = write!(self.access_keys);
        if self.unchanged_since(e) {
            keys.insert(id.to_owned(), (entry, Instant::now()));
        }
    }

    pub fn video(&self, id: &str) -> Option<(Arc<VideoState>, bool)> {
        read!(self.videos)
            .get(id)
            .map(|(v, t)| (v.clone(), self.fresh(*t)))
    }

    pub fn put_video(&self, e: Epoch, id: &str, state: Arc<VideoState>) {
        let mut videos = write!(self.videos);
        if self.unchanged_since(e) {
            videos.insert(id.to_owned(), (state, Instant::now()));
        }
    }

    pub fn invalidate_video(&self, id: &str) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        write!(self.videos).remove(id);
    }

    pub fn forget_access_key(&self, id: &str) {
        write!(self.access_keys).remove(id);
    }

    /// `false` if a refresh of this entry is already under way.
    pub fn begin_refresh(&self, what: &Refresh) -> bool {
        self.refreshing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(what.clone())
    }

    pub fn end_refresh(&self, what: &Refresh) {
        self.refreshing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(what);
    }

    pub fn forget_client(&self, digest: &TokenDigest) {
        write!(self.clients).remove(&digest.0);
    }

    pub fn forget_alias(&self, alias: &str) {
        write!(self.aliases).remove(alias);
    }

    pub fn invalidate_key(&self, id: Uuid) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        write!(self.keys).remove(&id);
        write!(self.aliases).retain(|_, (k, _)| *k != id);
    }

    pub fn invalidate_client(&self, id: Uuid) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        write!(self.clients).retain(|_, (c, _)| c.id != id);
        write!(self.access_keys).retain(|_, (k, _)| k.client.id != id);
    }

    pub fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        write!(self.keys).clear();
        write!(self.aliases).clear();
        write!(self.clients).clear();
        write!(self.access_keys).clear();
        write!(self.videos).clear();
    }
}

/// A token bucket for database lookups of credentials no known client has:
/// `per_second`, up to as many at once.
#[derive(Debug)]
pub struct LookupGate {
    per_second: f64,
    state: Mutex<(f64, Instant)>,
}

impl LookupGate {
    pub fn new(per_second: f64) -> Self {
        Self {
            per_second,
            state: Mutex::new((per_second, Instant::now())),
        }
    }

    /// Takes one lookup if there is one left.
    pub fn try_take(&self) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let refill = now.saturating_duration_since(s.1).as_secs_f64() * self.per_second;
        s.0 = (s.0 + refill).min(self.per_second);
        s.1 = now;
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            true
        } else {
            false
        }
    }
}
