//! The broker's rules: who may have which key, and everything around that
//! (viewer accounts, token issuing, revocation, audit). No HTTP types here.

mod cache;
mod clearkey;
mod delivery;
mod error;
mod kms_changes;
mod limits;
mod management;
mod metrics;
mod playlists;
mod revocations;
mod risk;
mod risk_admin;
mod sessions;
mod viewers;
mod webhook;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use foundation::audit::{AuditLog, AuditSink};
use foundation::db::StoreError;
use foundation::ApiToken;
use foundation::Clock;
use kms_api::api::ClientInfo;
use kms_api::KmsClient;
use kms_api::Role;
use uuid::Uuid;

pub use cache::{CachedKey, KeyCache};

/// Verified playback tokens remembered (about 8 MiB when full).
const VERIFIED_TOKENS: usize = 16_384;
pub use clearkey::{parse_kid, Licence, LicenceRequest, MAX_LICENCE_KIDS};
pub use delivery::{KeyRequest, ReleasedKey};
pub use error::BrokerError;
pub use limits::{FailureBudget, Rate, RateLimiter};
pub use management::{AuditPage, IssuedToken, RevocationView};
pub use risk::{address_unit, RiskConfig, TokenBinding, WebhookTarget};
pub use viewers::{NewViewer, ViewerUpdate, ViewerView, DEVICE_COOKIE_SECS};
pub use webhook::{signature as webhook_signature, RiskEvent, EVENT_ID_HEADER, SIGNATURE_HEADER};

use crate::model::{BrokerAuditRecord, BrokerOperation, Heartbeat, RevocationKind, SessionRecord};
use crate::store::{BrokerStore, RevocationChange};
use crate::token::TokenKeys;
use revocations::RevocationSet;
use sessions::Sessions;

#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// How long a decrypted key is reused without asking the KMS; 0 = never.
    pub key_cache_ttl: Duration,
    /// Most keys cached at once (oldest out first).
    pub key_cache_capacity: usize,
    /// Upper bound of the key response's `Cache-Control: max-age`.
    pub key_max_age: Duration,
    /// Lifetime of tokens minted by `/v1/tokens` when none is asked for.
    pub default_token_ttl: Duration,
    /// Lifetime of tokens minted by `/v1/login`.
    pub login_token_ttl: Duration,
    /// Playback sessions (see `sessions`): 0 turns them off.
    pub session_idle: Duration,
    pub session_max: Duration,
    /// Lifetime of the tokens written into playlists the broker serves.
    pub playlist_token_ttl: Duration,
    pub rate_per_token: Rate,
    pub rate_per_address: Rate,
    /// Sign-in attempts per address; failed ones per account from one
    /// address; and failed ones per account from devices it never signed in
    /// on (see `viewers::login`).
    pub login_rate_per_address: Rate,
    pub login_failures_per_account_address: Rate,
    pub login_failures_per_account: Rate,
    /// Management calls (admin and issuer API) per address.
    pub rate_management_per_address: Rate,
    pub audit_buffer_capacity: usize,
    pub audit_batch_size: usize,
    pub audit_flush_interval: Duration,
    /// How long an admin or issuer identity from the KMS is trusted.
    pub identity_ttl: Duration,
    /// Full reload of revocations, a backstop for missed notifications.
    pub revocation_refresh: Duration,
    /// Stream limits, address binding, sharing detection, page origins.
    pub risk: RiskConfig,
    /// How the audit trail is chained and signed; `None` leaves it
    /// unchained (for measuring what chaining costs).
    pub audit_chain: Option<foundation::audit::ChainConfig>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            key_cache_ttl: Duration::from_secs(300),
            key_cache_capacity: 1_000_000,
            key_max_age: Duration::from_secs(60),
            default_token_ttl: Duration::from_secs(600),
            login_token_ttl: Duration::from_secs(3600),
            session_idle: Duration::from_secs(30 * 60),
            session_max: Duration::from_secs(12 * 3600),
            playlist_token_ttl: Duration::from_secs(3600),
            rate_per_token: Rate::new(10.0, 100.0),
            rate_per_address: Rate::new(200.0, 1000.0),
            login_rate_per_address: Rate::new(0.5, 20.0),
            login_failures_per_account_address: Rate::new(1.0 / 12.0, 5.0),
            login_failures_per_account: Rate::new(1.0 / 5.0, 50.0),
            rate_management_per_address: Rate::new(50.0, 500.0),
            audit_buffer_capacity: 200_000,
            audit_batch_size: 2000,
            audit_flush_interval: Duration::from_millis(100),
            identity_ttl: Duration::from_secs(5),
            revocation_refresh: Duration::from_secs(60),
            risk: RiskConfig::default(),
            audit_chain: Some(foundation::audit::ChainConfig::default()),
        }
    }
}

/// Who made a management call, as the KMS knows them.
#[derive(Debug, Clone)]
pub struct Client(pub ClientInfo);

impl Client {
    fn role(&self) -> Option<Role> {
        Role::parse(&self.0.role)
    }

    /// Broker administration needs an admin not limited to some keys.
    fn require_admin(&self) -> Result<(), BrokerError> {
        if self.role() == Some(Role::Admin) && self.0.key_ids.is_none() {
            Ok(())
        } else {
            Err(BrokerError::AccessDenied(
                "this call needs an admin API client not limited to some keys".into(),
            ))
        }
    }

    fn require_issuer(&self) -> Result<(), BrokerError> {
        if self.role() == Some(Role::Issuer) {
            Ok(())
        } else {
            Err(BrokerError::AccessDenied(
                "this call needs an API client of role `issuer`".into(),
            ))
        }
    }

    fn require_admin_or_issuer(&self) -> Result<(), BrokerError> {
        self.require_admin().or_else(|_| self.require_issuer())
    }
}

/// Per-request facts the service records.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    pub request_id: String,
    /// The caller's address (never used as an identity, only for limits and audit).
    pub address: String,
    /// For an IPv6 address, its /64 (`2001:db8:1:2::/64`).
    pub ipv6_prefix: Option<String>,
    /// The caller's own `X-Request-Id`, recorded as `Detail.ClientRequestId`.
    pub client_request_id: Option<String>,
    /// The caller's address, parsed (`address` is its text).
    pub ip: Option<std::net::IpAddr>,
    /// The page the request came from; read only when a page-origin rule
    /// exists (`Broker::checks_pages`).
    pub page: crate::page_origin::PageOrigin,
}

impl RequestContext {
    /// What per-address limits count by: an IPv4 address, or an IPv6 /64
    /// (one subscriber usually holds a whole /64, so single addresses are free).
    pub fn throttle_key(&self) -> &str {
        self.ipv6_prefix.as_deref().unwrap_or(&self.address)
    }
}

struct Inner {
    store: Arc<dyn BrokerStore>,
    kms: KmsClient,
    tokens: TokenKeys,
    /// Playback tokens that verified, so repeated key requests skip the JWT.
    verified: crate::token::VerifiedTokens,
    clock: Arc<dyn Clock>,
    config: BrokerConfig,
    keys: KeyCache,
    revoked: RevocationSet,
    sessions: Sessions,
    token_limits: RateLimiter,
    address_limits: RateLimiter,
    login_address_limits: RateLimiter,
    login_pair_limits: FailureBudget,
    management_limits: RateLimiter,
    login_account_limits: FailureBudget,
    audit: Arc<AuditLog<BrokerAuditRecord>>,
    releases: foundation::audit::Aggregator<BrokerAuditRecord>,
    session_writes: Arc<AuditLog<SessionRecord>>,
    risk: risk::Risk,
    identities: Mutex<HashMap<[u8; 32], (ClientInfo, Instant)>>,
    /// Checked against when a username is unknown, so that costs the same.
    dummy_hash: String,
    /// Bounds concurrent argon2 work (memory and CPU).
    hashing: tokio::sync::Semaphore,
    counters: metrics::Counters,
}

/// The key broker. Cheap to clone.
#[derive(Clone)]
pub struct Broker(Arc<Inner>);

struct StoreAudit(Arc<dyn BrokerStore>);

#[async_trait::async_trait]
impl AuditSink<BrokerAuditRecord> for StoreAudit {
    async fn append(&self, records: &[BrokerAuditRecord]) -> Result<(), StoreError> {
        self.0.append_audit(records).await
    }
}

#[async_trait::async_trait]
impl foundation::audit::CheckpointStore for StoreAudit {
    async fn append_checkpoint(
        &self,
        checkpoint: &foundation::audit::Checkpoint,
    ) -> Result<(), StoreError> {
        self.0.append_checkpoint(checkpoint).await
    }
}

/// The name of the broker's trail in checkpoints and exports.
pub const AUDIT_TRAIL: &str = "broker";

/// The broker's records, chained in their stored form.
impl foundation::audit::Chained for BrokerAuditRecord {
    fn normalize(&mut self) {
        use foundation::db::make_storable;
        self.time = foundation::db::storable_time(self.time);
        make_storable(&mut self.outcome);
        make_storable(&mut self.request_id);
        for s in [
            &mut self.viewer,
            &mut self.video_id,
            &mut self.token_id,
            &mut self.address,
        ]
        .into_iter()
        .flatten()
        {
            make_storable(s);
        }
        // PostgreSQL keeps an INTEGER.
        self.key_version = self.key_version.map(|v| v.min(i32::MAX as u32));
        if let Some(detail) = &mut self.detail {
            foundation::db::storable_json(detail);
        }
    }

    /// Every field, under fixed names, keys sorted (fields declared in
    /// order, nested JSON sorted): a field added later joins only when set,
    /// so older records keep their hashes.
    fn canonical(&self) -> Vec<u8> {
        #[derive(serde::Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Canonical<'a> {
            address: Option<&'a str>,
            client_id: Option<Uuid>,
            detail: Option<foundation::audit::Sorted<'a>>,
            id: Uuid,
            key_id: Option<Uuid>,
            key_version: Option<u32>,
            operation: &'a str,
            outcome: &'a str,
            request_id: &'a str,
            time: String,
            token_id: Option<&'a str>,
            video_id: Option<&'a str>,
            viewer: Option<&'a str>,
        }
        serde_json::to_vec(&Canonical {
            address: self.address.as_deref(),
            client_id: self.client_id,
            detail: self.detail.as_ref().map(foundation::audit::Sorted),
            id: self.id,
            key_id: self.key_id,
            key_version: self.key_version,
            operation: self.operation.as_str(),
            outcome: &self.outcome,
            request_id: &self.request_id,
            time: self
                .time
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            token_id: self.token_id.as_deref(),
            video_id: self.video_id.as_deref(),
            viewer: self.viewer.as_deref(),
        })
        .unwrap_or_default()
    }

    fn id(&self) -> Uuid {
        self.id
    }

    fn recorded_at(&self) -> chrono::DateTime<chrono::Utc> {
        self.time
    }

    fn link(&self) -> Option<&foundation::audit::Link> {
        self.link.as_ref()
    }

    fn set_link(&mut self, link: foundation::audit::Link) {
        self.link = Some(link);
    }
}

struct StoreHeartbeats(Arc<dyn BrokerStore>);

#[async_trait::async_trait]
impl AuditSink<Heartbeat> for StoreHeartbeats {
    async fn append(&self, records: &[Heartbeat]) -> Result<(), StoreError> {
        self.0.heartbeat(records).await
    }
}

struct StoreSessions(Arc<dyn BrokerStore>);

#[async_trait::async_trait]
impl AuditSink<SessionRecord> for StoreSessions {
    async fn append(&self, records: &[SessionRecord]) -> Result<(), StoreError> {
        self.0.upsert_sessions(records).await
    }
}

impl Broker {
    /// Loads revocations (refusing to start without them: deny by default)
    /// and starts the background work.
    pub async fn start(
        store: Arc<dyn BrokerStore>,
        kms: KmsClient,
        tokens: TokenKeys,
        clock: Arc<dyn Clock>,
        config: BrokerConfig,
    ) -> Result<Self, BrokerError> {
        let sink = Arc::new(StoreAudit(store.clone()));
        let audit = Arc::new(match &config.audit_chain {
            Some(chain) => AuditLog::chained(
                sink.clone(),
                config.audit_buffer_capacity,
                config.audit_batch_size,
                AUDIT_TRAIL,
                sink,
                chain,
            ),
            None => AuditLog::new(sink, config.audit_buffer_capacity, config.audit_batch_size),
        });
        let session_writes = Arc::new(AuditLog::new(
            Arc::new(StoreSessions(store.clone())),
            config.audit_buffer_capacity,
            config.audit_batch_size,
        ));
        let risk_config = config.risk.clone();
        let heartbeats = Arc::new(AuditLog::new(
            Arc::new(StoreHeartbeats(store.clone())),
            config.audit_buffer_capacity,
            config.audit_batch_size,
        ));
        let webhook = config
            .risk
            .webhook
            .clone()
            .map(webhook::Webhook::start)
            .transpose()
            .map_err(BrokerError::Internal)?;
        let dummy_hash = tokio::task::spawn_blocking(crate::password::dummy_hash)
            .await
            .map_err(|e| BrokerError::Internal(e.to_string()))?;
        let parallelism = std::thread::available_parallelism().map_or(2, |n| n.get());
        let broker = Broker(Arc::new(Inner {
            keys: KeyCache::new(config.key_cache_capacity, config.key_cache_ttl),
            revoked: RevocationSet::default(),
            sessions: Sessions::new(
                chrono::Duration::from_std(config.session_idle).unwrap_or_default(),
                chrono::Duration::from_std(config.session_max).unwrap_or_default(),
            ),
            token_limits: RateLimiter::new(config.rate_per_token),
            address_limits: RateLimiter::new(config.rate_per_address),
            login_address_limits: RateLimiter::new(config.login_rate_per_address),
            login_pair_limits: FailureBudget::new(config.login_failures_per_account_address),
            management_limits: RateLimiter::new(config.rate_management_per_address),
            login_account_limits: FailureBudget::new(config.login_failures_per_account),
            identities: Mutex::new(HashMap::new()),
            hashing: tokio::sync::Semaphore::new(parallelism),
            dummy_hash,
            store,
            kms,
            tokens,
            verified: crate::token::VerifiedTokens::new(VERIFIED_TOKENS),
            clock,
            config,
            audit,
            session_writes,
            risk: risk::Risk::new(risk_config, heartbeats, webhook),
            releases: foundation::audit::Aggregator::new(delivery::MAX_PENDING_AGGREGATES),
            counters: metrics::Counters::default(),
        }));
        broker.reload_revocations().await?;
        broker.reload_policies().await?;
        broker.spawn_background().await?;
        Ok(broker)
    }

    async fn spawn_background(&self) -> Result<(), BrokerError> {
        self.follow_kms_changes();
        let interval = self.0.config.audit_flush_interval;
        tokio::spawn(self.0.audit.clone().run(interval));
        let weak = Arc::downgrade(&self.0);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(inner) = weak.upgrade() else { return };
                Broker(inner).flush_releases();
            }
        });
        tokio::spawn(
            self.0
                .session_writes
                .clone()
                .run(interval.max(Duration::from_secs(1))),
        );
        tokio::spawn(
            self.0
                .risk
                .heartbeats
                .clone()
                .run(interval.max(Duration::from_secs(1))),
        );

        let mut changes = self.0.store.watch_revocations().await?;
        let weak = Arc::downgrade(&self.0);
        tokio::spawn(async move {
            while let Some(change) = changes.recv().await {
                let Some(inner) = weak.upgrade() else { return };
                let broker = Broker(inner);
                let result = match change {
                    RevocationChange::One(kind, subject) => broker.reload_one(kind, &subject).await,
                    RevocationChange::VideoPolicy(video_id) => {
                        broker.reload_policy(&video_id).await
                    }
                    RevocationChange::Reset => match broker.reload_revocations().await {
                        Ok(()) => broker.reload_policies().await,
                        Err(e) => Err(e),
                    },
                };
                if let Err(e) = result {
                    tracing::warn!(error = %e, "reloading revocations failed; the periodic reload will retry");
                }
            }
        });

        let weak = Arc::downgrade(&self.0);
        let every = self.0.config.revocation_refresh;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(inner) = weak.upgrade() else { return };
                Broker(inner).housekeeping().await;
            }
        });
        Ok(())
    }

    /// Periodic: reload revocations, forget what expired, wipe stale keys.
    async fn housekeeping(&self) {
        let now = self.now();
        if let Err(e) = self.0.store.purge_expired(now).await {
            tracing::warn!(error = %e, "purging expired revocations and sessions failed");
        }
        if let Err(e) = self.reload_changed_revocations().await {
            tracing::warn!(error = %e, "reading changed revocations failed; keeping the ones in memory");
        }
        if let Err(e) = self.reload_policies().await {
            tracing::warn!(error = %e, "reading playback policies failed; keeping the ones in memory");
        }
        self.0.revoked.sweep(now.timestamp());
        let mono = Instant::now();
        self.0.keys.sweep(mono);
        self.0.sessions.sweep(now, mono);
        self.0.risk.sweep(mono);
        for l in [
            &self.0.token_limits,
            &self.0.address_limits,
            &self.0.login_address_limits,
            &self.0.management_limits,
        ] {
            l.sweep();
        }
        self.0.login_pair_limits.sweep(mono);
        self.0.login_account_limits.sweep(mono);
        self.0
            .identities
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, (_, at)| mono.duration_since(*at) < self.0.config.identity_ttl);
    }

    /// Reads every revocation again (at start, or after notifications may
    /// have been missed), building the new set off the async runtime.
    async fn reload_revocations(&self) -> Result<(), BrokerError> {
        let rows = self.0.store.revocations_since(0, self.now()).await?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.0.revoked.replace_all(&rows))
            .await
            .map_err(|e| BrokerError::Internal(e.to_string()))
    }

    /// Reads the changes after the newest one seen (the periodic backstop for
    /// missed notifications: cheap, however many revocations there are).
    async fn reload_changed_revocations(&self) -> Result<(), BrokerError> {
        let since = self.0.revoked.watermark();
        let rows = self.0.store.revocations_since(since, self.now()).await?;
        self.0.revoked.apply_since(&rows);
        Ok(())
    }

    async fn reload_one(&self, kind: RevocationKind, subject: &str) -> Result<(), BrokerError> {
        // No row: it expired and was purged; the sweep forgets it here too.
        if let Some(row) = self.0.store.revocation(kind, subject).await? {
            let state = (!row.lifted).then_some(&row.revocation);
            self.0.revoked.apply(kind, subject, state, row.seq);
        }
        Ok(())
    }

    pub async fn ready(&self) -> Result<(), BrokerError> {
        Ok(self.0.store.ping().await?)
    }

    /// Writes out every buffered audit record and session (graceful shutdown).
    pub async fn drain(&self, deadline: std::time::Instant) -> Result<(), usize> {
        self.flush_releases();
        let sessions = self.0.session_writes.drain(deadline).await;
        let heartbeats = self.0.risk.heartbeats.drain(deadline).await;
        let audit = self.0.audit.drain(deadline).await;
        audit.and(sessions).and(heartbeats)
    }

    /// Longest a key learnt from the KMS is released without asking it again.
    /// The longest `Cache-Control: max-age` of a key response.
    pub fn key_max_age(&self) -> Duration {
        self.0.config.key_max_age
    }

    pub fn key_cache_max_age(&self) -> Duration {
        self.0.config.key_cache_ttl
    }

    /// Whether any page-origin rule exists, so `Origin` and `Referer` must
    /// be read.
    pub fn checks_pages(&self) -> bool {
        self.0.risk.checks_pages()
    }

    pub fn audit_buffered(&self) -> usize {
        self.0.audit.buffered()
    }

    fn now(&self) -> DateTime<Utc> {
        self.0.clock.now()
    }

    fn begin_audit(
        &self,
        op: BrokerOperation,
        ctx: &RequestContext,
    ) -> Result<BrokerAuditRecord, BrokerError> {
        if !self.0.audit.has_room() {
            return Err(BrokerError::AuditUnavailable);
        }
        Ok(BrokerAuditRecord {
            id: Uuid::now_v7(),
            time: self.now(),
            operation: op,
            outcome: String::new(),
            request_id: ctx.request_id.clone(),
            viewer: None,
            video_id: None,
            key_id: None,
            key_version: None,
            token_id: None,
            client_id: None,
            address: (!ctx.address.is_empty()).then(|| ctx.address.clone()),
            detail: ctx
                .client_request_id
                .as_ref()
                .map(|id| serde_json::json!({ "ClientRequestId": id })),
            link: None,
        })
    }

    fn end_audit<T>(&self, mut record: BrokerAuditRecord, result: &Result<T, BrokerError>) {
        record.outcome = match result {
            Ok(_) => foundation::audit::OUTCOME_SUCCESS.to_owned(),
            Err(e) => e.code().to_owned(),
        };
        self.0.audit.record(record);
    }

    /// Resolves an API client token through the KMS (`/v1/whoami`), trusting
    /// the answer for `identity_ttl`. Unknown and revoked look the same.
    /// Management calls are limited per address first, so guessing API
    /// tokens (each unknown one costs a KMS call) is slow.
    pub async fn authenticate(
        &self,
        ctx: &RequestContext,
        token: Option<&ApiToken>,
    ) -> Result<Client, BrokerError> {
        if !ctx.address.is_empty() {
            self.0
                .management_limits
                .acquire(ctx.throttle_key())
                .map_err(BrokerError::RateLimited)?;
        }
        let token = token.ok_or(BrokerError::Unauthenticated)?;
        let digest = token.digest().0;
        let ttl = self.0.config.identity_ttl;
        if let Some((info, at)) = self
            .0
            .identities
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&digest)
        {
            if at.elapsed() < ttl {
                return Ok(Client(info.clone()));
            }
        }
        match self.0.kms.identify(token).await {
            Ok(info) if info.revoked_date.is_none() => {
                self.0
                    .identities
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(digest, (info.clone(), Instant::now()));
                Ok(Client(info))
            }
            Ok(_) => Err(BrokerError::Unauthenticated),
            Err(e) if e.status() == Some(401) => Err(BrokerError::Unauthenticated),
            Err(e) => Err(BrokerError::KmsUnavailable(e.to_string())),
        }
    }
}
