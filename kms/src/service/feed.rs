//! Key and client changes for brokers: a broker caches decrypted keys, and
//! must stop releasing them within a second of a master key being disabled
//! or scheduled for deletion, or of its own client being revoked. It never
//! reads KMS tables, so the KMS tells it: every change this process learns
//! from the store's change feed (its own and other processes') is passed to
//! the subscribers of `GET /v1/changes`.

use tokio::sync::{broadcast, watch};
use uuid::Uuid;

use super::{Caller, Kms, KmsError};
use crate::model::{Change, Role};

/// Changes a slow subscriber may fall behind by before it is told to start
/// over (`FeedEvent::Reset`).
const BACKLOG: usize = 1024;

/// What a subscriber is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedEvent {
    /// Something about this master key changed (state, versions, deletion).
    Key(Uuid),
    /// This client changed (revoked, roles, scope).
    Client(Uuid),
    /// This video's shred was scheduled, cancelled or done: drop its keys.
    Video(String),
    /// Changes may have been missed: drop everything cached.
    Reset,
}

pub(super) struct Feed {
    events: broadcast::Sender<FeedEvent>,
    /// Set when the server shuts down, so open subscriptions end.
    closed: watch::Sender<bool>,
}

impl Feed {
    pub(super) fn new() -> Self {
        Self {
            events: broadcast::channel(BACKLOG).0,
            closed: watch::channel(false).0,
        }
    }

    pub(super) fn publish(&self, change: &Change) {
        let event = match change {
            Change::Key(id) => FeedEvent::Key(*id),
            Change::Client(id) => FeedEvent::Client(*id),
            Change::Video(id) => FeedEvent::Video(id.clone()),
            Change::Reset => FeedEvent::Reset,
            Change::ClientCreated(_) | Change::Heartbeat(_) => return,
        };
        // No subscriber is not an error.
        let _ = self.events.send(event);
    }
}

/// One subscriber's view of the feed.
pub struct Subscription {
    events: broadcast::Receiver<FeedEvent>,
    closed: watch::Receiver<bool>,
    /// The subscriber's own client id.
    pub client_id: Uuid,
}

impl Subscription {
    /// The next event; `None` once the server shuts down. A subscriber that
    /// fell behind gets `Reset`.
    pub async fn next(&mut self) -> Option<FeedEvent> {
        if *self.closed.borrow() {
            return None;
        }
        tokio::select! {
            event = self.events.recv() => match event {
                Ok(e) => Some(e),
                Err(broadcast::error::RecvError::Lagged(_)) => Some(FeedEvent::Reset),
                Err(broadcast::error::RecvError::Closed) => None,
            },
            _ = self.closed.changed() => None,
        }
    }
}

impl Kms {
    /// Subscribes a decrypt (broker) or admin client to key and client
    /// changes.
    pub fn subscribe_changes(&self, caller: &Caller) -> Result<Subscription, KmsError> {
        if caller.require_role(Role::Decrypt).is_err() {
            caller.require_role(Role::Admin)?;
        }
        Ok(Subscription {
            events: self.0.feed.events.subscribe(),
            closed: self.0.feed.closed.subscribe(),
            client_id: caller.client().id,
        })
    }

    /// Ends every subscription (graceful shutdown: they would hold it open).
    pub fn close_change_feed(&self) {
        self.0.feed.closed.send_replace(true);
    }
}
