//! Embedded SQLite backend (`vodkms dev`): one file, one process. Changes are
//! announced to this process's own subscribers after commit (no other process
//! shares the file). Write transactions start `IMMEDIATE`, so two writers queue
//! on the busy timeout instead of failing on a lock upgrade.

use std::path::Path;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{QueryBuilder, Row, Sqlite, Transaction};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{ChainRow, Checkpoint, NewKey, Store, StoreError};
use crate::crypto::TokenDigest;
use crate::model::{
    AccessKeyInsert, AccessKeyRecord, AuditFilter, AuditRecord, Change, ClientRecord,
    IdempotentBatch, KeyRecord, KeyState, Operation, Roles, VersionRecord, VersionUsage,
    VideoSecretRecord,
};

pub use foundation::db::sqlite::{
    begin_write, from_micros, micros, open_pool, opt_from_micros, unique_violation, MIGRATOR,
};
pub use foundation::db::Fanout;

fn backend(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Backend(Box::new(e))
}

fn corrupt(what: &str) -> StoreError {
    foundation::db::corrupt(what).into()
}

#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    changes: std::sync::Arc<Fanout<Change>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteStore")
    }
}

impl SqliteStore {
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self::with_pool(open_pool(path).await?))
    }

    pub fn with_pool(pool: SqlitePool) -> Self {
        Self {
            pool,
            changes: std::sync::Arc::new(Fanout::new(Change::Reset)),
        }
    }
}

fn map_err(e: sqlx::Error) -> StoreError {
    match unique_violation(&e) {
        Some(m) if m.contains("key_aliases.alias") => StoreError::AliasExists,
        Some(m) if m.contains("key_versions.") => StoreError::Conflict,
        _ => backend(e),
    }
}

const KEY_COLUMNS: &str = "k.id, k.description, k.state, k.primary_version, k.rotation_period_days, \
     k.last_rotated_at, k.deletion_date, k.created_at, k.min_decryption_version, k.per_video_keys, \
     (SELECT json_group_array(alias) FROM (SELECT a.alias FROM key_aliases a WHERE a.key_id = k.id ORDER BY a.alias)) AS aliases";

fn key_from_row(row: &SqliteRow) -> Result<KeyRecord, StoreError> {
    let state: String = row.try_get("state").map_err(map_err)?;
    let primary: i64 = row.try_get("primary_version").map_err(map_err)?;
    let period: Option<i64> = row.try_get("rotation_period_days").map_err(map_err)?;
    let aliases: String = row.try_get("aliases").map_err(map_err)?;
    let min_decryption: i64 = row.try_get("min_decryption_version").map_err(map_err)?;
    Ok(KeyRecord {
        id: row.try_get("id").map_err(map_err)?,
        aliases: serde_json::from_str(&aliases).map_err(|_| corrupt("key_aliases"))?,
        description: row.try_get("description").map_err(map_err)?,
        state: KeyState::parse(&state).ok_or_else(|| corrupt("keys.state"))?,
        primary_version: u32::try_from(primary).map_err(|_| corrupt("keys.primary_version"))?,
        rotation_period_days: period
            .map(u32::try_from)
            .transpose()
            .map_err(|_| corrupt("keys.rotation_period_days"))?,
        last_rotated_at: from_micros(row.try_get("last_rotated_at").map_err(map_err)?)?,
        deletion_date: opt_from_micros(row.try_get("deletion_date").map_err(map_err)?)?,
        created_at: from_micros(row.try_get("created_at").map_err(map_err)?)?,
        min_decryption_version: u32::try_from(min_decryption)
            .map_err(|_| corrupt("keys.min_decryption_version"))?,
        per_video_keys: row.try_get("per_video_keys").map_err(map_err)?,
    })
}

const VIDEO_COLUMNS: &str = "video_id, wrapped_secret, created_at, shred_date, shredded_at";

fn video_from_row(row: &SqliteRow) -> Result<VideoSecretRecord, StoreError> {
    Ok(VideoSecretRecord {
        video_id: row.try_get("video_id").map_err(map_err)?,
        wrapped_secret: row.try_get("wrapped_secret").map_err(map_err)?,
        created_at: from_micros(row.try_get("created_at").map_err(map_err)?)?,
        shred_date: opt_from_micros(row.try_get("shred_date").map_err(map_err)?)?,
        shredded_at: opt_from_micros(row.try_get("shredded_at").map_err(map_err)?)?,
    })
}

async fn select_video(
    executor: impl sqlx::SqliteExecutor<'_>,
    video_id: &str,
) -> Result<Option<VideoSecretRecord>, StoreError> {
    let sql = format!("SELECT {VIDEO_COLUMNS} FROM kms_video_secrets WHERE video_id = ?1");
    let row = sqlx::query(&sql)
        .bind(video_id)
        .fetch_optional(executor)
        .await
        .map_err(map_err)?;
    row.as_ref().map(video_from_row).transpose()
}

fn access_key_from_row(row: &SqliteRow) -> Result<AccessKeyRecord, StoreError> {
    Ok(AccessKeyRecord {
        id: row.try_get("ak_id").map_err(map_err)?,
        client_id: row.try_get("ak_client_id").map_err(map_err)?,
        wrapped_secret: row.try_get("ak_wrapped_secret").map_err(map_err)?,
        created_at: from_micros(row.try_get("ak_created_at").map_err(map_err)?)?,
    })
}

const ACCESS_KEY_COLUMNS: &str = "ak.id AS ak_id, ak.client_id AS ak_client_id, \
     ak.wrapped_secret AS ak_wrapped_secret, ak.created_at AS ak_created_at";

fn client_from_row(row: &SqliteRow) -> Result<ClientRecord, StoreError> {
    let role: String = row.try_get("role").map_err(map_err)?;
    let digest: Vec<u8> = row.try_get("token_sha256").map_err(map_err)?;
    let digest: [u8; 32] = digest
        .try_into()
        .map_err(|_| corrupt("api_clients.token_sha256"))?;
    let key_ids: Option<String> = row.try_get("key_ids").map_err(map_err)?;
    Ok(ClientRecord {
        id: row.try_get("id").map_err(map_err)?,
        name: row.try_get("name").map_err(map_err)?,
        roles: Roles::parse(&role).ok_or_else(|| corrupt("api_clients.role"))?,
        key_ids: key_ids
            .map(|k| serde_json::from_str(&k))
            .transpose()
            .map_err(|_| corrupt("api_clients.key_ids"))?,
        token_digest: TokenDigest(digest),
        created_at: from_micros(row.try_get("created_at").map_err(map_err)?)?,
        revoked_at: opt_from_micros(row.try_get("revoked_at").map_err(map_err)?)?,
    })
}

async fn insert_version(
    tx: &mut Transaction<'_, Sqlite>,
    v: &VersionRecord,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO key_versions (key_id, version, wrapped_material, created_at) VALUES (?1, ?2, ?3, ?4)",
    )
    .bind(v.key_id)
    .bind(i64::from(v.version))
    .bind(&v.wrapped)
    .bind(micros(v.created_at))
    .execute(&mut **tx)
    .await
    .map_err(map_err)?;
    Ok(())
}

async fn select_key(
    executor: impl sqlx::SqliteExecutor<'_>,
    id: Uuid,
) -> Result<Option<KeyRecord>, StoreError> {
    let sql = format!("SELECT {KEY_COLUMNS} FROM keys k WHERE k.id = ?1");
    let row = sqlx::query(&sql)
        .bind(id)
        .fetch_optional(executor)
        .await
        .map_err(map_err)?;
    row.as_ref().map(key_from_row).transpose()
}

impl SqliteStore {
    /// After a guarded UPDATE of key `id` in `tx`: if it changed the key
    /// (`rows` is 1), commits, announces the change and returns the key as
    /// it is now. `None`: unchanged.
    async fn key_changed(
        &self,
        mut tx: Transaction<'_, Sqlite>,
        rows: u64,
        id: Uuid,
    ) -> Result<Option<KeyRecord>, StoreError> {
        if rows != 1 {
            return Ok(None);
        }
        let record = select_key(&mut *tx, id)
            .await?
            .ok_or_else(|| corrupt("keys"))?;
        tx.commit().await.map_err(map_err)?;
        self.changes.send(Change::Key(id));
        Ok(Some(record))
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn root_key_check(&self, candidate: &[u8]) -> Result<Vec<u8>, StoreError> {
        sqlx::query("INSERT OR IGNORE INTO root_key_check (id, check_value) VALUES (1, ?1)")
            .bind(candidate)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        sqlx::query_scalar("SELECT check_value FROM root_key_check WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)
    }

    async fn create_key(&self, key: &NewKey) -> Result<(), StoreError> {
        let k = &key.record;
        let mut tx = begin_write(&self.pool).await?;
        sqlx::query(
            "INSERT INTO keys (id, description, state, primary_version, rotation_period_days, \
             last_rotated_at, deletion_date, created_at, min_decryption_version, per_video_keys) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )
        .bind(k.id)
        .bind(&k.description)
        .bind(k.state.as_str())
        .bind(i64::from(k.primary_version))
        .bind(k.rotation_period_days.map(i64::from))
        .bind(micros(k.last_rotated_at))
        .bind(k.deletion_date.map(micros))
        .bind(micros(k.created_at))
        .bind(i64::from(k.min_decryption_version))
        .bind(k.per_video_keys)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        for alias in &k.aliases {
            sqlx::query("INSERT INTO key_aliases (alias, key_id) VALUES (?1, ?2)")
                .bind(alias)
                .bind(k.id)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        }
        insert_version(&mut tx, &key.first_version).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn key(&self, id: Uuid) -> Result<Option<KeyRecord>, StoreError> {
        select_key(&self.pool, id).await
    }

    async fn key_id_for_alias(&self, alias: &str) -> Result<Option<Uuid>, StoreError> {
        sqlx::query_scalar("SELECT key_id FROM key_aliases WHERE alias = ?1")
            .bind(alias)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)
    }

    async fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM keys k ORDER BY k.created_at, k.id");
        let rows = sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(key_from_row).collect()
    }

    async fn key_versions(&self, key_id: Uuid) -> Result<Vec<VersionRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT version, wrapped_material, created_at FROM key_versions WHERE key_id = ?1 ORDER BY version",
        )
        .bind(key_id)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter()
            .map(|row| {
                let version: i64 = row.try_get("version").map_err(map_err)?;
                Ok(VersionRecord {
                    key_id,
                    version: u32::try_from(version).map_err(|_| corrupt("key_versions.version"))?,
                    wrapped: row.try_get("wrapped_material").map_err(map_err)?,
                    created_at: from_micros(row.try_get("created_at").map_err(map_err)?)?,
                })
            })
            .collect()
    }

    async fn add_version(
        &self,
        expected_primary: u32,
        v: &VersionRecord,
    ) -> Result<(), StoreError> {
        let mut tx = begin_write(&self.pool).await?;
        let done = sqlx::query(
            "UPDATE keys SET primary_version = ?3, last_rotated_at = ?4 \
             WHERE id = ?1 AND primary_version = ?2 AND state = 'Enabled'",
        )
        .bind(v.key_id)
        .bind(i64::from(expected_primary))
        .bind(i64::from(v.version))
        .bind(micros(v.created_at))
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Conflict);
        }
        insert_version(&mut tx, v).await?;
        tx.commit().await.map_err(map_err)?;
        self.changes.send(Change::Key(v.key_id));
        Ok(())
    }

    async fn set_state(
        &self,
        id: Uuid,
        from: &[KeyState],
        to: KeyState,
        deletion_date: Option<DateTime<Utc>>,
    ) -> Result<Option<KeyRecord>, StoreError> {
        if from.is_empty() {
            return Ok(None);
        }
        let mut tx = begin_write(&self.pool).await?;
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("UPDATE keys SET state = ");
        q.push_bind(to.as_str())
            .push(", deletion_date = ")
            .push_bind(deletion_date.map(micros))
            .push(" WHERE id = ")
            .push_bind(id)
            .push(" AND state IN (");
        let mut states = q.separated(", ");
        for s in from {
            states.push_bind(s.as_str());
        }
        q.push(")");
        let done = q.build().execute(&mut *tx).await.map_err(map_err)?;
        self.key_changed(tx, done.rows_affected(), id).await
    }

    async fn reserve_encryptions(
        &self,
        key_id: Uuid,
        version: u32,
        count: u64,
        limit: u64,
    ) -> Result<bool, StoreError> {
        let to_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let granted = sqlx::query(
            "UPDATE key_versions SET encryptions_reserved = encryptions_reserved + ?3 \
             WHERE key_id = ?1 AND version = ?2 AND encryptions_reserved + ?3 <= ?4",
        )
        .bind(key_id)
        .bind(i64::from(version))
        .bind(to_i64(count))
        .bind(to_i64(limit))
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(granted.rows_affected() == 1)
    }

    async fn keys_due_rotation(&self, now: DateTime<Utc>) -> Result<Vec<(Uuid, u32)>, StoreError> {
        let rows: Vec<(Uuid, i64)> = sqlx::query_as(
            "SELECT id, primary_version FROM keys WHERE state = 'Enabled' AND rotation_period_days IS NOT NULL \
             AND last_rotated_at + rotation_period_days * 86400000000 <= ?1",
        )
        .bind(micros(now))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.into_iter()
            .map(|(id, v)| {
                Ok((
                    id,
                    u32::try_from(v).map_err(|_| corrupt("keys.primary_version"))?,
                ))
            })
            .collect()
    }

    async fn keys_due_deletion(&self, now: DateTime<Utc>) -> Result<Vec<Uuid>, StoreError> {
        sqlx::query_scalar(
            "SELECT id FROM keys WHERE state = 'PendingDeletion' AND deletion_date <= ?1",
        )
        .bind(micros(now))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)
    }

    async fn destroy_key(&self, id: Uuid, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = begin_write(&self.pool).await?;
        let done = sqlx::query(
            "UPDATE keys SET state = 'Deleted' WHERE id = ?1 AND state = 'PendingDeletion' AND deletion_date <= ?2",
        )
        .bind(id)
        .bind(micros(now))
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        for sql in [
            "DELETE FROM key_versions WHERE key_id = ?1",
            "DELETE FROM key_aliases WHERE key_id = ?1",
        ] {
            sqlx::query(sql)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)?;
        self.changes.send(Change::Key(id));
        Ok(true)
    }

    async fn create_client(&self, c: &ClientRecord) -> Result<(), StoreError> {
        let key_ids = c
            .key_ids
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(backend)?;
        sqlx::query(
            "INSERT INTO api_clients (id, name, role, key_ids, token_sha256, created_at, revoked_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .bind(c.id)
        .bind(&c.name)
        .bind(c.roles.as_string())
        .bind(key_ids)
        .bind(&c.token_digest.0[..])
        .bind(micros(c.created_at))
        .bind(c.revoked_at.map(micros))
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        self.changes.send(Change::ClientCreated(c.id));
        Ok(())
    }

    async fn client_by_digest(
        &self,
        digest: &TokenDigest,
    ) -> Result<Option<ClientRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM api_clients WHERE token_sha256 = ?1")
            .bind(&digest.0[..])
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(client_from_row).transpose()
    }

    async fn list_clients(&self) -> Result<Vec<ClientRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM api_clients ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(client_from_row).collect()
    }

    async fn revoke_client(&self, id: Uuid, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE api_clients SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
        )
        .bind(id)
        .bind(micros(now))
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        self.changes.send(Change::Client(id));
        Ok(true)
    }

    async fn any_active_admin(&self) -> Result<bool, StoreError> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM api_clients WHERE role = 'admin' AND revoked_at IS NULL)",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(map_err)
    }

    async fn append_audit(&self, records: &[AuditRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut tx = begin_write(&self.pool).await?;
        for r in records {
            // As in PostgreSQL, so both backends give back the same record.
            let context = r
                .encryption_context
                .as_ref()
                .map(super::postgres::storable_context_json);
            sqlx::query(
                "INSERT OR IGNORE INTO audit_log (id, event_time, client_id, operation, key_id, \
                 key_version, encryption_context, outcome, request_id, detail, protocol, \
                 access_key_id, writer_id, writer_seq, prev_hash, row_hash) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
            )
            .bind(r.id)
            .bind(micros(r.time))
            .bind(r.client_id)
            .bind(r.operation.as_str())
            .bind(r.key_id)
            .bind(r.key_version.map(i64::from))
            .bind(context)
            .bind(foundation::db::storable(&r.outcome))
            .bind(foundation::db::storable(&r.request_id))
            .bind(r.detail.as_ref().map(|d| d.to_string()))
            .bind(r.protocol.as_deref().map(foundation::db::storable))
            .bind(r.access_key_id.as_deref().map(foundation::db::storable))
            .bind(r.link.map(|l| l.writer))
            .bind(r.link.map(|l| foundation::db::to_i64(l.seq)).transpose()?)
            .bind(r.link.map(|l| l.prev.to_vec()))
            .bind(r.link.map(|l| l.hash.to_vec()))
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)
    }

    async fn append_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        Ok(foundation::db::sqlite::append_checkpoint(&self.pool, checkpoint).await?)
    }

    async fn audit_checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        Ok(foundation::db::sqlite::checkpoints(&self.pool, crate::service::audit::TRAIL).await?)
    }

    async fn audit_page(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<(i64, ChainRow)>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT seq, {AUDIT_COLUMNS} FROM audit_log WHERE seq > ?1 ORDER BY seq LIMIT ?2"
        ))
        .bind(after_seq)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter()
            .map(|row| {
                let seq: i64 = row.try_get("seq").map_err(map_err)?;
                Ok((seq, foundation::db::chain_row(row, audit_from_row)))
            })
            .collect()
    }

    async fn query_audit(&self, f: &AuditFilter) -> Result<Vec<(i64, AuditRecord)>, StoreError> {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(format!(
            "SELECT seq, {AUDIT_COLUMNS} FROM audit_log WHERE 1"
        ));
        if let Some(k) = f.key_id {
            q.push(" AND key_id = ").push_bind(k);
        }
        if let Some(c) = f.client_id {
            q.push(" AND client_id = ").push_bind(c);
        }
        if let Some(a) = &f.access_key_id {
            q.push(" AND access_key_id = ")
                .push_bind(foundation::db::storable(a));
        }
        if let Some(op) = f.operation {
            q.push(" AND operation = ").push_bind(op.as_str());
        }
        if let Some(t) = f.since {
            q.push(" AND event_time >= ").push_bind(micros(t));
        }
        if let Some(t) = f.until {
            q.push(" AND event_time < ").push_bind(micros(t));
        }
        if let Some(s) = f.before_seq {
            q.push(" AND seq < ").push_bind(s);
        }
        q.push(" ORDER BY seq DESC LIMIT ")
            .push_bind(i64::from(f.limit));
        let rows = q.build().fetch_all(&self.pool).await.map_err(map_err)?;
        rows.iter()
            .map(|row| Ok((row.try_get("seq").map_err(map_err)?, audit_from_row(row)?)))
            .collect()
    }

    async fn create_alias(&self, alias: &str, key_id: Uuid) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO key_aliases (alias, key_id) VALUES (?1, ?2)")
            .bind(alias)
            .bind(key_id)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        self.changes.send(Change::Key(key_id));
        Ok(())
    }

    async fn delete_alias(&self, alias: &str) -> Result<Option<Uuid>, StoreError> {
        let key_id: Option<Uuid> =
            sqlx::query_scalar("DELETE FROM key_aliases WHERE alias = ?1 RETURNING key_id")
                .bind(alias)
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
        if let Some(id) = key_id {
            self.changes.send(Change::Key(id));
        }
        Ok(key_id)
    }

    async fn set_rotation_period(
        &self,
        id: Uuid,
        days: Option<u32>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE keys SET last_rotated_at = CASE WHEN rotation_period_days IS NULL \
             THEN max(last_rotated_at, ?3) ELSE last_rotated_at END, \
             rotation_period_days = ?2 WHERE id = ?1",
        )
        .bind(id)
        .bind(days.map(i64::from))
        .bind(micros(now))
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        self.changes.send(Change::Key(id));
        Ok(true)
    }

    async fn create_access_key(
        &self,
        key: &AccessKeyRecord,
        max_per_client: usize,
    ) -> Result<AccessKeyInsert, StoreError> {
        // IMMEDIATE: the count and the insert happen under the write lock.
        let mut tx = begin_write(&self.pool).await?;
        let active: Option<Uuid> =
            sqlx::query_scalar("SELECT id FROM api_clients WHERE id = ?1 AND revoked_at IS NULL")
                .bind(key.client_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;
        if active.is_none() {
            return Ok(AccessKeyInsert::ClientNotFound);
        }
        let held: i64 = sqlx::query_scalar("SELECT count(*) FROM access_keys WHERE client_id = ?1")
            .bind(key.client_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(map_err)?;
        if held >= i64::try_from(max_per_client).unwrap_or(i64::MAX) {
            return Ok(AccessKeyInsert::LimitReached);
        }
        sqlx::query(
            "INSERT INTO access_keys (id, client_id, wrapped_secret, created_at) VALUES (?1, ?2, ?3, ?4)",
        )
        .bind(&key.id)
        .bind(key.client_id)
        .bind(&key.wrapped_secret)
        .bind(micros(key.created_at))
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        self.changes.send(Change::ClientCreated(key.client_id));
        Ok(AccessKeyInsert::Created)
    }

    async fn access_key(
        &self,
        id: &str,
    ) -> Result<Option<(AccessKeyRecord, ClientRecord)>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {ACCESS_KEY_COLUMNS}, c.* FROM access_keys ak \
             JOIN api_clients c ON c.id = ak.client_id WHERE ak.id = ?1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        row.map(|r| Ok((access_key_from_row(&r)?, client_from_row(&r)?)))
            .transpose()
    }

    async fn list_access_keys(
        &self,
        client_id: Option<Uuid>,
    ) -> Result<Vec<AccessKeyRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ACCESS_KEY_COLUMNS} FROM access_keys ak \
             WHERE ?1 IS NULL OR ak.client_id = ?1 ORDER BY ak.created_at, ak.id"
        ))
        .bind(client_id)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter().map(access_key_from_row).collect()
    }

    async fn delete_access_key(&self, client_id: Uuid, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM access_keys WHERE id = ?1 AND client_id = ?2")
            .bind(id)
            .bind(client_id)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        self.changes.send(Change::Client(client_id));
        Ok(true)
    }

    async fn idempotent_batch(
        &self,
        client_id: Uuid,
        token: &str,
        since: DateTime<Utc>,
    ) -> Result<Option<IdempotentBatch>, StoreError> {
        let row = sqlx::query(
            "SELECT client_id, client_token, fingerprint, blobs, created_at FROM kms_idempotent_batches \
             WHERE client_id = ?1 AND client_token = ?2 AND created_at >= ?3",
        )
        .bind(client_id)
        .bind(token)
        .bind(micros(since))
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        row.as_ref().map(batch_from_row).transpose()
    }

    async fn put_idempotent_batch(
        &self,
        batch: &IdempotentBatch,
        since: DateTime<Utc>,
    ) -> Result<IdempotentBatch, StoreError> {
        let mut tx = begin_write(&self.pool).await?;
        sqlx::query("DELETE FROM kms_idempotent_batches WHERE created_at < ?1")
            .bind(micros(since))
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        sqlx::query(
            "INSERT INTO kms_idempotent_batches (client_id, client_token, fingerprint, blobs, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (client_id, client_token) DO NOTHING",
        )
        .bind(batch.client_id)
        .bind(&batch.client_token)
        .bind(&batch.fingerprint)
        .bind(serde_json::to_string(&batch.blobs).map_err(backend)?)
        .bind(micros(batch.created_at))
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        let row = sqlx::query(
            "SELECT client_id, client_token, fingerprint, blobs, created_at FROM kms_idempotent_batches \
             WHERE client_id = ?1 AND client_token = ?2",
        )
        .bind(batch.client_id)
        .bind(&batch.client_token)
        .fetch_one(&mut *tx)
        .await
        .map_err(map_err)?;
        let held = batch_from_row(&row)?;
        tx.commit().await.map_err(map_err)?;
        Ok(held)
    }

    async fn set_min_decryption_version(
        &self,
        id: Uuid,
        min: u32,
    ) -> Result<Option<KeyRecord>, StoreError> {
        let mut tx = begin_write(&self.pool).await?;
        let done = sqlx::query(
            "UPDATE keys SET min_decryption_version = ?2 \
             WHERE id = ?1 AND ?2 >= 1 AND ?2 <= primary_version AND state <> 'Deleted'",
        )
        .bind(id)
        .bind(i64::from(min))
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        self.key_changed(tx, done.rows_affected(), id).await
    }

    async fn version_usage(
        &self,
        key_id: Uuid,
        since: DateTime<Utc>,
    ) -> Result<Vec<VersionUsage>, StoreError> {
        let rows = sqlx::query(
            "SELECT key_version, \
             SUM(CASE WHEN outcome = 'Success' THEN 1 ELSE 0 END) AS decrypts, \
             MAX(CASE WHEN outcome = 'Success' THEN event_time END) AS last_decrypt, \
             SUM(CASE WHEN outcome = 'KeyVersionRetired' THEN 1 ELSE 0 END) AS refused \
             FROM audit_log WHERE key_id = ?1 AND operation = 'Decrypt' AND event_time >= ?2 \
             AND key_version IS NOT NULL GROUP BY key_version ORDER BY key_version",
        )
        .bind(key_id)
        .bind(micros(since))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter()
            .map(|row| {
                let version: i64 = row.try_get("key_version").map_err(map_err)?;
                let decrypts: i64 = row.try_get("decrypts").map_err(map_err)?;
                let refused: i64 = row.try_get("refused").map_err(map_err)?;
                Ok(VersionUsage {
                    version: u32::try_from(version)
                        .map_err(|_| corrupt("audit_log.key_version"))?,
                    decrypts: u64::try_from(decrypts).unwrap_or(0),
                    last_decrypt: opt_from_micros(row.try_get("last_decrypt").map_err(map_err)?)?,
                    refused_retired: u64::try_from(refused).unwrap_or(0),
                })
            })
            .collect()
    }

    async fn video_secret(&self, video_id: &str) -> Result<Option<VideoSecretRecord>, StoreError> {
        select_video(&self.pool, video_id).await
    }

    async fn put_video_secret(
        &self,
        v: &VideoSecretRecord,
    ) -> Result<VideoSecretRecord, StoreError> {
        let mut tx = begin_write(&self.pool).await?;
        sqlx::query(
            "INSERT INTO kms_video_secrets (video_id, wrapped_secret, created_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (video_id) DO NOTHING",
        )
        .bind(&v.video_id)
        .bind(&v.wrapped_secret)
        .bind(micros(v.created_at))
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        let held = select_video(&mut *tx, &v.video_id)
            .await?
            .ok_or_else(|| corrupt("kms_video_secrets"))?;
        tx.commit().await.map_err(map_err)?;
        Ok(held)
    }

    async fn schedule_video_shred(
        &self,
        video_id: &str,
        date: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<VideoSecretRecord, StoreError> {
        let mut tx = begin_write(&self.pool).await?;
        let done = sqlx::query(
            "INSERT INTO kms_video_secrets (video_id, wrapped_secret, created_at, shred_date) \
             VALUES (?1, NULL, ?3, ?2) ON CONFLICT (video_id) DO UPDATE SET shred_date = ?2 \
             WHERE kms_video_secrets.shredded_at IS NULL",
        )
        .bind(video_id)
        .bind(micros(date))
        .bind(micros(now))
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        let record = select_video(&mut *tx, video_id)
            .await?
            .ok_or_else(|| corrupt("kms_video_secrets"))?;
        tx.commit().await.map_err(map_err)?;
        if done.rows_affected() == 1 {
            self.changes.send(Change::Video(video_id.to_owned()));
        }
        Ok(record)
    }

    async fn cancel_video_shred(
        &self,
        video_id: &str,
    ) -> Result<Option<VideoSecretRecord>, StoreError> {
        let mut tx = begin_write(&self.pool).await?;
        let done = sqlx::query(
            "UPDATE kms_video_secrets SET shred_date = NULL \
             WHERE video_id = ?1 AND shred_date IS NOT NULL AND shredded_at IS NULL",
        )
        .bind(video_id)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        if done.rows_affected() != 1 {
            return Ok(None);
        }
        let record = select_video(&mut *tx, video_id).await?;
        tx.commit().await.map_err(map_err)?;
        self.changes.send(Change::Video(video_id.to_owned()));
        Ok(record)
    }

    async fn videos_due_shred(&self, now: DateTime<Utc>) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT video_id FROM kms_video_secrets \
             WHERE shred_date IS NOT NULL AND shredded_at IS NULL AND shred_date <= ?1 ORDER BY shred_date",
        )
        .bind(micros(now))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)
    }

    async fn shred_video(&self, video_id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE kms_video_secrets SET wrapped_secret = NULL, shredded_at = ?2 \
             WHERE video_id = ?1 AND shred_date IS NOT NULL AND shred_date <= ?2 AND shredded_at IS NULL",
        )
        .bind(video_id)
        .bind(micros(now))
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        self.changes.send(Change::Video(video_id.to_owned()));
        Ok(true)
    }

    async fn list_video_secrets(&self) -> Result<Vec<VideoSecretRecord>, StoreError> {
        let sql = format!(
            "SELECT {VIDEO_COLUMNS} FROM kms_video_secrets WHERE wrapped_secret IS NOT NULL ORDER BY video_id"
        );
        let rows = sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(video_from_row).collect()
    }

    async fn rewrap_root(
        &self,
        versions: &[VersionRecord],
        access_keys: &[AccessKeyRecord],
        videos: &[VideoSecretRecord],
        old_check: &[u8],
        new_check: &[u8],
    ) -> Result<(), StoreError> {
        let mut tx = begin_write(&self.pool).await?;
        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM key_versions")
            .fetch_one(&mut *tx)
            .await
            .map_err(map_err)?;
        if stored != i64::try_from(versions.len()).unwrap_or(i64::MAX) {
            return Err(StoreError::Conflict);
        }
        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM access_keys")
            .fetch_one(&mut *tx)
            .await
            .map_err(map_err)?;
        if stored != i64::try_from(access_keys.len()).unwrap_or(i64::MAX) {
            return Err(StoreError::Conflict);
        }
        for k in access_keys {
            let done = sqlx::query("UPDATE access_keys SET wrapped_secret = ?2 WHERE id = ?1")
                .bind(&k.id)
                .bind(&k.wrapped_secret)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            if done.rows_affected() != 1 {
                return Err(StoreError::Conflict);
            }
        }
        let done = sqlx::query(
            "UPDATE root_key_check SET check_value = ?2 WHERE id = 1 AND check_value = ?1",
        )
        .bind(old_check)
        .bind(new_check)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Conflict);
        }
        for v in versions {
            let done = sqlx::query(
                "UPDATE key_versions SET wrapped_material = ?3 WHERE key_id = ?1 AND version = ?2",
            )
            .bind(v.key_id)
            .bind(i64::from(v.version))
            .bind(&v.wrapped)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
            if done.rows_affected() != 1 {
                return Err(StoreError::Conflict);
            }
        }
        let stored: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM kms_video_secrets WHERE wrapped_secret IS NOT NULL",
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(map_err)?;
        if stored != i64::try_from(videos.len()).unwrap_or(i64::MAX) {
            return Err(StoreError::Conflict);
        }
        for v in videos {
            let done = sqlx::query(
                "UPDATE kms_video_secrets SET wrapped_secret = ?2 \
                 WHERE video_id = ?1 AND wrapped_secret IS NOT NULL",
            )
            .bind(&v.video_id)
            .bind(&v.wrapped_secret)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
            if done.rows_affected() != 1 {
                return Err(StoreError::Conflict);
            }
        }
        tx.commit().await.map_err(map_err)?;
        self.changes.send(Change::Reset);
        Ok(())
    }

    fn pool_stats(&self) -> Option<(u32, usize)> {
        Some((self.pool.size(), self.pool.num_idle()))
    }

    async fn heartbeat(&self, payload: &str) -> Result<(), StoreError> {
        // In one process the feed cannot fall behind; going through the
        // database still proves it answers.
        self.ping().await?;
        self.changes.send(Change::Heartbeat(payload.to_owned()));
        Ok(())
    }

    async fn watch_changes(&self) -> Result<mpsc::Receiver<Change>, StoreError> {
        Ok(self.changes.subscribe())
    }
}

fn batch_from_row(row: &SqliteRow) -> Result<IdempotentBatch, StoreError> {
    let blobs: String = row.try_get("blobs").map_err(map_err)?;
    Ok(IdempotentBatch {
        client_id: row.try_get("client_id").map_err(map_err)?,
        client_token: row.try_get("client_token").map_err(map_err)?,
        fingerprint: row.try_get("fingerprint").map_err(map_err)?,
        blobs: serde_json::from_str(&blobs).map_err(backend)?,
        created_at: from_micros(row.try_get("created_at").map_err(map_err)?)?,
    })
}

/// An audit record from a row of `AUDIT_COLUMNS`.
fn audit_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<AuditRecord, StoreError> {
    let op: String = row.try_get("operation").map_err(map_err)?;
    let version: Option<i64> = row.try_get("key_version").map_err(map_err)?;
    let ctx: Option<String> = row.try_get("encryption_context").map_err(map_err)?;
    let detail: Option<String> = row.try_get("detail").map_err(map_err)?;
    Ok(AuditRecord {
        id: row.try_get("id").map_err(map_err)?,
        time: from_micros(row.try_get("event_time").map_err(map_err)?)?,
        client_id: row.try_get("client_id").map_err(map_err)?,
        operation: Operation::parse(&op).ok_or_else(|| corrupt("audit_log.operation"))?,
        key_id: row.try_get("key_id").map_err(map_err)?,
        key_version: version
            .map(u32::try_from)
            .transpose()
            .map_err(|_| corrupt("audit_log.key_version"))?,
        encryption_context: ctx
            .map(|c| serde_json::from_str(&c))
            .transpose()
            .map_err(backend)?,
        outcome: row.try_get("outcome").map_err(map_err)?,
        request_id: row.try_get("request_id").map_err(map_err)?,
        detail: detail
            .map(|d| serde_json::from_str(&d))
            .transpose()
            .map_err(backend)?,
        protocol: row.try_get("protocol").map_err(map_err)?,
        access_key_id: row.try_get("access_key_id").map_err(map_err)?,
        link: foundation::db::link_from_columns(
            row.try_get("writer_id").map_err(map_err)?,
            row.try_get("writer_seq").map_err(map_err)?,
            row.try_get("prev_hash").map_err(map_err)?,
            row.try_get("row_hash").map_err(map_err)?,
        ),
    })
}

/// The audit columns `audit_from_row` reads.
const AUDIT_COLUMNS: &str = "id, event_time, client_id, operation, key_id, key_version, \
    encryption_context, outcome, request_id, detail, protocol, access_key_id, writer_id, \
    writer_seq, prev_hash, row_hash";
