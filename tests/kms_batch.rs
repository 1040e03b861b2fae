//! `POST /v1/generate-data-keys`: many data keys in one call, and the same
//! keys again for a repeated ClientToken (a retried transcoding job never
//! publishes two different keys), against a real KMS on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Setup;
use serde_json::{json, Value};

fn blobs(body: &Value) -> Vec<String> {
    body["DataKeys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["CiphertextBlob"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_minted_in_one_call_and_repeated_by_client_token() {
    let s = Setup::new().await;
    let ctx = json!({ "video_id": "film-7" });
    let mint = |body: Value| {
        let api = s.api.clone();
        let token = s.generator.clone();
        async move { api.post("/v1/generate-data-keys", &token, body).await }
    };

    // Five distinct keys, each opening (with the context) to its plaintext.
    let r = mint(json!({ "KeyId": "alias/vod", "Count": 5, "EncryptionContext": ctx })).await;
    let body = r.ok().clone();
    let keys = body["DataKeys"].as_array().unwrap();
    assert_eq!(keys.len(), 5);
    let mut seen = std::collections::HashSet::new();
    for k in keys {
        assert_eq!(k["KeyVersionId"], 1);
        assert!(seen.insert(k["Plaintext"].as_str().unwrap().to_owned()));
        let d = s
            .api
            .post(
                "/v1/decrypt",
                &s.decryptor,
                json!({ "CiphertextBlob": k["CiphertextBlob"], "EncryptionContext": ctx }),
            )
            .await;
        assert_eq!(d.ok()["Plaintext"], k["Plaintext"]);
    }

    // A ClientToken: the repeat returns the very same keys.
    let job = json!({ "KeyId": "alias/vod", "Count": 3, "EncryptionContext": ctx, "ClientToken": "job-42" });
    let first = mint(job.clone()).await.ok().clone();
    let again = mint(job.clone()).await.ok().clone();
    assert_eq!(blobs(&first), blobs(&again));
    assert_eq!(first["DataKeys"], again["DataKeys"]);
    // Another token: other keys. The same token for another request: refused.
    let other = mint(json!({ "KeyId": "alias/vod", "Count": 3, "EncryptionContext": ctx, "ClientToken": "job-43" }))
        .await
        .ok()
        .clone();
    assert_ne!(blobs(&first), blobs(&other));
    mint(json!({ "KeyId": "alias/vod", "Count": 4, "EncryptionContext": ctx, "ClientToken": "job-42" }))
        .await
        .assert_error(409, "IdempotentParameterMismatch");
    mint(json!({ "KeyId": "alias/vod", "Count": 3, "EncryptionContext": { "video_id": "film-8" }, "ClientToken": "job-42" }))
        .await
        .assert_error(409, "IdempotentParameterMismatch");
    // Another client's same token is its own.
    let (_, generator_2) = s.api.create_client(&s.admin, "generate", None).await;
    let theirs = s
        .api
        .post("/v1/generate-data-keys", &generator_2, job.clone())
        .await
        .ok()
        .clone();
    assert_ne!(blobs(&first), blobs(&theirs));

    // Parallel first calls with one new token all get one batch.
    let racing = json!({ "KeyId": "alias/vod", "Count": 2, "EncryptionContext": ctx, "ClientToken": "race" });
    let answers = futures_util::future::join_all((0..8).map(|_| mint(racing.clone()))).await;
    let first_blobs = blobs(answers[0].ok());
    for a in &answers {
        assert_eq!(blobs(a.ok()), first_blobs);
    }

    // Bad input: a clear refusal.
    for (body, code) in [
        (
            json!({ "KeyId": "alias/vod", "Count": 0 }),
            "InvalidParameter",
        ),
        (
            json!({ "KeyId": "alias/vod", "Count": 1001 }),
            "InvalidParameter",
        ),
        (
            json!({ "KeyId": "alias/vod", "Count": 2, "ClientToken": "" }),
            "InvalidParameter",
        ),
        (
            json!({ "KeyId": "alias/vod", "Count": 2, "ClientToken": "a b" }),
            "InvalidParameter",
        ),
        (json!({ "KeyId": "alias/nope", "Count": 2 }), "KeyNotFound"),
    ] {
        let r = mint(body.clone()).await;
        assert_eq!(r.code(), code, "{body}: {:?}", r.body);
    }
    // Only generate clients mint.
    s.api
        .post(
            "/v1/generate-data-keys",
            &s.decryptor,
            json!({ "KeyId": "alias/vod", "Count": 2 }),
        )
        .await
        .assert_error(403, "AccessDenied");

    // One audit record per call, with its count; a repeat says so.
    let records = s
        .api
        .audit_until(&s.admin, "Operation=GenerateDataKeys&Limit=100", |rs| {
            rs.iter().any(|r| r["Detail"]["Repeated"] == true)
                && rs.iter().any(|r| r["Detail"]["Count"] == 5)
        })
        .await;
    assert!(records
        .iter()
        .filter(|r| r["Outcome"] == "Success")
        .all(|r| r["Detail"]["Count"].as_u64().is_some()));
}

/// `vodkms hls encrypt` mints a film's keys in one batch call; with
/// `--client-token`, a rerun (a retried job) publishes the very same keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_packaging_job_publishes_the_same_keys() {
    let dir = tempfile::tempdir().unwrap();
    let b = common::brokers::BrokerSetup::new().await;
    let source = common::media::make_source(&dir.path().join("src"), 6);
    let key_uris = |out: &std::path::Path| -> Vec<String> {
        std::fs::read_to_string(out.join("index.m3u8"))
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("#EXT-X-KEY:"))
            .map(str::to_owned)
            .map(|l| l.split(",IV=").next().unwrap().to_owned())
            .collect()
    };
    let run = |out: &std::path::Path, token: &[&str]| {
        let mut extra = vec!["--rekey-every", "2"];
        extra.extend_from_slice(token);
        let o = common::media::hls_encrypt(
            &b,
            "alias/vod",
            "film-b",
            &extra,
            source.to_str().unwrap(),
            out.to_str().unwrap(),
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    let (one, two, three) = (
        dir.path().join("1"),
        dir.path().join("2"),
        dir.path().join("3"),
    );
    run(&one, &["--client-token", "job-film-b"]);
    run(&two, &["--client-token", "job-film-b"]);
    run(&three, &[]);
    let first = key_uris(&one);
    assert_eq!(first.len(), 3, "{first:?}");
    assert_eq!(key_uris(&two), first);
    assert_ne!(key_uris(&three), first);
    // Three keys, one call each run.
    let records = b
        .kms
        .api
        .audit_until(&b.kms.admin, "Operation=GenerateDataKeys&Limit=100", |rs| {
            rs.iter().filter(|r| r["Detail"]["Count"] == 3).count() == 3
        })
        .await;
    assert_eq!(
        records
            .iter()
            .filter(|r| r["Detail"]["Repeated"] == true)
            .count(),
        1
    );
    let (code, stderr) = {
        let o = common::media::hls_encrypt(
            &b,
            "alias/vod",
            "film-b",
            &["--client-token", "has space"],
            source.to_str().unwrap(),
            dir.path().join("4").to_str().unwrap(),
        );
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    assert_ne!(code, Some(0));
    assert!(stderr.contains("--client-token"), "{stderr}");
}
