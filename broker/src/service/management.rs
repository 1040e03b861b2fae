//! Token issuing for app backends, revocation, and the broker's audit trail.

use chrono::{DateTime, Duration, Utc};
use zeroize::Zeroizing;

use super::viewers::check_videos;
use super::{Broker, BrokerError, Client, RequestContext, TokenBinding};
use crate::model::{
    BrokerAuditFilter, BrokerAuditRecord, BrokerOperation, Revocation, RevocationKind,
};
use crate::token::{valid_id, valid_video_id, Audience, Claims, AUDIENCE, MAX_SUBJECT_LEN};

/// A freshly minted playback token. The token is a bearer credential.
pub struct IssuedToken {
    pub token: Zeroizing<String>,
    /// From `/v1/login` only: proof that this browser signed in to this
    /// account, which lets it past the account-wide sign-in limit.
    pub device_cookie: Option<String>,
    pub token_id: String,
    pub expires_at: DateTime<Utc>,
    pub ttl_secs: u64,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token", &"[REDACTED]")
            .field("token_id", &self.token_id)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct RevocationView(pub Revocation);

#[derive(Debug)]
pub struct AuditPage {
    pub records: Vec<BrokerAuditRecord>,
    /// Pass back as `before_seq` for the next (older) page.
    pub next: Option<i64>,
}

impl Broker {
    /// How long a Token or Viewer revocation must be remembered: until every
    /// token it covers is past its longest life, playback sessions included.
    pub(super) fn revocation_expiry(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let secs = self
            .0
            .tokens
            .max_lifetime
            .saturating_add(self.0.tokens.leeway)
            .saturating_add(self.0.sessions.max.num_seconds());
        now + Duration::seconds(secs)
    }

    /// A revocation of one token from now, kept as long as it can matter.
    pub(super) fn token_revocation(&self, jti: &str) -> Revocation {
        let now = self.now();
        Revocation {
            kind: RevocationKind::Token,
            subject: jti.to_owned(),
            revoked_at: now,
            expires_at: Some(self.revocation_expiry(now)),
        }
    }

    /// Stores a revocation and puts it in force in this process at once
    /// (others when they hear of it).
    pub(super) async fn put_in_force(&self, r: &Revocation) -> Result<(), BrokerError> {
        let seq = self.0.store.put_revocation(r).await?;
        self.0.revoked.apply(r.kind, &r.subject, Some(r), seq);
        Ok(())
    }

    /// When a new Viewer revocation takes effect: now, but never at or before
    /// an earlier one, because `mint` may have moved tokens issued after that
    /// one a second on (see there), and this one must still cover them.
    pub(super) fn viewer_revocation_time(&self, viewer: &str, now: DateTime<Utc>) -> DateTime<Utc> {
        match self.0.revoked.viewer_revoked_at(viewer) {
            Some(prev) if prev >= now.timestamp() => {
                DateTime::from_timestamp(prev + 1, 0).unwrap_or(now)
            }
            _ => now,
        }
    }

    /// Signs a token for `viewer`. After a viewer revocation in this same
    /// second, `iat` moves one second on so the new token is not caught by it.
    /// A token of an issuer limited to some keys carries them (`keys`), and
    /// its id starts with the issuer's id, so the issuer may revoke it.
    pub(super) fn mint(
        &self,
        viewer: &str,
        vids: Vec<String>,
        ttl_secs: u64,
        issuer: Option<&Client>,
        binding: TokenBinding,
    ) -> Result<IssuedToken, BrokerError> {
        let scope = issuer.and_then(|c| c.0.key_ids.clone());
        let random = uuid::Uuid::new_v4().simple().to_string();
        let jti = match (&scope, issuer) {
            (Some(_), Some(c)) => format!("{}{random}", scoped_token_prefix(c)),
            _ => random,
        };
        let mut iat = self.now().timestamp();
        if let Some(revoked) = self.0.revoked.viewer_revoked_at(viewer) {
            if iat <= revoked {
                iat = revoked + 1;
            }
        }
        let ttl = i64::try_from(ttl_secs)
            .unwrap_or(i64::MAX)
            .min(self.0.tokens.max_lifetime);
        let claims = Claims {
            sub: viewer.to_owned(),
            vids,
            iat,
            exp: iat + ttl,
            jti,
            nbf: None,
            aud: Audience::One(AUDIENCE.to_owned()),
            keys: scope,
            ip: binding.ip,
            device: binding.device,
        };
        let token = self
            .0
            .tokens
            .sign(&claims)
            .ok_or(BrokerError::SigningNotConfigured)?;
        Ok(IssuedToken {
            token: Zeroizing::new(token),
            device_cookie: None,
            token_id: claims.jti,
            expires_at: DateTime::from_timestamp(claims.exp, 0).unwrap_or_default(),
            ttl_secs: u64::try_from(ttl).unwrap_or(0),
        })
    }

    /// `POST /v1/tokens`: an app backend (issuer) mints a token for its viewer,
    /// optionally bound to an address (`ip`) and a device (`device`).
    pub async fn issue_token(
        &self,
        client: &Client,
        ctx: &RequestContext,
        viewer: &str,
        video_ids: Vec<String>,
        ttl_secs: Option<u64>,
        binding: TokenBinding,
    ) -> Result<IssuedToken, BrokerError> {
        let mut rec = self.begin_audit(BrokerOperation::IssueToken, ctx)?;
        rec.client_id = Some(client.0.client_id);
        rec.viewer = Some(viewer.chars().take(MAX_SUBJECT_LEN).collect());
        rec.video_id = video_ids.first().cloned().filter(|_| video_ids.len() == 1);
        let result = async {
            client.require_issuer()?;
            if !valid_id(viewer, MAX_SUBJECT_LEN) {
                return Err(BrokerError::invalid(format!(
                    "Viewer must be 1 to {MAX_SUBJECT_LEN} bytes without control characters"
                )));
            }
            check_videos("VideoIds", &video_ids, false)?;
            let max = u64::try_from(self.0.tokens.max_lifetime).unwrap_or(0);
            let ttl = ttl_secs.unwrap_or(self.0.config.default_token_ttl.as_secs());
            if !(1..=max).contains(&ttl) {
                return Err(BrokerError::invalid(format!(
                    "TtlSeconds must be 1 to {max}"
                )));
            }
            if binding
                .ip
                .as_deref()
                .is_some_and(|ip| crate::token::parse_ip_claim(ip).is_none())
            {
                return Err(BrokerError::invalid(
                    "Ip must be an address or a CIDR range (203.0.113.7, 198.51.100.0/24)",
                ));
            }
            if binding
                .device
                .as_deref()
                .is_some_and(|d| !valid_id(d, crate::token::MAX_DEVICE_LEN))
            {
                return Err(BrokerError::invalid(format!(
                    "Device must be 1 to {} bytes without control characters",
                    crate::token::MAX_DEVICE_LEN
                )));
            }
            self.mint(viewer, video_ids, ttl, Some(client), binding)
        }
        .await;
        if let Ok(t) = &result {
            rec.token_id = Some(t.token_id.clone());
        }
        self.end_audit(rec, &result);
        result
    }

    /// Revokes a token (`jti`), a viewer's tokens so far, or a whole video.
    /// In force in this process at once, in others when they hear of it.
    pub async fn revoke(
        &self,
        client: &Client,
        ctx: &RequestContext,
        kind: RevocationKind,
        subject: &str,
    ) -> Result<RevocationView, BrokerError> {
        let mut rec = self.begin_audit(BrokerOperation::Revoke, ctx)?;
        rec.client_id = Some(client.0.client_id);
        fill_subject(&mut rec, kind, subject);
        let result = async {
            client.require_admin_or_issuer()?;
            check_subject(kind, subject)?;
            require_revocation_scope(client, kind, subject)?;
            let now = self.now();
            let revoked_at = match kind {
                RevocationKind::Viewer => self.viewer_revocation_time(subject, now),
                _ => now,
            };
            let r = Revocation {
                kind,
                subject: subject.to_owned(),
                revoked_at,
                expires_at: (kind != RevocationKind::Video).then(|| self.revocation_expiry(now)),
            };
            self.put_in_force(&r).await?;
            Ok(RevocationView(r))
        }
        .await;
        self.end_audit(rec, &result);
        result
    }

    pub async fn lift_revocation(
        &self,
        client: &Client,
        ctx: &RequestContext,
        kind: RevocationKind,
        subject: &str,
    ) -> Result<(), BrokerError> {
        let mut rec = self.begin_audit(BrokerOperation::LiftRevocation, ctx)?;
        rec.client_id = Some(client.0.client_id);
        fill_subject(&mut rec, kind, subject);
        let result = async {
            client.require_admin()?;
            check_subject(kind, subject)?;
            let seq = self
                .0
                .store
                .delete_revocation(kind, subject, self.now())
                .await?
                .ok_or(BrokerError::RevocationNotFound)?;
            self.0.revoked.apply(kind, subject, None, seq);
            Ok(())
        }
        .await;
        self.end_audit(rec, &result);
        result
    }

    pub async fn list_revocations(
        &self,
        client: &Client,
    ) -> Result<Vec<RevocationView>, BrokerError> {
        client.require_admin()?;
        let list = self.0.store.revocations(self.now()).await?;
        Ok(list.into_iter().map(RevocationView).collect())
    }

    pub async fn query_audit(
        &self,
        client: &Client,
        mut filter: BrokerAuditFilter,
    ) -> Result<AuditPage, BrokerError> {
        client.require_admin()?;
        filter.limit = filter.limit.clamp(1, 1000);
        let rows = self.0.store.query_audit(&filter).await?;
        let next = (rows.len() == filter.limit as usize)
            .then(|| rows.last().map(|(seq, _)| *seq))
            .flatten();
        Ok(AuditPage {
            records: rows.into_iter().map(|(_, r)| r).collect(),
            next,
        })
    }

    /// Sign-out: revokes the presented token (its signature must be valid;
    /// expired is fine). `Ok(false)`: there was no valid token to revoke.
    pub async fn sign_out(&self, ctx: &RequestContext, token: &str) -> Result<bool, BrokerError> {
        let claims = match self.0.tokens.verify(token, self.now().timestamp()) {
            Ok(c) => c,
            Err(crate::token::TokenError::Expired(c)) => *c,
            Err(_) => return Ok(false),
        };
        let mut rec = self.begin_audit(BrokerOperation::Revoke, ctx)?;
        fill_subject(&mut rec, RevocationKind::Token, &claims.jti);
        rec.viewer = Some(claims.sub.clone());
        let result = self.put_in_force(&self.token_revocation(&claims.jti)).await;
        self.end_audit(rec, &result);
        result.map(|()| true)
    }
}

/// The token ids an issuer limited to some keys gives out start with this.
fn scoped_token_prefix(client: &Client) -> String {
    format!("{}.", client.0.client_id.simple())
}

/// A client limited to some keys revokes only tokens it issued itself: a
/// viewer or a whole video reaches further than its scope.
fn require_revocation_scope(
    client: &Client,
    kind: RevocationKind,
    subject: &str,
) -> Result<(), BrokerError> {
    if client.0.key_ids.is_none() {
        return Ok(());
    }
    match kind {
        RevocationKind::Token if subject.starts_with(&scoped_token_prefix(client)) => Ok(()),
        RevocationKind::Token => Err(BrokerError::AccessDenied(
            "a client limited to some keys may revoke only the tokens it issued".into(),
        )),
        RevocationKind::Viewer | RevocationKind::Video => Err(BrokerError::AccessDenied(format!(
            "revoking a whole {} needs an admin or an issuer not limited to some keys; revoke the tokens you issued by TokenId",
            kind.as_str().to_lowercase()
        ))),
    }
}

fn check_subject(kind: RevocationKind, subject: &str) -> Result<(), BrokerError> {
    let ok = match kind {
        RevocationKind::Video => valid_video_id(subject),
        RevocationKind::Token => valid_id(subject, crate::token::MAX_JTI_LEN),
        RevocationKind::Viewer => valid_id(subject, MAX_SUBJECT_LEN),
    };
    if ok {
        Ok(())
    } else {
        Err(BrokerError::invalid(format!(
            "Id is not a valid {} id",
            kind.as_str().to_lowercase()
        )))
    }
}

fn fill_subject(rec: &mut BrokerAuditRecord, kind: RevocationKind, subject: &str) {
    let shown: String = subject.chars().take(256).collect();
    match kind {
        RevocationKind::Token => rec.token_id = Some(shown),
        RevocationKind::Viewer => rec.viewer = Some(shown),
        RevocationKind::Video => rec.video_id = Some(shown),
    }
    foundation::audit::add_detail(&mut rec.detail, "Type", kind.as_str());
}
