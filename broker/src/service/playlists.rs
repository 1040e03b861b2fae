//! Playlist delivery: whether a viewer may have a playlist, and the fresh
//! token its key URIs will carry (PLAYERS.md: a token baked into a playlist
//! once expires during a long film; one re-issued at every playlist fetch
//! does not).

use std::borrow::Cow;
use zeroize::Zeroizing;

use super::delivery::Admitted;
use super::{Broker, BrokerError, RequestContext};
use crate::model::{BrokerAuditRecord, BrokerOperation};
use crate::token::Claims;

impl Broker {
    /// Checks the viewer's token against the videos whose keys a playlist
    /// or manifest names: `video_ids` from its AES-128 key URIs, and those
    /// its CENC `kids` are registered to. Returns the token to write into
    /// it. The token is checked first, so nothing is looked up for a caller
    /// without one. Audited either way.
    pub async fn grant_playlist(
        &self,
        ctx: &RequestContext,
        tokens: Vec<Cow<'_, str>>,
        video_ids: &[String],
        kids: &[[u8; 16]],
    ) -> Result<Zeroizing<String>, BrokerError> {
        if !self.0.releases.has_room() {
            return Err(BrokerError::AuditUnavailable);
        }
        let mut record = self.begin_audit(BrokerOperation::DeliverPlaylist, ctx)?;
        if let [only] = video_ids {
            record.video_id = Some(only.clone());
        }
        let result = self.grant(ctx, &tokens, video_ids, kids, &mut record).await;
        self.record_outcome(record, &result);
        result
    }

    async fn grant(
        &self,
        ctx: &RequestContext,
        tokens: &[Cow<'_, str>],
        video_ids: &[String],
        kids: &[[u8; 16]],
        record: &mut BrokerAuditRecord,
    ) -> Result<Zeroizing<String>, BrokerError> {
        let admitted = self.admit(ctx, tokens, record).await?;
        let mut videos = video_ids.to_vec();
        if !kids.is_empty() {
            let registered = self.videos_of_kids(kids).await?;
            if registered.is_empty() {
                return Err(BrokerError::UnknownKid);
            }
            for video_id in registered {
                if !videos.contains(&video_id) {
                    videos.push(video_id);
                }
            }
            if let [only] = &videos[..] {
                record.video_id = Some(only.clone());
            }
        }
        for video_id in &videos {
            self.check_video(&admitted.claims, video_id)?;
        }
        if videos.is_empty() {
            self.check_playback_rules(ctx, &admitted.claims, None)
                .await?;
        }
        for video_id in &videos {
            self.check_playback_rules(ctx, &admitted.claims, Some(video_id))
                .await?;
        }
        // The token written in names no more videos than the playlist does;
        // a playlist that names none gets the token's one video, or nothing.
        if videos.is_empty() {
            match admitted.claims.single_video() {
                Some(only) => videos.push(only.to_owned()),
                None => return Ok(Zeroizing::new(String::new())),
            }
        }
        Ok(self.written_token(ctx, &admitted, tokens, videos))
    }

    /// The token to write into a playlist or manifest for these videos: a
    /// fresh one for just them, or (without a signing key, or past the
    /// grant) the viewer's own, which reaches only the broker's endpoints.
    fn written_token(
        &self,
        ctx: &RequestContext,
        admitted: &Admitted,
        tokens: &[Cow<'_, str>],
        videos: Vec<String>,
    ) -> Zeroizing<String> {
        let presented = || {
            Zeroizing::new(
                tokens
                    .get(admitted.which)
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
            )
        };
        self.refreshed(ctx, &admitted.claims, videos)
            .unwrap_or_else(presented)
    }

    /// The same grant (viewer, token id, issue time) for just these videos,
    /// valid for another `playlist_token_ttl`. It extends the token no
    /// further than a playback session could (`iat + session max`; not at
    /// all with sessions off), so serving playlists gives a leaked token no
    /// more life than fetching keys would. Keeping `jti` and `iat` keeps
    /// every revocation and session of the original applying to it. With
    /// playlist tokens bound, it gets an `ip` claim of the caller's address
    /// unit (unless it had one), so the key URLs fail elsewhere. `None`
    /// when the broker cannot sign (EdDSA verification only) or the grant is
    /// over.
    fn refreshed(
        &self,
        ctx: &RequestContext,
        claims: &Claims,
        video_ids: Vec<String>,
    ) -> Option<Zeroizing<String>> {
        let keys = &self.0.tokens;
        if !keys.can_sign() {
            return None;
        }
        let now = self.now().timestamp();
        let sessions = &self.0.sessions;
        let limit = if sessions.enabled() {
            claims
                .iat
                .saturating_add(sessions.max.num_seconds().min(keys.max_lifetime))
        } else {
            claims.exp
        };
        let ttl = i64::try_from(self.0.config.playlist_token_ttl.as_secs()).unwrap_or(i64::MAX);
        let exp = now.saturating_add(ttl).min(limit).max(claims.exp);
        if exp <= now {
            return None;
        }
        let ip = claims.ip.clone().or_else(|| self.playlist_binding(ctx));
        let fresh = Claims {
            vids: video_ids,
            exp,
            nbf: None,
            ip,
            ..claims.clone()
        };
        keys.sign(&fresh).map(Zeroizing::new)
    }
}
