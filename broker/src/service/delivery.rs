//! Key delivery: token → revocation → entitlement → (cache | KMS Decrypt with
//! `{"video_id": VIDEO}`) → 16 bytes. The EDK is bound to its video by the
//! EncryptionContext, so a forged `vid` only makes the KMS refuse.

use std::borrow::Cow;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use foundation::audit::Aggregate;
use foundation::SecretBytes;
use kms_api::api::DecryptRequest;
use kms_api::Blob;

use super::sessions::Lookup;
use super::{Broker, BrokerError, CachedKey, RequestContext};
use crate::model::{BrokerAuditRecord, BrokerOperation};
use crate::token::{valid_video_id, Claims, TokenError};

/// The HLS AES-128 key size: all the key endpoint ever releases.
pub const HLS_KEY_LEN: usize = 16;
/// A v1 blob of a 16-byte key is 87 characters; anything far longer is junk.
const MAX_CIPHERTEXT_LEN: usize = 2048;

/// A key request as the player sent it. `Debug` leaves out the tokens.
#[derive(Default)]
pub struct KeyRequest<'a> {
    /// Playback tokens found in the request, in order of precedence; the first
    /// one that verifies is used.
    pub tokens: Vec<Cow<'a, str>>,
    pub video_id: Option<Cow<'a, str>>,
    pub ciphertext: Option<Cow<'a, str>>,
}

impl std::fmt::Debug for KeyRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRequest")
            .field("tokens", &format_args!("[{} REDACTED]", self.tokens.len()))
            .field("video_id", &self.video_id)
            .field("ciphertext", &self.ciphertext)
            .finish()
    }
}

#[derive(Debug)]
/// A playback call past its token checks.
pub(super) struct Admitted {
    pub claims: Arc<Claims>,
    /// The token has expired but its playback session is alive.
    pub via_session: bool,
    /// Which of the presented tokens verified.
    pub which: usize,
}

pub struct ReleasedKey {
    pub key: Arc<SecretBytes>,
    /// For `Cache-Control: private, max-age=N`: never past the token's life.
    pub max_age_secs: u64,
}

/// Distinct pending aggregates of key releases past which releases are
/// refused (503); identical releases within one flush interval are one
/// record (`foundation::audit::Aggregator`).
pub(super) const MAX_PENDING_AGGREGATES: usize = 50_000;

/// What makes two records "identical": operation (key release or playlist),
/// outcome, viewer, video, key version, token and address.
#[derive(Hash, PartialEq, Eq)]
pub struct Identity<'a> {
    operation: BrokerOperation,
    outcome: &'a str,
    viewer: Option<&'a str>,
    video_id: Option<&'a str>,
    key_version: Option<(uuid::Uuid, u32)>,
    token_id: Option<&'a str>,
    address: Option<&'a str>,
}

impl Aggregate for BrokerAuditRecord {
    type Identity<'a> = Identity<'a>;

    fn identity(&self) -> Identity<'_> {
        Identity {
            operation: self.operation,
            outcome: &self.outcome,
            viewer: self.viewer.as_deref(),
            video_id: self.video_id.as_deref(),
            key_version: self.key_id.zip(self.key_version),
            token_id: self.token_id.as_deref(),
            address: self.address.as_deref(),
        }
    }

    fn time(&self) -> DateTime<Utc> {
        self.time
    }

    fn merged(&mut self, count: u64, last: DateTime<Utc>) {
        foundation::audit::add_detail(&mut self.detail, "Count", count);
        foundation::audit::add_detail(&mut self.detail, "LastTime", serde_json::json!(last));
    }
}

impl Broker {
    /// Releases the key of `req`, or says exactly why not. Audited either way.
    pub async fn release_key(
        &self,
        ctx: &RequestContext,
        req: KeyRequest<'_>,
    ) -> Result<ReleasedKey, BrokerError> {
        if !self.0.releases.has_room() {
            return Err(BrokerError::AuditUnavailable);
        }
        let mut record = self.begin_audit(BrokerOperation::ReleaseKey, ctx)?;
        let result = self.release(ctx, req, &mut record).await;
        self.record_outcome(record, &result);
        result
    }

    /// Audits a playback call (key or playlist) with its outcome, through the
    /// aggregator that merges identical records.
    pub(super) fn record_outcome<T>(
        &self,
        mut record: BrokerAuditRecord,
        result: &Result<T, BrokerError>,
    ) {
        let outcome = match result {
            Ok(_) => foundation::audit::OUTCOME_SUCCESS,
            Err(e) => e.code(),
        };
        self.0.counters.outcome(record.operation.as_str(), outcome);
        record.outcome = outcome.to_owned();
        self.0.releases.add(record);
    }

    /// The checks every playback call starts with, in this order: the
    /// caller's address limit, a token that verifies (or whose playback
    /// session is alive), that token's limit, and token and viewer
    /// revocations. Records who asked.
    pub(super) async fn admit(
        &self,
        ctx: &RequestContext,
        tokens: &[Cow<'_, str>],
        record: &mut BrokerAuditRecord,
    ) -> Result<Admitted, BrokerError> {
        let mono = Instant::now();
        if !ctx.address.is_empty() {
            self.0
                .address_limits
                .acquire(ctx.throttle_key())
                .map_err(BrokerError::RateLimited)?;
        }
        let (claims, via_session, which) = self.verify_playback(tokens, mono).await?;
        record.viewer = Some(claims.sub.clone());
        record.token_id = Some(claims.jti.clone());
        self.0
            .token_limits
            .acquire(&claims.jti)
            .map_err(BrokerError::RateLimited)?;
        if self.0.revoked.token_refused(&claims) {
            return Err(BrokerError::TokenRevoked);
        }
        Ok(Admitted {
            claims,
            via_session,
            which,
        })
    }

    /// The token names the video, and the video has not been taken down.
    pub(super) fn check_video(&self, claims: &Claims, video_id: &str) -> Result<(), BrokerError> {
        if !claims.allows(video_id) {
            return Err(BrokerError::NotEntitled);
        }
        if self.0.revoked.video_revoked(video_id) {
            return Err(BrokerError::VideoRevoked);
        }
        Ok(())
    }

    async fn release(
        &self,
        ctx: &RequestContext,
        req: KeyRequest<'_>,
        record: &mut BrokerAuditRecord,
    ) -> Result<ReleasedKey, BrokerError> {
        // What was asked for is worth auditing even when the token fails.
        record.video_id = req
            .video_id
            .as_deref()
            .filter(|v| valid_video_id(v))
            .map(str::to_owned);
        let Admitted {
            claims,
            via_session,
            ..
        } = self.admit(ctx, &req.tokens, record).await?;

        let video_id = match req.video_id {
            Some(v) if valid_video_id(&v) => v.into_owned(),
            Some(_) => {
                return Err(BrokerError::invalid(
                    "vid must be 1 to 256 printable characters without spaces",
                ))
            }
            None => claims
                .single_video()
                .ok_or(BrokerError::MissingVideoId)?
                .to_owned(),
        };
        if record.video_id.is_none() {
            record.video_id = Some(video_id.clone());
        }
        self.check_video(&claims, &video_id)?;
        self.check_playback_rules(ctx, &claims, Some(&video_id))
            .await?;

        let mono = Instant::now();
        let ciphertext = req
            .ciphertext
            .filter(|c| !c.is_empty())
            .ok_or_else(|| BrokerError::invalid("Ciphertext (the EDK) is required"))?;
        if ciphertext.len() > MAX_CIPHERTEXT_LEN {
            return Err(BrokerError::InvalidCiphertext("too long".into()));
        }
        let blob = Blob::from_text(&ciphertext)
            .map_err(|e| BrokerError::InvalidCiphertext(e.to_string()))?;
        record.key_id = Some(blob.header.key_id);
        record.key_version = Some(blob.header.version);
        if !claims.allows_key(blob.header.key_id) {
            return Err(BrokerError::KeyNotInScope);
        }

        let key = self.key_of(&video_id, &blob, mono).await?;
        if key.key.len() != HLS_KEY_LEN {
            return Err(BrokerError::NotAnHlsKey);
        }

        let now = self.now();
        if let Some(write) = self.0.sessions.touch(&claims, now) {
            self.0.session_writes.record(write);
        }
        let max_age_secs = if via_session {
            0
        } else {
            let left = claims.exp.saturating_sub(now.timestamp()).max(0);
            u64::try_from(left)
                .unwrap_or(0)
                .min(self.0.config.key_max_age.as_secs())
        };
        Ok(ReleasedKey {
            key: key.key,
            max_age_secs,
        })
    }

    /// The first token that verifies (and its index), or the first one's
    /// error. An expired token still passes while its playback session is
    /// alive (`true`).
    pub(super) async fn verify_playback(
        &self,
        tokens: &[Cow<'_, str>],
        mono: Instant,
    ) -> Result<(Arc<Claims>, bool, usize), BrokerError> {
        let now = self.now();
        let mut first_error = None;
        for (i, token) in tokens.iter().enumerate() {
            let error = match self
                .0
                .verified
                .verify(&self.0.tokens, token, now.timestamp())
            {
                Ok(claims) => return Ok((claims, false, i)),
                Err(TokenError::Expired(claims)) => {
                    if self.session_alive(&claims, now, mono).await? {
                        return Ok((Arc::new(*claims), true, i));
                    }
                    BrokerError::TokenExpired
                }
                Err(e) => BrokerError::from(e),
            };
            first_error.get_or_insert(error);
        }
        Err(first_error.unwrap_or(BrokerError::MissingToken))
    }

    async fn session_alive(
        &self,
        claims: &Claims,
        now: DateTime<Utc>,
        mono: Instant,
    ) -> Result<bool, BrokerError> {
        let sessions = &self.0.sessions;
        if !sessions.enabled()
            || now.timestamp() > claims.iat.saturating_add(sessions.max.num_seconds())
        {
            return Ok(false);
        }
        match sessions.lookup(&claims.jti, now, mono) {
            Lookup::Alive => Ok(true),
            Lookup::Dead => Ok(false),
            Lookup::Unknown => {
                // Rare path (an expired token this process has not seen).
                let found = self.0.store.session(&claims.jti).await?;
                Ok(sessions.learn(&claims.jti, found, now, mono))
            }
        }
    }

    /// A video's key from the cache, or from the KMS (then cached).
    pub(super) async fn key_of(
        &self,
        video_id: &str,
        blob: &Blob,
        mono: Instant,
    ) -> Result<CachedKey, BrokerError> {
        if let Some(hit) = self.0.keys.get(video_id, blob.as_bytes(), mono) {
            self.0.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(hit);
        }
        self.0.counters.cache_misses.fetch_add(1, Ordering::Relaxed);
        let generation = self.0.keys.generation();
        let fetched = self.decrypt(video_id, &blob.to_text()).await?;
        self.0.keys.insert(
            video_id,
            blob.as_bytes(),
            fetched.clone(),
            Instant::now(),
            generation,
        );
        Ok(fetched)
    }

    async fn decrypt(&self, video_id: &str, ciphertext: &str) -> Result<CachedKey, BrokerError> {
        let req = DecryptRequest {
            ciphertext_blob: ciphertext.to_owned(),
            encryption_context: Some([("video_id".to_owned(), video_id.to_owned())].into()),
        };
        match self.0.kms.decrypt(&req).await {
            Ok(out) => Ok(CachedKey {
                key: Arc::new(out.plaintext.0),
                key_id: out.key_id,
                key_version: out.key_version_id,
            }),
            Err(e) => Err(match (e.status(), e.code()) {
                // The blob parsed, so failing authentication means it was sealed
                // for another video's context (or tampered with).
                (Some(400), Some("InvalidCiphertext")) => BrokerError::KeyNotForVideo,
                (_, Some("KeyVersionRetired")) => BrokerError::KeyVersionRetired,
                (_, Some("VideoShredded")) => BrokerError::VideoShredded,
                (_, Some("VideoPendingShred")) => BrokerError::VideoPendingShred,
                (Some(404 | 410), _) => BrokerError::KeyNotFound,
                (Some(409), _) => BrokerError::KeyDisabled,
                (Some(401 | 403), _) => {
                    tracing::error!(error = %e, "the KMS refused the broker's own token: check VODKMS_KMS_TOKEN (a `decrypt` client)");
                    BrokerError::KmsUnavailable(e.to_string())
                }
                _ => BrokerError::KmsUnavailable(e.to_string()),
            }),
        }
    }

    /// Moves aggregated key-release records into the audit buffer.
    pub(super) fn flush_releases(&self) {
        for r in self.0.releases.take() {
            self.0.audit.record(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_request_never_shows_its_tokens() {
        let req = KeyRequest {
            tokens: vec!["eyJ.secret-one.sig".into(), "secret-two".into()],
            video_id: Some("film".into()),
            ciphertext: Some("AQID".into()),
        };
        let shown = format!("{req:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("[2 REDACTED]"), "{shown}");
        assert!(shown.contains("film") && shown.contains("AQID"), "{shown}");
    }
}
