//! Several processes on one database; root key checks; bootstrap; shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_see_each_others_rotation_disable_and_revocation() {
    let s = Setup::new().await;
    let b = KmsProcess::start(&s.db, &s.root_key, &[]).await;
    let (a_api, b_api) = (&s.api, b.api());

    // Warm B's caches.
    assert_eq!(
        b_api.generate(&s.generator, "alias/vod", "x").await.ok()["KeyVersionId"],
        1
    );

    // Rotation through A: B seals under version 2 soon after.
    a_api
        .post("/v1/keys/alias/vod/rotate", &s.admin, json!({}))
        .await
        .ok();
    eventually(5, "B uses the version A rotated to", || async {
        b_api.generate(&s.generator, "alias/vod", "x").await.body["KeyVersionId"] == 2
    })
    .await;
    // A blob made by B decrypts on A and the other way round.
    let from_b =
        b_api.generate(&s.generator, "alias/vod", "x").await.ok()["CiphertextBlob"].clone();
    a_api
        .decrypt(&s.decryptor, from_b.as_str().unwrap(), "x")
        .await
        .ok();

    // Disable through A: B refuses.
    a_api
        .post("/v1/keys/alias/vod/disable", &s.admin, json!({}))
        .await
        .ok();
    eventually(5, "B refuses a key disabled through A", || async {
        b_api.generate(&s.generator, "alias/vod", "x").await.code() == "KeyDisabled"
    })
    .await;
    a_api
        .post("/v1/keys/alias/vod/enable", &s.admin, json!({}))
        .await
        .ok();
    eventually(5, "B accepts the key enabled again", || async {
        b_api.generate(&s.generator, "alias/vod", "x").await.status == 200
    })
    .await;

    // Revocation through A: B refuses the token.
    let (id, token) = a_api.create_client(&s.admin, "decrypt", None).await;
    b_api
        .decrypt(&token, from_b.as_str().unwrap(), "x")
        .await
        .ok(); // cached on B
    assert_eq!(
        a_api
            .delete(&format!("/v1/clients/{id}"), &s.admin)
            .await
            .status,
        204
    );
    eventually(5, "B refuses a token revoked through A", || async {
        b_api
            .decrypt(&token, from_b.as_str().unwrap(), "x")
            .await
            .status
            == 401
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_root_key_fails_start_up_clearly() {
    let db = fresh_database().await;
    let root = random_root_key();
    let first = KmsProcess::start(&db, &root, &[]).await;
    drop(first);
    let log = match KmsProcess::try_start(&db, &random_root_key(), &[]).await {
        Ok(_) => panic!("a KMS with the wrong root key started"),
        Err(log) => log,
    };
    assert!(log.contains("root key does not match"), "{log}");
    let log = match KmsProcess::try_start(&db, "dG9vIHNob3J0", &[]).await {
        Ok(_) => panic!("a KMS with a 9-byte root key started"),
        Err(log) => log,
    };
    assert!(log.contains("32 bytes"), "{log}");
    // The right key still works.
    KmsProcess::start(&db, &root, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_makes_one_admin_unless_forced() {
    let db = fresh_database().await;
    let root = random_root_key();
    let token = bootstrap(&db, &root);
    assert!(token.starts_with("vkms_"));
    let again = std::process::Command::new(BIN)
        .arg("bootstrap")
        .env("DATABASE_URL", &db)
        .env("VODKMS_ROOT_KEY", &root)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    let forced = std::process::Command::new(BIN)
        .args(["bootstrap", "--force", "--name", "second"])
        .env("DATABASE_URL", &db)
        .env("VODKMS_ROOT_KEY", &root)
        .output()
        .unwrap();
    assert!(forced.status.success());
    let kms = KmsProcess::start(&db, &root, &[]).await;
    let clients = kms.api().get("/v1/clients", &token).await.ok().clone();
    assert_eq!(clients["Clients"].as_array().unwrap().len(), 2);
    // Only digests are stored: the token appears nowhere in the database.
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db)
        .await
        .unwrap();
    let dump: String = sqlx::query_scalar("SELECT string_agg(t::text, ' ') FROM api_clients t")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(!dump.contains(&token[5..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_and_flushes_the_audit_log() {
    let s = Setup::new().await;
    // Long flush interval so records are still buffered when the signal comes.
    let kms = KmsProcess::start(&s.db, &s.root_key, &[("VODKMS_AUDIT_FLUSH_MS", "600000")]).await;
    let api = kms.api();
    let mut ids = Vec::new();
    for i in 0..50 {
        ids.push(
            api.generate(&s.generator, "alias/vod", &format!("t{i}"))
                .await
                .ok()["CiphertextBlob"]
                .clone(),
        );
    }
    let buffered = s
        .api
        .get("/v1/audit?Operation=GenerateDataKey", &s.admin)
        .await
        .ok()["Records"]
        .clone();
    assert_eq!(
        buffered.as_array().unwrap().len(),
        0,
        "records should still be buffered"
    );
    let status = kms.terminate();
    assert!(status.success(), "{status:?}");
    let records = s
        .api
        .audit_until(&s.admin, "Operation=GenerateDataKey&Limit=1000", |rs| {
            rs.len() >= 50
        })
        .await;
    assert_eq!(records.len(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_loses_no_audit_record() {
    let s = Setup::new().await;
    let kms = KmsProcess::start(&s.db, &s.root_key, &[]).await;
    let url = kms.url.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Eight callers hammering generate-data-key; each counts what it got back.
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let api = common::Api::new(&url);
            let token = s.generator.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut ok = 0usize;
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    i += 1;
                    let req = api
                        .request(reqwest::Method::POST, "/v1/generate-data-key", Some(&token))
                        .json(&serde_json::json!({
                            "KeyId": "alias/vod",
                            "EncryptionContext": { "video_id": format!("w{w}-{i}") }
                        }));
                    match req.send().await {
                        Ok(r) if r.status() == 200 => ok += 1,
                        Ok(_) => {}
                        Err(_) => break, // the server is gone
                    }
                }
                ok
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    kms.signal_term();
    let status = tokio::task::spawn_blocking(move || kms.wait_exit())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut delivered = 0;
    for w in workers {
        delivered += w.await.unwrap();
    }
    assert!(
        delivered > 50,
        "too little load to mean anything: {delivered}"
    );
    // Every key handed out is in the trail, counted in the database itself
    // (the writer drained its buffer before the process exited).
    let mut db = <sqlx::PgConnection as sqlx::Connection>::connect(&s.db)
        .await
        .unwrap();
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE operation = 'GenerateDataKey' AND outcome = 'Success'",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert!(
        audited >= delivered as i64,
        "{audited} audited < {delivered} keys delivered"
    );
}
