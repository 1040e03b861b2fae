//! The KMS rules: authentication, authorization, key lifecycle, envelope
//! operations and auditing. No HTTP types and no SQL here.

mod access_keys;
pub mod audit;
mod cache;
mod clients;
mod data;
mod error;
mod feed;
mod freshness;
mod keys;
mod usage;
mod videos;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::OsRng;
use uuid::Uuid;

pub use access_keys::{AccessKeyCreated, MAX_ACCESS_KEYS_PER_CLIENT};
pub use audit::{Aggregate, Aggregator, AuditLog, AuditSink, StoreSink};
pub use clients::{bootstrap_admin, ClientCreated, NewClient};
pub use data::{
    DataKeyRequest, Decrypted, Encrypted, GeneratedDataKey, ReEncryptItem, ReEncrypted,
    MAX_BATCH_KEYS,
};
pub use error::KmsError;
pub use feed::{FeedEvent, Subscription};
pub use foundation::clock::{Clock, ManualClock, SystemClock};
pub use keys::{KeyView, NewKeyRequest};
pub use videos::{valid_video_id, VideoView, VIDEO_ID_CONTEXT_KEY};

use crate::crypto::{ApiToken, EncryptionContext, RootKey, TokenDigest};
use crate::model::{AuditRecord, Change, ClientRecord, KeyState, Operation, Role, OUTCOME_SUCCESS};
use crate::store::Store;
use cache::{CachedKey, Caches, Refresh};
use usage::UsageLeases;

/// Limits and intervals, with production defaults.
#[derive(Debug, Clone)]
pub struct KmsConfig {
    /// Longest time a cached key or client is trusted without a notification.
    pub cache_ttl: Duration,
    /// Unflushed audit records past which audited operations answer 503.
    pub audit_buffer_capacity: usize,
    pub audit_batch_size: usize,
    pub audit_flush_interval: Duration,
    /// How often due rotations and deletions are carried out.
    pub maintenance_interval: Duration,
    /// Encryptions per master key version before it is rotated (GCM bound).
    pub max_encryptions_per_version: u64,
    /// Longest time cached keys and clients are served without confirming
    /// that no change was missed (see `freshness`).
    pub max_stale: Duration,
    /// How the audit trail is chained and signed; `None` leaves it
    /// unchained (for measuring what chaining costs).
    pub audit_chain: Option<foundation::audit::ChainConfig>,
}

impl Default for KmsConfig {
    fn default() -> Self {
        Self {
            cache_ttl: Duration::from_secs(30),
            audit_buffer_capacity: 200_000,
            audit_batch_size: 2_000,
            audit_flush_interval: Duration::from_millis(100),
            maintenance_interval: Duration::from_secs(60),
            max_encryptions_per_version: 1 << 32,
            max_stale: Duration::from_secs(120),
            audit_chain: Some(foundation::audit::ChainConfig::default()),
        }
    }
}

/// Per-request facts that end up in the audit trail.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: String,
    /// The caller's own `X-Request-Id`, recorded as `Detail.ClientRequestId`.
    pub client_request_id: Option<String>,
    /// The cloud door a signed request came through, recorded as
    /// `Protocol` and `AccessKeyId`.
    pub door: Option<Door>,
}

/// A signed request's protocol ("aws", "alibaba", "tencent") and the access
/// key id it named (never the secret).
#[derive(Debug, Clone)]
pub struct Door {
    pub protocol: &'static str,
    pub access_key_id: Option<String>,
}

impl RequestContext {
    pub fn new(request_id: impl Into<String>) -> Self {
        Self {
            request_id: request_id.into(),
            client_request_id: None,
            door: None,
        }
    }
}

/// How a data operation's caller proves who it is: a bearer token (checked
/// inside the operation, so a refusal is audited under it), or a signed
/// request a door has already verified with [`Kms::authenticate_signed`].
#[derive(Debug)]
pub enum Credential<'a> {
    Token(Option<&'a ApiToken>),
    Verified(Caller),
}

impl<'a> From<Option<&'a ApiToken>> for Credential<'a> {
    fn from(token: Option<&'a ApiToken>) -> Self {
        Self::Token(token)
    }
}

impl From<Caller> for Credential<'_> {
    fn from(caller: Caller) -> Self {
        Self::Verified(caller)
    }
}

/// An authenticated API client.
#[derive(Debug, Clone)]
pub struct Caller(Arc<ClientRecord>);

impl Caller {
    pub fn client(&self) -> &ClientRecord {
        &self.0
    }

    fn may_use(&self, key_id: Uuid) -> bool {
        self.0
            .key_ids
            .as_ref()
            .is_none_or(|ids| ids.contains(&key_id))
    }

    /// The caller's role allows this call (whatever its keys).
    pub fn require_role(&self, role: Role) -> Result<(), KmsError> {
        if !self.0.roles.contains(role) {
            return Err(KmsError::AccessDenied(format!(
                "this call needs a client of role `{}`",
                role.as_str()
            )));
        }
        Ok(())
    }

    /// An admin call: the admin role, and no limit to some keys.
    pub fn require_admin(&self) -> Result<(), KmsError> {
        self.require(Role::Admin, None)
    }

    /// Deny by default: the role must match, and the key must be in scope.
    fn require(&self, role: Role, key_id: Option<Uuid>) -> Result<(), KmsError> {
        self.require_role(role)?;
        match key_id {
            Some(id) if !self.may_use(id) => Err(KmsError::AccessDenied(
                "this client may not use this key".into(),
            )),
            None if self.0.key_ids.is_some() => Err(KmsError::AccessDenied(
                "this call needs a client that is not limited to some keys".into(),
            )),
            _ => Ok(()),
        }
    }
}

/// An audit record being filled in as an operation learns who and what.
struct AuditEvent {
    record: AuditRecord,
    client_request_id: Option<String>,
    door: Option<Door>,
}

impl AuditEvent {
    fn finish<T>(self, result: &Result<T, KmsError>) -> AuditRecord {
        let outcome = match result {
            Ok(_) => OUTCOME_SUCCESS,
            Err(e) => e.code(),
        };
        self.finish_with(outcome)
    }

    fn finish_with(mut self, outcome: &str) -> AuditRecord {
        self.record.outcome = outcome.to_owned();
        if let Some(id) = self.client_request_id {
            crate::model::add_detail(&mut self.record.detail, "ClientRequestId", id);
        }
        if let Some(door) = self.door {
            self.record.protocol = Some(door.protocol.to_owned());
            self.record.access_key_id = door.access_key_id;
        }
        self.record
    }

    fn caller(&mut self, c: &Caller) {
        self.record.client_id = Some(c.0.id);
    }

    fn key(&mut self, id: Uuid, version: Option<u32>) {
        self.record.key_id = Some(id);
        self.record.key_version = version;
    }

    fn context(&mut self, ctx: &EncryptionContext) {
        self.record.encryption_context = Some(ctx.clone());
    }
}

struct Inner {
    store: Arc<dyn Store>,
    root: RootKey,
    clock: Arc<dyn Clock>,
    config: KmsConfig,
    caches: Caches,
    freshness: freshness::Freshness,
    /// Database lookups of unknown credentials (see `surely_unknown`).
    unknown_lookups: cache::LookupGate,
    /// Credentials looked up in the database (for /metrics).
    credential_lookups: std::sync::atomic::AtomicU64,
    audit: Arc<AuditLog<AuditRecord>>,
    /// Refusals of unknown credentials, merged per operation per flush
    /// interval: a flood of junk tokens is a few records, not one each.
    refusals: audit::Aggregator<AuditRecord>,
    usage: Arc<UsageLeases>,
    /// Changes passed on to brokers (`GET /v1/changes`).
    feed: feed::Feed,
}

/// The key management service. Cheap to clone.
#[derive(Clone)]
pub struct Kms(Arc<Inner>);

impl Kms {
    /// Checks the root key against the database and starts the background
    /// work (audit writer, change listener, rotations and deletions).
    pub async fn start(
        store: Arc<dyn Store>,
        root: RootKey,
        clock: Arc<dyn Clock>,
        config: KmsConfig,
    ) -> Result<Self, KmsError> {
        verify_root_key(store.as_ref(), &root).await?;
        let sink = Arc::new(StoreSink(store.clone()));
        let audit = Arc::new(match &config.audit_chain {
            Some(chain) => AuditLog::chained(
                sink.clone(),
                config.audit_buffer_capacity,
                config.audit_batch_size,
                audit::TRAIL,
                sink,
                chain,
            ),
            None => AuditLog::new(sink, config.audit_buffer_capacity, config.audit_batch_size),
        });
        let usage = UsageLeases::new(store.clone(), config.max_encryptions_per_version);
        let kms = Kms(Arc::new(Inner {
            caches: Caches::new(config.cache_ttl),
            freshness: freshness::Freshness::new(config.max_stale),
            unknown_lookups: cache::LookupGate::new(20.0),
            credential_lookups: std::sync::atomic::AtomicU64::new(0),
            store,
            root,
            clock,
            config,
            audit,
            refusals: audit::Aggregator::new(1000),
            usage,
            feed: feed::Feed::new(),
        }));
        kms.load_known_clients().await?;
        kms.spawn_background().await?;
        Ok(kms)
    }

    async fn spawn_background(&self) -> Result<(), KmsError> {
        tokio::spawn(self.0.audit.clone().run(self.0.config.audit_flush_interval));
        let weak = Arc::downgrade(&self.0);
        let every = self.0.config.audit_flush_interval;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(inner) = weak.upgrade() else { return };
                Kms(inner).flush_refusals();
            }
        });

        let mut changes = self.0.store.watch_changes().await?;
        let weak = Arc::downgrade(&self.0);
        tokio::spawn(async move {
            while let Some(change) = changes.recv().await {
                let Some(inner) = weak.upgrade() else { return };
                Kms(inner).apply_change(change);
            }
        });

        let weak = Arc::downgrade(&self.0);
        let every = self.0.freshness.interval();
        tokio::spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                let beat = inner.freshness.heartbeat();
                if let Err(e) = inner.store.heartbeat(&beat).await {
                    tracing::debug!(error = %e, "heartbeat not sent; caches stay unconfirmed");
                }
                drop(inner);
                tokio::time::sleep(every).await;
            }
        });

        let weak = Arc::downgrade(&self.0);
        let interval = self.0.config.maintenance_interval;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(inner) = weak.upgrade() else { return };
                if let Err(e) = Kms(inner).run_maintenance().await {
                    tracing::warn!(error = %e, "maintenance pass failed; will retry");
                }
            }
        });
        Ok(())
    }

    /// Reads every client's token digest into the caches' list of known ones.
    async fn load_known_clients(&self) -> Result<(), KmsError> {
        let clients = self.0.store.list_clients().await?;
        let access_keys = self.0.store.list_access_keys(None).await?;
        self.0.caches.add_known(
            clients.iter().map(|c| c.token_digest.0),
            access_keys.into_iter().map(|k| k.id),
            true,
        );
        Ok(())
    }

    /// After a client change elsewhere (or missed changes), learn new digests.
    fn reload_known_clients(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.load_known_clients().await {
                tracing::debug!(error = %e, "reloading client digests failed");
            }
        });
    }

    fn apply_change(&self, change: Change) {
        self.0.feed.publish(&change);
        match change {
            Change::Key(id) => self.0.caches.invalidate_key(id),
            Change::Client(id) => self.0.caches.invalidate_client(id),
            Change::Video(id) => self.0.caches.invalidate_video(&id),
            // Nothing cached is stale; only the new digest is to be learnt.
            Change::ClientCreated(_) => self.reload_known_clients(),
            Change::Reset => {
                self.0.caches.clear();
                self.reload_known_clients();
            }
            Change::Heartbeat(payload) => self.0.freshness.received(&payload),
        }
    }

    /// Moves merged refusals into the audit buffer.
    fn flush_refusals(&self) {
        for r in self.0.refusals.take() {
            self.0.audit.record(r);
        }
    }

    /// Writes out every buffered audit record (graceful shutdown).
    pub async fn flush_audit(&self) -> Result<(), KmsError> {
        self.flush_refusals();
        Ok(self
            .0
            .audit
            .flush()
            .await
            .map_err(crate::store::StoreError::from)?)
    }

    /// Flushes for graceful shutdown, retrying until `deadline`.
    /// `Err(n)`: n records could not be written.
    pub async fn drain_audit(&self, deadline: std::time::Instant) -> Result<(), usize> {
        self.flush_refusals();
        self.0.audit.drain(deadline).await
    }

    pub fn audit_buffered(&self) -> usize {
        self.0.audit.buffered()
    }

    pub fn audit_flush_failures(&self) -> u64 {
        self.0.audit.flush_failures()
    }

    /// The database pool: (open connections, idle ones), if the store has one.
    pub fn pool_stats(&self) -> Option<(u32, usize)> {
        self.0.store.pool_stats()
    }

    pub async fn ready(&self) -> Result<(), KmsError> {
        Ok(self.0.store.ping().await?)
    }

    /// Credentials looked up in the database since start.
    pub fn credential_lookups(&self) -> u64 {
        self.0
            .credential_lookups
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How long since the caches were confirmed current, and the bound.
    pub fn staleness(&self) -> (Duration, Duration) {
        let f = &self.0.freshness;
        (f.unconfirmed_for(), f.max_stale())
    }

    /// The service clock's time (the doors check signed times against it).
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.0.clock.now()
    }

    fn begin_audit(&self, op: Operation, ctx: &RequestContext) -> Result<AuditEvent, KmsError> {
        if !self.0.audit.has_room() {
            return Err(KmsError::AuditUnavailable);
        }
        Ok(AuditEvent {
            record: AuditRecord {
                // Time-ordered: appends to the id index instead of random inserts.
                id: Uuid::now_v7(),
                time: self.now(),
                client_id: None,
                operation: op,
                key_id: None,
                key_version: None,
                encryption_context: None,
                outcome: String::new(),
                request_id: ctx.request_id.clone(),
                detail: None,
                protocol: None,
                access_key_id: None,
                link: None,
            },
            client_request_id: ctx.client_request_id.clone(),
            door: ctx.door.clone(),
        })
    }

    /// Audits a signed request its door refused before the operation ran
    /// (bad signature, expired, replayed, unknown access key). Refusals
    /// naming no known client are merged, as for unknown tokens.
    pub fn audit_refusal(
        &self,
        op: Operation,
        ctx: &RequestContext,
        caller: Option<&Caller>,
        error: &KmsError,
    ) {
        let Ok(mut ev) = self.begin_audit(op, ctx) else {
            return;
        };
        if let Some(c) = caller {
            ev.caller(c);
        }
        let record = ev.finish_with(error.code());
        if record.client_id.is_none() {
            self.0.refusals.add(record);
        } else {
            self.0.audit.record(record);
        }
    }

    /// The caller behind a data operation's credential.
    async fn credential(&self, cred: Credential<'_>) -> Result<Caller, KmsError> {
        match cred {
            Credential::Token(token) => self.authenticate(token).await,
            Credential::Verified(caller) => Ok(caller),
        }
    }

    fn end_audit<T>(&self, ev: AuditEvent, result: &Result<T, KmsError>) {
        let record = ev.finish(result);
        if record.client_id.is_none() && matches!(result, Err(KmsError::Unauthenticated)) {
            self.0.refusals.add(record);
        } else {
            self.0.audit.record(record);
        }
    }

    /// Resolves a bearer token to its client; unknown and revoked look the same.
    pub async fn authenticate(&self, token: Option<&ApiToken>) -> Result<Caller, KmsError> {
        let token = token.ok_or(KmsError::Unauthenticated)?;
        let digest = token.digest();
        let client = match self.cached(self.0.caches.client(&digest)) {
            Some((client, fresh)) => {
                if !fresh {
                    self.refresh_in_background(Refresh::Client(digest.0));
                }
                client
            }
            None if self.surely_unknown(&digest) => return Err(KmsError::Unauthenticated),
            None => self
                .fetch_client(&digest)
                .await?
                .ok_or(KmsError::Unauthenticated)?,
        };
        // The store looked the digest up by index; compare again in constant time.
        if client.token_digest != digest || client.revoked_at.is_some() {
            return Err(KmsError::Unauthenticated);
        }
        Ok(Caller(client))
    }

    /// Resolves `key` for a caller who needs `role` on it, checking the role
    /// before looking anything up, so a caller that may not use keys learns
    /// nothing about which aliases exist. For a client limited to some keys,
    /// an unknown alias and a key outside its scope look the same.
    async fn resolve_key_for(
        &self,
        caller: &Caller,
        role: Role,
        key: &str,
    ) -> Result<Uuid, KmsError> {
        caller.require_role(role)?;
        let id = match self.resolve_key_id(key).await {
            Err(KmsError::KeyNotFound) if caller.0.key_ids.is_some() => {
                return Err(KmsError::AccessDenied(
                    "this client may not use this key".into(),
                ))
            }
            other => other?,
        };
        caller.require(role, Some(id))?;
        Ok(id)
    }

    /// The key `key` (id or alias) names, for a caller who needs `role` on
    /// it; refused as `resolve_key_for` refuses.
    pub async fn resolve_key(
        &self,
        caller: &Caller,
        role: Role,
        key: &str,
    ) -> Result<Uuid, KmsError> {
        self.resolve_key_for(caller, role, key).await
    }

    /// Accepts a key id (UUID) or an alias (`alias/...`).
    async fn resolve_key_id(&self, key: &str) -> Result<Uuid, KmsError> {
        if !key.starts_with("alias/") {
            // No key can have such an id: not found, as for any unknown id.
            return Uuid::parse_str(key).map_err(|_| KmsError::KeyNotFound);
        }
        match self.cached(self.0.caches.alias(key)) {
            Some((id, fresh)) => {
                if !fresh {
                    self.refresh_in_background(Refresh::Alias(key.to_owned()));
                }
                Ok(id)
            }
            None => self.fetch_alias(key).await?.ok_or(KmsError::KeyNotFound),
        }
    }

    /// A key with its unwrapped versions: from the cache once loaded, so the
    /// hot path never waits on the database (see `cache`).
    async fn load_key(&self, id: Uuid) -> Result<Arc<CachedKey>, KmsError> {
        match self.cached(self.0.caches.key(&id)) {
            Some((key, fresh)) => {
                if !fresh {
                    self.refresh_in_background(Refresh::Key(id));
                }
                Ok(key)
            }
            None => self.fetch_key(id).await,
        }
    }

    /// A token no client has, known without the database: its digest is not
    /// among the known clients' while those are current. A few lookups a
    /// second still go to the database, for a client created by another
    /// process a moment ago.
    fn surely_unknown(&self, digest: &TokenDigest) -> bool {
        self.0.caches.known_client(digest) == Some(false)
            && self.0.freshness.cache_usable()
            && !self.0.unknown_lookups.try_take()
    }

    /// A cache hit, unless the caches are unconfirmed past `max_stale`: then
    /// it counts as a miss, read again from the database (503 if it cannot
    /// be reached), never served on trust.
    fn cached<T>(&self, hit: Option<T>) -> Option<T> {
        hit.filter(|_| self.0.freshness.cache_usable())
    }

    /// Re-reads a stale entry without making the request wait; one refresh
    /// per entry at a time. While the database is down the stale entry keeps
    /// serving: every change goes through the database, so none is missed.
    fn refresh_in_background(&self, what: Refresh) {
        if !self.0.caches.begin_refresh(&what) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let result = match &what {
                Refresh::Key(id) => this.fetch_key(*id).await.map(drop),
                Refresh::Client(digest) => this.fetch_client(&TokenDigest(*digest)).await.map(drop),
                Refresh::Alias(alias) => this.fetch_alias(alias).await.map(drop),
                Refresh::AccessKey(id) => this.fetch_access_key(id).await.map(drop),
                Refresh::Video(id) => this.fetch_video(id).await.map(drop),
            };
            this.0.caches.end_refresh(&what);
            if let Err(e) = result {
                tracing::debug!(error = %e, "cache refresh failed; serving the cached entry meanwhile");
            }
        });
    }

    async fn fetch_client(
        &self,
        digest: &TokenDigest,
    ) -> Result<Option<Arc<ClientRecord>>, KmsError> {
        let epoch = self.0.caches.epoch();
        self.0
            .credential_lookups
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let found = self.0.store.client_by_digest(digest).await?.map(Arc::new);
        match &found {
            Some(client) => self.0.caches.put_client(epoch, client.clone()),
            None => self.0.caches.forget_client(digest),
        }
        Ok(found)
    }

    async fn fetch_alias(&self, alias: &str) -> Result<Option<Uuid>, KmsError> {
        let epoch = self.0.caches.epoch();
        let found = self.0.store.key_id_for_alias(alias).await?;
        match found {
            Some(id) => self.0.caches.put_alias(epoch, alias, id),
            None => self.0.caches.forget_alias(alias),
        }
        Ok(found)
    }

    async fn fetch_key(&self, id: Uuid) -> Result<Arc<CachedKey>, KmsError> {
        let epoch = self.0.caches.epoch();
        let record = self.0.store.key(id).await?.ok_or(KmsError::KeyNotFound)?;
        let mut versions = BTreeMap::new();
        for v in self.0.store.key_versions(id).await? {
            let key = self.0.root.unwrap_key(id, v.version, &v.wrapped).map_err(|_| {
                tracing::error!(key_id = %id, version = v.version, "stored master key version fails to unwrap");
                KmsError::Internal("a stored master key version is corrupt".into())
            })?;
            versions.insert(v.version, Arc::new(key));
        }
        let key = Arc::new(CachedKey::new(record, versions));
        self.0.caches.put_key(epoch, key.clone());
        Ok(key)
    }

    /// Refuses keys that may not encrypt or decrypt in their current state.
    fn require_usable(state: KeyState) -> Result<(), KmsError> {
        match state {
            KeyState::Enabled => Ok(()),
            KeyState::Disabled => Err(KmsError::KeyDisabled),
            KeyState::PendingDeletion => Err(KmsError::KeyPendingDeletion),
            KeyState::Deleted => Err(KmsError::KeyDeleted),
        }
    }

    /// One pass of background work: due rotations, deletions and shreds.
    pub async fn run_maintenance(&self) -> Result<(), KmsError> {
        let now = self.now();
        let ctx = RequestContext::new("maintenance");
        for (id, primary) in self.0.store.keys_due_rotation(now).await? {
            if let Err(e) = self
                .rotate_as_system(&ctx, id, primary, "RotationPeriod")
                .await
            {
                tracing::warn!(key_id = %id, error = %e, "scheduled rotation failed");
            }
        }
        for id in self.0.store.keys_due_deletion(now).await? {
            let mut ev = self.begin_audit(Operation::DeleteKey, &ctx)?;
            ev.key(id, None);
            let result = self
                .0
                .store
                .destroy_key(id, now)
                .await
                .map_err(KmsError::from);
            self.0.caches.invalidate_key(id);
            self.0.usage.forget_key(id);
            match result {
                Ok(false) => {} // another process did it
                other => self.end_audit(ev, &other),
            }
        }
        self.shred_due_videos(&ctx).await
    }
}

/// Fails when `root` is not the root key this database was initialised with
/// (the first process to start records a check value).
/// Re-wraps every master key version under `new` (offline: stop the servers
/// first; a version added meanwhile makes it fail with nothing changed).
/// Returns how many versions and access keys were re-wrapped. Audited as
/// `RekeyRoot`.
pub async fn rekey_root(
    store: Arc<dyn Store>,
    clock: &dyn Clock,
    old: &RootKey,
    new: &RootKey,
    chain: Option<&foundation::audit::ChainConfig>,
) -> Result<(usize, usize), KmsError> {
    let stored = store.root_key_check(&old.check_value(&mut OsRng)).await?;
    if !old.verify_check_value(&stored) {
        return Err(KmsError::RootKeyMismatch);
    }
    let mut rewrapped = Vec::new();
    for key in store.list_keys().await? {
        for v in store.key_versions(key.id).await? {
            let wrapped = old
                .rewrap(new, v.key_id, v.version, &v.wrapped, &mut OsRng)
                .map_err(|e| {
                    KmsError::Internal(format!("key {} version {}: {e}", v.key_id, v.version))
                })?;
            rewrapped.push(crate::model::VersionRecord { wrapped, ..v });
        }
    }
    let mut videos = Vec::new();
    for v in store.list_video_secrets().await? {
        let Some(wrapped) = &v.wrapped_secret else {
            continue;
        };
        let wrapped = old
            .rewrap_video_secret(new, &v.video_id, wrapped, &mut OsRng)
            .map_err(|e| KmsError::Internal(format!("video {}: {e}", v.video_id)))?;
        videos.push(crate::model::VideoSecretRecord {
            wrapped_secret: Some(wrapped),
            ..v
        });
    }
    let mut access_keys = Vec::new();
    for k in store.list_access_keys(None).await? {
        let wrapped_secret = old
            .rewrap_access_secret(new, &k.id, k.client_id, &k.wrapped_secret, &mut OsRng)
            .map_err(|e| KmsError::Internal(format!("access key {}: {e}", k.id)))?;
        access_keys.push(crate::model::AccessKeyRecord {
            wrapped_secret,
            ..k
        });
    }
    store
        .rewrap_root(
            &rewrapped,
            &access_keys,
            &videos,
            &stored,
            &new.check_value(&mut OsRng),
        )
        .await
        .map_err(|e| match e {
            crate::store::StoreError::Conflict => KmsError::invalid(
                "the keys changed while re-wrapping (is a server still running?): nothing was changed; stop the servers and retry",
            ),
            other => other.into(),
        })?;
    let record = AuditRecord {
        id: Uuid::now_v7(),
        time: clock.now(),
        client_id: None,
        operation: Operation::RekeyRoot,
        key_id: None,
        key_version: None,
        encryption_context: None,
        outcome: crate::model::OUTCOME_SUCCESS.to_owned(),
        request_id: "rekey-root".to_owned(),
        protocol: None,
        access_key_id: None,
        link: None,
        detail: Some(serde_json::json!({
            "Versions": rewrapped.len(),
            "AccessKeys": access_keys.len(),
            "VideoSecrets": videos.len(),
        })),
    };
    audit::write_directly(store, chain, vec![record])
        .await
        .map_err(crate::store::StoreError::from)?;
    Ok((rewrapped.len(), access_keys.len()))
}

pub async fn verify_root_key(store: &dyn Store, root: &RootKey) -> Result<(), KmsError> {
    let stored = store.root_key_check(&root.check_value(&mut OsRng)).await?;
    if !root.verify_check_value(&stored) {
        return Err(KmsError::RootKeyMismatch);
    }
    Ok(())
}
