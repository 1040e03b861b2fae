//! PostgreSQL backend. Changes are announced with NOTIFY inside the same
//! transaction, so other processes hear of them exactly when they commit.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use foundation::db::storable;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{Postgres, QueryBuilder, Row, Transaction};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{ChainRow, Checkpoint, NewKey, Store, StoreError};
use crate::crypto::TokenDigest;
use crate::model::{
    AccessKeyInsert, AccessKeyRecord, AuditFilter, AuditRecord, Change, ClientRecord,
    IdempotentBatch, KeyRecord, KeyState, Operation, Roles, VersionRecord, VersionUsage,
    VideoSecretRecord,
};

const CHANNEL: &str = "vodkms_changes";

pub use foundation::db::postgres::{listen, MIGRATOR};

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the connection options: they may hold a password.
        f.write_str("PgStore")
    }
}

impl PgStore {
    /// Connects and applies migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = foundation::db::postgres::connect(url, 16).await?;
        Ok(Self { pool })
    }

    /// On a pool opened elsewhere (a read-only one, for `vodkms audit`).
    pub fn with_pool(pool: PgPool) -> Self {
        Self { pool }
    }
}

fn backend(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Backend(Box::new(e))
}

/// Whether `e` is a violation of the named unique constraint.
fn violates(e: &sqlx::Error, constraint: &str) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.constraint() == Some(constraint))
}

fn map_err(e: sqlx::Error) -> StoreError {
    if violates(&e, "key_aliases_pkey") {
        return StoreError::AliasExists;
    }
    if violates(&e, "key_versions_pkey") {
        return StoreError::Conflict;
    }
    backend(e)
}

async fn notify(tx: &mut Transaction<'_, Postgres>, change: Change) -> Result<(), StoreError> {
    let payload = match change {
        Change::Key(id) => format!("key:{id}"),
        Change::Client(id) => format!("client:{id}"),
        Change::Video(id) => format!("video:{id}"),
        Change::Reset => "reset".to_owned(),
        Change::Heartbeat(p) => format!("heartbeat:{p}"),
        Change::ClientCreated(id) => format!("newclient:{id}"),
    };
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(payload)
        .execute(&mut **tx)
        .await
        .map_err(map_err)?;
    Ok(())
}

/// Runs a guarded UPDATE (its WHERE states the precondition of a transition);
/// `true` if it changed exactly the one row it names.
async fn changed_one(
    tx: &mut Transaction<'_, Postgres>,
    update: sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments>,
) -> Result<bool, StoreError> {
    let done = update.execute(&mut **tx).await.map_err(map_err)?;
    Ok(done.rows_affected() == 1)
}

/// Runs a guarded UPDATE of key `id`; if it changed the key, announces the
/// change and commits, returning the key as it is now. `None`: unchanged.
async fn change_key(
    mut tx: Transaction<'_, Postgres>,
    guarded: sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments>,
    id: Uuid,
) -> Result<Option<KeyRecord>, StoreError> {
    if !changed_one(&mut tx, guarded).await? {
        return Ok(None);
    }
    notify(&mut tx, Change::Key(id)).await?;
    let sql = format!("SELECT {KEY_COLUMNS} FROM keys k WHERE k.id = $1");
    let row = sqlx::query(&sql)
        .bind(id)
        .fetch_one(&mut *tx)
        .await
        .map_err(map_err)?;
    let record = key_from_row(&row)?;
    tx.commit().await.map_err(map_err)?;
    Ok(Some(record))
}

fn parse_change(payload: &str) -> Change {
    let parsed = match payload.split_once(':') {
        Some(("key", id)) => Uuid::parse_str(id).ok().map(Change::Key),
        Some(("client", id)) => Uuid::parse_str(id).ok().map(Change::Client),
        Some(("video", id)) => Some(Change::Video(id.to_owned())),
        Some(("heartbeat", p)) => Some(Change::Heartbeat(p.to_owned())),
        Some(("newclient", id)) => Uuid::parse_str(id).ok().map(Change::ClientCreated),
        _ => None,
    };
    parsed.unwrap_or(Change::Reset)
}

const KEY_COLUMNS: &str = "k.id, k.description, k.state, k.primary_version, k.rotation_period_days, \
     k.last_rotated_at, k.deletion_date, k.created_at, k.min_decryption_version, k.per_video_keys, \
     COALESCE((SELECT array_agg(a.alias ORDER BY a.alias) FROM key_aliases a WHERE a.key_id = k.id), '{}') AS aliases";

fn key_from_row(row: &PgRow) -> Result<KeyRecord, StoreError> {
    let state: String = row.try_get("state").map_err(map_err)?;
    let primary: i32 = row.try_get("primary_version").map_err(map_err)?;
    let period: Option<i32> = row.try_get("rotation_period_days").map_err(map_err)?;
    let min_decryption: i32 = row.try_get("min_decryption_version").map_err(map_err)?;
    Ok(KeyRecord {
        id: row.try_get("id").map_err(map_err)?,
        aliases: row.try_get("aliases").map_err(map_err)?,
        description: row.try_get("description").map_err(map_err)?,
        state: KeyState::parse(&state).ok_or_else(|| corrupt("keys.state"))?,
        primary_version: u32::try_from(primary).map_err(|_| corrupt("keys.primary_version"))?,
        rotation_period_days: period
            .map(u32::try_from)
            .transpose()
            .map_err(|_| corrupt("keys.rotation_period_days"))?,
        last_rotated_at: row.try_get("last_rotated_at").map_err(map_err)?,
        deletion_date: row.try_get("deletion_date").map_err(map_err)?,
        created_at: row.try_get("created_at").map_err(map_err)?,
        min_decryption_version: u32::try_from(min_decryption)
            .map_err(|_| corrupt("keys.min_decryption_version"))?,
        per_video_keys: row.try_get("per_video_keys").map_err(map_err)?,
    })
}

const VIDEO_COLUMNS: &str = "video_id, wrapped_secret, created_at, shred_date, shredded_at";

fn video_from_row(row: &PgRow) -> Result<VideoSecretRecord, StoreError> {
    Ok(VideoSecretRecord {
        video_id: row.try_get("video_id").map_err(map_err)?,
        wrapped_secret: row.try_get("wrapped_secret").map_err(map_err)?,
        created_at: row.try_get("created_at").map_err(map_err)?,
        shred_date: row.try_get("shred_date").map_err(map_err)?,
        shredded_at: row.try_get("shredded_at").map_err(map_err)?,
    })
}

fn access_key_from_row(row: &PgRow) -> Result<AccessKeyRecord, StoreError> {
    Ok(AccessKeyRecord {
        id: row.try_get("ak_id").map_err(map_err)?,
        client_id: row.try_get("ak_client_id").map_err(map_err)?,
        wrapped_secret: row.try_get("ak_wrapped_secret").map_err(map_err)?,
        created_at: row.try_get("ak_created_at").map_err(map_err)?,
    })
}

const ACCESS_KEY_COLUMNS: &str = "ak.id AS ak_id, ak.client_id AS ak_client_id, \
     ak.wrapped_secret AS ak_wrapped_secret, ak.created_at AS ak_created_at";

fn client_from_row(row: &PgRow) -> Result<ClientRecord, StoreError> {
    let role: String = row.try_get("role").map_err(map_err)?;
    let digest: Vec<u8> = row.try_get("token_sha256").map_err(map_err)?;
    let digest: [u8; 32] = digest
        .try_into()
        .map_err(|_| corrupt("api_clients.token_sha256"))?;
    Ok(ClientRecord {
        id: row.try_get("id").map_err(map_err)?,
        name: row.try_get("name").map_err(map_err)?,
        roles: Roles::parse(&role).ok_or_else(|| corrupt("api_clients.role"))?,
        key_ids: row.try_get("key_ids").map_err(map_err)?,
        token_digest: TokenDigest(digest),
        created_at: row.try_get("created_at").map_err(map_err)?,
        revoked_at: row.try_get("revoked_at").map_err(map_err)?,
    })
}

/// JSON for the audit log's context column. PostgreSQL cannot store NUL in
/// text or jsonb, and one unstorable record would block its whole batch (and
/// so, with the audit buffer bound, every key release): NUL becomes U+FFFD.
/// The service already refuses such contexts; this is the last line.
pub(crate) fn storable_context_json(ctx: &crate::crypto::EncryptionContext) -> String {
    let clean = |s: &String| s.replace('\0', "\u{FFFD}");
    let map: std::collections::BTreeMap<String, String> =
        ctx.iter().map(|(k, v)| (clean(k), clean(v))).collect();
    serde_json::to_string(&map).unwrap_or_default()
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Backend(format!("unexpected value in {what}").into())
}

fn to_i32(v: u32) -> Result<i32, StoreError> {
    i32::try_from(v).map_err(|_| StoreError::Backend("version number out of range".into()))
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[async_trait]
impl Store for PgStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn root_key_check(&self, candidate: &[u8]) -> Result<Vec<u8>, StoreError> {
        sqlx::query("INSERT INTO root_key_check (id, check_value) VALUES (1, $1) ON CONFLICT (id) DO NOTHING")
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
        let v = &key.first_version;
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        sqlx::query(
            "INSERT INTO keys (id, description, state, primary_version, rotation_period_days, \
             last_rotated_at, deletion_date, created_at, min_decryption_version, per_video_keys) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(k.id)
        .bind(&k.description)
        .bind(k.state.as_str())
        .bind(to_i32(k.primary_version)?)
        .bind(k.rotation_period_days.map(to_i32).transpose()?)
        .bind(k.last_rotated_at)
        .bind(k.deletion_date)
        .bind(k.created_at)
        .bind(to_i32(k.min_decryption_version)?)
        .bind(k.per_video_keys)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        for alias in &k.aliases {
            sqlx::query("INSERT INTO key_aliases (alias, key_id) VALUES ($1, $2)")
                .bind(alias)
                .bind(k.id)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        }
        sqlx::query("INSERT INTO key_versions (key_id, version, wrapped_material, created_at) VALUES ($1, $2, $3, $4)")
            .bind(v.key_id)
            .bind(to_i32(v.version)?)
            .bind(&v.wrapped)
            .bind(v.created_at)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)
    }

    async fn key(&self, id: Uuid) -> Result<Option<KeyRecord>, StoreError> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM keys k WHERE k.id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn key_id_for_alias(&self, alias: &str) -> Result<Option<Uuid>, StoreError> {
        sqlx::query_scalar("SELECT key_id FROM key_aliases WHERE alias = $1")
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
            "SELECT version, wrapped_material, created_at FROM key_versions WHERE key_id = $1 ORDER BY version",
        )
        .bind(key_id)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter()
            .map(|row| {
                let version: i32 = row.try_get("version").map_err(map_err)?;
                Ok(VersionRecord {
                    key_id,
                    version: u32::try_from(version).map_err(|_| corrupt("key_versions.version"))?,
                    wrapped: row.try_get("wrapped_material").map_err(map_err)?,
                    created_at: row.try_get("created_at").map_err(map_err)?,
                })
            })
            .collect()
    }

    async fn add_version(
        &self,
        expected_primary: u32,
        v: &VersionRecord,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        let guarded = sqlx::query(
            "UPDATE keys SET primary_version = $3, last_rotated_at = $4 \
             WHERE id = $1 AND primary_version = $2 AND state = 'Enabled'",
        )
        .bind(v.key_id)
        .bind(to_i32(expected_primary)?)
        .bind(to_i32(v.version)?)
        .bind(v.created_at);
        if !changed_one(&mut tx, guarded).await? {
            return Err(StoreError::Conflict);
        }
        sqlx::query("INSERT INTO key_versions (key_id, version, wrapped_material, created_at) VALUES ($1, $2, $3, $4)")
            .bind(v.key_id)
            .bind(to_i32(v.version)?)
            .bind(&v.wrapped)
            .bind(v.created_at)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        notify(&mut tx, Change::Key(v.key_id)).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn set_state(
        &self,
        id: Uuid,
        from: &[KeyState],
        to: KeyState,
        deletion_date: Option<DateTime<Utc>>,
    ) -> Result<Option<KeyRecord>, StoreError> {
        let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
        let tx = self.pool.begin().await.map_err(map_err)?;
        let guarded = sqlx::query(
            "UPDATE keys SET state = $2, deletion_date = $3 WHERE id = $1 AND state = ANY($4)",
        )
        .bind(id)
        .bind(to.as_str())
        .bind(deletion_date)
        .bind(&from);
        change_key(tx, guarded, id).await
    }

    async fn reserve_encryptions(
        &self,
        key_id: Uuid,
        version: u32,
        count: u64,
        limit: u64,
    ) -> Result<bool, StoreError> {
        let granted = sqlx::query(
            "UPDATE key_versions SET encryptions_reserved = encryptions_reserved + $3 \
             WHERE key_id = $1 AND version = $2 AND encryptions_reserved + $3 <= $4",
        )
        .bind(key_id)
        .bind(to_i32(version)?)
        .bind(to_i64(count))
        .bind(to_i64(limit))
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(granted.rows_affected() == 1)
    }

    async fn keys_due_rotation(&self, now: DateTime<Utc>) -> Result<Vec<(Uuid, u32)>, StoreError> {
        let rows: Vec<(Uuid, i32)> = sqlx::query_as(
            "SELECT id, primary_version FROM keys WHERE state = 'Enabled' AND rotation_period_days IS NOT NULL \
             AND last_rotated_at + make_interval(days => rotation_period_days) <= $1",
        )
        .bind(now)
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
            "SELECT id FROM keys WHERE state = 'PendingDeletion' AND deletion_date <= $1",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)
    }

    async fn destroy_key(&self, id: Uuid, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        let guarded = sqlx::query(
            "UPDATE keys SET state = 'Deleted' WHERE id = $1 AND state = 'PendingDeletion' AND deletion_date <= $2",
        )
        .bind(id)
        .bind(now);
        if !changed_one(&mut tx, guarded).await? {
            return Ok(false);
        }
        for sql in [
            "DELETE FROM key_versions WHERE key_id = $1",
            "DELETE FROM key_aliases WHERE key_id = $1",
        ] {
            sqlx::query(sql)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        }
        notify(&mut tx, Change::Key(id)).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(true)
    }

    async fn create_client(&self, c: &ClientRecord) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        sqlx::query(
            "INSERT INTO api_clients (id, name, role, key_ids, token_sha256, created_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(c.id)
        .bind(&c.name)
        .bind(c.roles.as_string())
        .bind(&c.key_ids)
        .bind(&c.token_digest.0[..])
        .bind(c.created_at)
        .bind(c.revoked_at)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        // Other processes learn the new token's digest (see service::cache).
        notify(&mut tx, Change::ClientCreated(c.id)).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn client_by_digest(
        &self,
        digest: &TokenDigest,
    ) -> Result<Option<ClientRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM api_clients WHERE token_sha256 = $1")
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
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        let guarded = sqlx::query(
            "UPDATE api_clients SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(id)
        .bind(now);
        if !changed_one(&mut tx, guarded).await? {
            return Ok(false);
        }
        notify(&mut tx, Change::Client(id)).await?;
        tx.commit().await.map_err(map_err)?;
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
        // A binary COPY first: PostgreSQL's cheapest way in, a row per audited
        // request. It cannot skip rows already there, so only a batch whose
        // earlier commit went unconfirmed collides on the id; that retry goes
        // through `INSERT … ON CONFLICT DO NOTHING` (which otherwise would
        // probe the id index before every row).
        match copy_audit(&self.pool, records).await {
            Err(e) if violates(&e, "audit_log_id_unique") => {
                AuditColumns::of(records)?.insert_missing(&self.pool).await
            }
            other => other,
        }
        .map_err(map_err)
    }

    async fn append_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        Ok(foundation::db::postgres::append_checkpoint(&self.pool, checkpoint).await?)
    }

    async fn audit_checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        Ok(foundation::db::postgres::checkpoints(&self.pool, crate::service::audit::TRAIL).await?)
    }

    async fn audit_page(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<(i64, ChainRow)>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT seq, {AUDIT_COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"
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
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!(
            "SELECT seq, {AUDIT_COLUMNS} FROM audit_log WHERE TRUE"
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
            q.push(" AND event_time >= ").push_bind(t);
        }
        if let Some(t) = f.until {
            q.push(" AND event_time < ").push_bind(t);
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
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        sqlx::query("INSERT INTO key_aliases (alias, key_id) VALUES ($1, $2)")
            .bind(alias)
            .bind(key_id)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        notify(&mut tx, Change::Key(key_id)).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn delete_alias(&self, alias: &str) -> Result<Option<Uuid>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        let key_id: Option<Uuid> =
            sqlx::query_scalar("DELETE FROM key_aliases WHERE alias = $1 RETURNING key_id")
                .bind(alias)
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;
        if let Some(id) = key_id {
            notify(&mut tx, Change::Key(id)).await?;
        }
        tx.commit().await.map_err(map_err)?;
        Ok(key_id)
    }

    async fn set_rotation_period(
        &self,
        id: Uuid,
        days: Option<u32>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        let days = days.map(to_i32).transpose()?;
        let update = sqlx::query(
            "UPDATE keys SET last_rotated_at = CASE WHEN rotation_period_days IS NULL \
             THEN GREATEST(last_rotated_at, $3) ELSE last_rotated_at END, \
             rotation_period_days = $2 WHERE id = $1",
        )
        .bind(id)
        .bind(days)
        .bind(now);
        if !changed_one(&mut tx, update).await? {
            return Ok(false);
        }
        notify(&mut tx, Change::Key(id)).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(true)
    }

    async fn create_access_key(
        &self,
        key: &AccessKeyRecord,
        max_per_client: usize,
    ) -> Result<AccessKeyInsert, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        // The client row lock serialises parallel creations for one client,
        // so the count below cannot be passed by two at once.
        let active: Option<Uuid> = sqlx::query_scalar(
            "SELECT id FROM api_clients WHERE id = $1 AND revoked_at IS NULL FOR UPDATE",
        )
        .bind(key.client_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?;
        if active.is_none() {
            return Ok(AccessKeyInsert::ClientNotFound);
        }
        let held: i64 = sqlx::query_scalar("SELECT count(*) FROM access_keys WHERE client_id = $1")
            .bind(key.client_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(map_err)?;
        if held >= i64::try_from(max_per_client).unwrap_or(i64::MAX) {
            return Ok(AccessKeyInsert::LimitReached);
        }
        sqlx::query(
            "INSERT INTO access_keys (id, client_id, wrapped_secret, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&key.id)
        .bind(key.client_id)
        .bind(&key.wrapped_secret)
        .bind(key.created_at)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        // Other processes learn the new id (see service::cache, known credentials).
        notify(&mut tx, Change::ClientCreated(key.client_id)).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(AccessKeyInsert::Created)
    }

    async fn access_key(
        &self,
        id: &str,
    ) -> Result<Option<(AccessKeyRecord, ClientRecord)>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {ACCESS_KEY_COLUMNS}, c.* FROM access_keys ak \
             JOIN api_clients c ON c.id = ak.client_id WHERE ak.id = $1"
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
             WHERE $1::uuid IS NULL OR ak.client_id = $1 ORDER BY ak.created_at, ak.id"
        ))
        .bind(client_id)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter().map(access_key_from_row).collect()
    }

    async fn delete_access_key(&self, client_id: Uuid, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        let delete = sqlx::query("DELETE FROM access_keys WHERE id = $1 AND client_id = $2")
            .bind(id)
            .bind(client_id);
        if !changed_one(&mut tx, delete).await? {
            return Ok(false);
        }
        notify(&mut tx, Change::Client(client_id)).await?;
        tx.commit().await.map_err(map_err)?;
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
             WHERE client_id = $1 AND client_token = $2 AND created_at >= $3",
        )
        .bind(client_id)
        .bind(token)
        .bind(since)
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
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        sqlx::query("DELETE FROM kms_idempotent_batches WHERE created_at < $1")
            .bind(since)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        sqlx::query(
            "INSERT INTO kms_idempotent_batches (client_id, client_token, fingerprint, blobs, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (client_id, client_token) DO NOTHING",
        )
        .bind(batch.client_id)
        .bind(&batch.client_token)
        .bind(&batch.fingerprint)
        .bind(serde_json::to_string(&batch.blobs).map_err(backend)?)
        .bind(batch.created_at)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        let row = sqlx::query(
            "SELECT client_id, client_token, fingerprint, blobs, created_at FROM kms_idempotent_batches \
             WHERE client_id = $1 AND client_token = $2",
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
        let tx = self.pool.begin().await.map_err(map_err)?;
        let guarded = sqlx::query(
            "UPDATE keys SET min_decryption_version = $2 \
             WHERE id = $1 AND $2 >= 1 AND $2 <= primary_version AND state <> 'Deleted'",
        )
        .bind(id)
        .bind(to_i32(min)?);
        change_key(tx, guarded, id).await
    }

    async fn version_usage(
        &self,
        key_id: Uuid,
        since: DateTime<Utc>,
    ) -> Result<Vec<VersionUsage>, StoreError> {
        let rows = sqlx::query(
            "SELECT key_version, \
             count(*) FILTER (WHERE outcome = 'Success') AS decrypts, \
             max(event_time) FILTER (WHERE outcome = 'Success') AS last_decrypt, \
             count(*) FILTER (WHERE outcome = 'KeyVersionRetired') AS refused \
             FROM audit_log WHERE key_id = $1 AND operation = 'Decrypt' AND event_time >= $2 \
             AND key_version IS NOT NULL GROUP BY key_version ORDER BY key_version",
        )
        .bind(key_id)
        .bind(since)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter()
            .map(|row| {
                let version: i32 = row.try_get("key_version").map_err(map_err)?;
                let decrypts: i64 = row.try_get("decrypts").map_err(map_err)?;
                let refused: i64 = row.try_get("refused").map_err(map_err)?;
                Ok(VersionUsage {
                    version: u32::try_from(version)
                        .map_err(|_| corrupt("audit_log.key_version"))?,
                    decrypts: u64::try_from(decrypts).unwrap_or(0),
                    last_decrypt: row.try_get("last_decrypt").map_err(map_err)?,
                    refused_retired: u64::try_from(refused).unwrap_or(0),
                })
            })
            .collect()
    }

    async fn video_secret(&self, video_id: &str) -> Result<Option<VideoSecretRecord>, StoreError> {
        let sql = format!("SELECT {VIDEO_COLUMNS} FROM kms_video_secrets WHERE video_id = $1");
        let row = sqlx::query(&sql)
            .bind(video_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(video_from_row).transpose()
    }

    async fn put_video_secret(
        &self,
        v: &VideoSecretRecord,
    ) -> Result<VideoSecretRecord, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        sqlx::query(
            "INSERT INTO kms_video_secrets (video_id, wrapped_secret, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (video_id) DO NOTHING",
        )
        .bind(&v.video_id)
        .bind(&v.wrapped_secret)
        .bind(v.created_at)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        let sql = format!("SELECT {VIDEO_COLUMNS} FROM kms_video_secrets WHERE video_id = $1");
        let row = sqlx::query(&sql)
            .bind(&v.video_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        video_from_row(&row)
    }

    async fn schedule_video_shred(
        &self,
        video_id: &str,
        date: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<VideoSecretRecord, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        let sql = format!(
            "INSERT INTO kms_video_secrets (video_id, wrapped_secret, created_at, shred_date) \
             VALUES ($1, NULL, $3, $2) ON CONFLICT (video_id) DO UPDATE SET shred_date = $2 \
             WHERE kms_video_secrets.shredded_at IS NULL RETURNING {VIDEO_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(video_id)
            .bind(date)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?;
        let record = match row {
            Some(row) => {
                notify(&mut tx, Change::Video(video_id.to_owned())).await?;
                video_from_row(&row)?
            }
            // Shredded already: nothing to schedule.
            None => {
                let sql =
                    format!("SELECT {VIDEO_COLUMNS} FROM kms_video_secrets WHERE video_id = $1");
                let row = sqlx::query(&sql)
                    .bind(video_id)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(map_err)?;
                video_from_row(&row)?
            }
        };
        tx.commit().await.map_err(map_err)?;
        Ok(record)
    }

    async fn cancel_video_shred(
        &self,
        video_id: &str,
    ) -> Result<Option<VideoSecretRecord>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        let sql = format!(
            "UPDATE kms_video_secrets SET shred_date = NULL \
             WHERE video_id = $1 AND shred_date IS NOT NULL AND shredded_at IS NULL RETURNING {VIDEO_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(video_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?;
        let Some(row) = row else { return Ok(None) };
        notify(&mut tx, Change::Video(video_id.to_owned())).await?;
        tx.commit().await.map_err(map_err)?;
        video_from_row(&row).map(Some)
    }

    async fn videos_due_shred(&self, now: DateTime<Utc>) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT video_id FROM kms_video_secrets \
             WHERE shred_date IS NOT NULL AND shredded_at IS NULL AND shred_date <= $1 ORDER BY shred_date",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)
    }

    async fn shred_video(&self, video_id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        let guarded = sqlx::query(
            "UPDATE kms_video_secrets SET wrapped_secret = NULL, shredded_at = $2 \
             WHERE video_id = $1 AND shred_date IS NOT NULL AND shred_date <= $2 AND shredded_at IS NULL",
        )
        .bind(video_id)
        .bind(now);
        if !changed_one(&mut tx, guarded).await? {
            return Ok(false);
        }
        notify(&mut tx, Change::Video(video_id.to_owned())).await?;
        tx.commit().await.map_err(map_err)?;
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
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        // Locks every version and access key row, so no rotation or new
        // access key lands between count and update.
        let stored: i64 =
            sqlx::query_scalar("SELECT count(*) FROM (SELECT 1 FROM key_versions FOR UPDATE) v")
                .fetch_one(&mut *tx)
                .await
                .map_err(map_err)?;
        if stored != i64::try_from(versions.len()).unwrap_or(i64::MAX) {
            return Err(StoreError::Conflict);
        }
        // New access keys lock their client row; lock every client so none
        // can be added meanwhile.
        sqlx::query("SELECT 1 FROM api_clients FOR UPDATE")
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        let stored: i64 =
            sqlx::query_scalar("SELECT count(*) FROM (SELECT 1 FROM access_keys FOR UPDATE) a")
                .fetch_one(&mut *tx)
                .await
                .map_err(map_err)?;
        if stored != i64::try_from(access_keys.len()).unwrap_or(i64::MAX) {
            return Err(StoreError::Conflict);
        }
        for k in access_keys {
            let update = sqlx::query("UPDATE access_keys SET wrapped_secret = $2 WHERE id = $1")
                .bind(&k.id)
                .bind(&k.wrapped_secret);
            if !changed_one(&mut tx, update).await? {
                return Err(StoreError::Conflict);
            }
        }
        let guarded = sqlx::query(
            "UPDATE root_key_check SET check_value = $2 WHERE id = 1 AND check_value = $1",
        )
        .bind(old_check)
        .bind(new_check);
        if !changed_one(&mut tx, guarded).await? {
            return Err(StoreError::Conflict);
        }
        for v in versions {
            let update = sqlx::query(
                "UPDATE key_versions SET wrapped_material = $3 WHERE key_id = $1 AND version = $2",
            )
            .bind(v.key_id)
            .bind(to_i32(v.version)?)
            .bind(&v.wrapped);
            if !changed_one(&mut tx, update).await? {
                return Err(StoreError::Conflict);
            }
        }
        // No video secret may be made or shredded meanwhile (reads go on).
        sqlx::query("LOCK TABLE kms_video_secrets IN EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
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
            let update = sqlx::query(
                "UPDATE kms_video_secrets SET wrapped_secret = $2 \
                 WHERE video_id = $1 AND wrapped_secret IS NOT NULL",
            )
            .bind(&v.video_id)
            .bind(&v.wrapped_secret);
            if !changed_one(&mut tx, update).await? {
                return Err(StoreError::Conflict);
            }
        }
        notify(&mut tx, Change::Reset).await?;
        tx.commit().await.map_err(map_err)
    }

    fn pool_stats(&self) -> Option<(u32, usize)> {
        Some((self.pool.size(), self.pool.num_idle()))
    }

    async fn heartbeat(&self, payload: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        notify(&mut tx, Change::Heartbeat(payload.to_owned())).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn watch_changes(&self) -> Result<mpsc::Receiver<Change>, StoreError> {
        listen(self.pool.clone(), CHANNEL, |payload| match payload {
            Some(p) => parse_change(p),
            None => Change::Reset,
        })
        .await
        .map_err(StoreError::from)
    }
}

/// The columns of an audit batch, for one `INSERT … SELECT FROM UNNEST`;
/// text as [`CopyRows`](foundation::db::copy::CopyRows) stores it.
struct AuditColumns {
    ids: Vec<Uuid>,
    times: Vec<DateTime<Utc>>,
    clients: Vec<Option<Uuid>>,
    ops: Vec<String>,
    keys: Vec<Option<Uuid>>,
    versions: Vec<Option<i32>>,
    contexts: Vec<Option<String>>,
    outcomes: Vec<String>,
    request_ids: Vec<String>,
    details: Vec<Option<String>>,
    protocols: Vec<Option<String>>,
    access_keys: Vec<Option<String>>,
    writers: Vec<Option<Uuid>>,
    writer_seqs: Vec<Option<i64>>,
    prevs: Vec<Option<Vec<u8>>>,
    hashes: Vec<Option<Vec<u8>>>,
}

/// Appends a batch of audit records in one binary `COPY`, all or none.
async fn copy_audit(pool: &PgPool, records: &[AuditRecord]) -> Result<(), sqlx::Error> {
    use sqlx::postgres::PgPoolCopyExt;
    let mut rows = foundation::db::copy::CopyRows::new();
    for r in records {
        let version = r
            .key_version
            .map(|v| i32::try_from(v).map_err(|e| sqlx::Error::Encode(Box::new(e))))
            .transpose()?;
        let context = r.encryption_context.as_ref().map(storable_context_json);
        let detail = r.detail.as_ref().map(|d| d.to_string());
        let link = r.link.as_ref();
        rows.row(16)
            .uuid(Some(r.id))
            .timestamptz(r.time)
            .uuid(r.client_id)
            .text(Some(r.operation.as_str()))
            .uuid(r.key_id)
            .int4(version)
            .jsonb(context.as_deref())
            .text(Some(&r.outcome))
            .text(Some(&r.request_id))
            .jsonb(detail.as_deref())
            .text(r.protocol.as_deref())
            .text(r.access_key_id.as_deref())
            .uuid(link.map(|l| l.writer))
            .int8(
                link.map(|l| foundation::db::to_i64(l.seq))
                    .transpose()
                    .map_err(|e| sqlx::Error::Encode(Box::new(e)))?,
            )
            .bytea(link.map(|l| &l.prev[..]))
            .bytea(link.map(|l| &l.hash[..]));
    }
    let mut copy = pool
        .copy_in_raw(
            "COPY audit_log (id, event_time, client_id, operation, key_id, key_version, \
             encryption_context, outcome, request_id, detail, protocol, access_key_id, \
             writer_id, writer_seq, prev_hash, row_hash) FROM STDIN (FORMAT binary)",
        )
        .await?;
    copy.send(rows.finish()).await?;
    copy.finish().await?;
    Ok(())
}

impl AuditColumns {
    fn of(records: &[AuditRecord]) -> Result<Self, StoreError> {
        let n = records.len();
        let mut c = AuditColumns {
            ids: Vec::with_capacity(n),
            times: Vec::with_capacity(n),
            clients: Vec::with_capacity(n),
            ops: Vec::with_capacity(n),
            keys: Vec::with_capacity(n),
            versions: Vec::with_capacity(n),
            contexts: Vec::with_capacity(n),
            outcomes: Vec::with_capacity(n),
            request_ids: Vec::with_capacity(n),
            details: Vec::with_capacity(n),
            protocols: Vec::with_capacity(n),
            access_keys: Vec::with_capacity(n),
            writers: Vec::with_capacity(n),
            writer_seqs: Vec::with_capacity(n),
            prevs: Vec::with_capacity(n),
            hashes: Vec::with_capacity(n),
        };
        for r in records {
            c.ids.push(r.id);
            c.times.push(r.time);
            c.clients.push(r.client_id);
            c.ops.push(r.operation.as_str().to_owned());
            c.keys.push(r.key_id);
            c.versions.push(r.key_version.map(to_i32).transpose()?);
            c.contexts
                .push(r.encryption_context.as_ref().map(storable_context_json));
            c.outcomes.push(storable(&r.outcome));
            c.request_ids.push(storable(&r.request_id));
            c.details.push(r.detail.as_ref().map(|d| d.to_string()));
            c.protocols.push(r.protocol.as_deref().map(storable));
            c.access_keys.push(r.access_key_id.as_deref().map(storable));
            let link = r.link.as_ref();
            c.writers.push(link.map(|l| l.writer));
            c.writer_seqs
                .push(link.map(|l| foundation::db::to_i64(l.seq)).transpose()?);
            c.prevs.push(link.map(|l| l.prev.to_vec()));
            c.hashes.push(link.map(|l| l.hash.to_vec()));
        }
        Ok(c)
    }

    /// Inserts the records not stored yet, in one statement: arrays unnested
    /// server-side.
    async fn insert_missing(&self, pool: &PgPool) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO audit_log (id, event_time, client_id, operation, key_id, key_version, \
             encryption_context, outcome, request_id, detail, protocol, access_key_id, \
             writer_id, writer_seq, prev_hash, row_hash) \
             SELECT id, t, c, op, k, v, ctx::jsonb, o, rid, d::jsonb, p, ak, w, ws, ph, rh FROM UNNEST(\
               $1::uuid[], $2::timestamptz[], $3::uuid[], $4::text[], $5::uuid[], $6::int[], \
               $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], \
               $13::uuid[], $14::int8[], $15::bytea[], $16::bytea[]) \
               AS u(id, t, c, op, k, v, ctx, o, rid, d, p, ak, w, ws, ph, rh) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&self.ids)
        .bind(&self.times)
        .bind(&self.clients)
        .bind(&self.ops)
        .bind(&self.keys)
        .bind(&self.versions)
        .bind(&self.contexts)
        .bind(&self.outcomes)
        .bind(&self.request_ids)
        .bind(&self.details)
        .bind(&self.protocols)
        .bind(&self.access_keys)
        .bind(&self.writers)
        .bind(&self.writer_seqs)
        .bind(&self.prevs)
        .bind(&self.hashes)
        .execute(pool)
        .await?;
        Ok(())
    }
}

fn batch_from_row(row: &PgRow) -> Result<IdempotentBatch, StoreError> {
    let blobs: String = row.try_get("blobs").map_err(map_err)?;
    Ok(IdempotentBatch {
        client_id: row.try_get("client_id").map_err(map_err)?,
        client_token: row.try_get("client_token").map_err(map_err)?,
        fingerprint: row.try_get("fingerprint").map_err(map_err)?,
        blobs: serde_json::from_str(&blobs).map_err(backend)?,
        created_at: row.try_get("created_at").map_err(map_err)?,
    })
}

/// An audit record from a row of `AUDIT_COLUMNS`.
fn audit_from_row(row: &sqlx::postgres::PgRow) -> Result<AuditRecord, StoreError> {
    let op: String = row.try_get("operation").map_err(map_err)?;
    let version: Option<i32> = row.try_get("key_version").map_err(map_err)?;
    let ctx: Option<String> = row.try_get("ctx").map_err(map_err)?;
    let detail: Option<String> = row.try_get("detail").map_err(map_err)?;
    Ok(AuditRecord {
        id: row.try_get("id").map_err(map_err)?,
        time: row.try_get("event_time").map_err(map_err)?,
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
    encryption_context::text AS ctx, outcome, request_id, detail::text AS detail, protocol, \
    access_key_id, writer_id, writer_seq, prev_hash, row_hash";
