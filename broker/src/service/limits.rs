//! Token-bucket rate limits kept in memory, keyed by token id, address or
//! account. Idle buckets are forgotten by `sweep`.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

pub struct RateLimiter {
    rate: Rate,
    shards: Vec<Mutex<HashMap<String, Bucket>>>,
    hasher: RandomState,
}

impl RateLimiter {
    pub fn new(rate: Rate) -> Self {
        Self {
            rate,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
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
    fn burst_then_refill() {
        let l = RateLimiter::new(Rate::new(2.0, 3.0));
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
        let t0 = Instant::now();
        assert!((0..10_000).all(|_| l.acquire("a", t0).is_ok()));
    }
}
