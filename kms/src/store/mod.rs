//! Storage behind a trait: SQL only, no rules and no cryptography.
//! PostgreSQL is the production backend; SQLite the embedded one of
//! `vodkms dev`. Both pass the same test suite (tests/store_suite.rs).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use uuid::Uuid;

pub use foundation::audit::Checkpoint;

use crate::crypto::TokenDigest;
use crate::model::{
    AccessKeyInsert, AccessKeyRecord, AuditFilter, AuditRecord, Change, ClientRecord,
    IdempotentBatch, KeyRecord, KeyState, VersionRecord, VersionUsage, VideoSecretRecord,
};

pub mod postgres;
pub mod sqlite;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the alias is already in use")]
    AliasExists,
    /// An optimistic precondition failed (e.g. a concurrent rotation): re-read and retry.
    #[error("a concurrent change won")]
    Conflict,
    #[error("database error: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The shared plumbing (pools, listeners, audit writer) reports in its own
/// error type, which has no alias to name.
impl From<foundation::db::StoreError> for StoreError {
    fn from(e: foundation::db::StoreError) -> Self {
        match e {
            foundation::db::StoreError::Conflict => Self::Conflict,
            foundation::db::StoreError::Backend(b) => Self::Backend(b),
        }
    }
}

impl From<StoreError> for foundation::db::StoreError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::AliasExists | StoreError::Conflict => Self::Conflict,
            StoreError::Backend(b) => Self::Backend(b),
        }
    }
}

/// A chained audit row as the verifier reads it.
pub type ChainRow = foundation::db::ChainRow<AuditRecord>;
pub use foundation::db::UnreadableRow;

/// A new key with its first version.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub record: KeyRecord,
    pub first_version: VersionRecord,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Succeeds when the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Stores `candidate` if no check value exists yet; returns the stored one.
    async fn root_key_check(&self, candidate: &[u8]) -> Result<Vec<u8>, StoreError>;

    async fn create_key(&self, key: &NewKey) -> Result<(), StoreError>;
    async fn key(&self, id: Uuid) -> Result<Option<KeyRecord>, StoreError>;
    async fn key_id_for_alias(&self, alias: &str) -> Result<Option<Uuid>, StoreError>;
    async fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError>;
    async fn key_versions(&self, key_id: Uuid) -> Result<Vec<VersionRecord>, StoreError>;

    /// Adds `version` as the new primary if the key is Enabled and its primary is
    /// still `expected_primary`; otherwise `Conflict`.
    async fn add_version(
        &self,
        expected_primary: u32,
        version: &VersionRecord,
    ) -> Result<(), StoreError>;

    /// Moves the key to `to` if its state is one of `from`. `None`: it was not.
    async fn set_state(
        &self,
        id: Uuid,
        from: &[KeyState],
        to: KeyState,
        deletion_date: Option<DateTime<Utc>>,
    ) -> Result<Option<KeyRecord>, StoreError>;

    /// Reserves `count` more encryptions for a version unless that would pass
    /// `limit`. `true` if granted.
    async fn reserve_encryptions(
        &self,
        key_id: Uuid,
        version: u32,
        count: u64,
        limit: u64,
    ) -> Result<bool, StoreError>;

    /// Enabled keys whose rotation period has passed, with their primary version.
    async fn keys_due_rotation(&self, now: DateTime<Utc>) -> Result<Vec<(Uuid, u32)>, StoreError>;
    async fn keys_due_deletion(&self, now: DateTime<Utc>) -> Result<Vec<Uuid>, StoreError>;

    /// Destroys a key's versions and aliases and marks it Deleted, if it is
    /// PendingDeletion with a deletion date not after `now`. `true` if done.
    async fn destroy_key(&self, id: Uuid, now: DateTime<Utc>) -> Result<bool, StoreError>;

    async fn create_client(&self, client: &ClientRecord) -> Result<(), StoreError>;
    async fn client_by_digest(
        &self,
        digest: &TokenDigest,
    ) -> Result<Option<ClientRecord>, StoreError>;
    async fn list_clients(&self) -> Result<Vec<ClientRecord>, StoreError>;
    /// `true` if the client existed and was active.
    async fn revoke_client(&self, id: Uuid, now: DateTime<Utc>) -> Result<bool, StoreError>;
    async fn any_active_admin(&self) -> Result<bool, StoreError>;

    /// Appends records; idempotent by record id, so a retried batch is safe.
    async fn append_audit(&self, records: &[AuditRecord]) -> Result<(), StoreError>;
    /// Stores a signed audit checkpoint (of either trail; idempotent).
    async fn append_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError>;
    /// The KMS trail's checkpoints.
    async fn audit_checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError>;
    /// Every record after `after_seq` in storage order (which is each
    /// writer's commit order), with its sequence number: what the verifier
    /// reads.
    async fn audit_page(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<(i64, ChainRow)>, StoreError>;
    /// Newest first, with each record's sequence number (for pagination).
    async fn query_audit(
        &self,
        filter: &AuditFilter,
    ) -> Result<Vec<(i64, AuditRecord)>, StoreError>;

    /// Changes made by any process sharing this database.
    async fn watch_changes(&self) -> Result<mpsc::Receiver<Change>, StoreError>;

    /// Sends `Change::Heartbeat(payload)` to every process watching changes,
    /// the way changes travel.
    async fn heartbeat(&self, payload: &str) -> Result<(), StoreError>;

    /// Points `alias` at a key. `AliasExists` if it names one already.
    async fn create_alias(&self, alias: &str, key_id: Uuid) -> Result<(), StoreError>;
    /// Removes an alias; the key it named, if it existed.
    async fn delete_alias(&self, alias: &str) -> Result<Option<Uuid>, StoreError>;
    /// Sets (or with `None` clears) a key's rotation period. Switching
    /// rotation on starts its period at `now`. `false` if there is no such key.
    async fn set_rotation_period(
        &self,
        id: Uuid,
        days: Option<u32>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Stores a new access key unless its client is missing or revoked, or
    /// already holds `max_per_client` (checked and inserted atomically, so
    /// parallel requests cannot pass the limit together).
    async fn create_access_key(
        &self,
        key: &AccessKeyRecord,
        max_per_client: usize,
    ) -> Result<AccessKeyInsert, StoreError>;
    /// An access key with its client (revoked or not: the service decides).
    async fn access_key(
        &self,
        id: &str,
    ) -> Result<Option<(AccessKeyRecord, ClientRecord)>, StoreError>;
    /// Access keys of one client, or of every client with `None`; oldest first.
    async fn list_access_keys(
        &self,
        client_id: Option<Uuid>,
    ) -> Result<Vec<AccessKeyRecord>, StoreError>;
    /// `true` if the client had this access key; it is gone for every process.
    async fn delete_access_key(&self, client_id: Uuid, id: &str) -> Result<bool, StoreError>;

    /// The batch a client minted under `token` at or after `since`.
    async fn idempotent_batch(
        &self,
        client_id: Uuid,
        token: &str,
        since: DateTime<Utc>,
    ) -> Result<Option<IdempotentBatch>, StoreError>;
    /// Stores `batch` unless a batch made at or after `since` holds its
    /// token already, and forgets batches older than `since`. Returns the
    /// batch that holds the token: this one, or the one that won a race.
    async fn put_idempotent_batch(
        &self,
        batch: &IdempotentBatch,
        since: DateTime<Utc>,
    ) -> Result<IdempotentBatch, StoreError>;

    /// Sets a key's MinDecryptionVersion if `min` is 1..= its primary
    /// version and the key is not Deleted. `None`: no such key, or not so.
    async fn set_min_decryption_version(
        &self,
        id: Uuid,
        min: u32,
    ) -> Result<Option<KeyRecord>, StoreError>;
    /// Successful and retired-refused Decrypt records of one key at or after
    /// `since`, per version (versions without any are left out).
    async fn version_usage(
        &self,
        key_id: Uuid,
        since: DateTime<Utc>,
    ) -> Result<Vec<VersionUsage>, StoreError>;

    async fn video_secret(&self, video_id: &str) -> Result<Option<VideoSecretRecord>, StoreError>;
    /// Stores a new video secret unless the video has a row already (a
    /// parallel first mint, or a tombstone). Returns the row that holds.
    async fn put_video_secret(
        &self,
        secret: &VideoSecretRecord,
    ) -> Result<VideoSecretRecord, StoreError>;
    /// Schedules a video's shred at `date` (a tombstone row if it has no
    /// secret yet), unless it is shredded already. Returns the row after.
    async fn schedule_video_shred(
        &self,
        video_id: &str,
        date: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<VideoSecretRecord, StoreError>;
    /// Clears a scheduled shred that has not happened. `None` if none was.
    async fn cancel_video_shred(
        &self,
        video_id: &str,
    ) -> Result<Option<VideoSecretRecord>, StoreError>;
    async fn videos_due_shred(&self, now: DateTime<Utc>) -> Result<Vec<String>, StoreError>;
    /// Destroys a video's secret if its shred is due at `now`. `true` if
    /// done by this call.
    async fn shred_video(&self, video_id: &str, now: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Video secrets not shredded, for root key rotation.
    async fn list_video_secrets(&self) -> Result<Vec<VideoSecretRecord>, StoreError>;

    /// Replaces everything wrapped under the root key (master key versions,
    /// access key secrets, video secrets) and the root key check value in
    /// one transaction.
    /// `Conflict` if the stored check value is not `old_check` or the rows
    /// stored are not exactly those given (a server added one meanwhile).
    async fn rewrap_root(
        &self,
        versions: &[VersionRecord],
        access_keys: &[AccessKeyRecord],
        videos: &[VideoSecretRecord],
        old_check: &[u8],
        new_check: &[u8],
    ) -> Result<(), StoreError>;

    /// (open connections, idle connections) of the pool, for /metrics.
    fn pool_stats(&self) -> Option<(u32, usize)> {
        None
    }
}
