//! The KMS's audit records go through the shared pipeline
//! ([`foundation::audit`]) into its store.

use std::sync::Arc;

use async_trait::async_trait;
pub use foundation::audit::{Aggregate, Aggregator, AuditLog, AuditSink};
use foundation::audit::{Chained, Checkpoint, CheckpointStore, Link};
use foundation::db::{make_storable, storable_json, storable_time};

use crate::model::AuditRecord;
use crate::store::Store;

/// The KMS writes its records through its store.
pub struct StoreSink(pub Arc<dyn Store>);

#[async_trait]
impl AuditSink<AuditRecord> for StoreSink {
    async fn append(&self, records: &[AuditRecord]) -> Result<(), foundation::db::StoreError> {
        Ok(self.0.append_audit(records).await?)
    }
}

#[async_trait]
impl CheckpointStore for StoreSink {
    async fn append_checkpoint(
        &self,
        checkpoint: &Checkpoint,
    ) -> Result<(), foundation::db::StoreError> {
        Ok(self.0.append_checkpoint(checkpoint).await?)
    }
}

/// Writes `records` at once as a writer of their own, chained and signed
/// as `chain` says: for commands that change keys with no server running
/// (bootstrap, rekey-root).
pub async fn write_directly(
    store: Arc<dyn Store>,
    chain: Option<&foundation::audit::ChainConfig>,
    records: Vec<AuditRecord>,
) -> Result<(), foundation::db::StoreError> {
    let sink = Arc::new(StoreSink(store));
    let n = records.len().max(1);
    let log = match chain {
        Some(chain) => AuditLog::chained(sink.clone(), n, n, TRAIL, sink, chain),
        None => AuditLog::new(sink, n, n),
    };
    for r in records {
        log.record(r);
    }
    log.flush_final().await
}

/// The name of the KMS's trail in checkpoints and exports.
pub const TRAIL: &str = "kms";

/// The KMS's records, chained in their stored form.
impl Chained for AuditRecord {
    fn normalize(&mut self) {
        self.time = storable_time(self.time);
        make_storable(&mut self.outcome);
        make_storable(&mut self.request_id);
        for s in [&mut self.protocol, &mut self.access_key_id]
            .into_iter()
            .flatten()
        {
            make_storable(s);
        }
        if let Some(ctx) = &mut self.encryption_context {
            if ctx
                .iter()
                .any(|(k, v)| k.contains('\0') || v.contains('\0'))
            {
                *ctx = ctx
                    .iter()
                    .map(|(k, v)| (foundation::db::storable(k), foundation::db::storable(v)))
                    .collect();
            }
        }
        if let Some(detail) = &mut self.detail {
            storable_json(detail);
        }
    }

    /// Every field, under fixed names, keys sorted (fields declared in
    /// order, nested JSON sorted): a field added later joins only when set,
    /// so older records keep their hashes.
    fn canonical(&self) -> Vec<u8> {
        #[derive(serde::Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Canonical<'a> {
            access_key_id: Option<&'a str>,
            client_id: Option<uuid::Uuid>,
            detail: Option<foundation::audit::Sorted<'a>>,
            encryption_context: Option<&'a crate::crypto::EncryptionContext>,
            id: uuid::Uuid,
            key_id: Option<uuid::Uuid>,
            key_version: Option<u32>,
            operation: &'a str,
            outcome: &'a str,
            protocol: Option<&'a str>,
            request_id: &'a str,
            time: String,
        }
        serde_json::to_vec(&Canonical {
            access_key_id: self.access_key_id.as_deref(),
            client_id: self.client_id,
            detail: self.detail.as_ref().map(foundation::audit::Sorted),
            encryption_context: self.encryption_context.as_ref(),
            id: self.id,
            key_id: self.key_id,
            key_version: self.key_version,
            operation: self.operation.as_str(),
            outcome: &self.outcome,
            protocol: self.protocol.as_deref(),
            request_id: &self.request_id,
            time: self
                .time
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        })
        .unwrap_or_default()
    }

    fn id(&self) -> uuid::Uuid {
        self.id
    }

    fn recorded_at(&self) -> chrono::DateTime<chrono::Utc> {
        self.time
    }

    fn link(&self) -> Option<&Link> {
        self.link.as_ref()
    }

    fn set_link(&mut self, link: Link) {
        self.link = Some(link);
    }
}

/// The KMS merges refusals of unknown credentials by operation, outcome,
/// key and the door they came through.
impl Aggregate for AuditRecord {
    type Identity<'a> = (
        crate::model::Operation,
        &'a str,
        Option<uuid::Uuid>,
        Option<&'a str>,
    );

    fn identity(&self) -> Self::Identity<'_> {
        (
            self.operation,
            &self.outcome,
            self.key_id,
            self.protocol.as_deref(),
        )
    }

    fn time(&self) -> chrono::DateTime<chrono::Utc> {
        self.time
    }

    fn merged(&mut self, count: u64, last: chrono::DateTime<chrono::Utc>) {
        foundation::audit::add_detail(&mut self.detail, "Count", count);
        foundation::audit::add_detail(&mut self.detail, "LastTime", serde_json::json!(last));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The canonical bytes are already sorted JSON: what an export's reader
    /// rebuilds from them (`canonical_json` of the parsed record) is the same.
    #[test]
    fn canonical_bytes_are_their_own_canonical_json() {
        let r = AuditRecord {
            id: uuid::Uuid::now_v7(),
            time: chrono::Utc::now(),
            client_id: Some(uuid::Uuid::new_v4()),
            operation: crate::model::Operation::ReEncrypt,
            key_id: None,
            key_version: Some(3),
            encryption_context: Some([("z".into(), "1".into()), ("a".into(), "2".into())].into()),
            outcome: "Success".into(),
            request_id: "r".into(),
            detail: Some(serde_json::json!({ "z": [{ "y": 1, "b": 2.5 }], "A": null })),
            protocol: Some("aws".into()),
            access_key_id: None,
            link: None,
        };
        let bytes = r.canonical();
        let parsed: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(foundation::audit::canonical_json(&parsed), bytes);
        assert_eq!(parsed["Operation"], "ReEncrypt");
    }
}
