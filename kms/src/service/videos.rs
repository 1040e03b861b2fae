//! Per-video secrets and crypto-shredding (blob format v2; DESIGN.md,
//! "Per-video crypto-shredding"). A master key created with PerVideoKeys
//! seals every data key minted with a `video_id` context under a key derived
//! from the master key version and that video's secret. Destroying the
//! secret makes every such data key undecryptable, wherever its blob was
//! copied: the KMS refuses it as `VideoShredded` and no one can derive the
//! sealing key again.

use std::ops::RangeInclusive;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use rand::rngs::OsRng;

use super::cache::{Refresh, VideoState};
use super::{AuditEvent, Caller, Kms, KmsError, RequestContext};
use crate::crypto::{Key256, MasterKey};
use crate::model::{Operation, VideoSecretRecord};

pub use crate::crypto::context::{valid_video_id, VIDEO_ID_CONTEXT_KEY};
pub const SHRED_WINDOW_DAYS: RangeInclusive<u32> = 0..=30;
pub const DEFAULT_SHRED_WINDOW_DAYS: u32 = 7;
use crate::crypto::context::MAX_VIDEO_ID_LEN;

/// A video as admins see it: never its secret.
#[derive(Debug, Clone)]
pub struct VideoView {
    pub video_id: String,
    /// `Active`, `PendingShred` or `Shredded`.
    pub state: &'static str,
    /// Whether data keys were ever bound to it (a secret was made).
    pub has_per_video_keys: bool,
    pub shred_date: Option<DateTime<Utc>>,
    pub shredded_at: Option<DateTime<Utc>>,
}

impl VideoView {
    fn of(r: &VideoSecretRecord) -> Self {
        let state = if r.shredded_at.is_some() {
            "Shredded"
        } else if r.shred_date.is_some() {
            "PendingShred"
        } else {
            "Active"
        };
        Self {
            video_id: r.video_id.clone(),
            state,
            has_per_video_keys: r.wrapped_secret.is_some() || r.shredded_at.is_some(),
            shred_date: r.shred_date,
            shredded_at: r.shredded_at,
        }
    }
}

fn check_video_id(id: &str) -> Result<(), KmsError> {
    if valid_video_id(id) {
        Ok(())
    } else {
        Err(KmsError::invalid(format!(
            "VideoId must be 1..={MAX_VIDEO_ID_LEN} printable ASCII characters without spaces"
        )))
    }
}

impl Kms {
    /// A video's secret state, from the cache once loaded. `None`: the
    /// video has no row (no per-video key was ever minted for it).
    pub(super) async fn load_video(
        &self,
        video_id: &str,
    ) -> Result<Option<Arc<VideoState>>, KmsError> {
        match self.cached(self.0.caches.video(video_id)) {
            Some((state, fresh)) => {
                if !fresh {
                    self.refresh_in_background(Refresh::Video(video_id.to_owned()));
                }
                Ok(Some(state))
            }
            None => self.fetch_video(video_id).await,
        }
    }

    pub(super) async fn fetch_video(
        &self,
        video_id: &str,
    ) -> Result<Option<Arc<VideoState>>, KmsError> {
        let epoch = self.0.caches.epoch();
        let Some(record) = self.0.store.video_secret(video_id).await? else {
            return Ok(None);
        };
        let state = Arc::new(self.video_state(&record)?);
        self.0.caches.put_video(epoch, video_id, state.clone());
        Ok(Some(state))
    }

    fn video_state(&self, r: &VideoSecretRecord) -> Result<VideoState, KmsError> {
        let secret = match (&r.wrapped_secret, r.shredded_at, r.shred_date) {
            (_, None, Some(_)) => return Ok(VideoState::PendingShred),
            (Some(wrapped), None, None) => self
                .0
                .root
                .unwrap_video_secret(&r.video_id, wrapped)
                .map_err(|_| {
                    tracing::error!(video_id = %r.video_id, "stored video secret fails to unwrap");
                    KmsError::Internal("a stored video secret is corrupt".into())
                })?,
            _ => return Ok(VideoState::Shredded),
        };
        Ok(VideoState::Live(secret))
    }

    /// The secret a new v2 blob of `video_id` is sealed with, made on the
    /// first mint (a parallel first mint and a tombstone both win over it).
    pub(super) async fn video_secret_to_seal(
        &self,
        video_id: &str,
        ev: &mut AuditEvent,
    ) -> Result<Arc<VideoState>, KmsError> {
        if let Some(state) = self.load_video(video_id).await? {
            return Ok(state);
        }
        let epoch = self.0.caches.epoch();
        let secret = MasterKey::generate(&mut OsRng);
        let record = VideoSecretRecord {
            video_id: video_id.to_owned(),
            wrapped_secret: Some(self.0.root.wrap_video_secret(video_id, &secret, &mut OsRng)),
            created_at: self.now(),
            shred_date: None,
            shredded_at: None,
        };
        let held = self.0.store.put_video_secret(&record).await?;
        if held.wrapped_secret == record.wrapped_secret {
            crate::model::add_detail(&mut ev.record.detail, "VideoSecretCreated", true);
        }
        let state = Arc::new(self.video_state(&held)?);
        self.0.caches.put_video(epoch, video_id, state.clone());
        Ok(state)
    }

    /// The key that seals or opens a v2 blob: refused once the video's
    /// shred is scheduled or done.
    pub(super) fn per_video_key(
        state: &VideoState,
        master: &MasterKey,
        header: &[u8],
        video_id: &str,
    ) -> Result<MasterKey, KmsError> {
        let secret: &Key256 = match state {
            VideoState::Live(s) => s,
            VideoState::PendingShred => return Err(KmsError::VideoPendingShred),
            VideoState::Shredded => return Err(KmsError::VideoShredded),
        };
        Ok(master.for_video(header, video_id, secret))
    }

    /// Reads a video's state fresh (admin reads are not the hot path).
    pub async fn describe_video(
        &self,
        caller: &Caller,
        video_id: &str,
    ) -> Result<VideoView, KmsError> {
        caller.require_admin()?;
        check_video_id(video_id)?;
        let record = self.0.store.video_secret(video_id).await?;
        Ok(match record {
            Some(r) => VideoView::of(&r),
            None => VideoView {
                video_id: video_id.to_owned(),
                state: "Active",
                has_per_video_keys: false,
                shred_date: None,
                shredded_at: None,
            },
        })
    }

    /// Schedules a video's crypto-shred `days` from now (0: at once). Its
    /// per-video data keys are refused from now on; until the date passes
    /// the shred can be cancelled. A video with no per-video keys yet gets a
    /// tombstone: none can be minted for it afterwards.
    pub async fn schedule_video_shred(
        &self,
        caller: &Caller,
        ctx: &RequestContext,
        video_id: &str,
        days: Option<u32>,
    ) -> Result<VideoView, KmsError> {
        let mut ev = self.begin_audit(Operation::ScheduleVideoShred, ctx)?;
        ev.caller(caller);
        let result = async {
            caller.require_admin()?;
            check_video_id(video_id)?;
            let days = days.unwrap_or(DEFAULT_SHRED_WINDOW_DAYS);
            if !SHRED_WINDOW_DAYS.contains(&days) {
                return Err(KmsError::invalid("PendingWindowInDays must be 0..=30"));
            }
            crate::model::add_detail(&mut ev.record.detail, "VideoId", video_id);
            crate::model::add_detail(&mut ev.record.detail, "PendingWindowInDays", days);
            let now = self.now();
            let record = self
                .0
                .store
                .schedule_video_shred(video_id, now + Duration::days(i64::from(days)), now)
                .await?;
            self.0.caches.invalidate_video(video_id);
            if record.shredded_at.is_some() {
                return Err(KmsError::VideoShredded);
            }
            if days == 0 {
                self.shred_now(ctx, video_id, now).await?;
                let record = self.0.store.video_secret(video_id).await?;
                return record
                    .as_ref()
                    .map(VideoView::of)
                    .ok_or_else(|| KmsError::Internal("the shredded video vanished".into()));
            }
            Ok(VideoView::of(&record))
        }
        .await;
        self.end_audit(ev, &result);
        result
    }

    pub async fn cancel_video_shred(
        &self,
        caller: &Caller,
        ctx: &RequestContext,
        video_id: &str,
    ) -> Result<VideoView, KmsError> {
        let mut ev = self.begin_audit(Operation::CancelVideoShred, ctx)?;
        ev.caller(caller);
        let result = async {
            caller.require_admin()?;
            check_video_id(video_id)?;
            crate::model::add_detail(&mut ev.record.detail, "VideoId", video_id);
            match self.0.store.cancel_video_shred(video_id).await? {
                Some(record) => {
                    self.0.caches.invalidate_video(video_id);
                    Ok(VideoView::of(&record))
                }
                None => match self.0.store.video_secret(video_id).await? {
                    Some(r) if r.shredded_at.is_some() => Err(KmsError::VideoShredded),
                    _ => Err(KmsError::InvalidVideoState(
                        "no shred is scheduled for this video".into(),
                    )),
                },
            }
        }
        .await;
        self.end_audit(ev, &result);
        result
    }

    /// Destroys a due video secret, audited as `ShredVideo` (by the server:
    /// the admin's request is the schedule's record).
    async fn shred_now(
        &self,
        ctx: &RequestContext,
        video_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), KmsError> {
        let mut ev = self.begin_audit(Operation::ShredVideo, ctx)?;
        crate::model::add_detail(&mut ev.record.detail, "VideoId", video_id);
        let result = self
            .0
            .store
            .shred_video(video_id, now)
            .await
            .map_err(KmsError::from);
        self.0.caches.invalidate_video(video_id);
        match result {
            Ok(false) => Ok(()), // another process did it, and audited it
            other => {
                let r = other.map(drop);
                self.end_audit(ev, &r);
                r
            }
        }
    }

    /// Maintenance: shreds every video whose window has passed.
    pub(super) async fn shred_due_videos(&self, ctx: &RequestContext) -> Result<(), KmsError> {
        let now = self.now();
        for video_id in self.0.store.videos_due_shred(now).await? {
            if let Err(e) = self.shred_now(ctx, &video_id, now).await {
                tracing::warn!(video_id = %video_id, error = %e, "scheduled shred failed");
            }
        }
        Ok(())
    }
}
