//! Risk events to the app backend: a JSON `RiskEvent` POSTed to
//! `--risk-webhook-url`, signed like Stripe's webhooks so the receiver can
//! check it came from us and is fresh:
//!
//! `X-Vodkms-Signature: t=UNIX_SECONDS,v1=HEX(HMAC-SHA256(secret, "t.BODY"))`
//!
//! Delivered in the background, retried with backoff until a 2xx answer or
//! `MAX_ATTEMPTS`; every attempt is re-signed with its own time. The event
//! id (also `X-Vodkms-Event-Id`) lets the receiver drop duplicates.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use tokio::sync::mpsc;

use super::risk::WebhookTarget;

pub const SIGNATURE_HEADER: &str = "X-Vodkms-Signature";
pub const EVENT_ID_HEADER: &str = "X-Vodkms-Event-Id";
/// Attempts per event: about two minutes of retries in all.
const MAX_ATTEMPTS: u32 = 8;
const FIRST_RETRY: Duration = Duration::from_millis(500);
const LONGEST_RETRY: Duration = Duration::from_secs(30);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Events waiting to be sent; past it new ones are dropped (and counted).
const QUEUE: usize = 10_000;
/// Events in flight at once.
const CONCURRENT: usize = 16;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RiskEvent {
    pub event_id: uuid::Uuid,
    /// `TokenShared`.
    #[serde(rename = "Type")]
    pub event_type: &'static str,
    pub time: DateTime<Utc>,
    /// `TokenRevoked` or `ViewerRevoked`.
    pub action: &'static str,
    pub viewer: String,
    pub token_id: String,
    pub device: Option<String>,
    /// `Addresses` or `Videos`: what was counted.
    pub rule: &'static str,
    pub seen: u32,
    pub limit: u32,
    pub window_seconds: u64,
    pub address: Option<String>,
    pub video_id: Option<String>,
}

#[derive(Default)]
pub struct WebhookStats {
    pub delivered: AtomicU64,
    pub failed_attempts: AtomicU64,
    pub dropped: AtomicU64,
}

pub struct Webhook {
    queue: mpsc::Sender<RiskEvent>,
    pub stats: Arc<WebhookStats>,
}

/// `t=...,v1=...` for `body` sent at `t`.
pub fn signature(secret: &[u8], t: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    format!("t={t},v1={}", hls::cipher::hex(&digest))
}

impl Webhook {
    /// Starts the sender on the current runtime.
    pub fn start(target: WebhookTarget) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        let (queue, mut events) = mpsc::channel::<RiskEvent>(QUEUE);
        let stats = Arc::new(WebhookStats::default());
        let shared = stats.clone();
        let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENT));
        let target = Arc::new(target);
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (client, target, stats) = (client.clone(), target.clone(), shared.clone());
                tokio::spawn(async move {
                    deliver(&client, &target, &event, &stats).await;
                    drop(permit);
                });
            }
        });
        Ok(Self { queue, stats })
    }

    pub fn send(&self, event: RiskEvent) {
        if self.queue.try_send(event).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("the risk webhook queue is full: an event was dropped");
        }
    }
}

async fn deliver(
    client: &reqwest::Client,
    target: &WebhookTarget,
    event: &RiskEvent,
    stats: &WebhookStats,
) {
    let Ok(body) = serde_json::to_vec(event) else {
        return;
    };
    let mut wait = FIRST_RETRY;
    for attempt in 1..=MAX_ATTEMPTS {
        let t = Utc::now().timestamp();
        let sent = client
            .post(&target.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(
                SIGNATURE_HEADER,
                signature(target.secret.expose_secret(), t, &body),
            )
            .header(EVENT_ID_HEADER, event.event_id.to_string())
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                stats.delivered.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(r) => {
                tracing::warn!(status = %r.status(), attempt, event_id = %event.event_id, "the risk webhook refused an event; retrying")
            }
            Err(e) => {
                tracing::warn!(error = %e, attempt, event_id = %event.event_id, "the risk webhook is unreachable; retrying")
            }
        }
        stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
        if attempt < MAX_ATTEMPTS {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(LONGEST_RETRY);
        }
    }
    tracing::error!(event_id = %event.event_id, "gave up delivering a risk event to the webhook");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_of_time_dot_body() {
        let sig = signature(b"Jefe", 1_700_000_000, b"{}");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"1700000000.{}");
        let want = hls::cipher::hex(&mac.finalize().into_bytes());
        assert_eq!(sig, format!("t=1700000000,v1={want}"));
        assert_ne!(sig, signature(b"Jefe", 1_700_000_001, b"{}"));
    }
}
