//! Domain records shared by the store and the service. No secrets in plain form:
//! master keys appear only wrapped, tokens only as digests.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::crypto::{EncryptionContext, TokenDigest};

/// Outcome of an audited call: `Success`, or the error code that refused it.
pub use foundation::audit::{add_detail, OUTCOME_SUCCESS};
pub use kms_api::{Role, Roles};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyState {
    Enabled,
    Disabled,
    PendingDeletion,
    Deleted,
}

impl KeyState {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Enabled => "Enabled",
            Self::Disabled => "Disabled",
            Self::PendingDeletion => "PendingDeletion",
            Self::Deleted => "Deleted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "Enabled" => Self::Enabled,
            "Disabled" => Self::Disabled,
            "PendingDeletion" => Self::PendingDeletion,
            "Deleted" => Self::Deleted,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: Uuid,
    pub aliases: Vec<String>,
    pub description: String,
    pub state: KeyState,
    pub primary_version: u32,
    pub rotation_period_days: Option<u32>,
    pub last_rotated_at: DateTime<Utc>,
    pub deletion_date: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// Blobs sealed under an older version are refused (`KeyVersionRetired`).
    pub min_decryption_version: u32,
    /// Data keys minted with a `video_id` context are bound to that video's
    /// secret (blob format v2), so the video can be crypto-shredded.
    pub per_video_keys: bool,
}

impl KeyRecord {
    pub fn next_rotation(&self) -> Option<DateTime<Utc>> {
        self.rotation_period_days
            .map(|d| self.last_rotated_at + chrono::Duration::days(i64::from(d)))
    }
}

/// A master key version as stored: material wrapped under the root key.
#[derive(Clone, PartialEq, Eq)]
pub struct VersionRecord {
    pub key_id: Uuid,
    pub version: u32,
    pub wrapped: Vec<u8>,
    pub created_at: DateTime<Utc>,
}

impl std::fmt::Debug for VersionRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VersionRecord")
            .field("key_id", &self.key_id)
            .field("version", &self.version)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRecord {
    pub id: Uuid,
    pub name: String,
    pub roles: Roles,
    /// `None`: every key. `Some`: only these key ids.
    pub key_ids: Option<Vec<Uuid>>,
    pub token_digest: TokenDigest,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// An API client's access key for the signed cloud doors, as stored: the
/// secret only wrapped under the root key.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessKeyRecord {
    pub id: String,
    pub client_id: Uuid,
    pub wrapped_secret: Vec<u8>,
    pub created_at: DateTime<Utc>,
}

impl std::fmt::Debug for AccessKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKeyRecord")
            .field("id", &self.id)
            .field("client_id", &self.client_id)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// What became of a request to store a new access key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessKeyInsert {
    Created,
    /// No such client, or it is revoked.
    ClientNotFound,
    /// The client already holds the most access keys allowed.
    LimitReached,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Operation {
    CreateKey,
    RotateKey,
    DisableKey,
    EnableKey,
    ScheduleKeyDeletion,
    CancelKeyDeletion,
    DeleteKey,
    GenerateDataKey,
    GenerateDataKeyWithoutPlaintext,
    /// Up to 1000 data keys in one call, optionally idempotent by ClientToken.
    GenerateDataKeys,
    Decrypt,
    ReEncrypt,
    /// Caller-given plaintext (at most 4 KiB) sealed under a master key.
    Encrypt,
    /// Random bytes from the KMS; no key involved.
    GenerateRandom,
    CreateClient,
    RevokeClient,
    /// Every master key version re-wrapped under a new root key (offline).
    RekeyRoot,
    CreateAlias,
    DeleteAlias,
    /// Automatic rotation switched on or off, or its period changed.
    UpdateRotationPolicy,
    CreateAccessKey,
    DeleteAccessKey,
    /// A signed request refused before its operation was known to be
    /// audited (e.g. a bad signature on DescribeKey).
    Authenticate,
    /// A key's MinDecryptionVersion set (versions retired, or brought back).
    RetireVersions,
    /// A video's shred scheduled (or done at once with a window of 0).
    ScheduleVideoShred,
    CancelVideoShred,
    /// A video's secret destroyed: its data keys can never be opened again.
    ShredVideo,
}

impl Operation {
    pub const ALL: [Operation; 27] = [
        Self::CreateKey,
        Self::RotateKey,
        Self::DisableKey,
        Self::EnableKey,
        Self::ScheduleKeyDeletion,
        Self::CancelKeyDeletion,
        Self::DeleteKey,
        Self::GenerateDataKey,
        Self::GenerateDataKeyWithoutPlaintext,
        Self::GenerateDataKeys,
        Self::Decrypt,
        Self::ReEncrypt,
        Self::Encrypt,
        Self::GenerateRandom,
        Self::CreateClient,
        Self::RevokeClient,
        Self::RekeyRoot,
        Self::CreateAlias,
        Self::DeleteAlias,
        Self::UpdateRotationPolicy,
        Self::CreateAccessKey,
        Self::DeleteAccessKey,
        Self::Authenticate,
        Self::RetireVersions,
        Self::ScheduleVideoShred,
        Self::CancelVideoShred,
        Self::ShredVideo,
    ];

    /// Every operation's name, as audit records and filters spell it.
    pub const NAMES: [&'static str; 27] = {
        let mut out = [""; 27];
        let mut i = 0;
        while i < out.len() {
            out[i] = Self::ALL[i].as_str();
            i += 1;
        }
        out
    };

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::CreateKey => "CreateKey",
            Self::RotateKey => "RotateKey",
            Self::DisableKey => "DisableKey",
            Self::EnableKey => "EnableKey",
            Self::ScheduleKeyDeletion => "ScheduleKeyDeletion",
            Self::CancelKeyDeletion => "CancelKeyDeletion",
            Self::DeleteKey => "DeleteKey",
            Self::GenerateDataKey => "GenerateDataKey",
            Self::GenerateDataKeyWithoutPlaintext => "GenerateDataKeyWithoutPlaintext",
            Self::GenerateDataKeys => "GenerateDataKeys",
            Self::Decrypt => "Decrypt",
            Self::ReEncrypt => "ReEncrypt",
            Self::Encrypt => "Encrypt",
            Self::GenerateRandom => "GenerateRandom",
            Self::CreateClient => "CreateClient",
            Self::RevokeClient => "RevokeClient",
            Self::RekeyRoot => "RekeyRoot",
            Self::CreateAlias => "CreateAlias",
            Self::DeleteAlias => "DeleteAlias",
            Self::UpdateRotationPolicy => "UpdateRotationPolicy",
            Self::CreateAccessKey => "CreateAccessKey",
            Self::DeleteAccessKey => "DeleteAccessKey",
            Self::Authenticate => "Authenticate",
            Self::RetireVersions => "RetireVersions",
            Self::ScheduleVideoShred => "ScheduleVideoShred",
            Self::CancelVideoShred => "CancelVideoShred",
            Self::ShredVideo => "ShredVideo",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AuditRecord {
    pub id: Uuid,
    pub time: DateTime<Utc>,
    /// `None` for unauthenticated callers and for the server's own background work.
    pub client_id: Option<Uuid>,
    pub operation: Operation,
    pub key_id: Option<Uuid>,
    pub key_version: Option<u32>,
    pub encryption_context: Option<EncryptionContext>,
    pub outcome: String,
    pub request_id: String,
    /// Extra facts (e.g. the source key of a re-encrypt); never secret.
    pub detail: Option<serde_json::Value>,
    /// The cloud door of a signed request (`aws`, `alibaba`, `tencent`).
    pub protocol: Option<String>,
    /// The access key a signed request named (never its secret).
    pub access_key_id: Option<String>,
    /// Its place in its writer's hash chain: set by the audit writer, not
    /// by the request that made the record.
    #[serde(skip)]
    pub link: Option<foundation::audit::Link>,
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub key_id: Option<Uuid>,
    pub client_id: Option<Uuid>,
    pub access_key_id: Option<String>,
    pub operation: Option<Operation>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Only records with a sequence number below this (pagination, newest first).
    pub before_seq: Option<i64>,
    pub limit: u32,
}

/// What changed, so other processes can drop their cached copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Key(Uuid),
    Client(Uuid),
    /// A video's secret changed (shred scheduled, cancelled or done).
    Video(String),
    /// Notifications may have been missed: drop every cached entry.
    Reset,
    /// A new client: nothing cached can be stale, but its token digest is
    /// new (see `service::cache`, known clients).
    ClientCreated(Uuid),
    /// A process's heartbeat, back through the change feed (see
    /// `service::freshness`).
    Heartbeat(String),
}

/// A video's secret as stored: wrapped under the root key, `None` once
/// shredded (the row stays as a tombstone).
#[derive(Clone, PartialEq, Eq)]
pub struct VideoSecretRecord {
    pub video_id: String,
    pub wrapped_secret: Option<Vec<u8>>,
    pub created_at: DateTime<Utc>,
    /// When a scheduled shred happens (cancellable until then).
    pub shred_date: Option<DateTime<Utc>>,
    pub shredded_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for VideoSecretRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoSecretRecord")
            .field("video_id", &self.video_id)
            .field("shred_date", &self.shred_date)
            .field("shredded_at", &self.shredded_at)
            .finish_non_exhaustive()
    }
}

/// Decrypts of one master key version in a window, from the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionUsage {
    pub version: u32,
    pub decrypts: u64,
    pub last_decrypt: Option<DateTime<Utc>>,
    /// Decrypts refused because the version was retired.
    pub refused_retired: u64,
}

/// Data keys minted in one batch under a caller's `ClientToken`: a retry
/// within a day gets the same keys (opened again from these blobs), so a
/// retried transcoding job never publishes two different keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotentBatch {
    pub client_id: Uuid,
    pub client_token: String,
    /// SHA-256 of what was asked (key, spec, count, context): the same token
    /// with another request is refused.
    pub fingerprint: Vec<u8>,
    /// The blobs' text form, in order. Never a plaintext key.
    pub blobs: Vec<String>,
    pub created_at: DateTime<Utc>,
}
