//! Rate limits kept in memory, keyed by token id, address or account.
//!
//! [`RateLimiter`] is `governor`'s keyed GCRA limiter (per token, per
//! address, sign-ins per address, management calls). [`FailureBudget`] is
//! ours: the sign-in failure budgets are reserved before a password is hashed
//! and given back when it was right, and governor has no way to give a cell
//! back. Idle state is forgotten by `sweep`.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use governor::clock::{Clock as _, MonotonicClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::Quota;

const SHARDS: usize = 16;
/// Past this many buckets per shard the oldest idle ones are dropped early.
const MAX_PER_SHARD: usize = 1 << 16;

/// `per_second` refill, up to `burst`. A zero rate means no limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

impl Rate {
    pub const UNLIMITED: Rate = Rate {
        per_second: 0.0,
        burst: 0.0,
    };

    pub fn new(per_second: f64, burst: f64) -> Self {
        Self {
            per_second: per_second.max(0.0),
            burst: burst.max(1.0),
        }
    }

    fn unlimited(&self) -> bool {
        self.per_second <= 0.0
    }

    /// The same rate as a GCRA quota: one cell every `1 / per_second`,
    /// `burst` at once. `None` when unlimited.
    fn quota(&self) -> Option<Quota> {
        if self.unlimited() {
            return None;
        }
        let period = Duration::from_secs_f64((1.0 / self.per_second).min(1e9));
        let burst = NonZeroU32::new(self.burst.round().clamp(1.0, f64::from(u32::MAX)) as u32)?;
        Some(Quota::with_period(period.max(Duration::from_nanos(1)))?.allow_burst(burst))
    }
}

/// Keys past which idle state is forgotten early, so a flood of addresses
/// cannot grow the map without bound between sweeps.
const MAX_KEYS: usize = SHARDS * MAX_PER_SHARD;
/// How often (in calls) `acquire` looks at the number of keys.
const SIZE_CHECK_EVERY: u64 = 1024;

/// On `std::time::Instant`, like the rest of the broker: the default clock
/// reads the CPU's counter, which can disagree between cores.
type Keyed = governor::RateLimiter<
    u64,
    DefaultKeyedStateStore<u64, PreHashed>,
    MonotonicClock,
    NoOpMiddleware<std::time::Instant>,
>;

/// A keyed limiter. Keys are hashed (keyed by a per-process random seed)
/// into 64 bits: no key is copied on the request path, and no caller can
/// aim two keys at one budget without knowing the seed.
pub struct RateLimiter {
    quota: Option<Quota>,
    /// Replaced by a fresh one when more than `MAX_KEYS` are busy at once
    /// (governor cannot clear a keyed limiter in place).
    limiter: RwLock<Option<Keyed>>,
    calls: AtomicU64,
    clock: MonotonicClock,
    hasher: foldhash::quality::RandomState,
}

/// The limiter's map keys are already seeded hashes: its own hasher passes
/// them through rather than hash them again.
#[derive(Clone, Copy, Default)]
struct PreHashed;

impl BuildHasher for PreHashed {
    type Hasher = PassThrough;
    fn build_hasher(&self) -> PassThrough {
        PassThrough(0)
    }
}

#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
    /// Only `u64` keys reach it; anything else still spreads.
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
}

fn keyed(quota: Quota, clock: &MonotonicClock) -> Keyed {
    Keyed::dashmap_with_clock_and_hasher(quota, clock.clone(), PreHashed)
}

impl RateLimiter {
    pub fn new(rate: Rate) -> Self {
        let clock = MonotonicClock;
        let quota = rate.quota();
        Self {
            quota,
            limiter: RwLock::new(quota.map(|q| keyed(q, &clock))),
            calls: AtomicU64::new(0),
            clock,
            hasher: foldhash::quality::RandomState::default(),
        }
    }

    /// Takes one cell. `Err(wait)`: none left; try again after `wait`.
    pub fn acquire(&self, key: &str) -> Result<(), Duration> {
        if self.quota.is_none() {
            return Ok(());
        }
        let result = {
            let limiter = self.limiter.read().unwrap_or_else(|p| p.into_inner());
            let Some(limiter) = limiter.as_ref() else {
                return Ok(());
            };
            limiter.check_key(&self.hasher.hash_one(key))
        };
        if self.calls.fetch_add(1, Ordering::Relaxed) % SIZE_CHECK_EVERY == 0 {
            self.bound();
        }
        result.map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    fn bound(&self) {
        let over = {
            let limiter = self.limiter.read().unwrap_or_else(|p| p.into_inner());
            limiter.as_ref().is_some_and(|l| {
                l.len() > MAX_KEYS && {
                    l.retain_recent();
                    l.len() > MAX_KEYS
                }
            })
        };
        if over {
            // Everyone is busy: forget them all rather than grow without bound.
            *self.limiter.write().unwrap_or_else(|p| p.into_inner()) =
                self.quota.map(|q| keyed(q, &self.clock));
        }
    }

    /// Forgets keys whose budget has refilled completely (they hold no state).
    pub fn sweep(&self) {
        let limiter = self.limiter.read().unwrap_or_else(|p| p.into_inner());
        if let Some(limiter) = limiter.as_ref() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// A token bucket whose tokens can be given back (see the module doc).
pub struct FailureBudget {
    rate: Rate,
    shards: Vec<Mutex<HashMap<String, Bucket>>>,
    hasher: std::hash::RandomState,
}

impl FailureBudget {
    pub fn new(rate: Rate) -> Self {
        Self {
            rate,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: std::hash::RandomState::new(),
        }
    }

    fn shard(&self, key: &str) -> std::sync::MutexGuard<'_, HashMap<String, Bucket>> {
        let i = (self.hasher.hash_one(key) as usize) % SHARDS;
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    fn refill(&self, b: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate.per_second).min(self.rate.burst);
        b.at = now;
    }

    /// Takes one token. `Err(wait)`: none left; try again after `wait`.
    pub fn acquire(&self, key: &str, now: Instant) -> Result<(), Duration> {
        self.take(key, now, true)
    }

    /// Gives back a token taken by `acquire` (the attempt it reserved did not
    /// count against the caller after all).
    pub fn refund(&self, key: &str) {
        if self.rate.unlimited() {
            return;
        }
        if let Some(b) = self.shard(key).get_mut(key) {
            b.tokens = (b.tokens + 1.0).min(self.rate.burst);
        }
    }

    /// Whether a token is available, without taking it.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        self.take(key, now, false)
    }

    fn take(&self, key: &str, now: Instant, consume: bool) -> Result<(), Duration> {
        if self.rate.unlimited() {
            return Ok(());
        }
        let mut shard = self.shard(key);
        if !shard.contains_key(key) {
            if shard.len() >= MAX_PER_SHARD {
                self.drop_idle(&mut shard, now);
            }
            shard.insert(
                key.to_owned(),
                Bucket {
                    tokens: self.rate.burst,
                    at: now,
                },
            );
        }
        // Present: just inserted if it was not (no key copy on the hot path).
        let Some(b) = shard.get_mut(key) else {
            return Err(Duration::from_secs(1));
        };
        self.refill(b, now);
        if b.tokens >= 1.0 {
            if consume {
                b.tokens -= 1.0;
            }
            Ok(())
        } else {
            let wait = (1.0 - b.tokens) / self.rate.per_second;
            Err(Duration::from_secs_f64(wait.clamp(0.001, 3600.0)))
        }
    }

    fn drop_idle(&self, shard: &mut HashMap<String, Bucket>, now: Instant) {
        let rate = self.rate;
        shard.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
            b.tokens + elapsed * rate.per_second < rate.burst
        });
        if shard.len() >= MAX_PER_SHARD {
            // Everyone is busy: forget them all rather than grow without bound.
            shard.clear();
        }
    }

    /// Forgets buckets that have refilled completely (they hold no state).
    pub fn sweep(&self, now: Instant) {
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            self.drop_idle(&mut shard, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn governor_burst_then_refuse() {
        let l = RateLimiter::new(Rate::new(2.0, 3.0));
        for _ in 0..3 {
            assert!(l.acquire("a").is_ok());
        }
        let wait = l.acquire("a").unwrap_err();
        assert!(wait <= Duration::from_millis(500), "{wait:?}");
        // Other keys are independent.
        assert!(l.acquire("b").is_ok());
        // A fractional rate (one every 12 s) keeps its meaning.
        let slow = RateLimiter::new(Rate::new(1.0 / 12.0, 1.0));
        assert!(slow.acquire("a").is_ok());
        let wait = slow.acquire("a").unwrap_err();
        assert!(
            wait > Duration::from_secs(11) && wait <= Duration::from_secs(12),
            "{wait:?}"
        );
    }

    #[test]
    fn burst_then_refill() {
        let l = FailureBudget::new(Rate::new(2.0, 3.0));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.acquire("a", t0).is_ok());
        }
        let wait = l.acquire("a", t0).unwrap_err();
        assert!(wait <= Duration::from_millis(500), "{wait:?}");
        // Other keys are independent.
        assert!(l.acquire("b", t0).is_ok());
        assert!(l.acquire("a", t0 + Duration::from_millis(500)).is_ok());
        assert!(l.check("a", t0 + Duration::from_millis(500)).is_err());
        l.sweep(t0 + Duration::from_secs(10));
        assert!(l.shards.iter().all(|s| s.lock().unwrap().is_empty()));
    }

    #[test]
    fn unlimited_never_refuses() {
        let l = RateLimiter::new(Rate::UNLIMITED);
        assert!((0..10_000).all(|_| l.acquire("a").is_ok()));
        let l = FailureBudget::new(Rate::UNLIMITED);
        let t0 = Instant::now();
        assert!((0..10_000).all(|_| l.acquire("a", t0).is_ok()));
    }
}
