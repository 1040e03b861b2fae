//! PostgreSQL backend of the broker store. It shares the system's migrations
//! with the KMS, so both may use one database.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use foundation::db::backend;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{Postgres, QueryBuilder, Row};
use tokio::sync::mpsc;

use super::{storable, BrokerStore, ChainRow, Checkpoint, RevocationChange, StoreError};
use crate::model::{
    BrokerAuditFilter, BrokerAuditRecord, BrokerOperation, ContentKeyRecord, Heartbeat,
    Observation, ObservationOutcome, Revocation, RevocationKind, RevocationRow, SessionRecord,
    ShareCounts, StreamRecord, VideoPolicy, ViewerLimits, ViewerRecord, TOMBSTONE_DAYS,
};

const CHANNEL: &str = "vodkms_broker_changes";
/// The change payload `Policy:VIDEO` names a video policy that changed.
const POLICY_PAYLOAD: &str = "Policy";

#[derive(Clone)]
pub struct PgBrokerStore {
    pool: PgPool,
}

impl std::fmt::Debug for PgBrokerStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgBrokerStore")
    }
}

impl PgBrokerStore {
    /// Connects and applies the system's migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = foundation::db::postgres::connect(url, 8).await?;
        Ok(Self { pool })
    }

    /// On a pool opened elsewhere (a read-only one, for `vodkms audit`).
    pub fn with_pool(pool: PgPool) -> Self {
        Self { pool }
    }
}

fn map_err(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        if db.constraint() == Some("broker_viewers_pkey") {
            return StoreError::Conflict;
        }
    }
    backend(e)
}

fn content_key_from_row(row: &PgRow) -> Result<ContentKeyRecord, StoreError> {
    let kid: Vec<u8> = row.try_get("kid").map_err(map_err)?;
    Ok(ContentKeyRecord {
        kid: kid
            .try_into()
            .map_err(|_| corrupt("broker_content_keys.kid"))?,
        video_id: row.try_get("video_id").map_err(map_err)?,
        ciphertext_blob: row.try_get("ciphertext_blob").map_err(map_err)?,
        client_id: row.try_get("client_id").map_err(map_err)?,
        created_at: row.try_get("created_at").map_err(map_err)?,
    })
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Backend(format!("unreadable value in {what}").into())
}

fn viewer_from_row(row: &PgRow) -> Result<ViewerRecord, StoreError> {
    let entitlements: String = row.try_get("entitlements").map_err(map_err)?;
    Ok(ViewerRecord {
        username: row.try_get("username").map_err(map_err)?,
        password_hash: row.try_get("password_hash").map_err(map_err)?,
        entitlements: serde_json::from_str(&entitlements)
            .map_err(|_| corrupt("broker_viewers.entitlements"))?,
        enabled: row.try_get("enabled").map_err(map_err)?,
        limits: ViewerLimits {
            max_streams: limit_from(row.try_get("max_streams").map_err(map_err)?)?,
            max_addresses_per_token: limit_from(
                row.try_get("max_addresses_per_token").map_err(map_err)?,
            )?,
        },
        created_at: row.try_get("created_at").map_err(map_err)?,
        updated_at: row.try_get("updated_at").map_err(map_err)?,
    })
}

fn limit_from(v: Option<i32>) -> Result<Option<u32>, StoreError> {
    v.map(|n| u32::try_from(n).map_err(|_| corrupt("a viewer limit")))
        .transpose()
}

fn limit_to(v: Option<u32>) -> Option<i32> {
    v.map(|n| i32::try_from(n).unwrap_or(i32::MAX))
}

fn count(n: i64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn stream_from_row(row: &PgRow) -> Result<StreamRecord, StoreError> {
    Ok(StreamRecord {
        id: row.try_get("id").map_err(map_err)?,
        viewer: row.try_get("viewer").map_err(map_err)?,
        stream: row.try_get("stream").map_err(map_err)?,
        token_id: row.try_get("token_id").map_err(map_err)?,
        address: row.try_get("address").map_err(map_err)?,
        started_at: row.try_get("started_at").map_err(map_err)?,
        last_seen: row.try_get("last_seen").map_err(map_err)?,
    })
}

const STREAM_COLUMNS: &str = "id, viewer, stream, token_id, address, started_at, last_seen";

fn policy_from_row(row: &PgRow) -> Result<VideoPolicy, StoreError> {
    let origins: String = row.try_get("allowed_origins").map_err(map_err)?;
    Ok(VideoPolicy {
        video_id: row.try_get("video_id").map_err(map_err)?,
        allowed_origins: serde_json::from_str(&origins)
            .map_err(|_| corrupt("broker_video_policies.allowed_origins"))?,
        updated_at: row.try_get("updated_at").map_err(map_err)?,
    })
}

const POLICY_COLUMNS: &str = "video_id, allowed_origins::text AS allowed_origins, updated_at";

fn revocation_from_row(row: &PgRow) -> Result<Revocation, StoreError> {
    let kind: String = row.try_get("kind").map_err(map_err)?;
    Ok(Revocation {
        kind: RevocationKind::parse(&kind).ok_or_else(|| corrupt("broker_revocations.kind"))?,
        subject: row.try_get("subject").map_err(map_err)?,
        revoked_at: row.try_get("revoked_at").map_err(map_err)?,
        expires_at: row.try_get("expires_at").map_err(map_err)?,
    })
}

fn revocation_row(row: &PgRow) -> Result<RevocationRow, StoreError> {
    Ok(RevocationRow {
        revocation: revocation_from_row(row)?,
        seq: row.try_get("seq").map_err(map_err)?,
        lifted: row.try_get("lifted").map_err(map_err)?,
    })
}

/// Serializes revocation writers (held to commit), so seq order is commit
/// order: a reader that has seen seq N has seen every change before it.
async fn lock_revocations(tx: &mut sqlx::Transaction<'_, Postgres>) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock(7602276453211906)")
        .execute(&mut **tx)
        .await
        .map_err(map_err)?;
    Ok(())
}

const REVOCATION_COLUMNS: &str = "kind, subject, revoked_at, expires_at, seq, lifted";

fn session_from_row(row: &PgRow) -> Result<SessionRecord, StoreError> {
    Ok(SessionRecord {
        jti: row.try_get("jti").map_err(map_err)?,
        viewer: row.try_get("viewer").map_err(map_err)?,
        started_at: row.try_get("started_at").map_err(map_err)?,
        last_used_at: row.try_get("last_used_at").map_err(map_err)?,
        ends_at: row.try_get("ends_at").map_err(map_err)?,
    })
}

const VIEWER_COLUMNS: &str =
    "username, password_hash, entitlements::text AS entitlements, enabled, created_at, updated_at, \
     max_streams, max_addresses_per_token";

#[async_trait]
impl BrokerStore for PgBrokerStore {
    fn pool_stats(&self) -> Option<(u32, usize)> {
        Some((self.pool.size(), self.pool.num_idle()))
    }

    async fn put_content_key(
        &self,
        key: &ContentKeyRecord,
    ) -> Result<ContentKeyRecord, StoreError> {
        sqlx::query(
            "INSERT INTO broker_content_keys (kid, video_id, ciphertext_blob, client_id, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (kid) DO NOTHING",
        )
        .bind(&key.kid[..])
        .bind(&key.video_id)
        .bind(&key.ciphertext_blob)
        .bind(key.client_id)
        .bind(key.created_at)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        self.content_keys(&[key.kid])
            .await?
            .pop()
            .ok_or_else(|| corrupt("broker_content_keys"))
    }

    async fn content_keys(&self, kids: &[[u8; 16]]) -> Result<Vec<ContentKeyRecord>, StoreError> {
        let kids: Vec<Vec<u8>> = kids.iter().map(|k| k.to_vec()).collect();
        let rows = sqlx::query(
            "SELECT kid, video_id, ciphertext_blob, client_id, created_at FROM broker_content_keys \
             WHERE kid = ANY($1)",
        )
        .bind(&kids)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter().map(content_key_from_row).collect()
    }

    async fn replace_content_key_blob(
        &self,
        kid: [u8; 16],
        old_blob: &str,
        new_blob: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE broker_content_keys SET ciphertext_blob = $3 WHERE kid = $1 AND ciphertext_blob = $2",
        )
        .bind(&kid[..])
        .bind(old_blob)
        .bind(new_blob)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn list_content_keys(
        &self,
        video_id: Option<&str>,
    ) -> Result<Vec<ContentKeyRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT kid, video_id, ciphertext_blob, client_id, created_at FROM broker_content_keys \
             WHERE $1::text IS NULL OR video_id = $1 ORDER BY created_at, kid",
        )
        .bind(video_id)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter().map(content_key_from_row).collect()
    }

    async fn delete_content_keys(&self, video_id: &str) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM broker_content_keys WHERE video_id = $1")
            .bind(video_id)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(done.rows_affected())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn create_viewer(&self, v: &ViewerRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO broker_viewers (username, password_hash, entitlements, enabled, created_at, updated_at, \
             max_streams, max_addresses_per_token) VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7, $8)",
        )
        .bind(&v.username)
        .bind(&v.password_hash)
        .bind(serde_json::to_string(&v.entitlements).map_err(backend)?)
        .bind(v.enabled)
        .bind(v.created_at)
        .bind(v.updated_at)
        .bind(limit_to(v.limits.max_streams))
        .bind(limit_to(v.limits.max_addresses_per_token))
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn viewer(&self, username: &str) -> Result<Option<ViewerRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {VIEWER_COLUMNS} FROM broker_viewers WHERE username = $1"
        ))
        .bind(username)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        row.as_ref().map(viewer_from_row).transpose()
    }

    async fn list_viewers(&self) -> Result<Vec<ViewerRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {VIEWER_COLUMNS} FROM broker_viewers ORDER BY username"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter().map(viewer_from_row).collect()
    }

    async fn update_viewer(
        &self,
        v: &ViewerRecord,
        end_tokens: Option<&Revocation>,
    ) -> Result<Option<i64>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        let done = sqlx::query(
            "UPDATE broker_viewers SET password_hash = $2, entitlements = $3::jsonb, enabled = $4, \
             updated_at = $5, max_streams = $6, max_addresses_per_token = $7 WHERE username = $1",
        )
        .bind(&v.username)
        .bind(&v.password_hash)
        .bind(serde_json::to_string(&v.entitlements).map_err(backend)?)
        .bind(v.enabled)
        .bind(v.updated_at)
        .bind(limit_to(v.limits.max_streams))
        .bind(limit_to(v.limits.max_addresses_per_token))
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        if done.rows_affected() != 1 {
            return Ok(None);
        }
        let seq = match end_tokens {
            Some(r) => insert_revocation(&mut tx, r).await?,
            None => 0,
        };
        tx.commit().await.map_err(map_err)?;
        Ok(Some(seq))
    }

    async fn delete_viewer(
        &self,
        username: &str,
        end_tokens: &Revocation,
    ) -> Result<Option<i64>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        let done = sqlx::query("DELETE FROM broker_viewers WHERE username = $1")
            .bind(username)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        if done.rows_affected() != 1 {
            return Ok(None);
        }
        let seq = insert_revocation(&mut tx, end_tokens).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(Some(seq))
    }

    async fn put_revocation(&self, r: &Revocation) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        let seq = insert_revocation(&mut tx, r).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(seq)
    }

    async fn delete_revocation(
        &self,
        kind: RevocationKind,
        subject: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        lock_revocations(&mut tx).await?;
        let seq: Option<i64> = sqlx::query_scalar(
            "UPDATE broker_revocations SET lifted = true, seq = nextval('broker_revocation_seq'), \
             expires_at = $3 WHERE kind = $1 AND subject = $2 AND NOT lifted RETURNING seq",
        )
        .bind(kind.as_str())
        .bind(subject)
        .bind(now + chrono::Duration::days(TOMBSTONE_DAYS))
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?;
        notify(&mut tx, kind, subject).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(seq)
    }

    async fn revocation(
        &self,
        kind: RevocationKind,
        subject: &str,
    ) -> Result<Option<RevocationRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {REVOCATION_COLUMNS} FROM broker_revocations WHERE kind = $1 AND subject = $2"
        ))
        .bind(kind.as_str())
        .bind(subject)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        row.as_ref().map(revocation_row).transpose()
    }

    async fn revocations(&self, now: DateTime<Utc>) -> Result<Vec<Revocation>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {REVOCATION_COLUMNS} FROM broker_revocations \
             WHERE NOT lifted AND (expires_at IS NULL OR expires_at > $1)"
        ))
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter().map(revocation_from_row).collect()
    }

    async fn revocations_since(
        &self,
        after: i64,
        now: DateTime<Utc>,
    ) -> Result<Vec<RevocationRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {REVOCATION_COLUMNS} FROM broker_revocations \
             WHERE seq > $1 AND (expires_at IS NULL OR expires_at > $2) ORDER BY seq"
        ))
        .bind(after)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter().map(revocation_row).collect()
    }

    async fn purge_expired(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM broker_revocations WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        sqlx::query("DELETE FROM broker_sessions WHERE ends_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        let before = now - chrono::Duration::days(super::RISK_RETENTION_DAYS);
        for sql in [
            "DELETE FROM broker_streams WHERE last_seen < $1",
            "DELETE FROM broker_token_addresses WHERE last_seen < $1",
            "DELETE FROM broker_token_videos WHERE first_seen < $1",
        ] {
            sqlx::query(sql)
                .bind(before)
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
        }
        Ok(())
    }

    async fn watch_revocations(&self) -> Result<mpsc::Receiver<RevocationChange>, StoreError> {
        foundation::db::postgres::listen(self.pool.clone(), CHANNEL, |payload| {
            payload
                .and_then(|p| {
                    let (kind, subject) = p.split_once(':')?;
                    if kind == POLICY_PAYLOAD {
                        return Some(RevocationChange::VideoPolicy(subject.to_owned()));
                    }
                    Some(RevocationChange::One(
                        RevocationKind::parse(kind)?,
                        subject.to_owned(),
                    ))
                })
                .unwrap_or(RevocationChange::Reset)
        })
        .await
    }

    async fn observe_playback(&self, o: &Observation) -> Result<ObservationOutcome, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        // One viewer at a time, on every broker: two devices starting at once
        // must not both take the last stream.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7602276453211907))")
            .bind(&o.viewer)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        let own: Option<(Option<i32>, Option<i32>)> = sqlx::query_as(
            "SELECT max_streams, max_addresses_per_token FROM broker_viewers WHERE username = $1",
        )
        .bind(&o.viewer)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?;
        let (own_streams, own_addresses) = own.unwrap_or_default();
        let max_streams = limit_from(own_streams)?.unwrap_or(o.max_streams);
        let max_addresses = limit_from(own_addresses)?.unwrap_or(o.max_addresses_per_token);
        let mut outcome = ObservationOutcome {
            before: share_counts(&mut tx, o).await?,
            ..ObservationOutcome::default()
        };

        if let Some(address) = &o.address {
            let known = sqlx::query(
                "UPDATE broker_token_addresses SET last_seen = GREATEST(last_seen, $3) \
                 WHERE token_id = $1 AND address = $2",
            )
            .bind(&o.token_id)
            .bind(address)
            .bind(o.now)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?
            .rows_affected()
                > 0;
            if !known {
                if max_addresses > 0 {
                    let n: i64 = sqlx::query_scalar(
                        "SELECT count(*) FROM broker_token_addresses WHERE token_id = $1",
                    )
                    .bind(&o.token_id)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(map_err)?;
                    if count(n) >= max_addresses {
                        outcome.address_limit = Some(max_addresses);
                        return Ok(outcome);
                    }
                }
                sqlx::query(
                    "INSERT INTO broker_token_addresses (token_id, address, viewer, first_seen, last_seen) \
                     VALUES ($1, $2, $3, $4, $4)",
                )
                .bind(&o.token_id)
                .bind(address)
                .bind(&o.viewer)
                .bind(o.now)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            }
        }

        if let Some(st) = &o.stream {
            sqlx::query("DELETE FROM broker_streams WHERE viewer = $1 AND last_seen < $2")
                .bind(&o.viewer)
                .bind(st.idle_before)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            let known = sqlx::query(
                "UPDATE broker_streams SET last_seen = GREATEST(last_seen, $3), token_id = $4, \
                 address = COALESCE($5, address) WHERE viewer = $1 AND stream = $2",
            )
            .bind(&o.viewer)
            .bind(&st.stream)
            .bind(o.now)
            .bind(&o.token_id)
            .bind(&st.address)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?
            .rows_affected()
                > 0;
            if !known {
                if max_streams > 0 {
                    let n: i64 =
                        sqlx::query_scalar("SELECT count(*) FROM broker_streams WHERE viewer = $1")
                            .bind(&o.viewer)
                            .fetch_one(&mut *tx)
                            .await
                            .map_err(map_err)?;
                    if count(n) >= max_streams {
                        outcome.stream_limit = Some(max_streams);
                        return Ok(outcome);
                    }
                }
                sqlx::query(
                    "INSERT INTO broker_streams (id, viewer, stream, token_id, address, started_at, last_seen) \
                     VALUES ($1, $2, $3, $4, $5, $6, $6)",
                )
                .bind(uuid::Uuid::now_v7())
                .bind(&o.viewer)
                .bind(&st.stream)
                .bind(&o.token_id)
                .bind(&st.address)
                .bind(o.now)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            }
        }

        if let Some(video_id) = &o.video_id {
            sqlx::query(
                "INSERT INTO broker_token_videos (token_id, video_id, viewer, first_seen) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(&o.token_id)
            .bind(video_id)
            .bind(&o.viewer)
            .bind(o.now)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        }

        outcome.after = share_counts(&mut tx, o).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(outcome)
    }

    async fn heartbeat(&self, beats: &[Heartbeat]) -> Result<(), StoreError> {
        let (mut viewers, mut streams, mut stream_times) = (Vec::new(), Vec::new(), Vec::new());
        let (mut tokens, mut addresses, mut address_times) = (Vec::new(), Vec::new(), Vec::new());
        for beat in beats {
            match beat {
                Heartbeat::Stream { viewer, stream, at } => {
                    viewers.push(viewer.as_str());
                    streams.push(stream.as_str());
                    stream_times.push(*at);
                }
                Heartbeat::Address {
                    token_id,
                    address,
                    at,
                } => {
                    tokens.push(token_id.as_str());
                    addresses.push(address.as_str());
                    address_times.push(*at);
                }
            }
        }
        if !streams.is_empty() {
            sqlx::query(
                "UPDATE broker_streams s SET last_seen = GREATEST(s.last_seen, b.at) \
                 FROM (SELECT viewer, stream, max(at) AS at FROM UNNEST($1::text[], $2::text[], $3::timestamptz[]) \
                 AS u(viewer, stream, at) GROUP BY viewer, stream) b \
                 WHERE s.viewer = b.viewer AND s.stream = b.stream",
            )
            .bind(&viewers)
            .bind(&streams)
            .bind(&stream_times)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        }
        if !tokens.is_empty() {
            sqlx::query(
                "UPDATE broker_token_addresses t SET last_seen = GREATEST(t.last_seen, b.at) \
                 FROM (SELECT token_id, address, max(at) AS at FROM UNNEST($1::text[], $2::text[], $3::timestamptz[]) \
                 AS u(token_id, address, at) GROUP BY token_id, address) b \
                 WHERE t.token_id = b.token_id AND t.address = b.address",
            )
            .bind(&tokens)
            .bind(&addresses)
            .bind(&address_times)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        }
        Ok(())
    }

    async fn streams(
        &self,
        viewer: &str,
        active_since: DateTime<Utc>,
    ) -> Result<Vec<StreamRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {STREAM_COLUMNS} FROM broker_streams WHERE viewer = $1 AND last_seen >= $2 \
             ORDER BY started_at, id"
        ))
        .bind(viewer)
        .bind(active_since)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter().map(stream_from_row).collect()
    }

    async fn stream(&self, id: uuid::Uuid) -> Result<Option<StreamRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {STREAM_COLUMNS} FROM broker_streams WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        row.as_ref().map(stream_from_row).transpose()
    }

    async fn delete_stream(&self, id: uuid::Uuid) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM broker_streams WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn put_video_policy(&self, p: &VideoPolicy) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        sqlx::query(
            "INSERT INTO broker_video_policies (video_id, allowed_origins, updated_at) \
             VALUES ($1, $2::jsonb, $3) ON CONFLICT (video_id) DO UPDATE SET \
             allowed_origins = EXCLUDED.allowed_origins, updated_at = EXCLUDED.updated_at",
        )
        .bind(&p.video_id)
        .bind(serde_json::to_string(&p.allowed_origins).map_err(backend)?)
        .bind(p.updated_at)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        notify_payload(&mut tx, format!("{POLICY_PAYLOAD}:{}", p.video_id)).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn delete_video_policy(&self, video_id: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        let done = sqlx::query("DELETE FROM broker_video_policies WHERE video_id = $1")
            .bind(video_id)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        notify_payload(&mut tx, format!("{POLICY_PAYLOAD}:{video_id}")).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn video_policy(&self, video_id: &str) -> Result<Option<VideoPolicy>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {POLICY_COLUMNS} FROM broker_video_policies WHERE video_id = $1"
        ))
        .bind(video_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        row.as_ref().map(policy_from_row).transpose()
    }

    async fn video_policies(&self) -> Result<Vec<VideoPolicy>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {POLICY_COLUMNS} FROM broker_video_policies ORDER BY video_id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter().map(policy_from_row).collect()
    }

    async fn upsert_sessions(&self, sessions: &[SessionRecord]) -> Result<(), StoreError> {
        if sessions.is_empty() {
            return Ok(());
        }
        let jtis: Vec<&str> = sessions.iter().map(|s| s.jti.as_str()).collect();
        let viewers: Vec<&str> = sessions.iter().map(|s| s.viewer.as_str()).collect();
        let started: Vec<DateTime<Utc>> = sessions.iter().map(|s| s.started_at).collect();
        let used: Vec<DateTime<Utc>> = sessions.iter().map(|s| s.last_used_at).collect();
        let ends: Vec<DateTime<Utc>> = sessions.iter().map(|s| s.ends_at).collect();
        // DISTINCT ON: one batch may carry the same session twice.
        sqlx::query(
            "INSERT INTO broker_sessions (jti, viewer, started_at, last_used_at, ends_at) \
             SELECT DISTINCT ON (j) j, v, s, u, e FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], \
               $4::timestamptz[], $5::timestamptz[]) AS x(j, v, s, u, e) ORDER BY j, u DESC \
             ON CONFLICT (jti) DO UPDATE SET last_used_at = GREATEST(broker_sessions.last_used_at, EXCLUDED.last_used_at)",
        )
        .bind(&jtis)
        .bind(&viewers)
        .bind(&started)
        .bind(&used)
        .bind(&ends)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn session(&self, jti: &str) -> Result<Option<SessionRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT jti, viewer, started_at, last_used_at, ends_at FROM broker_sessions WHERE jti = $1",
        )
        .bind(jti)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn append_audit(&self, records: &[BrokerAuditRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let n = records.len();
        let mut ids = Vec::with_capacity(n);
        let mut times = Vec::with_capacity(n);
        let mut ops = Vec::with_capacity(n);
        let mut outcomes = Vec::with_capacity(n);
        let mut request_ids = Vec::with_capacity(n);
        let mut viewers = Vec::with_capacity(n);
        let mut videos = Vec::with_capacity(n);
        let mut keys = Vec::with_capacity(n);
        let mut versions = Vec::with_capacity(n);
        let mut tokens = Vec::with_capacity(n);
        let mut clients = Vec::with_capacity(n);
        let mut addresses = Vec::with_capacity(n);
        let mut details = Vec::with_capacity(n);
        let mut writers = Vec::with_capacity(n);
        let mut writer_seqs = Vec::with_capacity(n);
        let mut prevs = Vec::with_capacity(n);
        let mut hashes = Vec::with_capacity(n);
        for r in records {
            writers.push(r.link.map(|l| l.writer));
            writer_seqs.push(r.link.map(|l| foundation::db::to_i64(l.seq)).transpose()?);
            prevs.push(r.link.map(|l| l.prev.to_vec()));
            hashes.push(r.link.map(|l| l.hash.to_vec()));
            ids.push(r.id);
            times.push(r.time);
            ops.push(r.operation.as_str());
            outcomes.push(storable(&r.outcome));
            request_ids.push(storable(&r.request_id));
            viewers.push(r.viewer.as_deref().map(storable));
            videos.push(r.video_id.as_deref().map(storable));
            keys.push(r.key_id);
            versions.push(r.key_version.map(|v| i32::try_from(v).unwrap_or(i32::MAX)));
            tokens.push(r.token_id.as_deref().map(storable));
            clients.push(r.client_id);
            addresses.push(r.address.as_deref().map(storable));
            details.push(r.detail.as_ref().map(|d| storable(&d.to_string())));
        }
        sqlx::query(
            "INSERT INTO broker_audit (id, event_time, operation, outcome, request_id, viewer, video_id, \
             key_id, key_version, token_id, client_id, address, detail, writer_id, writer_seq, \
             prev_hash, row_hash) \
             SELECT id, t, op, o, rid, vw, vid, k, kv, tok, c, a, d::jsonb, w, ws, ph, rh FROM UNNEST(\
               $1::uuid[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
               $8::uuid[], $9::int[], $10::text[], $11::uuid[], $12::text[], $13::text[], \
               $14::uuid[], $15::int8[], $16::bytea[], $17::bytea[]) \
               AS u(id, t, op, o, rid, vw, vid, k, kv, tok, c, a, d, w, ws, ph, rh) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&ids)
        .bind(&times)
        .bind(&ops)
        .bind(&outcomes)
        .bind(&request_ids)
        .bind(&viewers)
        .bind(&videos)
        .bind(&keys)
        .bind(&versions)
        .bind(&tokens)
        .bind(&clients)
        .bind(&addresses)
        .bind(&details)
        .bind(&writers)
        .bind(&writer_seqs)
        .bind(&prevs)
        .bind(&hashes)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn append_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        Ok(foundation::db::postgres::append_checkpoint(&self.pool, checkpoint).await?)
    }

    async fn audit_checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        Ok(foundation::db::postgres::checkpoints(&self.pool, crate::service::AUDIT_TRAIL).await?)
    }

    async fn audit_page(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<(i64, ChainRow)>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT seq, {AUDIT_COLUMNS} FROM broker_audit WHERE seq > $1 ORDER BY seq LIMIT $2"
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

    async fn query_audit(
        &self,
        f: &BrokerAuditFilter,
    ) -> Result<Vec<(i64, BrokerAuditRecord)>, StoreError> {
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!(
            "SELECT seq, {AUDIT_COLUMNS} FROM broker_audit WHERE TRUE"
        ));
        if let Some(v) = &f.viewer {
            q.push(" AND viewer = ").push_bind(storable(v));
        }
        if let Some(v) = &f.video_id {
            q.push(" AND video_id = ").push_bind(storable(v));
        }
        if let Some(op) = f.operation {
            q.push(" AND operation = ").push_bind(op.as_str());
        }
        if let Some(o) = &f.outcome {
            q.push(" AND outcome = ").push_bind(storable(o));
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
}

/// Inserts or replaces a revocation and announces it, inside `tx`; its seq.
async fn insert_revocation(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    r: &Revocation,
) -> Result<i64, StoreError> {
    lock_revocations(tx).await?;
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO broker_revocations (kind, subject, revoked_at, expires_at, seq, lifted) \
         VALUES ($1, $2, $3, $4, nextval('broker_revocation_seq'), false) \
         ON CONFLICT (kind, subject) DO UPDATE SET revoked_at = EXCLUDED.revoked_at, \
         expires_at = EXCLUDED.expires_at, seq = EXCLUDED.seq, lifted = false RETURNING seq",
    )
    .bind(r.kind.as_str())
    .bind(&r.subject)
    .bind(r.revoked_at)
    .bind(r.expires_at)
    .fetch_one(&mut **tx)
    .await
    .map_err(map_err)?;
    notify(tx, r.kind, &r.subject).await?;
    Ok(seq)
}

async fn notify(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    kind: RevocationKind,
    subject: &str,
) -> Result<(), StoreError> {
    notify_payload(tx, format!("{}:{subject}", kind.as_str())).await
}

async fn notify_payload(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    payload: String,
) -> Result<(), StoreError> {
    // NOTIFY payloads are limited to 8000 bytes; a longer subject makes
    // everyone reload everything instead.
    let payload = if payload.len() < 7000 {
        payload
    } else {
        "reset".to_owned()
    };
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(payload)
        .execute(&mut **tx)
        .await
        .map_err(map_err)?;
    Ok(())
}

/// What sharing detection counts for `o`'s token and viewer, inside `tx`.
async fn share_counts(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    o: &Observation,
) -> Result<ShareCounts, StoreError> {
    let (token_addresses, viewer_addresses, token_videos, viewer_videos): (i64, i64, i64, i64) =
        sqlx::query_as(
            "SELECT \
         (SELECT count(*) FROM broker_token_addresses WHERE token_id = $1 AND last_seen >= $3), \
         (SELECT count(DISTINCT address) FROM broker_token_addresses WHERE viewer = $2 AND last_seen >= $3), \
         (SELECT count(*) FROM broker_token_videos WHERE token_id = $1 AND first_seen >= $3), \
         (SELECT count(DISTINCT video_id) FROM broker_token_videos WHERE viewer = $2 AND first_seen >= $3)",
        )
        .bind(&o.token_id)
        .bind(&o.viewer)
        .bind(o.window_start)
        .fetch_one(&mut **tx)
        .await
        .map_err(map_err)?;
    Ok(ShareCounts {
        token_addresses: count(token_addresses),
        viewer_addresses: count(viewer_addresses),
        token_videos: count(token_videos),
        viewer_videos: count(viewer_videos),
    })
}

/// A broker audit record from a row of `AUDIT_COLUMNS`.
fn audit_from_row(row: &sqlx::postgres::PgRow) -> Result<BrokerAuditRecord, StoreError> {
    let op: String = row.try_get("operation").map_err(map_err)?;
    let version: Option<i32> = row.try_get("key_version").map_err(map_err)?;
    let detail: Option<String> = row.try_get("detail").map_err(map_err)?;
    Ok(BrokerAuditRecord {
        id: row.try_get("id").map_err(map_err)?,
        time: row.try_get("event_time").map_err(map_err)?,
        operation: BrokerOperation::parse(&op).ok_or_else(|| corrupt("broker_audit.operation"))?,
        outcome: row.try_get("outcome").map_err(map_err)?,
        request_id: row.try_get("request_id").map_err(map_err)?,
        viewer: row.try_get("viewer").map_err(map_err)?,
        video_id: row.try_get("video_id").map_err(map_err)?,
        key_id: row.try_get("key_id").map_err(map_err)?,
        key_version: version.and_then(|v| u32::try_from(v).ok()),
        token_id: row.try_get("token_id").map_err(map_err)?,
        client_id: row.try_get("client_id").map_err(map_err)?,
        address: row.try_get("address").map_err(map_err)?,
        detail: detail
            .map(|d| serde_json::from_str(&d))
            .transpose()
            .map_err(|_| corrupt("broker_audit.detail"))?,
        link: foundation::db::link_from_columns(
            row.try_get("writer_id").map_err(map_err)?,
            row.try_get("writer_seq").map_err(map_err)?,
            row.try_get("prev_hash").map_err(map_err)?,
            row.try_get("row_hash").map_err(map_err)?,
        ),
    })
}

/// The audit columns `audit_from_row` reads.
const AUDIT_COLUMNS: &str = "id, event_time, operation, outcome, request_id, viewer, video_id, \
    key_id, key_version, token_id, client_id, address, detail::text AS detail, writer_id, \
    writer_seq, prev_hash, row_hash";
