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
    pub viewer: String,
    pub video_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct CreateViewerRequest {
    pub username: String,
    pub password: Password,
    #[serde(default)]
    pub entitlements: Vec<String>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct UpdateViewerRequest {
    #[serde(default)]
    pub password: Option<Password>,
    #[serde(default)]
    pub entitlements: Option<Vec<String>>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ViewerInfo {
    pub username: String,
    pub entitlements: Vec<String>,
    pub enabled: bool,
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
    pub kind: String,
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
