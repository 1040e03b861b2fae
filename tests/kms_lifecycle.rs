//! The whole key lifecycle through the real HTTP server on real PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine as _;
use common::*;
use serde_json::json;

fn b64(v: &serde_json::Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_generate_rotate_decrypt_disable_enable_delete() {
    let s = Setup::new().await;
    let api = &s.api;

    // Generate under the alias; decrypt gives the same 16 bytes back.
    let g1 = api.generate(&s.generator, "alias/vod", "video-1").await;
    let g1 = g1.ok().clone();
    assert_eq!(g1["KeyId"], s.key_id.as_str());
    assert_eq!(g1["KeyVersionId"], 1);
    let dk1 = b64(&g1["Plaintext"]);
    assert_eq!(dk1.len(), 16, "AES_128 is the default");
    let blob1 = g1["CiphertextBlob"].as_str().unwrap().to_owned();
    assert!(
        !blob1.contains(['+', '/', '=']),
        "blob text is base64url without padding"
    );
    let d1 = api.decrypt(&s.decryptor, &blob1, "video-1").await;
    assert_eq!(b64(&d1.ok()["Plaintext"]), dk1);
    assert_eq!(d1.body["KeyVersionId"], 1);

    // Standard base64 of the same blob is accepted too.
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&blob1)
        .unwrap();
    let std_blob = base64::engine::general_purpose::STANDARD.encode(&raw);
    assert_eq!(
        b64(&api.decrypt(&s.decryptor, &std_blob, "video-1").await.ok()["Plaintext"]),
        dk1
    );

    // Rotate (by id and by alias path); new keys use the new version, old blobs still open.
    let r = api
        .post(
            &format!("/v1/keys/{}/rotate", s.key_id),
            &s.admin,
            json!({}),
        )
        .await;
    assert_eq!(r.ok()["KeyVersionId"], 2);
    assert_eq!(r.body["KeyId"], s.key_id.as_str());
    let r = api
        .post("/v1/keys/alias/vod/rotate", &s.admin, json!({}))
        .await;
    assert_eq!(r.ok()["KeyVersionId"], 3);
    let g3 = api
        .generate(&s.generator, &s.key_id, "video-3")
        .await
        .ok()
        .clone();
    assert_eq!(g3["KeyVersionId"], 3);
    let blob3 = g3["CiphertextBlob"].as_str().unwrap();
    assert_eq!(
        b64(&api.decrypt(&s.decryptor, blob3, "video-3").await.ok()["Plaintext"]),
        b64(&g3["Plaintext"])
    );
    assert_eq!(
        b64(&api.decrypt(&s.decryptor, &blob1, "video-1").await.ok()["Plaintext"]),
        dk1
    );

    let meta = api
        .get(&format!("/v1/keys/{}", s.key_id), &s.admin)
        .await
        .ok()
        .clone();
    assert_eq!(meta["CurrentKeyVersionId"], 3);
    assert_eq!(meta["KeyVersions"].as_array().unwrap().len(), 3);
    assert_eq!(meta["KeyState"], "Enabled");
    assert_eq!(meta["Aliases"], json!(["alias/vod"]));
    assert!(meta["CreationDate"].is_string());
    // The encoded alias works as a path segment too.
    assert_eq!(
        api.get("/v1/keys/alias%2Fvod", &s.admin).await.ok()["KeyId"],
        s.key_id.as_str()
    );

    // Without plaintext: only the blob.
    let w = api
        .post(
            "/v1/generate-data-key-without-plaintext",
            &s.generator,
            json!({ "KeyId": "alias/vod", "KeySpec": "AES_256" }),
        )
        .await;
    assert!(w.ok().get("Plaintext").is_none(), "{:?}", w.body);
    let d = api
        .post(
            "/v1/decrypt",
            &s.decryptor,
            json!({ "CiphertextBlob": w.body["CiphertextBlob"] }),
        )
        .await;
    assert_eq!(b64(&d.ok()["Plaintext"]).len(), 32);
    let n = api
        .post(
            "/v1/generate-data-key",
            &s.generator,
            json!({ "KeyId": "alias/vod", "NumberOfBytes": 1024 }),
        )
        .await;
    assert_eq!(b64(&n.ok()["Plaintext"]).len(), 1024);

    // Disable: generate and decrypt refuse with their own code; enable restores.
    api.post("/v1/keys/alias/vod/disable", &s.admin, json!({}))
        .await
        .ok();
    api.generate(&s.generator, "alias/vod", "v")
        .await
        .assert_error(409, "KeyDisabled");
    api.decrypt(&s.decryptor, &blob1, "video-1")
        .await
        .assert_error(409, "KeyDisabled");
    let e = api
        .post(
            &format!("/v1/keys/{}/enable", s.key_id),
            &s.admin,
            json!({}),
        )
        .await;
    assert_eq!(e.ok()["KeyState"], "Enabled");
    api.decrypt(&s.decryptor, &blob1, "video-1").await.ok();

    // Schedule deletion: window checked, key refuses use, cancel brings it back Disabled.
    let bad = api
        .post(
            "/v1/keys/alias/vod/schedule-deletion",
            &s.admin,
            json!({ "PendingWindowInDays": 5 }),
        )
        .await;
    bad.assert_error(400, "InvalidParameter");
    let sd = api
        .post(
            "/v1/keys/alias/vod/schedule-deletion",
            &s.admin,
            json!({ "PendingWindowInDays": 7 }),
        )
        .await;
    assert_eq!(sd.ok()["KeyState"], "PendingDeletion");
    assert!(sd.body["DeletionDate"].is_string());
    api.generate(&s.generator, "alias/vod", "v")
        .await
        .assert_error(409, "KeyPendingDeletion");
    api.decrypt(&s.decryptor, &blob1, "video-1")
        .await
        .assert_error(409, "KeyPendingDeletion");
    api.post("/v1/keys/alias/vod/enable", &s.admin, json!({}))
        .await
        .assert_error(409, "KeyPendingDeletion");
    api.post("/v1/keys/alias/vod/rotate", &s.admin, json!({}))
        .await
        .assert_error(409, "InvalidKeyState");
    let c = api
        .post("/v1/keys/alias/vod/cancel-deletion", &s.admin, json!({}))
        .await;
    assert_eq!(c.ok()["KeyState"], "Disabled");
    assert!(c.body["DeletionDate"].is_null());
    api.post("/v1/keys/alias/vod/cancel-deletion", &s.admin, json!({}))
        .await
        .assert_error(409, "InvalidKeyState");
    api.post("/v1/keys/alias/vod/enable", &s.admin, json!({}))
        .await
        .ok();
    assert_eq!(
        b64(&api.decrypt(&s.decryptor, &blob1, "video-1").await.ok()["Plaintext"]),
        dk1
    );

    // Every lifecycle change is in the audit trail.
    let ops = [
        "CreateKey",
        "RotateKey",
        "DisableKey",
        "EnableKey",
        "ScheduleKeyDeletion",
        "CancelKeyDeletion",
    ];
    let records = api
        .audit_until(&s.admin, &format!("KeyId={}&Limit=1000", s.key_id), |rs| {
            ops.iter().all(|op| {
                rs.iter()
                    .any(|r| r["Operation"] == *op && r["Outcome"] == "Success")
            })
        })
        .await;
    assert!(records
        .iter()
        .any(|r| r["Operation"] == "Decrypt" && r["Outcome"] == "KeyDisabled"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_encrypt_moves_a_blob_without_revealing_it() {
    let s = Setup::new().await;
    let api = &s.api;
    let other = api.create_key(&s.admin, "alias/archive").await;
    let g = api
        .generate(&s.generator, "alias/vod", "a")
        .await
        .ok()
        .clone();
    let r = api
        .post(
            "/v1/re-encrypt",
            &s.generator,
            json!({
                "CiphertextBlob": g["CiphertextBlob"],
                "SourceEncryptionContext": { "video_id": "a" },
                "DestinationKeyId": "alias/archive",
                "DestinationEncryptionContext": { "video_id": "a" },
            }),
        )
        .await;
    let body = r.ok().clone();
    assert!(body.get("Plaintext").is_none());
    assert_eq!(body["KeyId"], other.as_str());
    assert_eq!(body["SourceKeyId"], s.key_id.as_str());
    let blob = body["CiphertextBlob"].as_str().unwrap();
    assert_ne!(blob, g["CiphertextBlob"].as_str().unwrap());
    assert_eq!(
        b64(&api.decrypt(&s.decryptor, blob, "a").await.ok()["Plaintext"]),
        b64(&g["Plaintext"])
    );
    api.decrypt(&s.decryptor, blob, "b")
        .await
        .assert_error(400, "InvalidCiphertext");
    // Wrong source context: refused.
    let bad = api
        .post(
            "/v1/re-encrypt",
            &s.generator,
            json!({ "CiphertextBlob": g["CiphertextBlob"] }),
        )
        .await;
    bad.assert_error(400, "InvalidCiphertext");
    // Decrypt-only clients may not re-encrypt.
    let denied = api
        .post("/v1/re-encrypt", &s.decryptor, json!({ "CiphertextBlob": g["CiphertextBlob"], "SourceEncryptionContext": { "video_id": "a" } }))
        .await;
    denied.assert_error(403, "AccessDenied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliases_are_unique_and_failed_creates_change_nothing() {
    let s = Setup::new().await;
    let api = &s.api;
    let before = api.get("/v1/keys", &s.admin).await.ok()["Keys"]
        .as_array()
        .unwrap()
        .len();
    api.post("/v1/keys", &s.admin, json!({ "Alias": "alias/vod" }))
        .await
        .assert_error(409, "AliasExists");
    api.post("/v1/keys", &s.admin, json!({ "Alias": "vod" }))
        .await
        .assert_error(400, "InvalidParameter");
    api.post("/v1/keys", &s.admin, json!({ "RotationPeriodInDays": 0 }))
        .await
        .assert_error(400, "InvalidParameter");
    api.post("/v1/keys", &s.admin, json!({ "Alais": "alias/x" }))
        .await
        .assert_error(400, "MalformedRequest");
    let after = api.get("/v1/keys", &s.admin).await.ok()["Keys"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(before, after);
    // A key without alias or body at all is fine.
    let r = api
        .raw(api.request(reqwest::Method::POST, "/v1/keys", Some(&s.admin)))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["Aliases"], json!([]));
    let p = api
        .post("/v1/keys", &s.admin, json!({ "RotationPeriodInDays": 90 }))
        .await;
    assert_eq!(p.ok()["RotationPeriodInDays"], 90);
    assert!(p.body["NextRotationDate"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_limit_rotates_before_a_version_encrypts_too_much() {
    let s = Setup::with_env(&[("VODKMS_MAX_ENCRYPTIONS_PER_VERSION", "5")]).await;
    let api = &s.api;
    let mut blobs = Vec::new();
    for i in 0..12 {
        let g = api
            .generate(&s.generator, "alias/vod", &format!("v{i}"))
            .await
            .ok()
            .clone();
        blobs.push((i, g));
    }
    let mut per_version = std::collections::BTreeMap::<u64, usize>::new();
    for (_, g) in &blobs {
        *per_version
            .entry(g["KeyVersionId"].as_u64().unwrap())
            .or_default() += 1;
    }
    assert!(per_version.values().all(|n| *n <= 5), "{per_version:?}");
    assert!(per_version.len() >= 3, "{per_version:?}");
    for (i, g) in &blobs {
        let d = api
            .decrypt(
                &s.decryptor,
                g["CiphertextBlob"].as_str().unwrap(),
                &format!("v{i}"),
            )
            .await;
        assert_eq!(d.ok()["Plaintext"], g["Plaintext"]);
    }
    api.audit_until(&s.admin, "Operation=RotateKey", |rs| {
        rs.iter()
            .any(|r| r["Detail"]["Reason"] == "UsageLimit" && r["ClientId"].is_null())
    })
    .await;
}
