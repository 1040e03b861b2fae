//! Key lifecycle against a real KMS on PostgreSQL (and a broker): retiring
//! old master key versions (refused, reported, undone), batch ReEncrypt,
//! and per-video crypto-shredding seen through the native API, the broker
//! and each cloud door.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine as _;
use chrono::Utc;
use common::brokers::{q, BrokerSetup};
use common::cloud::{alibaba_rpc, aws_request, client_with_key, tencent_request};
use common::{eventually, Setup};
use serde_json::{json, Value};

fn blob_of(r: &Value) -> String {
    r["CiphertextBlob"].as_str().unwrap().to_owned()
}

/// The format byte of a blob's text form.
fn format_byte(blob: &str) -> u8 {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(blob)
        .unwrap()[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retired_versions_are_refused_reported_and_can_be_brought_back() {
    let s = Setup::new().await;
    let api = &s.api;
    let old = blob_of(api.generate(&s.generator, "alias/vod", "film").await.ok());
    for _ in 0..2 {
        api.post(
            &format!("/v1/keys/{}/rotate", s.key_id),
            &s.admin,
            json!({}),
        )
        .await
        .ok();
    }
    let new = blob_of(api.generate(&s.generator, "alias/vod", "film").await.ok());
    assert_eq!(api.decrypt(&s.decryptor, &old, "film").await.status, 200);

    let retire = |min: Value| {
        let api = api.clone();
        let path = format!("/v1/keys/{}/retire-versions", s.key_id);
        let admin = s.admin.clone();
        async move {
            api.post(&path, &admin, json!({ "MinDecryptionVersion": min }))
                .await
        }
    };
    // The primary (3) is the highest that may be set; 0 and junk are refused.
    retire(json!(4)).await.assert_error(400, "InvalidParameter");
    retire(json!(0)).await.assert_error(400, "InvalidParameter");
    retire(json!("2"))
        .await
        .assert_error(400, "MalformedRequest");
    // Only admins may retire.
    api.post(
        &format!("/v1/keys/{}/retire-versions", s.key_id),
        &s.generator,
        json!({ "MinDecryptionVersion": 3 }),
    )
    .await
    .assert_error(403, "AccessDenied");

    let meta = retire(json!(3)).await.ok().clone();
    assert_eq!(meta["MinDecryptionVersion"], 3);
    api.decrypt(&s.decryptor, &old, "film")
        .await
        .assert_error(409, "KeyVersionRetired");
    assert_eq!(api.decrypt(&s.decryptor, &new, "film").await.status, 200);
    // ReEncrypt cannot reach a retired version either.
    api.post(
        "/v1/re-encrypt",
        &s.generator,
        json!({ "CiphertextBlob": old, "SourceEncryptionContext": { "video_id": "film" } }),
    )
    .await
    .assert_error(409, "KeyVersionRetired");

    // The usage report shows the refusal on version 1 and the decrypts of
    // version 3 (audit records land a moment later: poll).
    let path = format!("/v1/keys/{}/version-usage?Days=7", s.key_id);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let report = loop {
        let r = api.get(&path, &s.admin).await.ok().clone();
        let v = r["Versions"].as_array().unwrap().clone();
        if v[0]["RefusedAsRetired"] == 1 && v[2]["Decrypts"] == 1 {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "report: {r:#}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let versions = report["Versions"].as_array().unwrap();
    assert_eq!(report["MinDecryptionVersion"], 3);
    assert_eq!(versions.len(), 3);
    assert_eq!(versions[0]["Retired"], true);
    assert_eq!(versions[0]["Decrypts"], 1, "the decrypt before retiring");
    assert_eq!(versions[1]["Decrypts"], 0);
    assert!(versions[1]["LastDecrypt"].is_null());
    assert_eq!(versions[2]["Retired"], false);
    api.get(
        &format!("/v1/keys/{}/version-usage?Days=0", s.key_id),
        &s.admin,
    )
    .await
    .assert_error(400, "InvalidParameter");

    // Undo: version 1 opens again, and both changes are audited.
    assert_eq!(retire(json!(1)).await.ok()["MinDecryptionVersion"], 1);
    assert_eq!(api.decrypt(&s.decryptor, &old, "film").await.status, 200);
    let records = api
        .audit_until(&s.admin, "Operation=RetireVersions", |r| {
            r.iter().filter(|r| r["Outcome"] == "Success").count() == 2
        })
        .await;
    assert!(records
        .iter()
        .any(|r| r["Outcome"] == "InvalidParameter" || r["Outcome"] == "AccessDenied"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_re_encrypt_answers_every_item_on_its_own() {
    let s = Setup::new().await;
    let api = &s.api;
    let mut old = Vec::new();
    for video in ["a", "b", "c"] {
        old.push(blob_of(
            api.generate(&s.generator, "alias/vod", video).await.ok(),
        ));
    }
    api.post(
        &format!("/v1/keys/{}/rotate", s.key_id),
        &s.admin,
        json!({}),
    )
    .await
    .ok();
    let item = |blob: &str, video: &str| json!({ "CiphertextBlob": blob, "SourceEncryptionContext": { "video_id": video } });
    let batch = json!([
        item(&old[0], "a"),
        item(&old[1], "b"),
        item(&old[2], "wrong-video"),
        item("not a blob", "c"),
        item(&old[2], "c"),
    ]);
    let r = api.post("/v1/re-encrypt", &s.generator, batch).await;
    let out = r.ok().as_array().unwrap().clone();
    assert_eq!(out.len(), 5);
    for (i, video) in [(0, "a"), (1, "b"), (4, "c")] {
        assert_eq!(out[i]["KeyVersionId"], 2, "{out:#?}");
        assert_eq!(out[i]["SourceKeyVersionId"], 1);
        let fresh = out[i]["CiphertextBlob"].as_str().unwrap();
        assert_eq!(api.decrypt(&s.decryptor, fresh, video).await.status, 200);
    }
    assert_eq!(out[2]["Error"]["Code"], "InvalidCiphertext");
    assert_eq!(out[3]["Error"]["Code"], "InvalidCiphertext");
    assert!(out[2].get("CiphertextBlob").is_none());
    // One audit record per item.
    api.audit_until(&s.admin, "Operation=ReEncrypt", |r| r.len() == 5)
        .await;

    // Limits and refusals: empty, too many, wrong role, no token.
    api.post("/v1/re-encrypt", &s.generator, json!([]))
        .await
        .assert_error(400, "InvalidParameter");
    let many: Vec<Value> = (0..1001).map(|_| item(&old[0], "a")).collect();
    api.post("/v1/re-encrypt", &s.generator, json!(many))
        .await
        .assert_error(400, "InvalidParameter");
    api.post("/v1/re-encrypt", &s.decryptor, json!([item(&old[0], "a")]))
        .await
        .assert_error(403, "AccessDenied");
    api.post("/v1/re-encrypt", "vk_nope", json!([item(&old[0], "a")]))
        .await
        .assert_error(401, "Unauthenticated");
    api.post("/v1/re-encrypt", &s.generator, json!([{ "Nope": 1 }]))
        .await
        .assert_error(400, "MalformedRequest");
}

/// Decrypt through each cloud door: (AWS, Alibaba, Tencent) answers as
/// `(ok, error code, message)`.
async fn door_decrypts(
    s: &Setup,
    key: (&str, &str),
    blob: &str,
    video: &str,
) -> Vec<(bool, String)> {
    let api = &s.api;
    let std_blob = base64::engine::general_purpose::STANDARD.encode(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(blob)
            .unwrap(),
    );
    let ctx = json!({ "video_id": video });
    let aws = api
        .raw(aws_request(
            api,
            key,
            "Decrypt",
            &json!({ "CiphertextBlob": std_blob, "EncryptionContext": ctx }),
            Utc::now(),
        ))
        .await;
    let ctx_text = ctx.to_string();
    let nonce = uuid::Uuid::new_v4().to_string();
    let ali = api
        .raw(alibaba_rpc(
            api,
            key,
            "Decrypt",
            &[
                ("CiphertextBlob", std_blob.as_str()),
                ("EncryptionContext", ctx_text.as_str()),
            ],
            &nonce,
            Utc::now(),
        ))
        .await;
    let tc = api
        .raw(tencent_request(
            api,
            key,
            "Decrypt",
            &json!({ "CiphertextBlob": std_blob, "EncryptionContext": ctx_text }),
            Utc::now().timestamp(),
        ))
        .await;
    let tc_error = &tc.body["Response"]["Error"];
    vec![
        (
            aws.status == 200,
            format!("{} {}", aws.body["__type"], aws.body["message"]),
        ),
        (
            ali.status == 200,
            format!("{} {}", ali.body["Code"], ali.body["Message"]),
        ),
        (
            tc_error.is_null(),
            format!("{} {}", tc_error["Code"], tc_error["Message"]),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shredded_video_fails_everywhere_while_its_neighbours_play() {
    let b = BrokerSetup::new().await;
    let s = &b.kms;
    let api = &s.api;
    let created = api
        .post(
            "/v1/keys",
            &s.admin,
            json!({ "Alias": "alias/shreddable", "PerVideoKeys": true }),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(created.body["PerVideoKeys"], true);
    let mint = |video: &str| {
        let api = api.clone();
        let token = s.generator.clone();
        let video = video.to_owned();
        async move { blob_of(api.generate(&token, "alias/shreddable", &video).await.ok()) }
    };
    let doomed = mint("doomed").await;
    let neighbour = mint("neighbour").await;
    assert_eq!(format_byte(&doomed), 0x02, "bound to the video's secret");
    // Keys minted without a video in the context stay v1.
    let plain = api
        .post(
            "/v1/generate-data-key",
            &s.generator,
            json!({ "KeyId": "alias/shreddable" }),
        )
        .await;
    assert_eq!(format_byte(&blob_of(plain.ok())), 0x01);
    // A v2 blob opens only for its own video.
    api.decrypt(&s.decryptor, &doomed, "neighbour")
        .await
        .assert_error(400, "InvalidCiphertext");

    let (_, door_id, door_secret) = client_with_key(s, &["decrypt"], None).await;
    let key = (door_id.as_str(), door_secret.as_str());
    for (ok, why) in door_decrypts(s, key, &doomed, "doomed").await {
        assert!(ok, "{why}");
    }
    let token = b.token("viewer", &["doomed", "neighbour"]).await;
    let key_query =
        |video: &str, blob: &str| format!("vid={video}&Ciphertext={}&token={}", q(blob), q(&token));
    assert_eq!(b.key_status(&key_query("doomed", &doomed)).await.0, 200);

    // Scheduled: refused at once everywhere, and the shred can be cancelled.
    let r = api
        .delete("/v1/videos/doomed?PendingWindowInDays=3", &s.admin)
        .await;
    assert_eq!(r.ok()["State"], "PendingShred");
    api.decrypt(&s.decryptor, &doomed, "doomed")
        .await
        .assert_error(409, "VideoPendingShred");
    eventually(10, "the broker drops the cached key", || async {
        b.key_status(&key_query("doomed", &doomed)).await == (403, "VideoPendingShred".into())
    })
    .await;
    let r = api
        .post("/v1/videos/doomed/cancel-shred", &s.admin, json!({}))
        .await;
    assert_eq!(r.ok()["State"], "Active");
    assert_eq!(
        api.decrypt(&s.decryptor, &doomed, "doomed").await.status,
        200
    );
    assert_eq!(b.key_status(&key_query("doomed", &doomed)).await.0, 200);

    // Only admins shred; the window is 0..=30.
    api.delete("/v1/videos/doomed?PendingWindowInDays=0", &s.generator)
        .await
        .assert_error(403, "AccessDenied");
    api.delete("/v1/videos/doomed?PendingWindowInDays=31", &s.admin)
        .await
        .assert_error(400, "InvalidParameter");

    // Shredded now: gone through every door, for good; the neighbour plays.
    let r = api
        .delete("/v1/videos/doomed?PendingWindowInDays=0", &s.admin)
        .await;
    assert_eq!(r.ok()["State"], "Shredded");
    assert!(r.body["ShreddedDate"].is_string());
    api.decrypt(&s.decryptor, &doomed, "doomed")
        .await
        .assert_error(410, "VideoShredded");
    eventually(10, "the broker refuses the shredded video", || async {
        b.key_status(&key_query("doomed", &doomed)).await == (410, "VideoShredded".into())
    })
    .await;
    for (ok, why) in door_decrypts(s, key, &doomed, "doomed").await {
        assert!(!ok && why.contains("VideoShredded"), "{why}");
    }
    api.generate(&s.generator, "alias/shreddable", "doomed")
        .await
        .assert_error(410, "VideoShredded");
    api.post("/v1/videos/doomed/cancel-shred", &s.admin, json!({}))
        .await
        .assert_error(410, "VideoShredded");
    assert_eq!(
        api.get("/v1/videos/doomed", &s.admin).await.ok()["State"],
        "Shredded"
    );

    assert_eq!(
        api.decrypt(&s.decryptor, &neighbour, "neighbour")
            .await
            .status,
        200
    );
    assert_eq!(
        b.key_status(&key_query("neighbour", &neighbour)).await.0,
        200
    );
    for (ok, why) in door_decrypts(s, key, &neighbour, "neighbour").await {
        assert!(ok, "{why}");
    }
    // v1 blobs of the other keys keep working.
    let v1 = blob_of(api.generate(&s.generator, "alias/vod", "doomed").await.ok());
    assert_eq!(format_byte(&v1), 0x01);
    assert_eq!(api.decrypt(&s.decryptor, &v1, "doomed").await.status, 200);

    let records = api
        .audit_until(&s.admin, "Operation=ShredVideo", |r| r.len() == 1)
        .await;
    assert_eq!(records[0]["Detail"]["VideoId"], "doomed");
    api.audit_until(&s.admin, "Operation=ScheduleVideoShred", |r| {
        r.iter().filter(|r| r["Outcome"] == "Success").count() == 2
    })
    .await;
}
