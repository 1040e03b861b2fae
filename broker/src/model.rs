//! Broker records shared by the store and the service. No secrets in plain
//! form: passwords appear only as argon2id hashes.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

/// A CENC content key: its key id (KID, in the media), the video it belongs
/// to, and its data key's EDK. Never the key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentKeyRecord {
    pub kid: [u8; 16],
    pub video_id: String,
    pub ciphertext_blob: String,
    /// The API client that registered it.
    pub client_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct ViewerRecord {
    pub username: String,
    pub password_hash: String,
    /// Video ids, or `["*"]`.
    pub entitlements: Vec<String>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl std::fmt::Debug for ViewerRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewerRecord")
            .field("username", &self.username)
            .field("entitlements", &self.entitlements)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum RevocationKind {
    /// One token, by `jti`.
    Token,
    /// Every token of a viewer issued at or before the revocation.
    Viewer,
    /// Every key of a video, whoever asks, until lifted.
    Video,
}

impl RevocationKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Token => "Token",
            Self::Viewer => "Viewer",
            Self::Video => "Video",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "Token" => Self::Token,
            "Viewer" => Self::Viewer,
            "Video" => Self::Video,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub kind: RevocationKind,
    pub subject: String,
    pub revoked_at: DateTime<Utc>,
    /// Past this it can refuse nothing more (every token it covered has
    /// expired) and may be forgotten. `None`: until lifted.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A revocation as the change feed reads it: its state, its place in the
/// order of changes (`seq`, higher is later), and whether it was lifted (kept
/// as a tombstone so readers learn of the lift in order too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationRow {
    pub revocation: Revocation,
    pub seq: i64,
    pub lifted: bool,
}

/// How long a lifted revocation is kept as a tombstone.
pub const TOMBSTONE_DAYS: i64 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub jti: String,
    pub viewer: String,
    pub started_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    /// Hard end, whatever the use.
    pub ends_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum BrokerOperation {
    ReleaseKey,
    Login,
    IssueToken,
    CreateViewer,
    UpdateViewer,
    DeleteViewer,
    Revoke,
    LiftRevocation,
    /// A playlist served with a fresh token in its key URIs.
    DeliverPlaylist,
    RegisterContentKey,
    DeleteContentKeys,
    /// A Clear Key licence: the content keys of its KIDs.
    ReleaseLicence,
}

impl BrokerOperation {
    pub const ALL: [Self; 12] = [
        Self::ReleaseKey,
        Self::Login,
        Self::IssueToken,
        Self::CreateViewer,
        Self::UpdateViewer,
        Self::DeleteViewer,
        Self::Revoke,
        Self::LiftRevocation,
        Self::DeliverPlaylist,
        Self::RegisterContentKey,
        Self::DeleteContentKeys,
        Self::ReleaseLicence,
    ];

    /// Every operation's name, as audit records and filters spell it.
    pub const NAMES: [&'static str; 12] = {
        let mut out = [""; 12];
        let mut i = 0;
        while i < out.len() {
            out[i] = Self::ALL[i].as_str();
            i += 1;
        }
        out
    };

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ReleaseKey => "ReleaseKey",
            Self::Login => "Login",
            Self::IssueToken => "IssueToken",
            Self::CreateViewer => "CreateViewer",
            Self::UpdateViewer => "UpdateViewer",
            Self::DeleteViewer => "DeleteViewer",
            Self::Revoke => "Revoke",
            Self::LiftRevocation => "LiftRevocation",
            Self::DeliverPlaylist => "DeliverPlaylist",
            Self::RegisterContentKey => "RegisterContentKey",
            Self::DeleteContentKeys => "DeleteContentKeys",
            Self::ReleaseLicence => "ReleaseLicence",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.as_str() == s)
    }
}

/// One audited broker call: who (viewer, token, client, address) asked for
/// what (video, key version), and how it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerAuditRecord {
    pub id: Uuid,
    pub time: DateTime<Utc>,
    pub operation: BrokerOperation,
    /// `Success`, or the error code that refused the call.
    pub outcome: String,
    pub request_id: String,
    pub viewer: Option<String>,
    pub video_id: Option<String>,
    pub key_id: Option<Uuid>,
    pub key_version: Option<u32>,
    pub token_id: Option<String>,
    /// The API client (admin or issuer) for management calls.
    pub client_id: Option<Uuid>,
    pub address: Option<String>,
    pub detail: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default)]
pub struct BrokerAuditFilter {
    pub viewer: Option<String>,
    pub video_id: Option<String>,
    pub operation: Option<BrokerOperation>,
    pub outcome: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub before_seq: Option<i64>,
    pub limit: u32,
}
