//! Remembers single-use nonces (Alibaba Cloud's SignatureNonce) for the
//! clock window, so a captured signed request cannot be sent again. Kept per
//! process: a replay to another process sharing the database is not caught
//! (noted in the README's "Coming from a cloud KMS").
//!
//! Entries are bucketed by the minute the request claims to be from, so a
//! whole bucket is dropped once no request of that minute can pass the
//! clock check any more; memory is bounded by `capacity`.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

/// What the guard made of a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sighting {
    First,
    Repeat,
    /// Too many remembered to take another: refuse, never wave through.
    Full,
}

pub struct ReplayGuard {
    window: Duration,
    capacity: usize,
    buckets: Mutex<Buckets>,
}

#[derive(Default)]
struct Buckets {
    by_minute: HashMap<i64, HashSet<[u8; 16]>>,
    len: usize,
}

impl ReplayGuard {
    pub fn new(window: Duration, capacity: usize) -> Self {
        Self {
            window,
            capacity,
            buckets: Mutex::default(),
        }
    }

    /// Whether `token` was seen before for this protocol and access key.
    pub fn first_sighting(
        &self,
        protocol: &str,
        access_key_id: &str,
        token: &[u8],
        sent_at: DateTime<Utc>,
    ) -> Sighting {
        let mut h = Sha256::new();
        for part in [protocol.as_bytes(), access_key_id.as_bytes(), token] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        let digest = h.finalize();
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        let minute = sent_at.timestamp().div_euclid(60);
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        // A request from minute m passes the clock check until m + 1 + window.
        let oldest = (Utc::now().timestamp() - self.window.as_secs() as i64).div_euclid(60) - 1;
        if b.by_minute.keys().any(|m| *m < oldest) {
            let mut dropped = 0;
            b.by_minute.retain(|m, set| {
                let keep = *m >= oldest;
                if !keep {
                    dropped += set.len();
                }
                keep
            });
            b.len -= dropped;
        }
        if b.by_minute.get(&minute).is_some_and(|s| s.contains(&key)) {
            return Sighting::Repeat;
        }
        if b.len >= self.capacity {
            return Sighting::Full;
        }
        b.by_minute.entry(minute).or_default().insert(key);
        b.len += 1;
        Sighting::First
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_passes_once_per_protocol_and_key() {
        let g = ReplayGuard::new(Duration::from_secs(300), 3);
        let now = Utc::now();
        assert_eq!(
            g.first_sighting("alibaba", "AK", b"n1", now),
            Sighting::First
        );
        assert_eq!(
            g.first_sighting("alibaba", "AK", b"n1", now),
            Sighting::Repeat
        );
        assert_eq!(
            g.first_sighting("alibaba", "AK2", b"n1", now),
            Sighting::First
        );
        assert_eq!(
            g.first_sighting("tencent", "AK", b"n1", now),
            Sighting::First
        );
        // Full: refused, not waved through.
        assert_eq!(
            g.first_sighting("tencent", "AK", b"n2", now),
            Sighting::Full
        );
        assert_eq!(
            g.first_sighting("alibaba", "AK", b"n1", now),
            Sighting::Repeat
        );
    }

    #[test]
    fn old_minutes_are_forgotten() {
        let g = ReplayGuard::new(Duration::from_secs(300), 2);
        let old = Utc::now() - chrono::Duration::minutes(30);
        assert_eq!(g.first_sighting("a", "k", b"n", old), Sighting::First);
        assert_eq!(g.first_sighting("a", "k", b"m", old), Sighting::First);
        // The old bucket goes, making room.
        assert_eq!(
            g.first_sighting("a", "k", b"x", Utc::now()),
            Sighting::First
        );
    }
}
