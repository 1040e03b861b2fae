//! Admin side of risk control: a viewer's playback sessions (list, end one)
//! and per-video playback policies (page origins).

use crate::model::{BrokerOperation, StreamRecord, VideoPolicy};
use crate::page_origin::OriginList;
use crate::token::{valid_id, valid_video_id, MAX_SUBJECT_LEN};

use super::{Broker, BrokerError, Client, RequestContext};

impl Broker {
    /// A viewer's streams that have not gone idle, oldest first.
    pub async fn list_sessions(
        &self,
        client: &Client,
        viewer: &str,
    ) -> Result<Vec<StreamRecord>, BrokerError> {
        client.require_admin()?;
        if !valid_id(viewer, MAX_SUBJECT_LEN) {
            return Err(BrokerError::invalid(
                "Viewer must be 1 to 256 bytes without control characters",
            ));
        }
        let idle = chrono::Duration::from_std(self.0.risk.config.stream_idle).unwrap_or_default();
        Ok(self.0.store.streams(viewer, self.now() - idle).await?)
    }

    /// Ends a session: its stream no longer counts, and its token is revoked
    /// (else the player would simply start it again).
    pub async fn end_session(
        &self,
        client: &Client,
        ctx: &RequestContext,
        id: &str,
    ) -> Result<StreamRecord, BrokerError> {
        let mut rec = self.begin_audit(BrokerOperation::EndSession, ctx)?;
        rec.client_id = Some(client.0.client_id);
        let result = async {
            client.require_admin()?;
            let id = uuid::Uuid::parse_str(id)
                .map_err(|_| BrokerError::invalid("the session id is a UUID"))?;
            foundation::audit::add_detail(&mut rec.detail, "SessionId", id.to_string());
            let stream = self
                .0
                .store
                .stream(id)
                .await?
                .ok_or(BrokerError::SessionNotFound)?;
            self.put_in_force(&self.token_revocation(&stream.token_id))
                .await?;
            self.0.store.delete_stream(id).await?;
            Ok(stream)
        }
        .await;
        if let Ok(s) = &result {
            rec.viewer = Some(s.viewer.clone());
            rec.token_id = Some(s.token_id.clone());
        }
        self.end_audit(rec, &result);
        result
    }

    /// Sets the page origins a video may be played from (in force here at
    /// once, in other brokers when they hear of it).
    pub async fn set_playback_policy(
        &self,
        client: &Client,
        ctx: &RequestContext,
        video_id: &str,
        allowed_origins: Vec<String>,
    ) -> Result<VideoPolicy, BrokerError> {
        let mut rec = self.begin_audit(BrokerOperation::SetPlaybackPolicy, ctx)?;
        rec.client_id = Some(client.0.client_id);
        rec.video_id = Some(video_id.chars().take(256).collect());
        let result = async {
            client.require_admin()?;
            check_video_id(video_id)?;
            let list = OriginList::parse(&allowed_origins)
                .map_err(|e| BrokerError::invalid(format!("AllowedOrigins: {e}")))?;
            let policy = VideoPolicy {
                video_id: video_id.to_owned(),
                allowed_origins: list.entries(),
                updated_at: self.now(),
            };
            self.0.store.put_video_policy(&policy).await?;
            self.0.risk.set_policy(video_id, Some(list));
            Ok(policy)
        }
        .await;
        if let Ok(p) = &result {
            foundation::audit::add_detail(
                &mut rec.detail,
                "AllowedOrigins",
                serde_json::json!(p.allowed_origins),
            );
        }
        self.end_audit(rec, &result);
        result
    }

    pub async fn playback_policy(
        &self,
        client: &Client,
        video_id: &str,
    ) -> Result<VideoPolicy, BrokerError> {
        client.require_admin()?;
        check_video_id(video_id)?;
        self.0
            .store
            .video_policy(video_id)
            .await?
            .ok_or(BrokerError::PolicyNotFound)
    }

    /// Removes a video's own list: the broker-wide one applies again.
    pub async fn delete_playback_policy(
        &self,
        client: &Client,
        ctx: &RequestContext,
        video_id: &str,
    ) -> Result<(), BrokerError> {
        let mut rec = self.begin_audit(BrokerOperation::SetPlaybackPolicy, ctx)?;
        rec.client_id = Some(client.0.client_id);
        rec.video_id = Some(video_id.chars().take(256).collect());
        foundation::audit::add_detail(&mut rec.detail, "Deleted", true);
        let result = async {
            client.require_admin()?;
            check_video_id(video_id)?;
            if !self.0.store.delete_video_policy(video_id).await? {
                return Err(BrokerError::PolicyNotFound);
            }
            self.0.risk.set_policy(video_id, None);
            Ok(())
        }
        .await;
        self.end_audit(rec, &result);
        result
    }
}

fn check_video_id(video_id: &str) -> Result<(), BrokerError> {
    if valid_video_id(video_id) {
        Ok(())
    } else {
        Err(BrokerError::invalid(
            "the video id must be 1 to 256 printable characters without spaces",
        ))
    }
}
