//! Following the KMS's change feed (`GET /v1/changes`), so a master key
//! disabled or scheduled for deletion, or this broker's own client revoked,
//! stops key releases from the cache at once instead of when entries
//! expire. The broker reads no KMS table: the KMS tells it.

use std::sync::{Arc, Weak};
use std::time::Duration;

use kms_api::api::ChangeEvent as Event;
use kms_api::client::ChangeStream;
use uuid::Uuid;

use super::{Broker, Inner};

/// No byte for this long (the KMS pings every 15 s): the stream is dead.
const SILENCE: Duration = Duration::from_secs(45);
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Runs until the broker is dropped: connects, applies events, and after
/// any break connects again (dropping the cache, since events may have been
/// missed meanwhile).
pub(super) async fn follow(broker: Weak<Inner>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(inner) = broker.upgrade() else {
            return;
        };
        let opened = inner.kms.changes().await;
        drop(inner);
        match opened {
            Ok(stream) => {
                backoff = Duration::from_millis(100);
                if let Err(why) = read(&broker, stream).await {
                    tracing::warn!(error = %why, "the KMS change feed broke; reconnecting");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot follow the KMS change feed; retrying");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn read(broker: &Weak<Inner>, mut stream: ChangeStream) -> Result<(), String> {
    let mut own_client = None;
    loop {
        let event = match tokio::time::timeout(SILENCE, stream.next()).await {
            Err(_) => return Err("no ping for 45 s".into()),
            Ok(Err(e)) => return Err(e.to_string()),
            Ok(Ok(None)) => return Err("the KMS closed it".into()),
            Ok(Ok(Some(event))) => event,
        };
        let Some(inner) = broker.upgrade() else {
            return Ok(());
        };
        apply(&Broker(inner), event, &mut own_client);
    }
}

fn apply(broker: &Broker, event: Event, own_client: &mut Option<Uuid>) {
    match event {
        Event::Ready { client_id } => {
            *own_client = Some(client_id);
            // Whatever happened while we were not listening.
            broker.drop_cached_keys();
        }
        Event::Key { key_id } => {
            let n = broker.0.keys.drop_master_key(key_id);
            tracing::info!(%key_id, dropped = n, "master key changed at the KMS; cached keys dropped");
        }
        Event::Client { client_id } if Some(client_id) == *own_client => {
            tracing::warn!("this broker's KMS client changed; every cached key dropped");
            broker.drop_cached_keys();
        }
        Event::Video { video_id } => {
            // Entries are found by a salted hash, not by video, and a shred
            // is rare: dropping every cached key is the simple sure way.
            tracing::info!(%video_id, "a video's shred changed at the KMS; every cached key dropped");
            broker.drop_cached_keys();
        }
        Event::Client { .. } | Event::Ping => {}
        Event::Reset => broker.drop_cached_keys(),
    }
}

impl Broker {
    pub(super) fn drop_cached_keys(&self) {
        self.0.keys.clear();
    }

    pub(super) fn follow_kms_changes(&self) {
        tokio::spawn(follow(Arc::downgrade(&self.0)));
    }
}
