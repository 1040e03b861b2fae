//! The KMS's audit records go through the shared pipeline
//! ([`foundation::audit`]) into its store.

use std::sync::Arc;

use async_trait::async_trait;
pub use foundation::audit::{Aggregate, Aggregator, AuditLog, AuditSink};

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
