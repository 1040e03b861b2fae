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
    /// Overrides of the broker-wide risk limits for this viewer (`None`: the
    /// global one; 0: no limit).
    pub limits: ViewerLimits,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A viewer's own concurrent-stream and address limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ViewerLimits {
    pub max_streams: Option<u32>,
    pub max_addresses_per_token: Option<u32>,
}

impl std::fmt::Debug for ViewerRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewerRecord")
            .field("username", &self.username)
            .field("entitlements", &self.entitlements)
            .field("enabled", &self.enabled)
            .field("limits", &self.limits)
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
    /// A token or viewer revoked by sharing detection.
    AutoRevoke,
    /// An admin ended a playback session.
    EndSession,
    /// A video's playback restrictions set or removed.
    SetPlaybackPolicy,
}

impl BrokerOperation {
    pub const ALL: [Self; 15] = [
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
        Self::AutoRevoke,
        Self::EndSession,
        Self::SetPlaybackPolicy,
    ];

    /// Every operation's name, as audit records and filters spell it.
    pub const NAMES: [&'static str; 15] = {
        let mut out = [""; 15];
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
            Self::AutoRevoke => "AutoRevoke",
            Self::EndSession => "EndSession",
            Self::SetPlaybackPolicy => "SetPlaybackPolicy",
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
    /// Its place in its writer's hash chain: set by the audit writer.
    pub link: Option<foundation::audit::Link>,
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

/// A playback stream (a device, or a token in use) of a viewer, as the
/// concurrent-stream limit counts them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRecord {
    pub id: Uuid,
    pub viewer: String,
    /// The `device` claim, or the token id when there is none.
    pub stream: String,
    pub token_id: String,
    pub address: Option<String>,
    pub started_at: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

/// What a playback call showed that this broker had not confirmed with the
/// database lately: asked in one transaction, serialized per viewer.
#[derive(Debug, Clone)]
pub struct Observation {
    pub viewer: String,
    pub token_id: String,
    pub now: DateTime<Utc>,
    /// Take part in the concurrent-stream count.
    pub stream: Option<StreamObservation>,
    /// The caller's address unit (see `service::risk`), for binding and
    /// sharing detection.
    pub address: Option<String>,
    /// A video this token fetched a key or playlist for.
    pub video_id: Option<String>,
    /// Count addresses and videos seen since this (sharing detection).
    pub window_start: DateTime<Utc>,
    /// Global limits (0: none); a viewer account's own override them.
    pub max_streams: u32,
    pub max_addresses_per_token: u32,
}

#[derive(Debug, Clone)]
pub struct StreamObservation {
    /// The `device` claim, or the token id.
    pub stream: String,
    /// Streams last seen before this are idle: they no longer count.
    pub idle_before: DateTime<Utc>,
    /// Where it plays from (an address unit), shown to admins.
    pub address: Option<String>,
}

/// The store's answer to an [`Observation`]. Nothing was recorded when
/// something was refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservationOutcome {
    /// Active streams of the viewer, when the stream limit refused.
    pub stream_limit: Option<u32>,
    /// The token already had its limit of addresses.
    pub address_limit: Option<u32>,
    /// What sharing detection counts, before this observation was recorded
    /// and after. Observations of one viewer are serialized, so exactly one
    /// sees a count cross a limit.
    pub before: ShareCounts,
    pub after: ShareCounts,
}

/// Distinct address units and videos within the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShareCounts {
    pub token_addresses: u32,
    pub viewer_addresses: u32,
    pub token_videos: u32,
    pub viewer_videos: u32,
}

/// Refreshes the last use of streams and token addresses already recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heartbeat {
    Stream {
        viewer: String,
        stream: String,
        at: DateTime<Utc>,
    },
    Address {
        token_id: String,
        address: String,
        at: DateTime<Utc>,
    },
}

/// A video's playback restrictions: the page origins its keys, licences and
/// playlists may be fetched from (`none`: no Origin or Referer at all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoPolicy {
    pub video_id: String,
    pub allowed_origins: Vec<String>,
    pub updated_at: DateTime<Utc>,
}
