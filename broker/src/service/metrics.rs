//! What the broker adds to /metrics: playback decisions by outcome, the key
//! cache, the audit writer and the database pool. Outcome labels are error
//! codes (a fixed set); never viewer, video or key ids.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use foundation::http::metrics::{Exposition, Label};

use super::Broker;

#[derive(Default)]
pub(super) struct Counters {
    /// (operation, outcome) → count.
    outcomes: Mutex<HashMap<(&'static str, &'static str), u64>>,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    /// (scope, rule) → tokens or viewers revoked by sharing detection.
    risk_revocations: Mutex<HashMap<(&'static str, &'static str), u64>>,
}

impl Counters {
    pub fn outcome(&self, operation: &'static str, outcome: &'static str) {
        let mut map = self.outcomes.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry((operation, outcome)).or_insert(0) += 1;
    }

    pub fn risk_revocation(&self, scope: &'static str, rule: &'static str) {
        let mut map = self
            .risk_revocations
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *map.entry((scope, rule)).or_insert(0) += 1;
    }
}

impl Broker {
    /// Sets the broker's own metrics, at each scrape.
    pub fn write_metrics(&self, out: &Exposition<'_>) {
        let c = &self.0.counters;
        let rows: Vec<((&'static str, &'static str), u64)> = c
            .outcomes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect();
        for ((op, outcome), n) in rows {
            out.labeled(
                "vodkms_broker_decisions_total",
                "counter",
                "Key releases and playlist deliveries, by outcome (Success or the refusal's code).",
                vec![Label::new("operation", op), Label::new("outcome", outcome)],
                n,
            );
        }
        let revoked: Vec<((&'static str, &'static str), u64)> = c
            .risk_revocations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect();
        for ((scope, rule), n) in revoked {
            out.labeled(
                "vodkms_broker_sharing_revocations_total",
                "counter",
                "Tokens (scope Token) and viewers (scope Viewer) revoked by sharing detection, by what was counted.",
                vec![Label::new("scope", scope), Label::new("rule", rule)],
                n,
            );
        }
        if let Some(webhook) = &self.0.risk.webhook {
            let s = &webhook.stats;
            for (result, n) in [
                ("delivered", &s.delivered),
                ("failed_attempt", &s.failed_attempts),
                ("dropped", &s.dropped),
            ] {
                out.labeled(
                    "vodkms_broker_risk_webhook_total",
                    "counter",
                    "Risk events sent to the webhook: delivered, attempts that failed (retried), dropped (queue full).",
                    vec![Label::new("result", result)],
                    n.load(Ordering::Relaxed),
                );
            }
        }
        out.metric(
            "vodkms_broker_key_cache_hits_total",
            "counter",
            "Key releases answered from the key cache.",
            c.cache_hits.load(Ordering::Relaxed),
        );
        out.metric(
            "vodkms_broker_key_cache_misses_total",
            "counter",
            "Key releases that asked the KMS.",
            c.cache_misses.load(Ordering::Relaxed),
        );
        out.metric(
            "vodkms_broker_revocations",
            "gauge",
            "Revocations held in memory (tokens, viewers, videos).",
            self.0.revoked.len(),
        );
        out.metric(
            "vodkms_broker_key_cache_max_age_seconds",
            "gauge",
            "Longest a key learnt from the KMS is released without asking it again.",
            self.0.config.key_cache_ttl.as_secs(),
        );
        out.metric(
            "vodkms_broker_audit_buffered",
            "gauge",
            "Audit records waiting to be written.",
            self.audit_buffered(),
        );
        out.metric(
            "vodkms_broker_audit_flush_failures_total",
            "counter",
            "Audit batch writes the database refused (retried).",
            self.0.audit.flush_failures(),
        );
        if let Some((size, idle)) = self.0.store.pool_stats() {
            out.metric(
                "vodkms_broker_db_connections",
                "gauge",
                "Open database connections.",
                size,
            );
            out.metric(
                "vodkms_broker_db_connections_idle",
                "gauge",
                "Idle database connections.",
                idle,
            );
        }
    }
}
