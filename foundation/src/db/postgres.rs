//! PostgreSQL: the production database, which several processes share.
//! Changes travel with NOTIFY, heard through [`listen`].

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use tokio::sync::mpsc;

use super::{backend, StoreError};

/// The whole system's schema (KMS and broker), so processes sharing one
/// database agree on it whichever starts first.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// Connects a pool of up to `max_connections` and applies the migrations.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, StoreError> {
    let options = PgConnectOptions::from_str(url).map_err(backend)?;
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .map_err(backend)?;
    MIGRATOR.run(&pool).await.map_err(backend)?;
    Ok(pool)
}

/// Connects a small pool for an offline reader (`vodkms audit verify`):
/// no migrations, and every transaction read-only, so an auditor's
/// read-only role works and nothing can be written.
pub async fn connect_read_only(url: &str) -> Result<PgPool, StoreError> {
    let options = PgConnectOptions::from_str(url)
        .map_err(backend)?
        .options([("default_transaction_read_only", "on")]);
    PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .map_err(backend)
}

/// Listens on `channel` with its own connection, reconnecting when it drops.
/// `map` turns each payload into a message; `None` after a reconnect, since
/// notifications may have been missed meanwhile.
pub async fn listen<T: Send + 'static>(
    pool: PgPool,
    channel: &'static str,
    map: impl Fn(Option<&str>) -> T + Send + 'static,
) -> Result<mpsc::Receiver<T>, StoreError> {
    let connect = move || {
        let pool = pool.clone();
        async move {
            let mut l = PgListener::connect_with(&pool).await?;
            l.listen(channel).await?;
            Ok::<_, sqlx::Error>(l)
        }
    };
    let mut listener = Some(connect().await.map_err(backend)?);
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        loop {
            let message = match listener.as_mut() {
                Some(l) => match l.try_recv().await {
                    Ok(Some(n)) => map(Some(n.payload())),
                    // Connection lost: keep serving what is cached (the
                    // database is where changes happen) and reconnect.
                    Ok(None) | Err(_) => {
                        tracing::warn!(channel, "change listener lost the database; reconnecting");
                        listener = None;
                        continue;
                    }
                },
                None => match connect().await {
                    Ok(l) => {
                        listener = Some(l);
                        map(None)
                    }
                    Err(_) => {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                },
            };
            if tx.send(message).await.is_err() {
                return; // the service is gone
            }
        }
    });
    Ok(rx)
}

/// Stores a signed audit checkpoint; a retried one is already there.
pub async fn append_checkpoint(
    pool: &PgPool,
    cp: &crate::audit::Checkpoint,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_checkpoints (writer_id, number, trail, writer_seq, head, signed_at, \
         prev_signature, signature, last) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (writer_id, number) DO NOTHING",
    )
    .bind(cp.writer)
    .bind(super::to_i64(cp.number)?)
    .bind(&cp.trail)
    .bind(super::to_i64(cp.seq)?)
    .bind(&cp.head)
    .bind(cp.time)
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
    pool: &PgPool,
    trail: &str,
) -> Result<Vec<crate::audit::Checkpoint>, StoreError> {
    use sqlx::Row;
    let rows = sqlx::query(
        "SELECT writer_id, number, trail, writer_seq, head, signed_at, prev_signature, signature, \
         last \
         FROM audit_checkpoints WHERE trail = $1 ORDER BY writer_id, number",
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
                time: r.try_get("signed_at").map_err(backend)?,
                prev_signature: r.try_get("prev_signature").map_err(backend)?,
                signature: r.try_get("signature").map_err(backend)?,
                last: r.try_get("last").map_err(backend)?,
            })
        })
        .collect()
}
