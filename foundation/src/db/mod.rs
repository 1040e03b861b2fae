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
