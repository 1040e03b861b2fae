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
