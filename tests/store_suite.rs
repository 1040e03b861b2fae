//! The storage contract, written against `dyn Store` so every backend runs the
//! same suite: PostgreSQL and the embedded SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kms::crypto::TokenDigest;
use kms::model::{
    AccessKeyInsert, AccessKeyRecord, AuditFilter, AuditRecord, Change, ClientRecord, KeyRecord,
    KeyState, Operation, Role, VersionRecord,
};
use kms::store::{NewKey, PgStore, SqliteStore, Store, StoreError};
use uuid::Uuid;

/// A fresh SQLite file per test.
async fn sqlite() -> Arc<dyn Store> {
    Arc::new(
        SqliteStore::open(&common::fresh_sqlite_path())
            .await
            .unwrap(),
    )
}

async fn pg() -> Arc<dyn Store> {
    Arc::new(
        PgStore::connect(&common::fresh_database().await)
            .await
            .unwrap(),
    )
}

fn now() -> DateTime<Utc> {
    // Databases keep microseconds.
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap()
}

fn new_key(alias: Option<&str>) -> NewKey {
    let id = Uuid::new_v4();
    let t = now();
    NewKey {
        record: KeyRecord {
            id,
            aliases: alias.into_iter().map(str::to_owned).collect(),
            description: "d".into(),
            state: KeyState::Enabled,
            primary_version: 1,
            rotation_period_days: Some(1),
            last_rotated_at: t,
            deletion_date: None,
            created_at: t,
            min_decryption_version: 1,
            per_video_keys: false,
        },
        first_version: VersionRecord {
            key_id: id,
            version: 1,
            wrapped: vec![1, 2, 3],
            created_at: t,
        },
    }
}

fn audit(op: Operation, key: Option<Uuid>) -> AuditRecord {
    AuditRecord {
        id: Uuid::now_v7(),
        time: now(),
        client_id: None,
        operation: op,
        key_id: key,
        key_version: Some(1),
        encryption_context: Some(
            [("video_id".to_owned(), "v".to_owned())]
                .into_iter()
                .collect(),
        ),
        outcome: "Success".into(),
        request_id: "r".into(),
        detail: Some(serde_json::json!({ "Reason": "test" })),
        protocol: None,
        access_key_id: None,
        link: None,
    }
}

async fn keys_versions_and_states(store: Arc<dyn Store>) {
    let k = new_key(Some("alias/a"));
    store.create_key(&k).await.unwrap();
    assert_eq!(store.key(k.record.id).await.unwrap().unwrap(), k.record);
    assert_eq!(
        store.key_id_for_alias("alias/a").await.unwrap(),
        Some(k.record.id)
    );
    assert!(matches!(
        store.create_key(&new_key(Some("alias/a"))).await,
        Err(StoreError::AliasExists)
    ));
    assert_eq!(
        store.list_keys().await.unwrap().len(),
        1,
        "a failed create leaves nothing behind"
    );

    // Versions: only on top of the expected primary.
    let v2 = VersionRecord {
        key_id: k.record.id,
        version: 2,
        wrapped: vec![4],
        created_at: now(),
    };
    store.add_version(1, &v2).await.unwrap();
    assert!(matches!(
        store.add_version(1, &v2).await,
        Err(StoreError::Conflict)
    ));
    let versions = store.key_versions(k.record.id).await.unwrap();
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(versions[1], v2);
    assert_eq!(
        store
            .key(k.record.id)
            .await
            .unwrap()
            .unwrap()
            .primary_version,
        2
    );

    // Conditional state changes.
    let disabled = store
        .set_state(k.record.id, &[KeyState::Enabled], KeyState::Disabled, None)
        .await
        .unwrap();
    assert_eq!(disabled.unwrap().state, KeyState::Disabled);
    assert!(store
        .set_state(k.record.id, &[KeyState::Enabled], KeyState::Disabled, None)
        .await
        .unwrap()
        .is_none());
    let v3 = VersionRecord {
        key_id: k.record.id,
        version: 3,
        wrapped: vec![5],
        created_at: now(),
    };
    assert!(
        matches!(store.add_version(2, &v3).await, Err(StoreError::Conflict)),
        "no rotation while disabled"
    );

    // Due work.
    let later = now() + chrono::Duration::days(2);
    store
        .set_state(k.record.id, &[KeyState::Disabled], KeyState::Enabled, None)
        .await
        .unwrap();
    assert_eq!(
        store.keys_due_rotation(later).await.unwrap(),
        vec![(k.record.id, 2)]
    );
    assert!(store.keys_due_rotation(now()).await.unwrap().is_empty());
    let when = now() + chrono::Duration::days(7);
    store
        .set_state(
            k.record.id,
            &[KeyState::Enabled],
            KeyState::PendingDeletion,
            Some(when),
        )
        .await
        .unwrap();
    assert!(
        store.keys_due_rotation(later).await.unwrap().is_empty(),
        "only Enabled keys rotate"
    );
    assert!(store.keys_due_deletion(later).await.unwrap().is_empty());
    assert!(
        !store.destroy_key(k.record.id, later).await.unwrap(),
        "not before the date"
    );
    let after = when + chrono::Duration::seconds(1);
    assert_eq!(
        store.keys_due_deletion(after).await.unwrap(),
        vec![k.record.id]
    );
    assert!(store.destroy_key(k.record.id, after).await.unwrap());
    assert!(
        !store.destroy_key(k.record.id, after).await.unwrap(),
        "only once"
    );
    let gone = store.key(k.record.id).await.unwrap().unwrap();
    assert_eq!(gone.state, KeyState::Deleted);
    assert!(gone.aliases.is_empty());
    assert!(store.key_versions(k.record.id).await.unwrap().is_empty());
    assert_eq!(store.key_id_for_alias("alias/a").await.unwrap(), None);
}

async fn encryption_reservations_never_pass_the_limit(store: Arc<dyn Store>) {
    let k = new_key(None);
    store.create_key(&k).await.unwrap();
    // 40 concurrent reservations of 3 against a limit of 100: exactly 33 win.
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let store = store.clone();
            let id = k.record.id;
            tokio::spawn(async move { store.reserve_encryptions(id, 1, 3, 100).await.unwrap() })
        })
        .collect();
    let mut granted = 0;
    for t in tasks {
        granted += usize::from(t.await.unwrap());
    }
    assert_eq!(granted, 33);
    assert!(
        store
            .reserve_encryptions(k.record.id, 1, 1, 100)
            .await
            .unwrap(),
        "one left"
    );
    assert!(!store
        .reserve_encryptions(k.record.id, 1, 1, 100)
        .await
        .unwrap());
    assert!(
        !store
            .reserve_encryptions(k.record.id, 9, 1, 100)
            .await
            .unwrap(),
        "unknown version"
    );
}

async fn concurrent_rotations_and_audit_writes(store: Arc<dyn Store>) {
    let k = new_key(None);
    store.create_key(&k).await.unwrap();
    // 20 processes' worth of rotations from primary 1: exactly one wins, the
    // rest see Conflict (never a lock error); audit batches interleave.
    let tasks: Vec<_> = (0..20u32)
        .map(|i| {
            let store = store.clone();
            let id = k.record.id;
            tokio::spawn(async move {
                let batch = vec![audit(Operation::Decrypt, Some(id)); 5]
                    .into_iter()
                    .map(|mut r| {
                        r.id = Uuid::now_v7();
                        r
                    })
                    .collect::<Vec<_>>();
                store.append_audit(&batch).await.unwrap();
                let v = VersionRecord {
                    key_id: id,
                    version: 2,
                    wrapped: vec![i as u8],
                    created_at: now(),
                };
                store.add_version(1, &v).await
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => won += 1,
            Err(StoreError::Conflict) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(store.key_versions(k.record.id).await.unwrap().len(), 2);
    let filter = AuditFilter {
        key_id: Some(k.record.id),
        limit: 1000,
        ..Default::default()
    };
    assert_eq!(store.query_audit(&filter).await.unwrap().len(), 100);
}

async fn root_rewrap_is_all_or_nothing(store: Arc<dyn Store>) {
    let check = store.root_key_check(b"old-check").await.unwrap();
    let k = new_key(None);
    store.create_key(&k).await.unwrap();
    let mut v = k.first_version.clone();
    v.wrapped = vec![7, 7, 7];
    let c = client("rewrap", [3; 32]);
    store.create_client(&c).await.unwrap();
    let mut ak = access_key(&c, "VKMSREWRAP");
    store.create_access_key(&ak, 2).await.unwrap();
    ak.wrapped_secret = vec![8, 8];
    let one_version = std::slice::from_ref(&v);
    let one_key = std::slice::from_ref(&ak);
    // Missing a version or an access key, or a stale check value: Conflict,
    // nothing changed.
    assert!(matches!(
        store.rewrap_root(&[], one_key, &[], &check, b"new").await,
        Err(StoreError::Conflict)
    ));
    assert!(matches!(
        store
            .rewrap_root(one_version, &[], &[], &check, b"new")
            .await,
        Err(StoreError::Conflict)
    ));
    assert!(matches!(
        store
            .rewrap_root(one_version, one_key, &[], b"stale", b"new")
            .await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        store.key_versions(k.record.id).await.unwrap()[0].wrapped,
        vec![1, 2, 3]
    );
    assert_eq!(
        store
            .access_key("VKMSREWRAP")
            .await
            .unwrap()
            .unwrap()
            .0
            .wrapped_secret,
        vec![9, 9, 9]
    );
    store
        .rewrap_root(one_version, one_key, &[], &check, b"new-check")
        .await
        .unwrap();
    assert_eq!(
        store.key_versions(k.record.id).await.unwrap()[0].wrapped,
        vec![7, 7, 7]
    );
    assert_eq!(
        store
            .access_key("VKMSREWRAP")
            .await
            .unwrap()
            .unwrap()
            .0
            .wrapped_secret,
        vec![8, 8]
    );
    assert_eq!(
        store.root_key_check(b"ignored").await.unwrap(),
        b"new-check"
    );
}

fn client(name: &str, digest: [u8; 32]) -> ClientRecord {
    ClientRecord {
        id: Uuid::new_v4(),
        name: name.into(),
        roles: kms::model::Roles::new(&[Role::Generate, Role::Decrypt]).unwrap(),
        key_ids: None,
        token_digest: TokenDigest(digest),
        created_at: now(),
        revoked_at: None,
    }
}

fn access_key(c: &ClientRecord, id: &str) -> AccessKeyRecord {
    AccessKeyRecord {
        id: id.into(),
        client_id: c.id,
        wrapped_secret: vec![9, 9, 9],
        created_at: now(),
    }
}

/// At most the limit per client, also when requests race; lookups join the
/// client; deletion is per client; revoked clients get none.
async fn access_keys(store: Arc<dyn Store>) {
    let c = client("sdk", [4; 32]);
    let other = client("other", [6; 32]);
    store.create_client(&c).await.unwrap();
    store.create_client(&other).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            let key = access_key(&c, &format!("VKMSRACE{i}"));
            tokio::spawn(async move { store.create_access_key(&key, 2).await.unwrap() })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        match t.await.unwrap() {
            AccessKeyInsert::Created => created += 1,
            AccessKeyInsert::LimitReached => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(created, 2, "parallel creations passed the limit");
    let held = store.list_access_keys(Some(c.id)).await.unwrap();
    assert_eq!(held.len(), 2);
    assert!(store
        .list_access_keys(Some(other.id))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.list_access_keys(None).await.unwrap().len(), 2);

    let (key, owner) = store.access_key(&held[0].id).await.unwrap().unwrap();
    assert_eq!(key, held[0]);
    assert_eq!(owner, c);
    assert!(store.access_key("VKMSNONE").await.unwrap().is_none());

    // Another client cannot delete it; its own deletion is final.
    assert!(!store
        .delete_access_key(other.id, &held[0].id)
        .await
        .unwrap());
    assert!(store.delete_access_key(c.id, &held[0].id).await.unwrap());
    assert!(!store.delete_access_key(c.id, &held[0].id).await.unwrap());
    assert!(store.access_key(&held[0].id).await.unwrap().is_none());
    assert_eq!(
        store
            .create_access_key(&access_key(&c, "VKMSTHIRD"), 2)
            .await
            .unwrap(),
        AccessKeyInsert::Created
    );

    store.revoke_client(other.id, now()).await.unwrap();
    assert_eq!(
        store
            .create_access_key(&access_key(&other, "VKMSREVOKED"), 2)
            .await
            .unwrap(),
        AccessKeyInsert::ClientNotFound
    );
    let ghost = client("ghost", [8; 32]);
    assert_eq!(
        store
            .create_access_key(&access_key(&ghost, "VKMSGHOST"), 2)
            .await
            .unwrap(),
        AccessKeyInsert::ClientNotFound
    );
}

/// Aliases added and removed after creation; rotation switched on and off.
async fn aliases_and_rotation_policy(store: Arc<dyn Store>) {
    let mut k = new_key(Some("alias/first"));
    k.record.rotation_period_days = None;
    store.create_key(&k).await.unwrap();
    let id = k.record.id;
    store.create_alias("alias/second", id).await.unwrap();
    assert!(matches!(
        store.create_alias("alias/first", id).await,
        Err(StoreError::AliasExists)
    ));
    assert_eq!(
        store.key(id).await.unwrap().unwrap().aliases,
        vec!["alias/first", "alias/second"]
    );
    assert_eq!(store.delete_alias("alias/first").await.unwrap(), Some(id));
    assert_eq!(store.delete_alias("alias/first").await.unwrap(), None);
    assert_eq!(store.key_id_for_alias("alias/first").await.unwrap(), None);

    let later = now() + chrono::Duration::days(3);
    assert!(store
        .set_rotation_period(id, Some(30), later)
        .await
        .unwrap());
    let read = store.key(id).await.unwrap().unwrap();
    assert_eq!(read.rotation_period_days, Some(30));
    // Switching rotation on starts the period then, not at the last rotation.
    assert_eq!(read.last_rotated_at, later);
    assert!(store
        .set_rotation_period(id, Some(90), now())
        .await
        .unwrap());
    assert_eq!(store.key(id).await.unwrap().unwrap().last_rotated_at, later);
    assert!(store.set_rotation_period(id, None, now()).await.unwrap());
    assert_eq!(
        store.key(id).await.unwrap().unwrap().rotation_period_days,
        None
    );
    assert!(!store
        .set_rotation_period(Uuid::new_v4(), Some(1), now())
        .await
        .unwrap());
}

async fn clients(store: Arc<dyn Store>) {
    let c = ClientRecord {
        id: Uuid::new_v4(),
        name: "c".into(),
        roles: Role::Decrypt.into(),
        key_ids: Some(vec![Uuid::new_v4()]),
        token_digest: TokenDigest([7; 32]),
        created_at: now(),
        revoked_at: None,
    };
    assert!(!store.any_active_admin().await.unwrap());
    store.create_client(&c).await.unwrap();
    assert_eq!(
        store.client_by_digest(&TokenDigest([7; 32])).await.unwrap(),
        Some(c.clone())
    );
    assert_eq!(
        store.client_by_digest(&TokenDigest([8; 32])).await.unwrap(),
        None
    );
    assert!(store.revoke_client(c.id, now()).await.unwrap());
    assert!(!store.revoke_client(c.id, now()).await.unwrap());
    assert!(store
        .client_by_digest(&TokenDigest([7; 32]))
        .await
        .unwrap()
        .unwrap()
        .revoked_at
        .is_some());
    assert_eq!(store.list_clients().await.unwrap().len(), 1);
}

/// A client of several roles reads back with all of them.
async fn multi_role_clients(store: Arc<dyn Store>) {
    let roles = kms::model::Roles::new(&[Role::Generate, Role::Decrypt]).unwrap();
    let c = ClientRecord {
        id: Uuid::new_v4(),
        name: "sdk".into(),
        roles,
        key_ids: None,
        token_digest: TokenDigest([5; 32]),
        created_at: now(),
        revoked_at: None,
    };
    store.create_client(&c).await.unwrap();
    let read = store
        .client_by_digest(&TokenDigest([5; 32]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.roles, roles);
    assert!(read.roles.contains(Role::Generate) && read.roles.contains(Role::Decrypt));
    assert_eq!(store.list_clients().await.unwrap(), vec![c]);
}

async fn audit_appends_are_idempotent_and_queryable(store: Arc<dyn Store>) {
    let key = Uuid::new_v4();
    let mut batch: Vec<_> = (0..5)
        .map(|i| {
            audit(
                if i < 3 {
                    Operation::Decrypt
                } else {
                    Operation::RotateKey
                },
                Some(key),
            )
        })
        .collect();
    // One came through a cloud door: its protocol and access key read back
    // and filter.
    batch[1].protocol = Some("aws".into());
    batch[1].access_key_id = Some("VKMSAUDITED".into());
    let by_key = AuditFilter {
        access_key_id: Some("VKMSAUDITED".into()),
        limit: 10,
        ..Default::default()
    };
    assert!(store.query_audit(&by_key).await.unwrap().is_empty());
    store.append_audit(&batch).await.unwrap();
    assert_eq!(
        store
            .query_audit(&by_key)
            .await
            .unwrap()
            .into_iter()
            .map(|(_, r)| r)
            .collect::<Vec<_>>(),
        vec![batch[1].clone()]
    );
    store.append_audit(&batch).await.unwrap(); // a retried batch
    store.append_audit(&batch[..2]).await.unwrap();
    store.append_audit(&[]).await.unwrap();
    let all = store
        .query_audit(&AuditFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 5, "retries never duplicate");
    assert_eq!(all[0].1, batch[4], "newest first, stored exactly");
    let decrypts = AuditFilter {
        operation: Some(Operation::Decrypt),
        limit: 100,
        ..Default::default()
    };
    assert_eq!(store.query_audit(&decrypts).await.unwrap().len(), 3);
    let page = store
        .query_audit(&AuditFilter {
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    let rest = AuditFilter {
        limit: 100,
        before_seq: Some(page[1].0),
        ..Default::default()
    };
    assert_eq!(store.query_audit(&rest).await.unwrap().len(), 3);
    let other = AuditFilter {
        key_id: Some(Uuid::new_v4()),
        limit: 100,
        ..Default::default()
    };
    assert!(store.query_audit(&other).await.unwrap().is_empty());

    // A record the database could not store as given must not block its batch.
    let mut odd = audit(Operation::Decrypt, Some(key));
    odd.encryption_context = Some([("k\0".to_owned(), "v\0".to_owned())].into_iter().collect());
    odd.access_key_id = Some("AK\0".to_owned());
    odd.request_id = "r\0".to_owned();
    let odd_batch = [odd, audit(Operation::Decrypt, Some(key))];
    store.append_audit(&odd_batch).await.unwrap();
    // Retried, as after an unconfirmed commit: the second write skips both.
    store.append_audit(&odd_batch).await.unwrap();
    let newest = AuditFilter {
        limit: 2,
        ..Default::default()
    };
    let stored = store.query_audit(&newest).await.unwrap();
    let ctx = stored[1].1.encryption_context.clone().unwrap();
    assert_eq!(ctx.get("k\u{FFFD}").map(String::as_str), Some("v\u{FFFD}"));
    assert_eq!(stored[1].1.access_key_id.as_deref(), Some("AK\u{FFFD}"));
    assert_eq!(stored[1].1.request_id, "r\u{FFFD}");
    let everything = AuditFilter {
        limit: 1000,
        ..Default::default()
    };
    assert_eq!(
        store.query_audit(&everything).await.unwrap().len(),
        7,
        "the retried batch added nothing"
    );
}

async fn changes_are_announced(store: Arc<dyn Store>) {
    let mut feed = store.watch_changes().await.unwrap();
    let k = new_key(None);
    store.create_key(&k).await.unwrap();
    store
        .set_state(k.record.id, &[KeyState::Enabled], KeyState::Disabled, None)
        .await
        .unwrap();
    let change = tokio::time::timeout(Duration::from_secs(5), feed.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(change, Change::Key(k.record.id));
    let c = ClientRecord {
        id: Uuid::new_v4(),
        name: "c".into(),
        roles: Role::Admin.into(),
        key_ids: None,
        token_digest: TokenDigest([9; 32]),
        created_at: now(),
        revoked_at: None,
    };
    // Creating a client is announced too (others learn its token digest).
    store.create_client(&c).await.unwrap();
    store.revoke_client(c.id, now()).await.unwrap();
    for want in [Change::ClientCreated(c.id), Change::Client(c.id)] {
        let change = tokio::time::timeout(Duration::from_secs(5), feed.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(change, want);
    }
    // Heartbeats travel the same way, after what was sent before them.
    store.heartbeat("nonce.42").await.unwrap();
    let change = tokio::time::timeout(Duration::from_secs(5), feed.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(change, Change::Heartbeat("nonce.42".into()));
}

/// Runs each contract test against both backends.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod pg_backend {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(pg().await).await;
                }
            )*
        }
        mod sqlite_backend {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(sqlite().await).await;
                }
            )*
        }
    };
}

/// ClientToken batches: stored once, found again within the window, the
/// first of two racing writers wins, old ones are forgotten.
async fn idempotent_batches(s: Arc<dyn Store>) {
    use kms::model::IdempotentBatch;
    let client = Uuid::new_v4();
    let t0 = now();
    let day = chrono::Duration::hours(24);
    let batch = |token: &str, blobs: &[&str], at: DateTime<Utc>| IdempotentBatch {
        client_id: client,
        client_token: token.into(),
        fingerprint: vec![1, 2, 3],
        blobs: blobs.iter().map(|b| b.to_string()).collect(),
        created_at: at,
    };
    assert_eq!(
        s.idempotent_batch(client, "job", t0 - day).await.unwrap(),
        None
    );
    let first = batch("job", &["AAA", "BBB"], t0);
    assert_eq!(
        s.put_idempotent_batch(&first, t0 - day).await.unwrap(),
        first
    );
    assert_eq!(
        s.idempotent_batch(client, "job", t0 - day).await.unwrap(),
        Some(first.clone())
    );
    // A second writer with the same token gets the first one back.
    let second = batch("job", &["CCC"], t0);
    assert_eq!(
        s.put_idempotent_batch(&second, t0 - day).await.unwrap(),
        first
    );
    // Other clients and tokens are their own.
    assert_eq!(
        s.idempotent_batch(Uuid::new_v4(), "job", t0 - day)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.idempotent_batch(client, "job-2", t0 - day).await.unwrap(),
        None
    );
    // A day later it no longer counts, and a new batch takes the token.
    let later = t0 + day + chrono::Duration::seconds(1);
    assert_eq!(
        s.idempotent_batch(client, "job", later - day)
            .await
            .unwrap(),
        None
    );
    let third = batch("job", &["DDD"], later);
    assert_eq!(
        s.put_idempotent_batch(&third, later - day).await.unwrap(),
        third
    );
}

/// MinDecryptionVersion: only 1..= the primary version, announced, and read
/// back with the key; the usage report counts decrypts per version.
async fn retiring_versions_and_usage(s: Arc<dyn Store>) {
    let mut feed = s.watch_changes().await.unwrap();
    let k = new_key(None);
    let id = k.record.id;
    s.create_key(&k).await.unwrap();
    let mut v2 = k.first_version.clone();
    v2.version = 2;
    s.add_version(1, &v2).await.unwrap();
    assert_eq!(s.key(id).await.unwrap().unwrap().min_decryption_version, 1);
    assert_eq!(s.set_min_decryption_version(id, 3).await.unwrap(), None);
    assert_eq!(s.set_min_decryption_version(id, 0).await.unwrap(), None);
    assert_eq!(
        s.set_min_decryption_version(Uuid::new_v4(), 1)
            .await
            .unwrap(),
        None
    );
    let retired = s.set_min_decryption_version(id, 2).await.unwrap().unwrap();
    assert_eq!(retired.min_decryption_version, 2);
    assert_eq!(s.key(id).await.unwrap().unwrap().min_decryption_version, 2);
    let mut seen = Vec::new();
    while seen.len() < 2 {
        seen.push(
            tokio::time::timeout(Duration::from_secs(5), feed.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    assert_eq!(seen, [Change::Key(id), Change::Key(id)]);
    // Undo.
    let back = s.set_min_decryption_version(id, 1).await.unwrap().unwrap();
    assert_eq!(back.min_decryption_version, 1);

    let t0 = now();
    let decrypt = |version: u32, outcome: &str, at: DateTime<Utc>| {
        let mut r = audit(Operation::Decrypt, Some(id));
        r.key_version = Some(version);
        r.outcome = outcome.into();
        r.time = at;
        r
    };
    let hour = chrono::Duration::hours(1);
    s.append_audit(&[
        decrypt(1, "Success", t0 - hour * 48),
        decrypt(1, "Success", t0 - hour),
        decrypt(1, "KeyVersionRetired", t0),
        decrypt(2, "Success", t0 - hour * 2),
        decrypt(2, "Success", t0),
        decrypt(2, "InvalidCiphertext", t0),
        audit(Operation::GenerateDataKey, Some(id)),
    ])
    .await
    .unwrap();
    let usage = s.version_usage(id, t0 - hour * 24).await.unwrap();
    assert_eq!(
        usage,
        [
            kms::model::VersionUsage {
                version: 1,
                decrypts: 1,
                last_decrypt: Some(t0 - hour),
                refused_retired: 1,
            },
            kms::model::VersionUsage {
                version: 2,
                decrypts: 2,
                last_decrypt: Some(t0),
                refused_retired: 0,
            },
        ]
    );
    assert!(s
        .version_usage(Uuid::new_v4(), t0 - hour)
        .await
        .unwrap()
        .is_empty());
}

/// Video secrets: the first insert wins, a shred is scheduled (a tombstone
/// for an unknown video), cancelled, and done only when due; shredded
/// secrets are gone for good and every change is announced.
async fn video_secrets_and_shredding(s: Arc<dyn Store>) {
    use kms::model::VideoSecretRecord;
    let mut feed = s.watch_changes().await.unwrap();
    let t0 = now();
    let day = chrono::Duration::days(1);
    let secret = |video: &str, bytes: u8| VideoSecretRecord {
        video_id: video.into(),
        wrapped_secret: Some(vec![bytes; 8]),
        created_at: t0,
        shred_date: None,
        shredded_at: None,
    };
    assert_eq!(s.video_secret("film").await.unwrap(), None);
    let first = secret("film", 1);
    assert_eq!(s.put_video_secret(&first).await.unwrap(), first);
    // A racing second insert gets the first back.
    assert_eq!(s.put_video_secret(&secret("film", 2)).await.unwrap(), first);
    s.put_video_secret(&secret("other", 3)).await.unwrap();
    assert_eq!(s.list_video_secrets().await.unwrap().len(), 2);

    let scheduled = s.schedule_video_shred("film", t0 + day, t0).await.unwrap();
    assert_eq!(scheduled.shred_date, Some(t0 + day));
    assert_eq!(scheduled.wrapped_secret, first.wrapped_secret);
    assert_eq!(s.videos_due_shred(t0).await.unwrap(), Vec::<String>::new());
    assert!(!s.shred_video("film", t0).await.unwrap(), "not due yet");
    let cancelled = s.cancel_video_shred("film").await.unwrap().unwrap();
    assert_eq!(cancelled.shred_date, None);
    assert_eq!(s.cancel_video_shred("film").await.unwrap(), None);

    s.schedule_video_shred("film", t0, t0).await.unwrap();
    assert_eq!(
        s.videos_due_shred(t0).await.unwrap(),
        vec!["film".to_string()]
    );
    assert!(s.shred_video("film", t0).await.unwrap());
    assert!(!s.shred_video("film", t0).await.unwrap(), "only once");
    let gone = s.video_secret("film").await.unwrap().unwrap();
    assert_eq!(gone.wrapped_secret, None);
    assert_eq!(gone.shredded_at, Some(t0));
    // Shredded stays shredded: no new secret, no new schedule, no cancel.
    assert_eq!(s.put_video_secret(&secret("film", 4)).await.unwrap(), gone);
    assert_eq!(
        s.schedule_video_shred("film", t0 + day, t0).await.unwrap(),
        gone
    );
    assert_eq!(s.cancel_video_shred("film").await.unwrap(), None);
    assert_eq!(
        s.videos_due_shred(t0 + day).await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(s.list_video_secrets().await.unwrap().len(), 1);

    // A video never minted for gets a tombstone that blocks a later secret.
    let tomb = s.schedule_video_shred("never", t0, t0).await.unwrap();
    assert_eq!(tomb.wrapped_secret, None);
    assert!(s.shred_video("never", t0).await.unwrap());
    let held = s.put_video_secret(&secret("never", 5)).await.unwrap();
    assert_eq!(held.wrapped_secret, None);

    let mut seen = Vec::new();
    while seen.len() < 6 {
        let c = tokio::time::timeout(Duration::from_secs(5), feed.recv())
            .await
            .unwrap()
            .unwrap();
        seen.push(c);
    }
    let film = Change::Video("film".into());
    let never = Change::Video("never".into());
    assert_eq!(
        seen,
        [
            film.clone(),
            film.clone(),
            film.clone(),
            film,
            never.clone(),
            never
        ]
    );
}

/// Chained records read back exactly as they were hashed (NUL in text and
/// JSON, nanosecond times, JSONB key order), in (writer, seq) order, with
/// their checkpoints; a retried batch adds nothing; records without chain
/// fields are counted.
async fn chained_audit_reads_back_as_hashed(s: Arc<dyn Store>) {
    use foundation::audit::{AuditLog, ChainConfig, Chained, SigningKey};
    let key = SigningKey::from_seed(&[9; 32]);
    let public = key.verifying_key();
    let config = ChainConfig {
        signing_key: Some(Arc::new(key)),
        copy_file: None,
        every_records: 3,
        every: Duration::from_secs(3600),
    };
    let sink = Arc::new(kms::service::StoreSink(s.clone()));
    let log = AuditLog::chained(
        sink.clone(),
        100,
        4,
        kms::service::audit::TRAIL,
        sink,
        &config,
    );
    let mut ids = Vec::new();
    for i in 0..10 {
        let mut r = audit(Operation::Decrypt, Some(Uuid::new_v4()));
        r.time = Utc::now() + chrono::Duration::nanoseconds(i * 1_001);
        r.outcome = format!("Success\0{i}");
        r.encryption_context = Some(
            [("video\0id".to_owned(), format!("v\0{i}"))]
                .into_iter()
                .collect(),
        );
        r.detail = Some(serde_json::json!({
            "zeta": [1, 2.5, "x\0y"], "alpha": { "b\0": null, "a": true }, "n": i
        }));
        ids.push(r.id);
        log.record(r);
        if i % 4 == 3 {
            log.flush().await.unwrap();
        }
    }
    log.flush_final().await.unwrap();

    let mut read = Vec::new();
    let mut after = 0;
    loop {
        let page = s.audit_page(after, 4).await.unwrap();
        let Some(&(last, _)) = page.last() else { break };
        for (_, row) in page {
            let record = row.expect("every chained row reads back");
            assert!(record.link.is_some(), "chained rows carry their link");
            read.push(record);
        }
        after = last;
    }
    assert_eq!(read.iter().map(|r| r.id).collect::<Vec<_>>(), ids);
    let checkpoints = s.audit_checkpoints().await.unwrap();
    assert!(checkpoints.len() >= 4, "first, every 3 records, last");
    assert!(checkpoints.iter().all(|c| c.trail == "kms"));
    assert!(checkpoints.iter().max_by_key(|c| c.number).unwrap().last);
    let rows: Vec<audit_chain::Row> = read
        .iter()
        .map(|r| audit_chain::Row {
            link: r.link.unwrap(),
            canonical: r.canonical(),
            id: r.id.to_string(),
        })
        .collect();
    let report = audit_chain::verify(&rows, &checkpoints, Some(&checkpoints), &public);
    assert!(report.clean(), "{:?}", report.problems);
    assert_eq!(report.records, 10);

    // A batch whose commit went unconfirmed is written again: nothing doubles.
    s.append_audit(&read[..5]).await.unwrap();
    assert_eq!(
        s.audit_page(0, 100).await.unwrap().len(),
        10,
        "a retried chained batch is idempotent"
    );
    let plain = audit(Operation::Encrypt, None);
    s.append_audit(std::slice::from_ref(&plain)).await.unwrap();
    let page = s.audit_page(0, 100).await.unwrap();
    let newest = page.last().unwrap().1.as_ref().unwrap();
    assert_eq!(
        (newest.id, newest.link),
        (plain.id, None),
        "stored unchained"
    );
}

on_both_backends!(
    chained_audit_reads_back_as_hashed,
    retiring_versions_and_usage,
    video_secrets_and_shredding,
    idempotent_batches,
    keys_versions_and_states,
    encryption_reservations_never_pass_the_limit,
    clients,
    multi_role_clients,
    audit_appends_are_idempotent_and_queryable,
    changes_are_announced,
    concurrent_rotations_and_audit_writes,
    root_rewrap_is_all_or_nothing,
    access_keys,
    aliases_and_rotation_policy,
);
