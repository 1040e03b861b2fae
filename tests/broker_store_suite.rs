//! The broker storage contract, written against `dyn BrokerStore` so every
//! backend runs the same suite: PostgreSQL and the embedded SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use broker::model::*;
use broker::store::{BrokerStore, PgBrokerStore, RevocationChange, SqliteBrokerStore, StoreError};
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A fresh SQLite file per test.
async fn sqlite() -> Arc<dyn BrokerStore> {
    let pool = kms::store::sqlite::open_pool(&common::fresh_sqlite_path())
        .await
        .unwrap();
    Arc::new(SqliteBrokerStore::with_pool(pool))
}

async fn pg() -> Arc<dyn BrokerStore> {
    Arc::new(
        PgBrokerStore::connect(&common::fresh_database().await)
            .await
            .unwrap(),
    )
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap()
}

fn viewer(name: &str) -> ViewerRecord {
    ViewerRecord {
        username: name.into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        entitlements: vec!["A".into(), "B".into()],
        enabled: true,
        limits: ViewerLimits::default(),
        created_at: now(),
        updated_at: now(),
    }
}

async fn viewers(s: Arc<dyn BrokerStore>) {
    let v = viewer("vera");
    s.create_viewer(&v).await.unwrap();
    assert!(matches!(
        s.create_viewer(&v).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(s.viewer("vera").await.unwrap(), Some(v.clone()));
    assert_eq!(s.viewer("Vera").await.unwrap(), None);
    let mut changed = v.clone();
    changed.entitlements = vec!["*".into()];
    changed.enabled = false;
    changed.limits = ViewerLimits {
        max_streams: Some(3),
        max_addresses_per_token: Some(0),
    };
    changed.updated_at = now();
    assert_eq!(s.update_viewer(&changed, None).await.unwrap(), Some(0));
    assert_eq!(s.viewer("vera").await.unwrap(), Some(changed));
    assert_eq!(
        s.update_viewer(&viewer("nobody"), None).await.unwrap(),
        None
    );
    s.create_viewer(&viewer("abe")).await.unwrap();
    let names: Vec<String> = s
        .list_viewers()
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.username)
        .collect();
    assert_eq!(names, ["abe", "vera"]);
    let end = Revocation {
        kind: RevocationKind::Viewer,
        subject: "vera".into(),
        revoked_at: now(),
        expires_at: None,
    };
    let seq = s.delete_viewer("vera", &end).await.unwrap();
    assert!(seq.is_some_and(|seq| seq > 0), "{seq:?}");
    assert_eq!(s.delete_viewer("vera", &end).await.unwrap(), None);
}

async fn revocations_are_announced_and_expire(s: Arc<dyn BrokerStore>) {
    let mut changes = s.watch_revocations().await.unwrap();
    let t = now();
    let video = Revocation {
        kind: RevocationKind::Video,
        subject: "film".into(),
        revoked_at: t,
        expires_at: None,
    };
    let token = Revocation {
        kind: RevocationKind::Token,
        subject: "jti-1".into(),
        revoked_at: t,
        expires_at: Some(t + chrono::Duration::seconds(60)),
    };
    let video_seq = s.put_revocation(&video).await.unwrap();
    let token_seq = s.put_revocation(&token).await.unwrap();
    assert!(token_seq > video_seq, "{token_seq} {video_seq}");
    let heard = tokio::time::timeout(Duration::from_secs(5), changes.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        heard,
        RevocationChange::One(RevocationKind::Video, "film".into())
    );
    // Put again: replaced, not duplicated, with a later seq.
    let video_seq = s.put_revocation(&video).await.unwrap();
    assert!(video_seq > token_seq);
    assert_eq!(s.revocations(t).await.unwrap().len(), 2);
    assert_eq!(
        s.revocation(RevocationKind::Token, "jti-1").await.unwrap(),
        Some(RevocationRow {
            revocation: token.clone(),
            seq: token_seq,
            lifted: false
        })
    );
    // Changes are read in seq order from any point.
    let since: Vec<(String, i64)> = s
        .revocations_since(0, t)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.revocation.subject, r.seq))
        .collect();
    assert_eq!(
        since,
        [
            ("jti-1".to_owned(), token_seq),
            ("film".to_owned(), video_seq)
        ]
    );
    assert_eq!(s.revocations_since(token_seq, t).await.unwrap().len(), 1);
    // Past its expiry a token revocation is no longer listed, then purged.
    let later = t + chrono::Duration::seconds(61);
    assert_eq!(s.revocations(later).await.unwrap(), vec![video.clone()]);
    s.purge_expired(later).await.unwrap();
    assert_eq!(
        s.revocation(RevocationKind::Token, "jti-1").await.unwrap(),
        None
    );
    // A lift is a tombstone with a later seq, read like any change, and no
    // longer listed or liftable.
    let lift_seq = s
        .delete_revocation(RevocationKind::Video, "film", later)
        .await
        .unwrap()
        .expect("there was one to lift");
    assert!(lift_seq > video_seq);
    assert_eq!(
        s.delete_revocation(RevocationKind::Video, "film", later)
            .await
            .unwrap(),
        None
    );
    assert!(s.revocations(later).await.unwrap().is_empty());
    let changed = s.revocations_since(video_seq, later).await.unwrap();
    assert_eq!(changed.len(), 1);
    assert!(changed[0].lifted && changed[0].seq == lift_seq);
    // Revoking it again revives it, later still.
    let again = s.put_revocation(&video).await.unwrap();
    assert!(again > lift_seq);
    assert_eq!(s.revocations(later).await.unwrap(), vec![video.clone()]);
    // The tombstone of a lift expires a day later, and is purged then.
    s.delete_revocation(RevocationKind::Video, "film", later)
        .await
        .unwrap();
    let past = later + chrono::Duration::days(1) + chrono::Duration::seconds(1);
    s.purge_expired(past).await.unwrap();
    assert_eq!(
        s.revocation(RevocationKind::Video, "film").await.unwrap(),
        None
    );
}

async fn sessions_only_move_forward(s: Arc<dyn BrokerStore>) {
    let t = now();
    let rec = |used: DateTime<Utc>| SessionRecord {
        jti: "j".into(),
        viewer: "v".into(),
        started_at: t,
        last_used_at: used,
        ends_at: t + chrono::Duration::hours(1),
    };
    let later = t + chrono::Duration::seconds(30);
    // One batch may carry the same session twice.
    s.upsert_sessions(&[rec(t), rec(later)]).await.unwrap();
    assert_eq!(s.session("j").await.unwrap(), Some(rec(later)));
    s.upsert_sessions(&[rec(t)]).await.unwrap();
    assert_eq!(s.session("j").await.unwrap().unwrap().last_used_at, later);
    s.purge_expired(t + chrono::Duration::hours(2))
        .await
        .unwrap();
    assert_eq!(s.session("j").await.unwrap(), None);
}

async fn audit_is_idempotent_and_filtered(s: Arc<dyn BrokerStore>) {
    let record = |op: BrokerOperation, viewer: &str, outcome: &str| BrokerAuditRecord {
        id: Uuid::now_v7(),
        time: now(),
        operation: op,
        outcome: outcome.into(),
        request_id: "r".into(),
        viewer: Some(viewer.into()),
        video_id: Some("A".into()),
        key_id: Some(Uuid::new_v4()),
        key_version: Some(2),
        token_id: Some("t\u{0}nul".into()),
        client_id: None,
        address: Some("127.0.0.1".into()),
        detail: Some(serde_json::json!({ "Count": 3 })),
        link: None,
    };
    let a = record(BrokerOperation::ReleaseKey, "alice", "Success");
    let b = record(BrokerOperation::ReleaseKey, "bob", "NotEntitled");
    let c = record(BrokerOperation::Login, "alice", "Success");
    s.append_audit(&[a.clone(), b.clone(), c.clone()])
        .await
        .unwrap();
    s.append_audit(std::slice::from_ref(&a)).await.unwrap(); // a retried batch
    let all = s
        .query_audit(&BrokerAuditFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].1.id, c.id, "newest first");
    // NUL cannot be stored in PostgreSQL text; it is replaced, never refused.
    assert_eq!(all[0].1.token_id.as_deref(), Some("t\u{fffd}nul"));
    let alice_releases = s
        .query_audit(&BrokerAuditFilter {
            viewer: Some("alice".into()),
            operation: Some(BrokerOperation::ReleaseKey),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(alice_releases.len(), 1);
    assert_eq!(alice_releases[0].1.key_version, Some(2));
    let refused = s
        .query_audit(&BrokerAuditFilter {
            outcome: Some("NotEntitled".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(refused[0].1.viewer.as_deref(), Some("bob"));
    let page = s
        .query_audit(&BrokerAuditFilter {
            before_seq: Some(all[1].0),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].1.id, a.id);
}

/// Runs each contract test against both backends.
/// Content keys: a KID is registered once (a second registration gets the
/// first record back), looked up in batches, listed and deleted per video.
async fn content_keys(s: Arc<dyn BrokerStore>) {
    use broker::model::ContentKeyRecord;
    let key = |kid: u8, video: &str, blob: &str| ContentKeyRecord {
        kid: [kid; 16],
        video_id: video.into(),
        ciphertext_blob: blob.into(),
        client_id: Some(uuid::Uuid::new_v4()),
        created_at: now(),
    };
    let a = key(1, "film-a", "EDK-A");
    assert_eq!(s.put_content_key(&a).await.unwrap(), a);
    // Taken: the stored record comes back, not the new one.
    assert_eq!(
        s.put_content_key(&key(1, "film-b", "EDK-B")).await.unwrap(),
        a
    );
    let b = key(2, "film-b", "EDK-B");
    s.put_content_key(&b).await.unwrap();
    let c = key(3, "film-a", "EDK-C");
    s.put_content_key(&c).await.unwrap();
    let mut found = s.content_keys(&[[2; 16], [9; 16], [1; 16]]).await.unwrap();
    found.sort_by_key(|k| k.kid);
    assert_eq!(found, vec![a.clone(), b.clone()]);
    assert!(s.content_keys(&[]).await.unwrap().is_empty());
    assert_eq!(
        s.list_content_keys(Some("film-a")).await.unwrap(),
        vec![a, c]
    );
    assert_eq!(s.list_content_keys(None).await.unwrap().len(), 3);
    // A rewrap replaces the EDK only if it is still the one given.
    assert!(!s
        .replace_content_key_blob([2; 16], "EDK-OTHER", "EDK-B2")
        .await
        .unwrap());
    assert!(s
        .replace_content_key_blob([2; 16], "EDK-B", "EDK-B2")
        .await
        .unwrap());
    assert!(!s
        .replace_content_key_blob([2; 16], "EDK-B", "EDK-B3")
        .await
        .unwrap());
    let b = ContentKeyRecord {
        ciphertext_blob: "EDK-B2".into(),
        ..b
    };
    assert_eq!(s.content_keys(&[[2; 16]]).await.unwrap(), vec![b.clone()]);
    assert_eq!(s.delete_content_keys("film-a").await.unwrap(), 2);
    assert_eq!(s.list_content_keys(None).await.unwrap(), vec![b]);
}

fn observation(viewer: &str, token: &str, at: DateTime<Utc>) -> Observation {
    Observation {
        viewer: viewer.into(),
        token_id: token.into(),
        now: at,
        stream: None,
        address: None,
        video_id: None,
        window_start: at - chrono::Duration::hours(1),
        max_streams: 0,
        max_addresses_per_token: 0,
    }
}

/// Streams: the N+1th is refused until one is idle; a viewer account's own
/// limit wins over the global one; heartbeats keep one alive.
async fn streams_are_limited_per_viewer(s: Arc<dyn BrokerStore>) {
    let t0 = now();
    let idle = chrono::Duration::seconds(300);
    let start = |token: &str, stream: &str, at: DateTime<Utc>| Observation {
        stream: Some(StreamObservation {
            stream: stream.to_owned(),
            idle_before: at - idle,
            address: Some("198.51.100.0/24".into()),
        }),
        max_streams: 2,
        ..observation("sam", token, at)
    };
    assert_eq!(
        s.observe_playback(&start("t1", "tv", t0))
            .await
            .unwrap()
            .stream_limit,
        None
    );
    assert_eq!(
        s.observe_playback(&start("t2", "phone", t0))
            .await
            .unwrap()
            .stream_limit,
        None
    );
    // The same device again (a new token) is the same stream.
    assert_eq!(
        s.observe_playback(&start("t3", "tv", t0))
            .await
            .unwrap()
            .stream_limit,
        None
    );
    assert_eq!(
        s.observe_playback(&start("t4", "laptop", t0))
            .await
            .unwrap()
            .stream_limit,
        Some(2)
    );
    let listed = s.streams("sam", t0 - idle).await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|r| (r.stream.as_str(), r.token_id.as_str()))
            .collect::<Vec<_>>(),
        [("tv", "t3"), ("phone", "t2")]
    );
    // The phone is kept alive by a heartbeat; the tv goes idle.
    let later = t0 + chrono::Duration::seconds(200);
    s.heartbeat(&[Heartbeat::Stream {
        viewer: "sam".into(),
        stream: "phone".into(),
        at: later,
    }])
    .await
    .unwrap();
    let t1 = t0 + chrono::Duration::seconds(301);
    assert_eq!(
        s.observe_playback(&start("t4", "laptop", t1))
            .await
            .unwrap()
            .stream_limit,
        None
    );
    assert_eq!(
        s.observe_playback(&start("t5", "desk", t1))
            .await
            .unwrap()
            .stream_limit,
        Some(2)
    );
    let active: Vec<String> = s
        .streams("sam", t1 - idle)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.stream)
        .collect();
    assert_eq!(active, ["phone", "laptop"]);
    // Ending one frees its place.
    let laptop = s.streams("sam", t1 - idle).await.unwrap()[1].clone();
    assert_eq!(s.stream(laptop.id).await.unwrap(), Some(laptop.clone()));
    assert!(s.delete_stream(laptop.id).await.unwrap());
    assert!(!s.delete_stream(laptop.id).await.unwrap());
    assert_eq!(
        s.observe_playback(&start("t5", "desk", t1))
            .await
            .unwrap()
            .stream_limit,
        None
    );

    // A viewer account's own limit overrides the global one.
    let mut v = viewer("sam");
    v.limits.max_streams = Some(3);
    s.create_viewer(&v).await.unwrap();
    assert_eq!(
        s.observe_playback(&start("t6", "car", t1))
            .await
            .unwrap()
            .stream_limit,
        None
    );
    assert_eq!(
        s.observe_playback(&start("t7", "boat", t1))
            .await
            .unwrap()
            .stream_limit,
        Some(3)
    );
}

/// Addresses per token, and the counts sharing detection reads.
async fn addresses_and_videos_are_counted(s: Arc<dyn BrokerStore>) {
    let t0 = now();
    let from = |token: &str, address: &str, video: &str| Observation {
        address: Some(address.to_owned()),
        video_id: Some(video.to_owned()),
        max_addresses_per_token: 2,
        ..observation("ada", token, t0)
    };
    let o = s
        .observe_playback(&from("t1", "198.51.100.0/24", "film-1"))
        .await
        .unwrap();
    assert_eq!(
        (
            o.address_limit,
            o.after.token_addresses,
            o.after.token_videos
        ),
        (None, 1, 1)
    );
    let o = s
        .observe_playback(&from("t1", "203.0.113.0/24", "film-2"))
        .await
        .unwrap();
    assert_eq!((o.after.token_addresses, o.after.token_videos), (2, 2));
    assert_eq!((o.before.token_addresses, o.before.token_videos), (1, 1));
    // A third address for t1: refused, and nothing of it recorded.
    let o = s
        .observe_playback(&from("t1", "192.0.2.0/24", "film-3"))
        .await
        .unwrap();
    assert_eq!(o.address_limit, Some(2));
    // Known ones still pass.
    let o = s
        .observe_playback(&from("t1", "198.51.100.0/24", "film-1"))
        .await
        .unwrap();
    assert_eq!(
        (
            o.address_limit,
            o.after.token_addresses,
            o.after.token_videos
        ),
        (None, 2, 2)
    );
    // Another token of the viewer: its own count; the viewer's spans both.
    let o = s
        .observe_playback(&from("t2", "192.0.2.0/24", "film-3"))
        .await
        .unwrap();
    assert_eq!(
        (
            o.after.token_addresses,
            o.after.viewer_addresses,
            o.after.token_videos,
            o.after.viewer_videos
        ),
        (1, 3, 1, 3)
    );
    // Outside the window nothing counts.
    let later = Observation {
        window_start: t0 + chrono::Duration::seconds(1),
        ..observation("ada", "t2", t0 + chrono::Duration::seconds(2))
    };
    let o = s.observe_playback(&later).await.unwrap();
    assert_eq!(
        (
            o.after.token_addresses,
            o.after.viewer_addresses,
            o.after.token_videos
        ),
        (0, 0, 0)
    );
    // A heartbeat brings an address back into the window.
    s.heartbeat(&[Heartbeat::Address {
        token_id: "t2".into(),
        address: "192.0.2.0/24".into(),
        at: t0 + chrono::Duration::seconds(2),
    }])
    .await
    .unwrap();
    let o = s.observe_playback(&later).await.unwrap();
    assert_eq!((o.after.token_addresses, o.after.viewer_addresses), (1, 1));
    // Purging long after forgets them all.
    s.purge_expired(t0 + chrono::Duration::days(8))
        .await
        .unwrap();
    let o = s
        .observe_playback(&Observation {
            window_start: t0 - chrono::Duration::days(1),
            ..observation("ada", "t1", t0)
        })
        .await
        .unwrap();
    assert_eq!((o.after.token_addresses, o.after.viewer_videos), (0, 0));
}

async fn video_policies_are_announced(s: Arc<dyn BrokerStore>) {
    let mut changes = s.watch_revocations().await.unwrap();
    let p = VideoPolicy {
        video_id: "film-1".into(),
        allowed_origins: vec!["https://www.example.com".into(), "none".into()],
        updated_at: now(),
    };
    s.put_video_policy(&p).await.unwrap();
    assert_eq!(s.video_policy("film-1").await.unwrap(), Some(p.clone()));
    assert_eq!(s.video_policies().await.unwrap(), vec![p]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let change = tokio::time::timeout_at(deadline, changes.recv())
            .await
            .expect("the policy change is announced")
            .unwrap();
        if change == RevocationChange::VideoPolicy("film-1".into()) {
            break;
        }
    }
    assert!(s.delete_video_policy("film-1").await.unwrap());
    assert!(!s.delete_video_policy("film-1").await.unwrap());
    assert_eq!(s.video_policy("film-1").await.unwrap(), None);
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod pg_backend {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(pg().await).await;
                }
            )*
        }
        mod sqlite_backend {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(sqlite().await).await;
                }
            )*
        }
    };
}

/// The broker's records through the chained audit writer, as the KMS's
/// suite checks them: read back exactly as hashed, checkpoints, retries.
struct Sink(Arc<dyn BrokerStore>);

#[async_trait::async_trait]
impl foundation::audit::AuditSink<BrokerAuditRecord> for Sink {
    async fn append(&self, records: &[BrokerAuditRecord]) -> Result<(), StoreError> {
        self.0.append_audit(records).await
    }
}

#[async_trait::async_trait]
impl foundation::audit::CheckpointStore for Sink {
    async fn append_checkpoint(
        &self,
        checkpoint: &foundation::audit::Checkpoint,
    ) -> Result<(), StoreError> {
        self.0.append_checkpoint(checkpoint).await
    }
}

async fn chained_audit_reads_back_as_hashed(s: Arc<dyn BrokerStore>) {
    use foundation::audit::{AuditLog, ChainConfig, Chained, SigningKey};
    let key = SigningKey::from_seed(&[5; 32]);
    let public = key.verifying_key();
    let config = ChainConfig {
        signing_key: Some(Arc::new(key)),
        copy_file: None,
        every_records: 2,
        every: Duration::from_secs(3600),
    };
    let sink = Arc::new(Sink(s.clone()));
    let log = AuditLog::chained(
        sink.clone(),
        100,
        3,
        broker::service::AUDIT_TRAIL,
        sink,
        &config,
    );
    let mut ids = Vec::new();
    for i in 0..7u32 {
        let r = BrokerAuditRecord {
            id: Uuid::now_v7(),
            time: Utc::now() + chrono::Duration::nanoseconds(i64::from(i) * 777),
            operation: BrokerOperation::ReleaseKey,
            outcome: "Success".into(),
            request_id: format!("r\0{i}"),
            viewer: Some(format!("v\0{i}")),
            video_id: Some("A".into()),
            key_id: Some(Uuid::new_v4()),
            key_version: Some(u32::MAX - i),
            token_id: Some("t".into()),
            client_id: None,
            address: Some("192.0.2.7".into()),
            detail: Some(serde_json::json!({ "Count": i, "LastTime": "x\0", "b": {"\0": 1.5} })),
            link: None,
        };
        ids.push(r.id);
        log.record(r);
    }
    log.flush_final().await.unwrap();
    let read: Vec<BrokerAuditRecord> = s
        .audit_page(0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, r)| r.expect("every chained row reads back"))
        .collect();
    assert_eq!(read.iter().map(|r| r.id).collect::<Vec<_>>(), ids);
    let checkpoints = s.audit_checkpoints().await.unwrap();
    assert!(checkpoints.iter().all(|c| c.trail == "broker"));
    let rows: Vec<audit_chain::Row> = read
        .iter()
        .map(|r| audit_chain::Row {
            link: r.link.unwrap(),
            canonical: r.canonical(),
            id: r.id.to_string(),
        })
        .collect();
    let report = audit_chain::verify(&rows, &checkpoints, None, &public);
    assert!(report.clean(), "{:?}", report.problems);
    s.append_audit(&read).await.unwrap();
    assert_eq!(s.audit_page(0, 100).await.unwrap().len(), 7);
}

on_both_backends!(
    chained_audit_reads_back_as_hashed,
    viewers,
    revocations_are_announced_and_expire,
    sessions_only_move_forward,
    audit_is_idempotent_and_filtered,
    content_keys,
    streams_are_limited_per_viewer,
    addresses_and_videos_are_counted,
    video_policies_are_announced
);
