//! The audit writer's throughput with chaining on and off, against the
//! PostgreSQL of DATABASE_URL: RECORDS key-release-like records are
//! buffered, then written by the real pipeline (`AuditLog`, the KMS store's
//! binary COPY, batches of 2000) and timed until committed. Chained rounds
//! hash and sign too (a checkpoint every 10,000 records). Rounds alternate
//! off, on, off, on, … so drift on a shared machine hits both alike.
//! `scripts/bench` runs it.
//!
//!   DATABASE_URL=... cargo run --release --example audit_throughput [RECORDS] [ROUNDS]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use foundation::audit::{AuditLog, ChainConfig, SigningKey};
use kms::model::{AuditRecord, Operation};
use kms::service::StoreSink;
use kms::store::{PgStore, Store};
use uuid::Uuid;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn record(i: usize) -> AuditRecord {
    AuditRecord {
        id: Uuid::now_v7(),
        time: chrono::Utc::now(),
        client_id: Some(Uuid::from_u128(7)),
        operation: Operation::Decrypt,
        key_id: Some(Uuid::from_u128(42)),
        key_version: Some(3),
        encryption_context: Some(
            [("video_id".to_owned(), format!("film-{:05}", i % 10_000))]
                .into_iter()
                .collect(),
        ),
        outcome: "Success".into(),
        request_id: format!("req-{i:012}"),
        detail: Some(serde_json::json!({ "ClientRequestId": format!("c-{i}") })),
        protocol: None,
        access_key_id: None,
        link: None,
    }
}

async fn round(store: Arc<dyn Store>, records: usize, chained: bool) -> f64 {
    let sink = Arc::new(StoreSink(store));
    let config = ChainConfig {
        signing_key: Some(Arc::new(SigningKey::from_seed(&rand::random()))),
        copy_file: None,
        every_records: 10_000,
        every: Duration::from_secs(60),
    };
    let log = if chained {
        AuditLog::chained(sink.clone(), records, 2_000, "kms", sink, &config)
    } else {
        AuditLog::new(sink, records, 2_000)
    };
    // Made before the clock starts: what is timed is the writer's work.
    let batch: Vec<AuditRecord> = (0..records).map(record).collect();
    for r in batch {
        log.record(r);
    }
    let start = Instant::now();
    log.flush_final().await.unwrap();
    records as f64 / start.elapsed().as_secs_f64()
}

/// What chaining adds per record in the writer, alone: the stored form,
/// the canonical bytes and the hash.
fn link_micros(records: usize) -> f64 {
    use foundation::audit::Chained;
    let mut batch: Vec<AuditRecord> = (0..records).map(record).collect();
    let mut chain = audit_chain::Chain::new(Uuid::new_v4());
    let start = Instant::now();
    for r in &mut batch {
        r.normalize();
        let link = chain.append(&r.canonical());
        r.set_link(link);
    }
    start.elapsed().as_secs_f64() * 1e6 / records as f64
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let records: usize = args.next().map_or(200_000, |a| a.parse().unwrap());
    let rounds: usize = args.next().map_or(3, |a| a.parse().unwrap());
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let store: Arc<dyn Store> = Arc::new(PgStore::connect(&url).await.unwrap());
    for n in 1..=rounds {
        let off = round(store.clone(), records, false).await;
        let on = round(store.clone(), records, true).await;
        let link = link_micros(records);
        println!(
            "RESULT round={n} records={records} off_per_sec={off:.0} on_per_sec={on:.0} ratio_x1000={:.0} link_ns={:.0}",
            on / off * 1000.0,
            link * 1000.0
        );
    }
}
