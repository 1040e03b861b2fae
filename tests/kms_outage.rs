//! A database outage: key operations go on from memory, audit records wait in
//! the buffer and are written when the database is back; past the buffer
//! bound, key releases are refused with 503 rather than go unaudited.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::proxy::{upstream_of, DbProxy};
use common::*;
use std::time::Duration;

struct OutageSetup {
    db: String,
    proxy: DbProxy,
    kms: KmsProcess,
    api: Api,
    admin: String,
    generator: String,
    decryptor: String,
}

async fn outage_setup(env: &[(&str, &str)]) -> OutageSetup {
    let db = fresh_database().await;
    let proxy = DbProxy::start(upstream_of(&db)).await;
    let root = random_root_key();
    let kms = KmsProcess::start(&proxy.url_for(&db), &root, env).await;
    let admin = bootstrap(&db, &root);
    let api = kms.api();
    api.create_key(&admin, "alias/vod").await;
    let (_, generator) = api.create_client(&admin, "generate", None).await;
    let (_, decryptor) = api.create_client(&admin, "decrypt", None).await;
    OutageSetup {
        db,
        proxy,
        kms,
        api,
        admin,
        generator,
        decryptor,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_operations_survive_an_outage_and_lose_no_audit_record() {
    // A 1 s cache TTL, so the outage outlasts it: expired entries must keep
    // serving without waiting on the database (whose pool gives up after 5 s;
    // the 3 s client timeout below would catch a request that waited).
    let o = outage_setup(&[("VODKMS_CACHE_TTL_SECS", "1")]).await;
    let impatient = Api::with_timeout(&o.api.base, Duration::from_secs(3));
    // Warm: one of each.
    let g = o
        .api
        .generate(&o.generator, "alias/vod", "w")
        .await
        .ok()
        .clone();
    o.api
        .decrypt(&o.decryptor, g["CiphertextBlob"].as_str().unwrap(), "w")
        .await
        .ok();
    o.api.get("/v1/audit?Limit=1", &o.admin).await.ok();

    o.proxy.cut();
    tokio::time::sleep(Duration::from_millis(1500)).await; // past the TTL
    let mut request_ids = Vec::new();
    for i in 0..20 {
        let r = impatient
            .generate(&o.generator, "alias/vod", &format!("o{i}"))
            .await;
        r.ok();
        request_ids.push(r.request_id.clone());
        let d = impatient
            .decrypt(
                &o.decryptor,
                r.body["CiphertextBlob"].as_str().unwrap(),
                &format!("o{i}"),
            )
            .await;
        assert_eq!(d.ok()["Plaintext"], r.body["Plaintext"]);
        request_ids.push(d.request_id.clone());
    }
    // Admin calls need the database: a clear 503 with Retry-After, not a hang or a 500.
    let r = o
        .api
        .post("/v1/keys", &o.admin, serde_json::json!({}))
        .await;
    r.assert_error(503, "ServiceUnavailable");
    assert!(r.headers.get("retry-after").is_some());
    tokio::time::sleep(Duration::from_secs(2)).await;
    o.proxy.restore();

    let records = o
        .api
        .audit_until(&o.admin, "Limit=1000", |rs| {
            request_ids
                .iter()
                .all(|id| rs.iter().any(|r| r["RequestId"] == id.as_str()))
        })
        .await;
    assert!(records
        .iter()
        .all(|r| r["Outcome"] == "Success" || r["Operation"] == "CreateKey"));
    // And the service is fully back.
    o.api
        .post("/v1/keys", &o.admin, serde_json::json!({}))
        .await
        .ok();
    let log = o.kms.log_text();
    assert!(
        log.contains("audit flush failed"),
        "the outage should have been logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_audit_buffer_bound_key_releases_are_refused() {
    let o = outage_setup(&[("VODKMS_AUDIT_BUFFER", "10")]).await;
    o.api.generate(&o.generator, "alias/vod", "w").await.ok();
    eventually(10, "warm-up records flushed", || async {
        o.api.get("/v1/audit?Limit=1000", &o.admin).await.ok()["Records"]
            .as_array()
            .unwrap()
            .len()
            >= 4
    })
    .await;

    o.proxy.cut();
    let mut released = Vec::new();
    let mut refused = 0;
    for i in 0..25 {
        let r = o
            .api
            .generate(&o.generator, "alias/vod", &format!("b{i}"))
            .await;
        match r.status {
            200 => released.push(r.request_id.clone()),
            503 => {
                r.assert_error(503, "AuditUnavailable");
                assert!(r.headers.get("retry-after").is_some());
                refused += 1;
            }
            other => panic!("unexpected {other}: {:?}", r.body),
        }
    }
    assert!(
        released.len() <= 10,
        "released {} keys past a buffer of 10",
        released.len()
    );
    assert!(refused >= 15);
    o.proxy.restore();

    // Every released key is audited once the database is back, and releases resume.
    o.api
        .audit_until(&o.admin, "Operation=GenerateDataKey&Limit=1000", |rs| {
            released
                .iter()
                .all(|id| rs.iter().any(|r| r["RequestId"] == id.as_str()))
        })
        .await;
    eventually(15, "key releases resume", || async {
        o.api
            .generate(&o.generator, "alias/vod", "after")
            .await
            .status
            == 200
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_an_outage_waits_for_the_database_to_write_the_audit() {
    // Records stay buffered (no timed flush) until shutdown.
    let o = outage_setup(&[("VODKMS_AUDIT_FLUSH_MS", "600000")]).await;
    let mut ids = Vec::new();
    for i in 0..10 {
        let r = o
            .api
            .generate(&o.generator, "alias/vod", &format!("s{i}"))
            .await;
        r.ok();
        ids.push(r.request_id.clone());
    }
    o.proxy.cut();
    o.kms.signal_term();
    tokio::time::sleep(Duration::from_secs(2)).await;
    o.proxy.restore();
    let status = tokio::task::spawn_blocking(move || o.kms.wait_exit())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");

    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&o.db)
        .await
        .unwrap();
    let written: Vec<String> =
        sqlx::query_scalar("SELECT request_id FROM audit_log WHERE operation = 'GenerateDataKey'")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    for id in &ids {
        assert!(
            written.contains(id),
            "audit record of {id} lost at shutdown"
        );
    }
}
