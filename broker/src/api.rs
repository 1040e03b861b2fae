//! JSON shapes of the broker HTTP API (PascalCase, like the KMS's).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::password::Password;

impl schemars::JsonSchema for Password {
    fn schema_name() -> String {
        "Password".into()
    }

    fn json_schema(g: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
        let mut schema = g.subschema_for::<String>().into_object();
        schema.format = Some("password".into());
        schema.into()
    }

    /// Inline, so the length limits of the fields that hold one apply (in
    /// OpenAPI 3.0 the siblings of a `$ref` are ignored).
    fn is_referenceable() -> bool {
        false
    }
}

impl<'de> Deserialize<'de> for Password {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Zeroizing::new(String::deserialize(d)?);
        Ok(Password::new(text.as_str().to_owned()))
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: Password,
}

/// A minted playback token (login and `/v1/tokens`).
#[derive(Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct TokenResponse {
    pub token: String,
    pub token_id: String,
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("token", &"[REDACTED]")
            .field("token_id", &self.token_id)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct IssueTokenRequest {
    /// 1 to 256 bytes, no control characters.
    #[schemars(regex(pattern = r"^[^\u0000-\u001f\u007f-\u009f]{1,64}$"))]
    pub viewer: String,
    /// 1 to 1000 video ids, or ["*"] for every video.
    #[schemars(length(min = 1, max = 1000), inner(regex(pattern = r"^[!-~]{1,256}$")))]
    pub video_ids: Vec<String>,
    /// Default 3600; at most the broker's --max-token-lifetime-secs (86400).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub ttl_seconds: Option<u64>,
    /// Bind the token to an address or CIDR range (its `ip` claim).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub ip: Option<String>,
    /// The viewer's device (its `device` claim): what the concurrent-stream
    /// limit counts. 1 to 128 bytes, no control characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[^\u0000-\u001f\u007f-\u009f]{1,128}$"))]
    pub device: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct CreateViewerRequest {
    #[schemars(regex(pattern = r"^[A-Za-z0-9._@+-]{1,64}$"))]
    pub username: String,
    /// 8 to 1024 characters.
    #[schemars(length(min = 8, max = 1024))]
    pub password: Password,
    #[serde(default)]
    #[schemars(length(max = 1000), inner(regex(pattern = r"^[!-~]{1,256}$")))]
    pub entitlements: Vec<String>,
    /// This viewer's concurrent-stream limit (0: none), instead of the
    /// broker's --max-streams-per-viewer.
    #[serde(default)]
    #[schemars(range(max = 1000000))]
    pub max_streams: Option<u32>,
    /// This viewer's addresses-per-token limit (0: none), instead of the
    /// broker's --max-addresses-per-token.
    #[serde(default)]
    #[schemars(range(max = 1000000))]
    pub max_addresses_per_token: Option<u32>,
}

/// `Some(None)` for an explicit `null` (back to the default), `None` when
/// the field is absent.
fn double_option<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct UpdateViewerRequest {
    #[serde(default)]
    #[schemars(length(min = 8, max = 1024))]
    pub password: Option<Password>,
    #[serde(default)]
    #[schemars(length(max = 1000), inner(regex(pattern = r"^[!-~]{1,256}$")))]
    pub entitlements: Option<Vec<String>>,
    #[serde(default)]
    pub enabled: Option<bool>,
    /// A number, or null for the broker-wide limit again.
    #[serde(default, deserialize_with = "double_option")]
    #[schemars(range(max = 1000000))]
    pub max_streams: Option<Option<u32>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schemars(range(max = 1000000))]
    pub max_addresses_per_token: Option<Option<u32>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ViewerInfo {
    pub username: String,
    pub entitlements: Vec<String>,
    pub enabled: bool,
    /// Absent: the broker-wide limit applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_streams: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_addresses_per_token: Option<u32>,
    pub creation_date: DateTime<Utc>,
    pub update_date: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ListViewersResponse {
    pub viewers: Vec<ViewerInfo>,
}

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct RevokeRequest {
    /// Token | Viewer | Video
    #[serde(rename = "Type")]
    #[schemars(regex(pattern = r"^(Token|Viewer|Video)$"))]
    pub kind: String,
    #[schemars(regex(pattern = r"^[!-~]{1,128}$"))]
    pub id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct RevocationInfo {
    #[serde(rename = "Type")]
    pub kind: String,
    pub id: String,
    pub revoked_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ListRevocationsResponse {
    pub revocations: Vec<RevocationInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct BrokerAuditEntry {
    pub event_id: Uuid,
    pub event_time: DateTime<Utc>,
    pub operation: String,
    /// `Success`, or the error code that refused the call.
    pub outcome: String,
    pub request_id: String,
    pub viewer: Option<String>,
    pub video_id: Option<String>,
    pub key_id: Option<Uuid>,
    pub key_version_id: Option<u32>,
    pub token_id: Option<String>,
    pub client_id: Option<Uuid>,
    pub address: Option<String>,
    /// e.g. `{"Count": n, "LastTime": ...}` for identical key releases merged.
    pub detail: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct BrokerAuditResponse {
    pub records: Vec<BrokerAuditEntry>,
    pub next_token: Option<String>,
}

/// A playback stream: a device, or a token in use.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct SessionInfo {
    pub session_id: Uuid,
    pub viewer: String,
    /// The token's `device` claim, or its id when it has none.
    pub stream: String,
    pub token_id: String,
    /// The address unit (IPv4 /24, IPv6 /64) it was last confirmed from.
    pub address: Option<String>,
    pub start_date: DateTime<Utc>,
    pub last_seen_date: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ListSessionsResponse {
    pub sessions: Vec<SessionInfo>,
}

/// A video's playback restrictions.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct PlaybackPolicyRequest {
    /// Page origins (`https://www.example.com`, `https://*.example.com`) its
    /// keys, licences and playlists may be fetched from; `none` for requests
    /// with no Origin or Referer. Empty: nowhere.
    #[schemars(
        length(max = 100),
        inner(regex(
            pattern = r"^(none|[A-Za-z][A-Za-z0-9+.-]*://(\*\.)?[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*(:[0-9]{1,4})?/?)$"
        ))
    )]
    pub allowed_origins: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct PlaybackPolicyInfo {
    pub video_id: String,
    pub allowed_origins: Vec<String>,
    pub update_date: DateTime<Utc>,
}
