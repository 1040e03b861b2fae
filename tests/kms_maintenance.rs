//! Scheduled rotation and deletion, driven through the service with a manual
//! clock (no sleeping for days) on real PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use chrono::{Duration, Utc};
use kms::crypto::{ApiToken, DataKeySpec, EncryptionContext, RootKey};
use kms::model::{AuditFilter, KeyState, Operation, Role};
use kms::service::{
    DataKeyRequest, Kms, KmsConfig, KmsError, ManualClock, NewClient, NewKeyRequest, RequestContext,
};
use kms::store::{PgStore, Store};

fn ctx(v: &str) -> EncryptionContext {
    [("video_id".to_owned(), v.to_owned())]
        .into_iter()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_rotations_and_deletions_happen_and_are_audited() {
    let db = common::fresh_database().await;
    let store: Arc<dyn Store> = Arc::new(PgStore::connect(&db).await.unwrap());
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let root = RootKey::from_base64(&common::random_root_key()).unwrap();
    let kms = Kms::start(store.clone(), root, clock.clone(), KmsConfig::default())
        .await
        .unwrap();
    let rc = RequestContext::new("test");

    let admin =
        kms::service::bootstrap_admin(store.clone(), clock.as_ref(), "admin".into(), false, None)
            .await
            .unwrap();
    let admin = kms.authenticate(Some(&admin.token)).await.unwrap();
    let gen_client = kms
        .create_client(
            &admin,
            &rc,
            NewClient {
                name: "g".into(),
                roles: Role::Generate.into(),
                key_ids: None,
            },
        )
        .await
        .unwrap();
    let dec_client = kms
        .create_client(
            &admin,
            &rc,
            NewClient {
                name: "d".into(),
                roles: Role::Decrypt.into(),
                key_ids: None,
            },
        )
        .await
        .unwrap();
    let gen_token: &ApiToken = &gen_client.token;
    let dec_token: &ApiToken = &dec_client.token;

    let key = kms
        .create_key(
            &admin,
            &rc,
            NewKeyRequest {
                alias: Some("alias/r".into()),
                description: None,
                rotation_period_days: Some(1),
                per_video_keys: false,
            },
        )
        .await
        .unwrap();
    let id = key.record.id.to_string();
    let request = |v: &str| DataKeyRequest {
        key_id: id.clone(),
        spec: DataKeySpec::Aes128,
        context: ctx(v),
    };
    let g1 = kms
        .generate_data_key(Some(gen_token), &rc, request("a"), true)
        .await
        .unwrap();
    assert_eq!(g1.version, 1);

    // Not yet due: nothing happens.
    clock.advance(Duration::hours(23));
    kms.run_maintenance().await.unwrap();
    assert_eq!(
        kms.describe_key(&admin, &id)
            .await
            .unwrap()
            .record
            .primary_version,
        1
    );

    // Due: rotated once, however often maintenance runs.
    clock.advance(Duration::hours(2));
    kms.run_maintenance().await.unwrap();
    kms.run_maintenance().await.unwrap();
    let view = kms.describe_key(&admin, &id).await.unwrap();
    assert_eq!(view.record.primary_version, 2);
    assert_eq!(view.versions.len(), 2);
    let g2 = kms
        .generate_data_key(Some(gen_token), &rc, request("b"), true)
        .await
        .unwrap();
    assert_eq!(g2.version, 2);

    // Scheduled deletion: nothing before the date, then the key is destroyed
    // and its blobs fail with a clear code.
    kms.schedule_key_deletion(&admin, &rc, &id, Some(7))
        .await
        .unwrap();
    clock.advance(Duration::days(6));
    kms.run_maintenance().await.unwrap();
    assert_eq!(
        kms.describe_key(&admin, &id).await.unwrap().record.state,
        KeyState::PendingDeletion
    );
    clock.advance(Duration::days(2));
    kms.run_maintenance().await.unwrap();
    let gone = kms.describe_key(&admin, &id).await.unwrap();
    assert_eq!(gone.record.state, KeyState::Deleted);
    assert!(gone.versions.is_empty(), "material destroyed");
    assert!(gone.record.aliases.is_empty(), "alias released");
    let blob = g1.blob.to_text();
    let err = kms
        .decrypt(Some(dec_token), &rc, &blob, ctx("a"))
        .await
        .unwrap_err();
    assert!(matches!(err, KmsError::KeyDeleted), "{err:?}");
    let err = kms
        .generate_data_key(Some(gen_token), &rc, request("c"), true)
        .await
        .unwrap_err();
    assert!(matches!(err, KmsError::KeyDeleted), "{err:?}");
    // Nothing more to do for a deleted key.
    assert!(matches!(
        kms.enable_key(&admin, &rc, &id).await.unwrap_err(),
        KmsError::KeyDeleted
    ));
    // The alias can be used again.
    kms.create_key(
        &admin,
        &rc,
        NewKeyRequest {
            alias: Some("alias/r".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();

    kms.flush_audit().await.unwrap();
    let filter = AuditFilter {
        key_id: Some(key.record.id),
        limit: 1000,
        ..Default::default()
    };
    let records = kms.query_audit(&admin, &filter).await.unwrap();
    let system_rotations: Vec<_> = records
        .iter()
        .filter(|(_, r)| r.operation == Operation::RotateKey && r.client_id.is_none())
        .collect();
    assert_eq!(system_rotations.len(), 1);
    assert_eq!(
        system_rotations[0].1.detail.as_ref().unwrap()["Reason"],
        "RotationPeriod"
    );
    assert!(records
        .iter()
        .any(|(_, r)| r.operation == Operation::DeleteKey && r.outcome == "Success"));
    assert!(records
        .iter()
        .any(|(_, r)| r.operation == Operation::Decrypt && r.outcome == "KeyDeleted"));
}
