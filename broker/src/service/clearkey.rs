//! CENC content keys and the W3C Clear Key licence.
//!
//! A transcoder (a KMS `generate` client, or an admin) registers each
//! content key it packaged: its KID, the video, and the data key's EDK. A
//! player's licence request names KIDs; each must be registered to a video
//! the playback token is entitled to, or the whole request is refused (a
//! player asks for the keys of the one title it plays, so a mixed request is
//! someone probing). The keys then come from the same cache and KMS Decrypt
//! (with the video's context) as HLS keys, under the same limits, sessions,
//! revocations and audit.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use foundation::SecretBytes;
use kms_api::Blob;

use super::delivery::{Admitted, HLS_KEY_LEN};
use super::{Broker, BrokerError, Client, RequestContext};
use crate::model::{BrokerAuditRecord, BrokerOperation, ContentKeyRecord};
use crate::token::valid_video_id;

/// KIDs one licence request may name (players ask for one or a few).
pub const MAX_LICENCE_KIDS: usize = 32;

/// A KID from its text forms: 32 hex digits, or a UUID (8-4-4-4-12).
pub fn parse_kid(text: &str) -> Option<[u8; 16]> {
    let hex: String = if text.len() == 36 {
        let parts: Vec<&str> = text.split('-').collect();
        if parts.iter().map(|p| p.len()).collect::<Vec<_>>() != [8, 4, 4, 4, 12] {
            return None;
        }
        parts.concat()
    } else {
        text.to_owned()
    };
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut kid = [0u8; 16];
    for (i, out) in kid.iter_mut().enumerate() {
        *out = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(kid)
}

/// A licence request as the player sent it. `Debug` leaves out the tokens.
#[derive(Default)]
pub struct LicenceRequest<'a> {
    pub tokens: Vec<Cow<'a, str>>,
    pub kids: Vec<[u8; 16]>,
    /// Why the request could not be read, if so: reported only after the
    /// token is checked (authenticate before validating).
    pub malformed: Option<String>,
}

impl std::fmt::Debug for LicenceRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LicenceRequest")
            .field("tokens", &format_args!("[{} REDACTED]", self.tokens.len()))
            .field("kids", &self.kids.len())
            .finish()
    }
}

/// The keys of a licence, in the order asked.
pub struct Licence {
    pub keys: Vec<([u8; 16], Arc<SecretBytes>)>,
}

impl Broker {
    /// Registers a content key. The same KID registered again with the same
    /// video and EDK is fine (a retried call); with another EDK of the same
    /// key (a rewrap) it replaces the stored one; anything else is refused.
    pub async fn register_content_key(
        &self,
        ctx: &RequestContext,
        client: &Client,
        video_id: &str,
        kid: [u8; 16],
        ciphertext_blob: &str,
    ) -> Result<ContentKeyRecord, BrokerError> {
        let mut record = self.begin_audit(BrokerOperation::RegisterContentKey, ctx)?;
        record.client_id = Some(client.0.client_id);
        record.detail = Some(serde_json::json!({ "Kid": hls::cipher::hex(&kid) }));
        let result = async {
            let generate = client.0.roles.iter().any(|r| r == "generate");
            if !generate && client.require_admin().is_err() {
                return Err(BrokerError::AccessDenied(
                    "registering content keys needs a KMS generate client or an admin".into(),
                ));
            }
            if !valid_video_id(video_id) {
                return Err(BrokerError::invalid(
                    "VideoId must be 1 to 256 printable characters without spaces",
                ));
            }
            record.video_id = Some(video_id.to_owned());
            let blob = Blob::from_text(ciphertext_blob)
                .map_err(|e| BrokerError::InvalidCiphertext(e.to_string()))?;
            record.key_id = Some(blob.header.key_id);
            record.key_version = Some(blob.header.version);
            // A client limited to some master keys registers only theirs.
            if client
                .0
                .key_ids
                .as_ref()
                .is_some_and(|ids| !ids.contains(&blob.header.key_id))
            {
                return Err(BrokerError::KeyNotInScope);
            }
            let wanted = ContentKeyRecord {
                kid,
                video_id: video_id.to_owned(),
                ciphertext_blob: blob.to_text(),
                client_id: Some(client.0.client_id),
                created_at: self.now(),
            };
            let stored = self.0.store.put_content_key(&wanted).await?;
            if stored.video_id != wanted.video_id {
                return Err(BrokerError::KidTaken);
            }
            if stored.ciphertext_blob == wanted.ciphertext_blob {
                return Ok(stored);
            }
            // The same KID and video with another EDK: a rewrap (the key
            // re-sealed under a newer master key version) is accepted when
            // both EDKs open, for this video, to the very same key.
            let old = Blob::from_text(&stored.ciphertext_blob)
                .map_err(|e| BrokerError::Internal(format!("a stored EDK is corrupt: {e}")))?;
            let now = Instant::now();
            let before = self.key_of(video_id, &old, now).await?;
            let after = self.key_of(video_id, &blob, now).await?;
            if !bool::from(subtle::ConstantTimeEq::ct_eq(
                before.key.expose_secret(),
                after.key.expose_secret(),
            )) {
                return Err(BrokerError::KidTaken);
            }
            if !self
                .0
                .store
                .replace_content_key_blob(kid, &stored.ciphertext_blob, &wanted.ciphertext_blob)
                .await?
            {
                // Another rewrap won meanwhile.
                return Err(BrokerError::KidTaken);
            }
            foundation::audit::add_detail(&mut record.detail, "Rewrapped", true);
            Ok(ContentKeyRecord {
                ciphertext_blob: wanted.ciphertext_blob,
                ..stored
            })
        }
        .await;
        self.end_audit(record, &result);
        result
    }

    /// The videos these KIDs are registered to (each once, in order); KIDs
    /// not registered are left out. For serving a manifest that names them.
    pub async fn videos_of_kids(&self, kids: &[[u8; 16]]) -> Result<Vec<String>, BrokerError> {
        let mut videos: Vec<String> = Vec::new();
        for k in self.0.store.content_keys(kids).await? {
            if !videos.contains(&k.video_id) {
                videos.push(k.video_id);
            }
        }
        Ok(videos)
    }

    /// Registered content keys, all or one video's: for an admin, or a
    /// KMS generate client (`vodkms hls rewrap` re-seals them), which sees
    /// only those of the master keys it may use. EDKs are not secret.
    pub async fn list_content_keys(
        &self,
        client: &Client,
        video_id: Option<&str>,
    ) -> Result<Vec<ContentKeyRecord>, BrokerError> {
        let generate = client.0.roles.iter().any(|r| r == "generate");
        if !generate {
            client.require_admin()?;
        }
        let all = self.0.store.list_content_keys(video_id).await?;
        Ok(match &client.0.key_ids {
            None => all,
            Some(ids) => all
                .into_iter()
                .filter(|k| {
                    Blob::from_text(&k.ciphertext_blob)
                        .is_ok_and(|b| ids.contains(&b.header.key_id))
                })
                .collect(),
        })
    }

    /// Deletes a video's content keys (admin): their licences stop at once
    /// in this process; the key cache holds keys, not registrations.
    pub async fn delete_content_keys(
        &self,
        ctx: &RequestContext,
        client: &Client,
        video_id: &str,
    ) -> Result<u64, BrokerError> {
        let mut record = self.begin_audit(BrokerOperation::DeleteContentKeys, ctx)?;
        record.client_id = Some(client.0.client_id);
        record.video_id = Some(video_id.to_owned());
        let result = async {
            client.require_admin()?;
            Ok(self.0.store.delete_content_keys(video_id).await?)
        }
        .await;
        self.end_audit(record, &result);
        result
    }

    /// The W3C Clear Key licence: every KID's key, or a refusal. Audited as
    /// one release, through the same aggregator as HLS keys.
    pub async fn clear_key_licence(
        &self,
        ctx: &RequestContext,
        req: LicenceRequest<'_>,
    ) -> Result<Licence, BrokerError> {
        if !self.0.releases.has_room() {
            return Err(BrokerError::AuditUnavailable);
        }
        let mut record = self.begin_audit(BrokerOperation::ReleaseLicence, ctx)?;
        let result = self.licence(ctx, req, &mut record).await;
        self.record_outcome(record, &result);
        result
    }

    async fn licence(
        &self,
        ctx: &RequestContext,
        req: LicenceRequest<'_>,
        record: &mut BrokerAuditRecord,
    ) -> Result<Licence, BrokerError> {
        let Admitted {
            claims,
            via_session: _,
            ..
        } = self.admit(ctx, &req.tokens, record).await?;
        if let Some(why) = req.malformed {
            return Err(BrokerError::invalid(why));
        }
        if req.kids.is_empty() || req.kids.len() > MAX_LICENCE_KIDS {
            return Err(BrokerError::invalid(format!(
                "kids must name 1 to {MAX_LICENCE_KIDS} key ids"
            )));
        }
        let registered = self.0.store.content_keys(&req.kids).await?;
        let mut entries = Vec::with_capacity(req.kids.len());
        for kid in &req.kids {
            let entry = registered
                .iter()
                .find(|r| r.kid == *kid)
                .ok_or(BrokerError::UnknownKid)?;
            entries.push(entry);
        }
        // Whole or nothing: every KID's video must be the token's.
        for entry in &entries {
            record
                .video_id
                .get_or_insert_with(|| entry.video_id.clone());
            self.check_video(&claims, &entry.video_id)?;
        }
        let mut checked: Vec<&str> = Vec::new();
        for entry in &entries {
            if !checked.contains(&entry.video_id.as_str()) {
                self.check_playback_rules(ctx, &claims, Some(&entry.video_id))
                    .await?;
                checked.push(&entry.video_id);
            }
        }
        let mut keys = Vec::with_capacity(entries.len());
        for entry in entries {
            let blob = Blob::from_text(&entry.ciphertext_blob)
                .map_err(|e| BrokerError::InvalidCiphertext(e.to_string()))?;
            record.key_id = Some(blob.header.key_id);
            record.key_version = Some(blob.header.version);
            if !claims.allows_key(blob.header.key_id) {
                return Err(BrokerError::KeyNotInScope);
            }
            let key = self.key_of(&entry.video_id, &blob, Instant::now()).await?;
            if key.key.len() != HLS_KEY_LEN {
                return Err(BrokerError::NotAnHlsKey);
            }
            keys.push((entry.kid, key.key));
        }
        if let Some(write) = self.0.sessions.touch(&claims, self.now()) {
            self.0.session_writes.record(write);
        }
        Ok(Licence { keys })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kids_in_hex_and_uuid_form() {
        let want = [
            0x10, 0x77, 0xef, 0xec, 0xc0, 0xb2, 0x4d, 0x02, 0xac, 0xe3, 0x3c, 0x1e, 0x52, 0xe2,
            0xfb, 0x4b,
        ];
        assert_eq!(parse_kid("1077efecc0b24d02ace33c1e52e2fb4b"), Some(want));
        assert_eq!(
            parse_kid("1077EFEC-C0B2-4D02-ACE3-3C1E52E2FB4B"),
            Some(want)
        );
        for bad in [
            "",
            "1077efecc0b24d02ace33c1e52e2fb4",
            "1077efecc0b24d02ace33c1e52e2fb4bb",
            "1077efec-c0b24d02-ace3-3c1e52e2fb4b-",
            "zz77efecc0b24d02ace33c1e52e2fb4b",
            "1077efe-cc0b2-4d02-ace3-3c1e52e2fb4b",
        ] {
            assert_eq!(parse_kid(bad), None, "{bad}");
        }
    }
}
