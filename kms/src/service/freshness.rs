//! How far the caches may be behind the database (M4 of the security
//! review). A process cut off from the database keeps its caches, and every
//! change made meanwhile by another process goes unseen. So the caches are
//! *confirmed* by a heartbeat that travels the same way changes do: this
//! process sends a notification through the database and marks the caches
//! confirmed up to the moment it sent it once the notification comes back on
//! its own change listener (notifications arrive in commit order, so every
//! change before it has arrived too). Past `max_stale` without a
//! confirmation, a cached entry counts as missing: read again, or 503 if the
//! database cannot be reached.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub struct Freshness {
    /// Tells this process's heartbeats from other processes'.
    nonce: String,
    started: Instant,
    /// Milliseconds since `started` up to which the caches are confirmed.
    confirmed_ms: AtomicU64,
    max_stale: Duration,
}

impl Freshness {
    pub fn new(max_stale: Duration) -> Self {
        Self {
            nonce: uuid::Uuid::new_v4().simple().to_string(),
            started: Instant::now(),
            confirmed_ms: AtomicU64::new(0),
            max_stale,
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// How often to send a heartbeat: well within the bound.
    pub fn interval(&self) -> Duration {
        (self.max_stale / 4).clamp(Duration::from_millis(250), Duration::from_secs(10))
    }

    /// The payload of a heartbeat sent now.
    pub fn heartbeat(&self) -> String {
        format!("{}.{}", self.nonce, self.now_ms())
    }

    /// A heartbeat came back: if it is ours, the caches are confirmed up to
    /// the moment it was sent.
    pub fn received(&self, payload: &str) {
        let Some((nonce, sent)) = payload.split_once('.') else {
            return;
        };
        if nonce != self.nonce {
            return;
        }
        if let Ok(sent) = sent.parse::<u64>() {
            self.confirmed_ms.fetch_max(sent, Ordering::Relaxed);
        }
    }

    /// How long since the caches were last confirmed.
    pub fn unconfirmed_for(&self) -> Duration {
        let confirmed = self.confirmed_ms.load(Ordering::Relaxed);
        Duration::from_millis(self.now_ms().saturating_sub(confirmed))
    }

    /// Whether cached entries may still be served without reading them again.
    pub fn cache_usable(&self) -> bool {
        self.unconfirmed_for() <= self.max_stale
    }

    pub fn max_stale(&self) -> Duration {
        self.max_stale
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_own_heartbeats_confirm() {
        let f = Freshness::new(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(5));
        assert!(!f.cache_usable());
        f.received("someone-else.999999999");
        f.received("garbage");
        assert!(!f.cache_usable());
        std::thread::sleep(Duration::from_millis(2));
        let beat = f.heartbeat();
        f.received(&beat);
        assert!(f.unconfirmed_for() < Duration::from_millis(5));
        // An older heartbeat arriving late does not move confirmation back.
        let (nonce, _) = beat.split_once('.').unwrap();
        f.received(&format!("{nonce}.0"));
        assert!(f.unconfirmed_for() < Duration::from_millis(5));
    }
}
