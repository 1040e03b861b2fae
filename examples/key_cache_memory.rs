//! How much memory the broker's key cache takes holding a million keys:
//! fills a `KeyCache` the way key requests do (realistic video ids and
//! 65-byte EDKs of 16-byte keys) under the broker's allocator, and prints
//! the process's resident set before and after. `scripts/bench` runs it.
//!
//!   cargo run --release --example key_cache_memory [KEYS]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use broker::service::{CachedKey, KeyCache};
use foundation::SecretBytes;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib / 1024.0
}

fn main() {
    let keys: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    // Shards fill unevenly: 2% of room more than the keys, so all are held.
    let cache = KeyCache::new(keys + keys / 50, Duration::from_secs(300));
    let before = rss_mib();
    let now = Instant::now();
    let key_id = uuid::Uuid::now_v7();
    let mut edk = [0u8; 65];
    edk[0] = 1;
    edk[1..17].copy_from_slice(key_id.as_bytes());
    for i in 0..keys {
        // A fresh nonce and sealed key per EDK, as the KMS makes them.
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut edk[21..]);
        let value = CachedKey {
            key: Arc::new(SecretBytes::new(rand::random::<[u8; 16]>().to_vec())),
            key_id,
            key_version: 1,
        };
        let video = format!("video-{:08}", i / 3);
        cache.insert(&video, &edk, value, now, cache.generation());
    }
    assert_eq!(cache.len(), keys, "every key is held");
    let after = rss_mib();
    println!(
        "RESULT keys={keys} rss_empty_mib={before:.1} rss_full_mib={after:.1} bytes_per_key={:.0}",
        (after - before) * 1024.0 * 1024.0 / keys as f64
    );
}
