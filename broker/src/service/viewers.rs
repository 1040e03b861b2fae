//! Viewer accounts for apps without their own sign-in, and `/v1/login`.

use std::time::Instant;

use chrono::{DateTime, Utc};

use super::{Broker, BrokerError, Client, IssuedToken, RequestContext};
use crate::model::{BrokerOperation, Revocation, RevocationKind, ViewerLimits, ViewerRecord};
use crate::password::{self, Password, MAX_PASSWORD_LEN, MIN_PASSWORD_LEN};
use crate::token::{valid_video_id, ALL_VIDEOS, MAX_VIDEOS};

pub const MAX_USERNAME_LEN: usize = 64;

#[derive(Debug)]
pub struct NewViewer {
    pub username: String,
    pub password: Password,
    pub entitlements: Vec<String>,
    pub limits: ViewerLimits,
}

#[derive(Debug, Default)]
pub struct ViewerUpdate {
    pub password: Option<Password>,
    pub entitlements: Option<Vec<String>>,
    pub enabled: Option<bool>,
    /// `Some(None)`: back to the broker-wide limit.
    pub max_streams: Option<Option<u32>>,
    pub max_addresses_per_token: Option<Option<u32>>,
}

/// A viewer as shown to admins (never the hash).
#[derive(Debug, Clone)]
pub struct ViewerView {
    pub username: String,
    pub entitlements: Vec<String>,
    pub enabled: bool,
    pub limits: ViewerLimits,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<ViewerRecord> for ViewerView {
    fn from(v: ViewerRecord) -> Self {
        Self {
            username: v.username,
            entitlements: v.entitlements,
            enabled: v.enabled,
            limits: v.limits,
            created_at: v.created_at,
            updated_at: v.updated_at,
        }
    }
}

fn check_username(u: &str) -> Result<(), BrokerError> {
    let ok = !u.is_empty()
        && u.len() <= MAX_USERNAME_LEN
        && u.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@+-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(BrokerError::invalid(format!(
            "Username must be 1 to {MAX_USERNAME_LEN} characters of A-Z a-z 0-9 . _ @ + -"
        )))
    }
}

fn check_password(p: &Password) -> Result<(), BrokerError> {
    let n = p.expose_secret().chars().count();
    if (MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&n) {
        Ok(())
    } else {
        Err(BrokerError::invalid(format!(
            "Password must be {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} characters"
        )))
    }
}

/// Largest per-viewer limit (streams, addresses per token).
pub const MAX_VIEWER_LIMIT: u32 = 1_000_000;

fn check_limits(limits: [(&str, Option<u32>); 2]) -> Result<(), BrokerError> {
    match limits
        .into_iter()
        .find(|(_, n)| n.is_some_and(|n| n > MAX_VIEWER_LIMIT))
    {
        Some((field, _)) => Err(BrokerError::invalid(format!(
            "{field} must be 0 (no limit) to {MAX_VIEWER_LIMIT}"
        ))),
        None => Ok(()),
    }
}

pub(super) fn check_videos(
    field: &str,
    ids: &[String],
    allow_empty: bool,
) -> Result<(), BrokerError> {
    if (ids.is_empty() && !allow_empty) || ids.len() > MAX_VIDEOS {
        return Err(BrokerError::invalid(format!(
            "{field} must hold 1 to {MAX_VIDEOS} video ids, or [\"{ALL_VIDEOS}\"]"
        )));
    }
    if let Some(bad) = ids.iter().find(|v| !valid_video_id(v)) {
        let shown: String = bad.chars().take(40).collect();
        return Err(BrokerError::invalid(format!(
            "{field}: {shown:?} is not a video id (1 to 256 printable characters, no spaces)"
        )));
    }
    Ok(())
}

impl Broker {
    async fn hash_password(&self, password: Password) -> Result<String, BrokerError> {
        let _permit = self
            .0
            .hashing
            .acquire()
            .await
            .map_err(|e| BrokerError::Internal(e.to_string()))?;
        tokio::task::spawn_blocking(move || password::hash(&password))
            .await
            .map_err(|e| BrokerError::Internal(e.to_string()))?
            .map_err(BrokerError::Internal)
    }

    async fn verify_password(&self, password: Password, hash: String) -> Result<bool, BrokerError> {
        let _permit = self
            .0
            .hashing
            .acquire()
            .await
            .map_err(|e| BrokerError::Internal(e.to_string()))?;
        tokio::task::spawn_blocking(move || password::verify(&password, &hash))
            .await
            .map_err(|e| BrokerError::Internal(e.to_string()))
    }

    /// A revocation that ends every token of `viewer` issued up to now.
    pub(super) fn end_tokens_of(&self, viewer: &str) -> Revocation {
        let now = self.now();
        Revocation {
            kind: RevocationKind::Viewer,
            subject: viewer.to_owned(),
            revoked_at: self.viewer_revocation_time(viewer, now),
            expires_at: Some(self.revocation_expiry(now)),
        }
    }

    pub async fn create_viewer(
        &self,
        client: &Client,
        ctx: &RequestContext,
        new: NewViewer,
    ) -> Result<ViewerView, BrokerError> {
        let mut rec = self.begin_audit(BrokerOperation::CreateViewer, ctx)?;
        rec.client_id = Some(client.0.client_id);
        rec.viewer = Some(new.username.clone());
        let result = async {
            client.require_admin()?;
            check_username(&new.username)?;
            check_password(&new.password)?;
            check_videos("Entitlements", &new.entitlements, true)?;
            check_limits([
                ("MaxStreams", new.limits.max_streams),
                ("MaxAddressesPerToken", new.limits.max_addresses_per_token),
            ])?;
            let hash = self.hash_password(new.password).await?;
            let now = self.now();
            let record = ViewerRecord {
                username: new.username,
                password_hash: hash,
                entitlements: new.entitlements,
                enabled: true,
                limits: new.limits,
                created_at: now,
                updated_at: now,
            };
            match self.0.store.create_viewer(&record).await {
                Ok(()) => Ok(ViewerView::from(record)),
                Err(foundation::db::StoreError::Conflict) => Err(BrokerError::ViewerExists),
                Err(e) => Err(e.into()),
            }
        }
        .await;
        self.end_audit(rec, &result);
        result
    }

    pub async fn list_viewers(&self, client: &Client) -> Result<Vec<ViewerView>, BrokerError> {
        client.require_admin()?;
        let list = self.0.store.list_viewers().await?;
        Ok(list.into_iter().map(ViewerView::from).collect())
    }

    pub async fn viewer(&self, client: &Client, username: &str) -> Result<ViewerView, BrokerError> {
        client.require_admin()?;
        let v = self.0.store.viewer(username).await?;
        v.map(ViewerView::from).ok_or(BrokerError::ViewerNotFound)
    }

    /// Disabling, a new password, or losing an entitlement ends the viewer's
    /// current tokens; gaining one does not (the next sign-in carries it).
    pub async fn update_viewer(
        &self,
        client: &Client,
        ctx: &RequestContext,
        username: &str,
        update: ViewerUpdate,
    ) -> Result<ViewerView, BrokerError> {
        let mut rec = self.begin_audit(BrokerOperation::UpdateViewer, ctx)?;
        rec.client_id = Some(client.0.client_id);
        rec.viewer = Some(username.to_owned());
        let result = async {
            client.require_admin()?;
            if let Some(p) = &update.password {
                check_password(p)?;
            }
            if let Some(e) = &update.entitlements {
                check_videos("Entitlements", e, true)?;
            }
            check_limits([
                ("MaxStreams", update.max_streams.flatten()),
                (
                    "MaxAddressesPerToken",
                    update.max_addresses_per_token.flatten(),
                ),
            ])?;
            let mut v = self
                .0
                .store
                .viewer(username)
                .await?
                .ok_or(BrokerError::ViewerNotFound)?;
            let mut end_tokens = false;
            if let Some(p) = update.password {
                v.password_hash = self.hash_password(p).await?;
                end_tokens = true;
            }
            if let Some(e) = update.entitlements {
                let covered = |vid: &String| e.iter().any(|x| x == ALL_VIDEOS || x == vid);
                end_tokens |= !v.entitlements.iter().all(covered);
                v.entitlements = e;
            }
            if let Some(enabled) = update.enabled {
                end_tokens |= v.enabled && !enabled;
                v.enabled = enabled;
            }
            if let Some(n) = update.max_streams {
                v.limits.max_streams = n;
            }
            if let Some(n) = update.max_addresses_per_token {
                v.limits.max_addresses_per_token = n;
            }
            v.updated_at = self.now();
            let revocation = end_tokens.then(|| self.end_tokens_of(username));
            let seq = self
                .0
                .store
                .update_viewer(&v, revocation.as_ref())
                .await?
                .ok_or(BrokerError::ViewerNotFound)?;
            if let Some(r) = &revocation {
                self.0.revoked.apply(r.kind, &r.subject, Some(r), seq);
            }
            Ok(ViewerView::from(v))
        }
        .await;
        self.end_audit(rec, &result);
        result
    }

    pub async fn delete_viewer(
        &self,
        client: &Client,
        ctx: &RequestContext,
        username: &str,
    ) -> Result<(), BrokerError> {
        let mut rec = self.begin_audit(BrokerOperation::DeleteViewer, ctx)?;
        rec.client_id = Some(client.0.client_id);
        rec.viewer = Some(username.to_owned());
        let result = async {
            client.require_admin()?;
            let r = self.end_tokens_of(username);
            let seq = self
                .0
                .store
                .delete_viewer(username, &r)
                .await?
                .ok_or(BrokerError::ViewerNotFound)?;
            self.0.revoked.apply(r.kind, &r.subject, Some(&r), seq);
            Ok(())
        }
        .await;
        self.end_audit(rec, &result);
        result
    }

    /// Signs a viewer in. Unknown user, disabled account and wrong password
    /// give the same answer in about the same time. `device` is the device
    /// cookie of an earlier sign-in, if the browser sent one.
    pub async fn login(
        &self,
        ctx: &RequestContext,
        username: &str,
        password: Password,
        device: Option<&str>,
    ) -> Result<IssuedToken, BrokerError> {
        let mut rec = self.begin_audit(BrokerOperation::Login, ctx)?;
        let shown: String = username.chars().take(MAX_USERNAME_LEN).collect();
        rec.viewer = Some(shown);
        let result = self.login_inner(ctx, username, password, device).await;
        if let Ok(t) = &result {
            rec.token_id = Some(t.token_id.clone());
        }
        self.end_audit(rec, &result);
        result
    }

    /// Sign-in limits, all taken *before* the password is hashed, so parallel
    /// guesses cannot all slip through, and given back when the attempt
    /// succeeds (only failures count):
    /// - per address (or IPv6 /64): attempts of any kind;
    /// - per account and address: failures, so one address guesses slowly;
    /// - per account: failures from browsers that never signed in to it. A
    ///   botnet can exhaust this one, but a viewer whose browser holds a
    ///   device cookie of an earlier sign-in is not counted in it, so many
    ///   addresses cannot lock the account's owner out.
    async fn login_inner(
        &self,
        ctx: &RequestContext,
        username: &str,
        password: Password,
        device: Option<&str>,
    ) -> Result<IssuedToken, BrokerError> {
        let mono = Instant::now();
        self.0
            .login_address_limits
            .acquire(ctx.throttle_key())
            .map_err(BrokerError::RateLimited)?;
        let account = username.to_ascii_lowercase();
        let pair = format!("{account}\n{}", ctx.throttle_key());
        self.0
            .login_pair_limits
            .acquire(&pair, mono)
            .map_err(BrokerError::RateLimited)?;
        let now = self.now().timestamp();
        let known_device = device.is_some_and(|d| self.0.tokens.device_known(&account, d, now));
        if !known_device {
            if let Err(wait) = self.0.login_account_limits.acquire(&account, mono) {
                self.0.login_pair_limits.refund(&pair);
                return Err(BrokerError::RateLimited(wait));
            }
        }
        let result = self.check_password(username, password).await;
        if !matches!(result, Err(BrokerError::InvalidCredentials)) {
            self.0.login_pair_limits.refund(&pair);
            if !known_device {
                self.0.login_account_limits.refund(&account);
            }
        }
        let viewer = result?;
        let ttl = self.0.config.login_token_ttl.as_secs();
        let mut issued = self.mint(
            &viewer.username,
            viewer.entitlements,
            ttl,
            None,
            super::TokenBinding::default(),
        )?;
        issued.device_cookie = self
            .0
            .tokens
            .device_cookie(&account, now.saturating_add(DEVICE_COOKIE_SECS));
        Ok(issued)
    }

    /// The enabled viewer whose password this is, or `InvalidCredentials`.
    async fn check_password(
        &self,
        username: &str,
        password: Password,
    ) -> Result<ViewerRecord, BrokerError> {
        if !self.0.tokens.can_sign() {
            return Err(BrokerError::SigningNotConfigured);
        }
        let viewer = if check_username(username).is_ok() {
            self.0.store.viewer(username).await?
        } else {
            None
        };
        let hash = viewer
            .as_ref()
            .map_or_else(|| self.0.dummy_hash.clone(), |v| v.password_hash.clone());
        let matches = self.verify_password(password, hash).await?;
        match viewer {
            Some(v) if matches && v.enabled => Ok(v),
            _ => Err(BrokerError::InvalidCredentials),
        }
    }
}

/// How long a device cookie vouches for a browser.
pub const DEVICE_COOKIE_SECS: i64 = 90 * 24 * 3600;
