//! Broker storage behind a trait: SQL only, no rules. The error type is the
//! shared one of `foundation::db`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

pub use foundation::audit::Checkpoint;
pub(crate) use foundation::db::storable;
pub use foundation::db::StoreError;

/// A chained audit row as the verifier reads it.
pub type ChainRow = foundation::db::ChainRow<BrokerAuditRecord>;

use crate::model::{
    BrokerAuditFilter, BrokerAuditRecord, ContentKeyRecord, Heartbeat, Observation,
    ObservationOutcome, Revocation, RevocationKind, RevocationRow, SessionRecord, StreamRecord,
    VideoPolicy, ViewerRecord,
};

pub mod postgres;
pub mod sqlite;

pub use postgres::PgBrokerStore;
pub use sqlite::SqliteBrokerStore;

/// A revocation changed somewhere: reload it. `Reset`: reload them all
/// (revocations and video policies). `VideoPolicy`: reload that video's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevocationChange {
    One(RevocationKind, String),
    VideoPolicy(String),
    Reset,
}

/// How long the addresses and videos a token was seen with are kept: longer
/// than any token or playback session lives, and than any sharing window.
pub const RISK_RETENTION_DAYS: i64 = 7;

#[async_trait]
pub trait BrokerStore: Send + Sync + 'static {
    async fn ping(&self) -> Result<(), StoreError>;

    /// Stores a content key unless its KID is taken; returns the record
    /// stored under the KID (this one, or the one there before).
    async fn put_content_key(&self, key: &ContentKeyRecord)
        -> Result<ContentKeyRecord, StoreError>;
    /// The content keys of these KIDs that exist.
    async fn content_keys(&self, kids: &[[u8; 16]]) -> Result<Vec<ContentKeyRecord>, StoreError>;
    /// Every content key, or one video's; oldest first.
    async fn list_content_keys(
        &self,
        video_id: Option<&str>,
    ) -> Result<Vec<ContentKeyRecord>, StoreError>;
    /// Replaces a content key's EDK if it is still `old_blob` (a rewrap
    /// under another master key version). `true` if replaced.
    async fn replace_content_key_blob(
        &self,
        kid: [u8; 16],
        old_blob: &str,
        new_blob: &str,
    ) -> Result<bool, StoreError>;
    /// Deletes a video's content keys; how many there were.
    async fn delete_content_keys(&self, video_id: &str) -> Result<u64, StoreError>;

    /// `Conflict` if the username is taken.
    async fn create_viewer(&self, viewer: &ViewerRecord) -> Result<(), StoreError>;
    async fn viewer(&self, username: &str) -> Result<Option<ViewerRecord>, StoreError>;
    async fn list_viewers(&self) -> Result<Vec<ViewerRecord>, StoreError>;
    /// Replaces the stored record and, in the same transaction, stores
    /// `end_tokens` (a Viewer revocation) if given. `None` if there was no
    /// such viewer, else the revocation's seq (0 without one).
    async fn update_viewer(
        &self,
        viewer: &ViewerRecord,
        end_tokens: Option<&Revocation>,
    ) -> Result<Option<i64>, StoreError>;
    /// Deletes the viewer and stores `end_tokens` in one transaction: as
    /// `update_viewer`.
    async fn delete_viewer(
        &self,
        username: &str,
        end_tokens: &Revocation,
    ) -> Result<Option<i64>, StoreError>;

    /// Inserts or replaces, and tells every process sharing the database;
    /// the change's seq.
    async fn put_revocation(&self, revocation: &Revocation) -> Result<i64, StoreError>;
    /// Lifts a revocation, keeping a tombstone until `now` + `TOMBSTONE_DAYS`;
    /// the lift's seq, or `None` if there was none in force.
    async fn delete_revocation(
        &self,
        kind: RevocationKind,
        subject: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError>;
    /// The stored row of one subject, lifted or not.
    async fn revocation(
        &self,
        kind: RevocationKind,
        subject: &str,
    ) -> Result<Option<RevocationRow>, StoreError>;
    /// Every revocation in force at `now` (none lifted).
    async fn revocations(&self, now: DateTime<Utc>) -> Result<Vec<Revocation>, StoreError>;
    /// Every change after `after` (lifts included) that has not expired at
    /// `now`, in seq order.
    async fn revocations_since(
        &self,
        after: i64,
        now: DateTime<Utc>,
    ) -> Result<Vec<RevocationRow>, StoreError>;
    /// Forgets revocations and sessions that can no longer matter.
    async fn purge_expired(&self, now: DateTime<Utc>) -> Result<(), StoreError>;
    async fn watch_revocations(&self) -> Result<mpsc::Receiver<RevocationChange>, StoreError>;

    /// Inserts sessions or moves their `last_used_at` forward.
    async fn upsert_sessions(&self, sessions: &[SessionRecord]) -> Result<(), StoreError>;
    async fn session(&self, jti: &str) -> Result<Option<SessionRecord>, StoreError>;

    /// Checks an observation against the stream and address limits and, if
    /// neither refuses, records it; then counts what sharing detection needs.
    /// One transaction, serialized per viewer across every process.
    async fn observe_playback(&self, o: &Observation) -> Result<ObservationOutcome, StoreError>;
    /// Moves the last use of recorded streams and token addresses forward
    /// (never re-creates one that was deleted).
    async fn heartbeat(&self, beats: &[Heartbeat]) -> Result<(), StoreError>;
    /// A viewer's streams used at or after `active_since`, oldest first.
    async fn streams(
        &self,
        viewer: &str,
        active_since: DateTime<Utc>,
    ) -> Result<Vec<StreamRecord>, StoreError>;
    async fn stream(&self, id: uuid::Uuid) -> Result<Option<StreamRecord>, StoreError>;
    /// Whether there was such a stream.
    async fn delete_stream(&self, id: uuid::Uuid) -> Result<bool, StoreError>;

    /// Inserts or replaces, and tells every process sharing the database.
    async fn put_video_policy(&self, policy: &VideoPolicy) -> Result<(), StoreError>;
    /// Whether there was one; tells every process too.
    async fn delete_video_policy(&self, video_id: &str) -> Result<bool, StoreError>;
    async fn video_policy(&self, video_id: &str) -> Result<Option<VideoPolicy>, StoreError>;
    async fn video_policies(&self) -> Result<Vec<VideoPolicy>, StoreError>;

    /// Appends records; idempotent by record id.
    async fn append_audit(&self, records: &[BrokerAuditRecord]) -> Result<(), StoreError>;
    /// Stores a signed audit checkpoint (of either trail; idempotent).
    async fn append_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError>;
    /// The broker trail's checkpoints.
    async fn audit_checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError>;
    /// Every record after `after_seq` in storage order (which is each
    /// writer's commit order), with its sequence number: what the verifier
    /// reads.
    async fn audit_page(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<(i64, ChainRow)>, StoreError>;
    /// Newest first, with each record's sequence number.
    async fn query_audit(
        &self,
        filter: &BrokerAuditFilter,
    ) -> Result<Vec<(i64, BrokerAuditRecord)>, StoreError>;

    /// (open connections, idle connections) of the pool, for /metrics.
    fn pool_stats(&self) -> Option<(u32, usize)> {
        None
    }
}
