//! Risk control: who may play from where, and how many at once (README "Risk
//! control"). Every rule is off unless configured.
//!
//! - `ip` claim: the caller's address must be in it.
//! - Page origins: a video's allow-list, else the broker-wide one.
//! - Concurrent streams per viewer: a stream is the token's `device`, else
//!   the token; one idle for `stream_idle` no longer counts.
//! - Addresses per token (Tencent's `rlimit`): a token binds to the first M
//!   address units that use it.
//! - Sharing: a token or viewer seen from more than K address units, or
//!   fetching more than V videos, within a window, is revoked.
//!
//! Address units tolerate mobile networks: an IPv4 /24 and an IPv6 /64 are
//! one address, so a phone hopping between a carrier's NAT addresses or
//! IPv6 privacy addresses is not a new place.
//!
//! The counts hold across brokers: each new (stream, address, video) of a
//! token is checked and recorded in the database, in one transaction per
//! viewer (`BrokerStore::observe_playback`). What this process confirmed is
//! remembered, so a warm key fetch makes no round trip; the last use of
//! streams and addresses reaches the database in batches (heartbeats).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use foundation::audit::AuditLog;
use foundation::SecretBytes;

use super::{Broker, BrokerError, RequestContext};
use crate::model::{
    BrokerAuditRecord, BrokerOperation, Heartbeat, Observation, RevocationKind, StreamObservation,
    VideoPolicy,
};
use crate::page_origin::OriginList;
use crate::token::Claims;

#[derive(Debug, Clone)]
pub struct RiskConfig {
    /// Simultaneous streams per viewer (0: no limit).
    pub max_streams_per_viewer: u32,
    /// A stream with no key, licence or playlist fetch for this long has ended.
    pub stream_idle: Duration,
    /// Distinct address units per token in its life (0: no limit).
    pub max_addresses_per_token: u32,
    /// Sharing: more address units than this per token or viewer within
    /// `share_window` revokes it (0: off).
    pub share_max_addresses: u32,
    /// Sharing: more videos than this per token or viewer within the window.
    pub share_max_videos: u32,
    pub share_window: Duration,
    /// Page origins every video may be played from (`None`: any).
    pub allowed_origins: Option<OriginList>,
    /// Playlists the broker serves carry tokens bound to the caller's
    /// address unit (an `ip` claim), so a copied key URL fails elsewhere.
    pub bind_playlist_tokens: bool,
    pub webhook: Option<WebhookTarget>,
}

impl Default for RiskConfig {
    fn default() -> Self {
        Self {
            max_streams_per_viewer: 0,
            stream_idle: Duration::from_secs(300),
            max_addresses_per_token: 0,
            share_max_addresses: 0,
            share_max_videos: 0,
            share_window: Duration::from_secs(3600),
            allowed_origins: None,
            bind_playlist_tokens: false,
            webhook: None,
        }
    }
}

/// Where `RiskEvent`s are POSTed, and the HMAC-SHA256 key that signs them.
#[derive(Clone)]
pub struct WebhookTarget {
    pub url: String,
    pub secret: Arc<SecretBytes>,
}

impl std::fmt::Debug for WebhookTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookTarget")
            .field("url", &self.url)
            .field("secret", &"[REDACTED]")
            .finish()
    }
}

/// Claims a token is minted with beyond the grant: `ip` and `device`.
#[derive(Debug, Clone, Default)]
pub struct TokenBinding {
    pub ip: Option<String>,
    pub device: Option<String>,
}

/// The unit addresses are counted in: an IPv4 /24 or an IPv6 /64.
pub fn address_unit(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// An address unit as a number (what the warm path hashes, without
/// formatting `address_unit`'s text): the /24 or /64 prefix, tagged.
fn unit_prefix(ip: IpAddr) -> (u8, u128) {
    match ip {
        IpAddr::V4(v4) => (4, u128::from(u32::from(v4) >> 8)),
        IpAddr::V6(v6) => (6, u128::from(v6) >> 64),
    }
}

/// Entries remembered per shard before it is emptied (then re-confirmed
/// with the database as they are used).
const SEEN_PER_SHARD: usize = 65_536;
const SEEN_SHARDS: usize = 16;

#[derive(Clone, Copy)]
struct Seen {
    last_used: Instant,
    /// When its last use was last sent to the database.
    beaten: Instant,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fact {
    Stream,
    Address,
    Video,
}

/// What this process confirmed with the database: hashes of (fact, subject,
/// value) under a per-process random seed.
struct SeenFacts {
    shards: Vec<Mutex<HashMap<u64, Seen, foldhash::quality::RandomState>>>,
    hasher: foldhash::quality::RandomState,
}

impl SeenFacts {
    fn new() -> Self {
        Self {
            shards: (0..SEEN_SHARDS).map(|_| Mutex::default()).collect(),
            hasher: Default::default(),
        }
    }

    fn key(&self, fact: Fact, subject: &str, value: impl std::hash::Hash) -> u64 {
        self.hasher.hash_one((fact as u8, subject, value))
    }

    fn shard(
        &self,
        key: u64,
    ) -> std::sync::MutexGuard<'_, HashMap<u64, Seen, foldhash::quality::RandomState>> {
        self.shards[(key as usize) % SEEN_SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Marks a use of a fact seen within `fresh`; whether it was, and whether
    /// its last use should now be sent (`beat_every` since the last send).
    fn touch(&self, key: u64, now: Instant, fresh: Duration, beat_every: Duration) -> (bool, bool) {
        let mut shard = self.shard(key);
        match shard.get_mut(&key) {
            Some(seen) if now.duration_since(seen.last_used) < fresh => {
                seen.last_used = now;
                let beat = now.duration_since(seen.beaten) >= beat_every;
                if beat {
                    seen.beaten = now;
                }
                (true, beat)
            }
            _ => (false, false),
        }
    }

    fn insert(&self, key: u64, now: Instant) {
        let mut shard = self.shard(key);
        if shard.len() >= SEEN_PER_SHARD {
            shard.clear();
        }
        shard.insert(
            key,
            Seen {
                last_used: now,
                beaten: now,
            },
        );
    }

    fn sweep(&self, now: Instant, older_than: Duration) {
        for shard in &self.shards {
            shard
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|_, s| now.duration_since(s.last_used) < older_than);
        }
    }
}

pub(super) struct Risk {
    pub config: RiskConfig,
    seen: SeenFacts,
    /// Per-video allow-lists, all of them (a few per video at most).
    policies: RwLock<HashMap<String, OriginList, foldhash::quality::RandomState>>,
    /// Whether `policies` holds any: read by every request, so no lock.
    has_policies: AtomicBool,
    pub heartbeats: Arc<AuditLog<Heartbeat>>,
    pub webhook: Option<super::webhook::Webhook>,
}

impl Risk {
    pub fn new(
        config: RiskConfig,
        heartbeats: Arc<AuditLog<Heartbeat>>,
        webhook: Option<super::webhook::Webhook>,
    ) -> Self {
        Self {
            config,
            seen: SeenFacts::new(),
            policies: RwLock::default(),
            has_policies: AtomicBool::new(false),
            heartbeats,
            webhook,
        }
    }

    /// Whether any page-origin rule exists (else `Origin` and `Referer` are
    /// not even read).
    pub fn checks_pages(&self) -> bool {
        self.config.allowed_origins.is_some() || self.has_policies.load(Ordering::Relaxed)
    }

    fn tracks_streams(&self) -> bool {
        self.config.max_streams_per_viewer > 0
    }

    fn tracks_addresses(&self) -> bool {
        self.config.max_addresses_per_token > 0 || self.config.share_max_addresses > 0
    }

    fn tracks_videos(&self) -> bool {
        self.config.share_max_videos > 0
    }

    /// How often a fact in use is confirmed to the database: well inside the
    /// idle time, so no other broker takes a stream in use for an idle one.
    fn beat_every(&self) -> Duration {
        (self.config.stream_idle / 4).clamp(Duration::from_secs(1), Duration::from_secs(30))
    }

    pub fn set_policy(&self, video_id: &str, list: Option<OriginList>) {
        let mut map = self.policies.write().unwrap_or_else(|p| p.into_inner());
        match list {
            Some(list) => map.insert(video_id.to_owned(), list),
            None => map.remove(video_id),
        };
        self.has_policies.store(!map.is_empty(), Ordering::Relaxed);
    }

    pub fn replace_policies(&self, all: &[VideoPolicy]) {
        let map = all
            .iter()
            .map(|p| match OriginList::parse(&p.allowed_origins) {
                Ok(list) => (p.video_id.clone(), list),
                Err(e) => {
                    // Stored lists were checked when set; refuse playback
                    // of this video rather than drop its restriction.
                    tracing::error!(video_id = %p.video_id, error = %e, "unreadable stored playback policy: nothing may play this video");
                    (p.video_id.clone(), OriginList::default())
                }
            })
            .collect::<HashMap<_, _, _>>();
        let mut held = self.policies.write().unwrap_or_else(|p| p.into_inner());
        *held = map;
        self.has_policies.store(!held.is_empty(), Ordering::Relaxed);
    }

    pub fn sweep(&self, now: Instant) {
        let keep = self.config.stream_idle.max(Duration::from_secs(60));
        self.seen.sweep(now, keep);
    }
}

/// Which count crossed its limit.
#[derive(Debug, Clone, Copy)]
enum Sharing {
    Addresses,
    Videos,
}

impl Sharing {
    fn as_str(self) -> &'static str {
        match self {
            Self::Addresses => "Addresses",
            Self::Videos => "Videos",
        }
    }
}

impl Broker {
    /// The rules beyond entitlement, for a playback call on `video_id`:
    /// address binding, page origin, then (with the database, only for
    /// what this process has not confirmed lately) streams, addresses per
    /// token and sharing.
    pub(super) async fn check_playback_rules(
        &self,
        ctx: &RequestContext,
        claims: &Claims,
        video_id: Option<&str>,
    ) -> Result<(), BrokerError> {
        if !claims.address_allowed(ctx.ip) {
            return Err(BrokerError::AddressMismatch);
        }
        let risk = &self.0.risk;
        if let Some(video_id) = video_id {
            self.check_page(ctx, video_id)?;
        }
        let ip = ctx.ip.filter(|_| risk.tracks_addresses());
        let video = video_id.filter(|_| risk.tracks_videos());
        if !risk.tracks_streams() && ip.is_none() && video.is_none() {
            return Ok(());
        }

        // What this process confirmed lately passes without the database
        // (and without allocating); its last use is sent now and then.
        let mono = Instant::now();
        let idle = risk.config.stream_idle;
        let beat_every = risk.beat_every();
        let stream_id = claims.device.as_deref().unwrap_or(&claims.jti);
        let seen = &risk.seen;
        let touch = |key: u64| seen.touch(key, mono, idle, beat_every);
        let stream = risk
            .tracks_streams()
            .then(|| seen.key(Fact::Stream, &claims.sub, stream_id))
            .map(|key| (key, touch(key)));
        let address = ip.map(|ip| {
            let key = seen.key(Fact::Address, &claims.jti, unit_prefix(ip));
            (key, ip, touch(key))
        });
        let video = video.map(|v| {
            let key = seen.key(Fact::Video, &claims.jti, v);
            (key, v, touch(key))
        });
        let beats = [
            stream.is_some_and(|(_, (known, beat))| known && beat),
            address.is_some_and(|(_, _, (known, beat))| known && beat),
        ];
        if beats.contains(&true) {
            let now = self.now();
            if beats[0] {
                risk.heartbeats.record(Heartbeat::Stream {
                    viewer: claims.sub.clone(),
                    stream: stream_id.to_owned(),
                    at: now,
                });
            }
            if let (true, Some((_, ip, _))) = (beats[1], address) {
                risk.heartbeats.record(Heartbeat::Address {
                    token_id: claims.jti.clone(),
                    address: address_unit(ip),
                    at: now,
                });
            }
        }
        let new_stream = stream.filter(|(_, (known, _))| !known);
        let new_address = address.filter(|(_, _, (known, _))| !known);
        let new_video = video.filter(|(_, _, (known, _))| !known);
        if new_stream.is_none() && new_address.is_none() && new_video.is_none() {
            return Ok(());
        }

        let now = self.now();
        let idle = chrono::Duration::from_std(idle).unwrap_or_default();
        let window = chrono::Duration::from_std(risk.config.share_window).unwrap_or_default();
        let observation = Observation {
            viewer: claims.sub.clone(),
            token_id: claims.jti.clone(),
            now,
            stream: new_stream.map(|_| StreamObservation {
                stream: stream_id.to_owned(),
                idle_before: now - idle,
                address: ctx.ip.map(address_unit),
            }),
            address: new_address.map(|(_, ip, _)| address_unit(ip)),
            video_id: new_video.map(|(_, v, _)| v.to_owned()),
            window_start: now - window,
            max_streams: risk.config.max_streams_per_viewer,
            max_addresses_per_token: risk.config.max_addresses_per_token,
        };
        let new_keys: Vec<u64> = [
            new_stream.map(|(key, _)| key),
            new_address.map(|(key, _, _)| key),
            new_video.map(|(key, _, _)| key),
        ]
        .into_iter()
        .flatten()
        .collect();

        let outcome = self.0.store.observe_playback(&observation).await?;
        if let Some(limit) = outcome.stream_limit {
            return Err(BrokerError::StreamLimit(limit));
        }
        if outcome.address_limit.is_some() {
            return Err(BrokerError::AddressMismatch);
        }
        let (k, v) = (
            risk.config.share_max_addresses,
            risk.config.share_max_videos,
        );
        let (b, a) = (outcome.before, outcome.after);
        let counts = [
            (
                k,
                b.token_addresses,
                a.token_addresses,
                RevocationKind::Token,
                Sharing::Addresses,
            ),
            (
                k,
                b.viewer_addresses,
                a.viewer_addresses,
                RevocationKind::Viewer,
                Sharing::Addresses,
            ),
            (
                v,
                b.token_videos,
                a.token_videos,
                RevocationKind::Token,
                Sharing::Videos,
            ),
            (
                v,
                b.viewer_videos,
                a.viewer_videos,
                RevocationKind::Viewer,
                Sharing::Videos,
            ),
        ];
        // Observations of a viewer are serialized across brokers, so exactly
        // one sees a count cross its limit: that one revokes, audits and
        // tells the webhook. Later new facts of a token already over (on a
        // broker that has not heard of the revocation yet, or after an admin
        // lifted it) are refused without doing it again.
        for (limit, before, after, scope, rule) in counts {
            if limit == 0 || after <= limit {
                continue;
            }
            if before <= limit {
                self.revoke_shared(ctx, claims, scope, rule, after, limit, &observation)
                    .await?;
            }
            return Err(BrokerError::TokenShared);
        }
        let mono = Instant::now();
        for key in new_keys {
            risk.seen.insert(key, mono);
        }
        Ok(())
    }

    /// The page-origin restriction of `video_id` (its own list, else the
    /// broker-wide one).
    fn check_page(&self, ctx: &RequestContext, video_id: &str) -> Result<(), BrokerError> {
        let risk = &self.0.risk;
        let policies = risk.policies.read().unwrap_or_else(|p| p.into_inner());
        let list = policies
            .get(video_id)
            .or(risk.config.allowed_origins.as_ref());
        match list {
            Some(list) if !list.allows(&ctx.page) => Err(BrokerError::OriginNotAllowed),
            _ => Ok(()),
        }
    }

    /// Sharing detected: revoke the token (or every token of the viewer so
    /// far), audit it, count it, and tell the app backend.
    #[allow(clippy::too_many_arguments)]
    async fn revoke_shared(
        &self,
        ctx: &RequestContext,
        claims: &Claims,
        scope: RevocationKind,
        rule: Sharing,
        seen: u32,
        limit: u32,
        observation: &Observation,
    ) -> Result<(), BrokerError> {
        let now = self.now();
        let revocation = match scope {
            RevocationKind::Viewer => self.end_tokens_of(&claims.sub),
            _ => self.token_revocation(&claims.jti),
        };
        self.put_in_force(&revocation).await?;
        self.0
            .counters
            .risk_revocation(scope.as_str(), rule.as_str());
        let window = self.0.risk.config.share_window.as_secs();
        let detail = serde_json::json!({
            "Rule": rule.as_str(),
            "Scope": scope.as_str(),
            "Seen": seen,
            "Limit": limit,
            "WindowSeconds": window,
        });
        tracing::warn!(viewer = %claims.sub, token_id = %claims.jti, scope = scope.as_str(), rule = rule.as_str(), seen, limit, "sharing detected: revoked");
        let record = BrokerAuditRecord {
            id: uuid::Uuid::now_v7(),
            time: now,
            operation: BrokerOperation::AutoRevoke,
            outcome: foundation::audit::OUTCOME_SUCCESS.to_owned(),
            request_id: ctx.request_id.clone(),
            viewer: Some(claims.sub.clone()),
            video_id: observation.video_id.clone(),
            key_id: None,
            key_version: None,
            token_id: Some(claims.jti.clone()),
            client_id: None,
            address: (!ctx.address.is_empty()).then(|| ctx.address.clone()),
            detail: Some(detail),
            link: None,
        };
        self.0.audit.record(record);
        if let Some(webhook) = &self.0.risk.webhook {
            webhook.send(super::webhook::RiskEvent {
                event_id: uuid::Uuid::now_v7(),
                event_type: "TokenShared",
                time: now,
                action: match scope {
                    RevocationKind::Viewer => "ViewerRevoked",
                    _ => "TokenRevoked",
                },
                viewer: claims.sub.clone(),
                token_id: claims.jti.clone(),
                device: claims.device.clone(),
                rule: rule.as_str(),
                seen,
                limit,
                window_seconds: window,
                address: (!ctx.address.is_empty()).then(|| ctx.address.clone()),
                video_id: observation.video_id.clone(),
            });
        }
        Ok(())
    }

    /// Reads every video policy again (start, and the periodic backstop).
    pub(super) async fn reload_policies(&self) -> Result<(), BrokerError> {
        let all = self.0.store.video_policies().await?;
        self.0.risk.replace_policies(&all);
        Ok(())
    }

    pub(super) async fn reload_policy(&self, video_id: &str) -> Result<(), BrokerError> {
        let policy = self.0.store.video_policy(video_id).await?;
        let list = match policy {
            Some(p) => Some(OriginList::parse(&p.allowed_origins).unwrap_or_default()),
            None => None,
        };
        self.0.risk.set_policy(video_id, list);
        Ok(())
    }

    /// The `ip` claim a playlist's token gets when playlist tokens are
    /// bound: the caller's address unit.
    pub(super) fn playlist_binding(&self, ctx: &RequestContext) -> Option<String> {
        if !self.0.risk.config.bind_playlist_tokens {
            return None;
        }
        ctx.ip.map(address_unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_units_tolerate_carrier_nat_and_privacy_addresses() {
        let unit = |s: &str| address_unit(s.parse().unwrap());
        assert_eq!(unit("198.51.100.7"), "198.51.100.0/24");
        assert_eq!(unit("198.51.100.200"), unit("198.51.100.7"));
        assert_ne!(unit("198.51.101.7"), unit("198.51.100.7"));
        assert_eq!(unit("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(unit("2001:db8:1:2::ffff"), unit("2001:db8:1:2:aaaa::1"));
        // The warm path's numeric form draws the same lines.
        let prefix = |s: &str| unit_prefix(s.parse().unwrap());
        assert_eq!(prefix("198.51.100.200"), prefix("198.51.100.7"));
        assert_ne!(prefix("198.51.101.7"), prefix("198.51.100.7"));
        assert_eq!(prefix("2001:db8:1:2::ffff"), prefix("2001:db8:1:2:aaaa::1"));
        assert_ne!(prefix("2001:db8:1:3::1"), prefix("2001:db8:1:2::1"));
        assert_ne!(prefix("0.0.0.1"), prefix("::1"));
    }

    #[test]
    fn seen_facts_expire_and_beat() {
        let seen = SeenFacts::new();
        let t0 = Instant::now();
        let key = seen.key(Fact::Stream, "alice", "tv");
        assert_eq!(
            seen.touch(key, t0, Duration::from_secs(60), Duration::from_secs(10)),
            (false, false)
        );
        seen.insert(key, t0);
        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(
            seen.touch(key, t1, Duration::from_secs(60), Duration::from_secs(10)),
            (true, false)
        );
        let t2 = t0 + Duration::from_secs(20);
        assert_eq!(
            seen.touch(key, t2, Duration::from_secs(60), Duration::from_secs(10)),
            (true, true)
        );
        // Idle past `fresh`: no longer trusted.
        let t3 = t2 + Duration::from_secs(61);
        assert!(
            !seen
                .touch(key, t3, Duration::from_secs(60), Duration::from_secs(10))
                .0
        );
        // Other subjects and values are other facts.
        assert_ne!(key, seen.key(Fact::Stream, "alice", "phone"));
        assert_ne!(key, seen.key(Fact::Address, "alice", "tv"));
    }
}
