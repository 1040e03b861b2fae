//! JSON shapes of the KMS HTTP API (field names as in AWS/Alibaba KMS).
//! Shared by the server and the typed client.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;
use zeroize::Zeroizing;

use foundation::SecretBytes;

/// Both servers answer errors in this shape.
pub use foundation::http::ErrorBody;

pub use crate::context::EncryptionContext;

/// Secret bytes on the wire as standard base64. Exists so that serializing a
/// secret is a deliberate, visible choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base64Secret(pub SecretBytes);

impl Serialize for Base64Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_base64())
    }
}

impl schemars::JsonSchema for Base64Secret {
    fn schema_name() -> String {
        "Base64Bytes".into()
    }

    fn json_schema(g: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
        let mut schema = g.subschema_for::<String>().into_object();
        schema.format = Some("byte".into());
        schema.into()
    }
}

impl<'de> Deserialize<'de> for Base64Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Zeroizing::new(String::deserialize(d)?);
        foundation::encoding::decode_base64_any(&text)
            .map(|b| Self(SecretBytes::from(Zeroizing::new(b))))
            .ok_or_else(|| serde::de::Error::custom("Plaintext is not valid base64"))
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct CreateKeyRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 256),
        regex(pattern = r"^alias/[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
    )]
    pub alias: Option<String>,
    /// At most 8192 characters, no NUL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8192), regex(pattern = r"^[^\u0000]*$"))]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3650))]
    pub rotation_period_in_days: Option<u32>,
    /// Bind every data key minted with a `video_id` EncryptionContext to a
    /// secret of that video held by the KMS (CiphertextBlob format v2), so
    /// `DELETE /v1/videos/{VideoId}` can crypto-shred the video.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_video_keys: Option<bool>,
}

/// `POST /v1/keys/{KeyId}/retire-versions`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct RetireVersionsRequest {
    /// Blobs of older versions are refused (KeyVersionRetired); 1 undoes
    /// every retirement. At most the current version.
    #[schemars(range(min = 1))]
    pub min_decryption_version: u32,
}

/// One version in `GET /v1/keys/{KeyId}/version-usage`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct VersionUsageEntry {
    pub key_version_id: u32,
    pub creation_date: DateTime<Utc>,
    /// Below MinDecryptionVersion.
    pub retired: bool,
    /// Successful Decrypts in the window.
    pub decrypts: u64,
    pub last_decrypt: Option<DateTime<Utc>>,
    /// Decrypts refused in the window because the version is retired.
    pub refused_as_retired: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct VersionUsageResponse {
    pub key_id: Uuid,
    pub current_key_version_id: u32,
    pub min_decryption_version: u32,
    /// The window, in days up to now.
    pub days: u32,
    pub versions: Vec<VersionUsageEntry>,
}

/// A video's crypto-shred state (`/v1/videos/{VideoId}`).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct VideoInfo {
    pub video_id: String,
    /// Active | PendingShred | Shredded
    pub state: String,
    /// Whether data keys were ever bound to this video's secret.
    pub per_video_keys: bool,
    pub shred_date: Option<DateTime<Utc>>,
    pub shredded_date: Option<DateTime<Utc>>,
}

/// `POST /v1/re-encrypt`'s body: one request, or an array of up to 1000.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum ReEncryptBody {
    One(ReEncryptRequest),
    #[schemars(length(min = 1, max = 1000))]
    Many(Vec<ReEncryptRequest>),
}

/// One item's answer in a batch `POST /v1/re-encrypt` (a JSON array in,
/// an array out, in order): the re-sealed blob, or why this item failed.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ReEncryptResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(flatten)]
    pub ok: Option<ReEncryptResponse>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ItemError>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ItemError {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ScheduleDeletionRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 7, max = 30))]
    pub pending_window_in_days: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct KeyVersion {
    pub key_version_id: u32,
    pub creation_date: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct KeyMetadata {
    pub key_id: Uuid,
    pub aliases: Vec<String>,
    pub description: String,
    /// Enabled | Disabled | PendingDeletion | Deleted
    pub key_state: String,
    pub creation_date: DateTime<Utc>,
    /// The version new data keys are sealed under.
    pub current_key_version_id: u32,
    pub key_versions: Vec<KeyVersion>,
    pub rotation_period_in_days: Option<u32>,
    pub next_rotation_date: Option<DateTime<Utc>>,
    pub deletion_date: Option<DateTime<Utc>>,
    /// Blobs of older versions are refused (KeyVersionRetired).
    #[serde(default = "first_version")]
    pub min_decryption_version: u32,
    /// Data keys with a `video_id` context are bound to the video's secret.
    #[serde(default)]
    pub per_video_keys: bool,
}

fn first_version() -> u32 {
    1
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ListKeysResponse {
    pub keys: Vec<KeyMetadata>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct RotateKeyResponse {
    pub key_id: Uuid,
    pub key_version_id: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct GenerateDataKeyRequest {
    #[schemars(regex(
        pattern = r"^(alias/[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
    ))]
    pub key_id: String,
    /// AES_128 (default) | AES_256
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^AES_(128|256)$"))]
    pub key_spec: Option<String>,
    /// 1..=1024; instead of KeySpec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1024))]
    pub number_of_bytes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_context: Option<EncryptionContext>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct GenerateDataKeyResponse {
    pub key_id: Uuid,
    pub key_version_id: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plaintext: Option<Base64Secret>,
    /// base64url without padding.
    pub ciphertext_blob: String,
}

/// `POST /v1/generate-data-keys`: up to 1000 data keys in one call.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct GenerateDataKeysRequest {
    #[schemars(regex(
        pattern = r"^(alias/[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
    ))]
    pub key_id: String,
    /// AES_128 (default) | AES_256
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^AES_(128|256)$"))]
    pub key_spec: Option<String>,
    /// 1..=1024; instead of KeySpec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1024))]
    pub number_of_bytes: Option<u32>,
    /// 1..=1000 keys.
    #[schemars(range(min = 1, max = 1000))]
    pub count: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_context: Option<EncryptionContext>,
    /// Makes the call idempotent for 24 h: a repeat with the same token (and
    /// the same request) returns the same keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[!-~]{1,64}$"))]
    pub client_token: Option<String>,
}

/// One key of a batch.
#[derive(Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct BatchDataKey {
    pub plaintext: Base64Secret,
    /// base64url without padding.
    pub ciphertext_blob: String,
    pub key_version_id: u32,
}

impl std::fmt::Debug for BatchDataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchDataKey")
            .field("plaintext", &"[REDACTED]")
            .field("ciphertext_blob", &self.ciphertext_blob)
            .field("key_version_id", &self.key_version_id)
            .finish()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct GenerateDataKeysResponse {
    pub key_id: Uuid,
    pub data_keys: Vec<BatchDataKey>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DecryptRequest {
    pub ciphertext_blob: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_context: Option<EncryptionContext>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct DecryptResponse {
    pub key_id: Uuid,
    pub key_version_id: u32,
    pub plaintext: Base64Secret,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ReEncryptRequest {
    pub ciphertext_blob: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_encryption_context: Option<EncryptionContext>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_encryption_context: Option<EncryptionContext>,
}

/// `POST /v1/encrypt`: seals up to 4 KiB of the caller's own bytes.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct EncryptRequest {
    #[schemars(regex(
        pattern = r"^(alias/[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
    ))]
    pub key_id: String,
    /// Standard base64 (or base64url) of 1..=4096 bytes.
    pub plaintext: Base64Secret,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_context: Option<EncryptionContext>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct EncryptResponse {
    pub key_id: Uuid,
    pub key_version_id: u32,
    /// base64url without padding.
    pub ciphertext_blob: String,
}

/// `POST /v1/generate-random`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct GenerateRandomRequest {
    #[schemars(range(min = 1, max = 1024))]
    pub number_of_bytes: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct GenerateRandomResponse {
    pub plaintext: Base64Secret,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ReEncryptResponse {
    pub key_id: Uuid,
    pub key_version_id: u32,
    pub source_key_id: Uuid,
    pub source_key_version_id: u32,
    pub ciphertext_blob: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct CreateClientRequest {
    /// 1 to 128 printable characters.
    #[schemars(
        length(min = 1, max = 128),
        regex(
            pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
        )
    )]
    pub name: String,
    /// admin | generate | decrypt | issuer. Or `Roles`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(admin|generate|decrypt|issuer)$"))]
    pub role: Option<String>,
    /// Several roles: admin or issuer alone, or generate and decrypt together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_ids: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ClientInfo {
    pub client_id: Uuid,
    pub name: String,
    /// The roles as one string: `decrypt`, or `generate,decrypt`.
    pub role: String,
    /// The same as a list (absent from KMS versions before multi-role clients).
    #[serde(default)]
    pub roles: Vec<String>,
    pub key_ids: Option<Vec<Uuid>>,
    pub creation_date: DateTime<Utc>,
    pub revoked_date: Option<DateTime<Utc>>,
}

#[derive(Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct CreateClientResponse {
    #[serde(flatten)]
    pub client: ClientInfo,
    /// Shown once; only its SHA-256 is kept.
    pub token: String,
}

impl std::fmt::Debug for CreateClientResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateClientResponse")
            .field("client", &self.client)
            .field("token", &"[REDACTED]")
            .finish()
    }
}

/// An access key of a client, for the signed cloud doors (no secret).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct AccessKeyInfo {
    pub access_key_id: String,
    pub client_id: Uuid,
    pub creation_date: DateTime<Utc>,
}

#[derive(Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct CreateAccessKeyResponse {
    #[serde(flatten)]
    pub access_key: AccessKeyInfo,
    /// Shown once; kept only wrapped under the root key.
    pub secret_access_key: String,
}

impl std::fmt::Debug for CreateAccessKeyResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateAccessKeyResponse")
            .field("access_key", &self.access_key)
            .field("secret_access_key", &"[REDACTED]")
            .finish()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ListAccessKeysResponse {
    pub access_keys: Vec<AccessKeyInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ListClientsResponse {
    pub clients: Vec<ClientInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct AuditEntry {
    pub event_id: Uuid,
    pub event_time: DateTime<Utc>,
    pub client_id: Option<Uuid>,
    pub operation: String,
    pub key_id: Option<Uuid>,
    pub key_version_id: Option<u32>,
    pub encryption_context: Option<EncryptionContext>,
    /// `Success`, or the error code that refused the call.
    pub outcome: String,
    pub request_id: String,
    pub detail: Option<serde_json::Value>,
    /// The cloud door of a signed request: `aws`, `alibaba` or `tencent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// The access key that signed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct AuditResponse {
    pub records: Vec<AuditEntry>,
    pub next_token: Option<String>,
}

/// One line of `GET /v1/changes` (newline-delimited JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "Type")]
pub enum ChangeEvent {
    /// First: the subscription is live; the subscriber's own client id.
    Ready {
        #[serde(rename = "ClientId")]
        client_id: Uuid,
    },
    /// Something about this master key changed (state, versions, deletion).
    Key {
        #[serde(rename = "KeyId")]
        key_id: Uuid,
    },
    /// This client changed (revoked, roles, scope).
    Client {
        #[serde(rename = "ClientId")]
        client_id: Uuid,
    },
    /// This video's shred was scheduled, cancelled or done.
    Video {
        #[serde(rename = "VideoId")]
        video_id: String,
    },
    /// Changes may have been missed: drop everything cached.
    Reset,
    /// Sent every 15 s while nothing else is.
    Ping,
}
