//! `vodkms rekey-root`: every master key version re-wrapped under a new root
//! key in one transaction; the old key no longer starts a server, the new one
//! decrypts every blob made before; a wrong old key changes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::{Command, Output};

use common::{KmsProcess, Setup};

fn rekey(db: &str, old: &str, new: &str) -> Output {
    Command::new(common::BIN)
        .arg("rekey-root")
        .env("DATABASE_URL", db)
        .env("VODKMS_ROOT_KEY", old)
        .env("VODKMS_NEW_ROOT_KEY", new)
        .env_remove("VODKMS_ROOT_KEY_FILE")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rekeyed_root_opens_every_old_blob_and_the_old_root_opens_nothing() {
    let s = Setup::new().await;
    // Two versions of alias/vod, a blob under each.
    let first = s.api.generate(&s.generator, "alias/vod", "v1").await;
    let first_plain = first.ok()["Plaintext"].clone();
    let first_blob = first.ok()["CiphertextBlob"].as_str().unwrap().to_owned();
    let r = s
        .api
        .post("/v1/keys/alias/vod/rotate", &s.admin, serde_json::json!({}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let second = s.api.generate(&s.generator, "alias/vod", "v2").await;
    let second_blob = second.ok()["CiphertextBlob"].as_str().unwrap().to_owned();
    let Setup {
        db,
        root_key,
        kms,
        generator: _,
        decryptor,
        admin,
        ..
    } = s;
    assert!(kms.terminate().success());

    let new_root = common::random_root_key();
    // A wrong old key: refused, nothing changed.
    let wrong = rekey(&db, &common::random_root_key(), &new_root);
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("root key"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );

    let out = rekey(&db, &root_key, &new_root);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["Rewrapped"], 2);

    // The old root key no longer starts a server.
    let refused = KmsProcess::try_start(&db, &root_key, &[]).await;
    let log = refused.err().expect("the old root key must be refused");
    assert!(log.contains("root key"), "{log}");

    // The new one decrypts what was made before, under both versions.
    let kms = KmsProcess::start(&db, &new_root, &[]).await;
    let api = kms.api();
    let back = api.decrypt(&decryptor, &first_blob, "v1").await;
    assert_eq!(back.ok()["Plaintext"], first_plain);
    assert_eq!(
        api.decrypt(&decryptor, &second_blob, "v2").await.status,
        200
    );
    api.audit_until(&admin, "Operation=RekeyRoot", |rs| {
        rs.iter().any(|r| r["Detail"]["Versions"] == 2)
    })
    .await;
}
