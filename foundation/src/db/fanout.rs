//! In-process change announcements, for a store no other process shares.

use tokio::sync::{broadcast, mpsc};

/// In-process change announcements: every subscriber hears every change; one
/// that fell behind hears `lagged` instead (drop everything cached).
pub struct Fanout<T: Clone + Send + 'static> {
    sender: broadcast::Sender<T>,
    lagged: T,
}

impl<T: Clone + Send + 'static> Fanout<T> {
    pub fn new(lagged: T) -> Self {
        Self {
            sender: broadcast::channel(1024).0,
            lagged,
        }
    }

    pub fn send(&self, change: T) {
        let _ = self.sender.send(change); // no subscriber: nobody to tell
    }

    pub fn subscribe(&self) -> mpsc::Receiver<T> {
        let mut from = self.sender.subscribe();
        let lagged = self.lagged.clone();
        let (to, rx) = mpsc::channel(1024);
        tokio::spawn(async move {
            loop {
                let change = match from.recv().await {
                    Ok(c) => c,
                    Err(broadcast::error::RecvError::Lagged(_)) => lagged.clone(),
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if to.send(change).await.is_err() {
                    return;
                }
            }
        });
        rx
    }
}
