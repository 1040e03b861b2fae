//! The embedded SQLite database of `vodkms dev`: one file, one process, the
//! KMS's and the broker's tables side by side. Times are stored as
//! microseconds since the epoch (what PostgreSQL keeps).

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use super::{backend, corrupt, StoreError};

/// The whole system's embedded schema (KMS and broker share the file).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// Opens (creating if needed) the database file and applies migrations.
pub async fn open_pool(path: &Path) -> Result<SqlitePool, StoreError> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        // Overwrite deleted content in place (no extra I/O in FAST mode), so
        // a shredded video's wrapped secret does not linger in free pages.
        .pragma("secure_delete", "FAST")
        .busy_timeout(Duration::from_secs(5));
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .map_err(backend)?;
    MIGRATOR.run(&pool).await.map_err(backend)?;
    Ok(pool)
}

/// Opens an existing database file read-only, without migrations (an
/// offline reader: `vodkms audit verify`).
pub async fn open_read_only(path: &Path) -> Result<SqlitePool, StoreError> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .busy_timeout(Duration::from_secs(5));
    SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .map_err(backend)
}

/// A write transaction that holds the write lock from its start, so two
/// writers queue on the busy timeout instead of failing on a lock upgrade.
pub async fn begin_write(pool: &SqlitePool) -> Result<Transaction<'static, Sqlite>, StoreError> {
    pool.begin_with("BEGIN IMMEDIATE").await.map_err(backend)
}

/// The table a unique constraint failure names, if that is what `e` is.
pub fn unique_violation(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db) if db.is_unique_violation() => Some(db.message().to_owned()),
        _ => None,
    }
}

pub fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub fn from_micros(v: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(v).ok_or_else(|| corrupt("a timestamp"))
}

pub fn opt_from_micros(v: Option<i64>) -> Result<Option<DateTime<Utc>>, StoreError> {
    v.map(from_micros).transpose()
}

/// Stores a signed audit checkpoint; a retried one is already there.
pub async fn append_checkpoint(
    pool: &SqlitePool,
    cp: &crate::audit::Checkpoint,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT OR IGNORE INTO audit_checkpoints (writer_id, number, trail, writer_seq, head, \
         signed_at, prev_signature, signature, last) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .bind(cp.writer)
    .bind(super::to_i64(cp.number)?)
    .bind(&cp.trail)
    .bind(super::to_i64(cp.seq)?)
    .bind(&cp.head)
    .bind(micros(cp.time))
    .bind(&cp.prev_signature)
    .bind(&cp.signature)
    .bind(cp.last)
    .execute(pool)
    .await
    .map_err(backend)?;
    Ok(())
}

/// Every stored checkpoint of `trail`.
pub async fn checkpoints(
    pool: &SqlitePool,
    trail: &str,
) -> Result<Vec<crate::audit::Checkpoint>, StoreError> {
    use sqlx::Row;
    let rows = sqlx::query(
        "SELECT writer_id, number, trail, writer_seq, head, signed_at, prev_signature, signature, \
         last \
         FROM audit_checkpoints WHERE trail = ?1 ORDER BY writer_id, number",
    )
    .bind(trail)
    .fetch_all(pool)
    .await
    .map_err(backend)?;
    rows.iter()
        .map(|r| {
            Ok(crate::audit::Checkpoint {
                writer: r.try_get("writer_id").map_err(backend)?,
                number: super::to_u64(r.try_get("number").map_err(backend)?)?,
                trail: r.try_get("trail").map_err(backend)?,
                seq: super::to_u64(r.try_get("writer_seq").map_err(backend)?)?,
                head: r.try_get("head").map_err(backend)?,
                time: from_micros(r.try_get("signed_at").map_err(backend)?)?,
                prev_signature: r.try_get("prev_signature").map_err(backend)?,
                signature: r.try_get("signature").map_err(backend)?,
                last: r.try_get("last").map_err(backend)?,
            })
        })
        .collect()
}
