//! Database plumbing both servers use: the error type of their stores, the
//! system's migrations (one schema, so processes sharing a database agree on
//! it whichever starts first), pool opening, and change fan-out.

pub mod copy;
pub mod postgres;
pub mod sqlite;

mod fanout;
pub use fanout::Fanout;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A precondition failed (a concurrent change won, or a unique name is
    /// taken): re-read, and retry or refuse.
    #[error("a concurrent change won")]
    Conflict,
    #[error("database error: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

pub fn backend(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Backend(Box::new(e))
}

/// A stored value this code cannot have written.
pub fn corrupt(what: &str) -> StoreError {
    StoreError::Backend(format!("unexpected value in {what}").into())
}

/// Text as both backends keep it in audit trails: PostgreSQL text cannot hold
/// NUL, so NUL becomes U+FFFD (sanitized, never refused), and SQLite does the
/// same so both give back identical records.
pub fn storable(s: &str) -> String {
    s.replace('\0', "\u{FFFD}")
}

/// A count or sequence number as the databases' BIGINT.
pub fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| corrupt("a number past BIGINT"))
}

/// A BIGINT this code wrote from a `u64`.
pub fn to_u64(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| corrupt("a negative count"))
}

/// A record's place in its writer's chain, as stored in the chain columns
/// (`writer_id`, `writer_seq`, `prev_hash`, `row_hash`). A record with a
/// writer but a missing or malformed other field was tampered with: it gets
/// an impossible link, which the verifier reports.
pub fn link_from_columns(
    writer: Option<uuid::Uuid>,
    seq: Option<i64>,
    prev: Option<Vec<u8>>,
    hash: Option<Vec<u8>>,
) -> Option<crate::audit::Link> {
    let bytes = |b: Option<Vec<u8>>| b.and_then(|b| b.try_into().ok()).unwrap_or([0xff; 32]);
    Some(crate::audit::Link {
        writer: writer?,
        seq: seq.and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
        prev: bytes(prev),
        hash: bytes(hash),
    })
}

/// JSON as both backends keep it in audit trails: NUL in any string or key
/// as U+FFFD (PostgreSQL's jsonb refuses `\u0000`).
pub fn storable_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) if s.contains('\0') => *s = storable(s),
        serde_json::Value::Array(items) => items.iter_mut().for_each(storable_json),
        serde_json::Value::Object(map) => {
            if map.keys().any(|k| k.contains('\0')) {
                *map = std::mem::take(map)
                    .into_iter()
                    .map(|(k, v)| (storable(&k), v))
                    .collect();
            }
            map.values_mut().for_each(storable_json);
        }
        _ => {}
    }
}

/// A time as both backends keep it: whole microseconds.
pub fn storable_time(t: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

/// In place, as [`storable`] keeps it.
pub fn make_storable(s: &mut String) {
    if s.contains('\0') {
        *s = storable(s);
    }
}

/// A chained audit row as the verifier reads it.
pub type ChainRow<R> = Result<R, UnreadableRow>;

/// A chained audit row whose columns this code cannot have written (an
/// unknown operation, say): tampered.
#[derive(Debug, Clone)]
pub struct UnreadableRow {
    pub link: Option<crate::audit::Link>,
    pub id: String,
}

/// `read(row)`, or what can still be read of a row that fails it.
pub fn chain_row<'r, Row, R, E>(row: &'r Row, read: impl Fn(&'r Row) -> Result<R, E>) -> ChainRow<R>
where
    Row: sqlx::Row,
    &'static str: sqlx::ColumnIndex<Row>,
    Option<uuid::Uuid>: sqlx::Decode<'r, Row::Database> + sqlx::Type<Row::Database>,
    Option<i64>: sqlx::Decode<'r, Row::Database> + sqlx::Type<Row::Database>,
    Option<Vec<u8>>: sqlx::Decode<'r, Row::Database> + sqlx::Type<Row::Database>,
{
    read(row).map_err(|_| UnreadableRow {
        link: link_from_columns(
            row.try_get("writer_id").ok().flatten(),
            row.try_get("writer_seq").ok().flatten(),
            row.try_get("prev_hash").ok().flatten(),
            row.try_get("row_hash").ok().flatten(),
        ),
        id: match row.try_get::<Option<uuid::Uuid>, _>("id") {
            Ok(Some(id)) => id.to_string(),
            _ => format!(
                "at seq {}",
                row.try_get::<Option<i64>, _>("seq")
                    .ok()
                    .flatten()
                    .unwrap_or(0)
            ),
        },
    })
}
