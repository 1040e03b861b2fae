//! Access control, bad input and error shape, through the real HTTP server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine as _;
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_can_do_only_its_own_job() {
    let s = Setup::new().await;
    let api = &s.api;
    let other = api.create_key(&s.admin, "alias/other").await;
    let blob = api.generate(&s.generator, "alias/vod", "v").await.ok()["CiphertextBlob"]
        .as_str()
        .unwrap()
        .to_owned();

    // No token / unknown token: 401 with a Bearer challenge.
    let r = api
        .raw(
            api.request(reqwest::Method::POST, "/v1/decrypt", None)
                .json(&json!({ "CiphertextBlob": blob })),
        )
        .await;
    r.assert_error(401, "Unauthenticated");
    assert!(r.headers.get("www-authenticate").is_some());
    api.decrypt("vkms_not-a-real-token", &blob, "v")
        .await
        .assert_error(401, "Unauthenticated");
    api.get("/v1/keys", "garbage")
        .await
        .assert_error(401, "Unauthenticated");

    // generate may not decrypt; decrypt may not generate; neither may administer.
    api.decrypt(&s.generator, &blob, "v")
        .await
        .assert_error(403, "AccessDenied");
    api.generate(&s.decryptor, "alias/vod", "v")
        .await
        .assert_error(403, "AccessDenied");
    for t in [&s.generator, &s.decryptor] {
        api.post("/v1/keys", t, json!({}))
            .await
            .assert_error(403, "AccessDenied");
        api.post("/v1/keys/alias/vod/disable", t, json!({}))
            .await
            .assert_error(403, "AccessDenied");
        api.get("/v1/audit", t)
            .await
            .assert_error(403, "AccessDenied");
        api.post("/v1/clients", t, json!({ "Name": "x", "Role": "admin" }))
            .await
            .assert_error(403, "AccessDenied");
    }
    // Admins manage keys but never see plaintext.
    api.generate(&s.admin, "alias/vod", "v")
        .await
        .assert_error(403, "AccessDenied");
    api.decrypt(&s.admin, &blob, "v")
        .await
        .assert_error(403, "AccessDenied");

    // Scoped clients: only their keys (aliases resolved at creation).
    let (_, scoped_gen) = api
        .create_client(&s.admin, "generate", Some(vec!["alias/vod"]))
        .await;
    let (_, scoped_dec) = api
        .create_client(&s.admin, "decrypt", Some(vec![other.as_str()]))
        .await;
    api.generate(&scoped_gen, "alias/vod", "v").await.ok();
    api.generate(&scoped_gen, "alias/other", "v")
        .await
        .assert_error(403, "AccessDenied");
    api.decrypt(&scoped_dec, &blob, "v")
        .await
        .assert_error(403, "AccessDenied");
    let other_blob = api.generate(&s.generator, &other, "o").await.ok()["CiphertextBlob"]
        .as_str()
        .unwrap()
        .to_owned();
    api.decrypt(&scoped_dec, &other_blob, "o").await.ok();
    let bad_scope = api
        .post(
            "/v1/clients",
            &s.admin,
            json!({ "Name": "x", "Role": "decrypt", "KeyIds": ["alias/nope"] }),
        )
        .await;
    bad_scope.assert_error(404, "KeyNotFound");
    api.post(
        "/v1/clients",
        &s.admin,
        json!({ "Name": "x", "Role": "root" }),
    )
    .await
    .assert_error(400, "InvalidParameter");

    // Revocation takes effect at once; the token is never listed.
    let (id, token) = api.create_client(&s.admin, "decrypt", None).await;
    api.decrypt(&token, &blob, "v").await.ok();
    let list = api.get("/v1/clients", &s.admin).await.ok().clone();
    assert!(!list.to_string().contains(&token));
    assert!(list["Clients"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["ClientId"] == id.as_str()));
    assert_eq!(
        api.delete(&format!("/v1/clients/{id}"), &s.admin)
            .await
            .status,
        204
    );
    api.decrypt(&token, &blob, "v")
        .await
        .assert_error(401, "Unauthenticated");
    api.delete(&format!("/v1/clients/{id}"), &s.admin)
        .await
        .assert_error(404, "ClientNotFound");

    // Refusals are audited with the refusing code.
    api.audit_until(&s.admin, "Operation=Decrypt", |rs| {
        ["AccessDenied", "Unauthenticated"]
            .iter()
            .all(|c| rs.iter().any(|r| r["Outcome"] == *c))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_4xx_and_changes_nothing() {
    let s = Setup::new().await;
    let api = &s.api;
    let g = api
        .generate(&s.generator, "alias/vod", "v")
        .await
        .ok()
        .clone();
    let blob = g["CiphertextBlob"].as_str().unwrap().to_owned();
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&blob)
        .unwrap();
    let enc = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);

    let post_raw = |path: &str, token: &str, body: &'static str| {
        api.request(reqwest::Method::POST, path, Some(token))
            .body(body)
    };
    api.raw(post_raw("/v1/decrypt", &s.decryptor, "{not json"))
        .await
        .assert_error(400, "MalformedRequest");
    api.raw(post_raw("/v1/decrypt", &s.decryptor, "[1,2]"))
        .await
        .assert_error(400, "MalformedRequest");
    api.raw(post_raw(
        "/v1/decrypt",
        &s.decryptor,
        r#"{"CiphertextBlob": 5}"#,
    ))
    .await
    .assert_error(400, "MalformedRequest");
    api.post("/v1/decrypt", &s.decryptor, json!({}))
        .await
        .assert_error(400, "MalformedRequest");
    api.post(
        "/v1/decrypt",
        &s.decryptor,
        json!({ "CiphertextBlob": blob, "Extra": 1 }),
    )
    .await
    .assert_error(400, "MalformedRequest");

    // Blob problems: bad base64, truncated, tampered, unknown format, wrong context, huge.
    api.decrypt(&s.decryptor, "%%%not-base64%%%", "v")
        .await
        .assert_error(400, "InvalidCiphertext");
    api.decrypt(&s.decryptor, &enc(&raw[..raw.len() - 20]), "v")
        .await
        .assert_error(400, "InvalidCiphertext");
    api.decrypt(&s.decryptor, &enc(&raw[..10]), "v")
        .await
        .assert_error(400, "InvalidCiphertext");
    for i in [25, raw.len() - 1] {
        let mut t = raw.clone();
        t[i] ^= 0x40;
        api.decrypt(&s.decryptor, &enc(&t), "v")
            .await
            .assert_error(400, "InvalidCiphertext");
    }
    let mut version_moved = raw.clone();
    version_moved[20] ^= 1; // names a version that does not exist
    api.decrypt(&s.decryptor, &enc(&version_moved), "v")
        .await
        .assert_error(400, "InvalidCiphertext");
    let mut fmt = raw.clone();
    fmt[0] = 9;
    api.decrypt(&s.decryptor, &enc(&fmt), "v")
        .await
        .assert_error(400, "InvalidCiphertext");
    api.decrypt(&s.decryptor, &blob, "w")
        .await
        .assert_error(400, "InvalidCiphertext");
    let no_ctx = api
        .post(
            "/v1/decrypt",
            &s.decryptor,
            json!({ "CiphertextBlob": blob }),
        )
        .await;
    no_ctx.assert_error(400, "InvalidCiphertext");
    api.decrypt(&s.decryptor, &"A".repeat(5000), "v")
        .await
        .assert_error(400, "InvalidCiphertext");
    let mut unknown_key = raw.clone();
    unknown_key[1..17].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    api.decrypt(&s.decryptor, &enc(&unknown_key), "v")
        .await
        .assert_error(404, "KeyNotFound");

    // Generate parameters.
    let gen = |body: serde_json::Value| api.post("/v1/generate-data-key", &s.generator, body);
    gen(json!({ "KeyId": "alias/vod", "NumberOfBytes": 0 }))
        .await
        .assert_error(400, "InvalidParameter");
    gen(json!({ "KeyId": "alias/vod", "NumberOfBytes": 1025 }))
        .await
        .assert_error(400, "InvalidParameter");
    gen(json!({ "KeyId": "alias/vod", "NumberOfBytes": -1 }))
        .await
        .assert_error(400, "MalformedRequest");
    gen(json!({ "KeyId": "alias/vod", "KeySpec": "AES_512" }))
        .await
        .assert_error(400, "InvalidParameter");
    gen(json!({ "KeyId": "alias/vod", "KeySpec": "AES_128", "NumberOfBytes": 16 }))
        .await
        .assert_error(400, "InvalidParameter");
    gen(json!({ "KeyId": "alias/none" }))
        .await
        .assert_error(404, "KeyNotFound");
    gen(json!({ "KeyId": uuid::Uuid::new_v4() }))
        .await
        .assert_error(404, "KeyNotFound");
    // No key can have this id: not found, like any unknown id.
    gen(json!({ "KeyId": "not a key" }))
        .await
        .assert_error(404, "KeyNotFound");
    gen(json!({ "KeyId": "alias/vod", "EncryptionContext": { "": "x" } }))
        .await
        .assert_error(400, "InvalidParameter");
    gen(json!({ "KeyId": "alias/vod", "EncryptionContext": { "a": 1 } }))
        .await
        .assert_error(400, "MalformedRequest");

    // NUL cannot be stored by PostgreSQL: refused up front, and it must not
    // poison the audit batch that records the refusal (regression).
    let nul =
        gen(json!({ "KeyId": "alias/vod", "EncryptionContext": { "video_id": "a\u{0}b" } })).await;
    nul.assert_error(400, "InvalidParameter");
    let desc = api
        .post("/v1/keys", &s.admin, json!({ "Description": "a\u{0}b" }))
        .await;
    desc.assert_error(400, "InvalidParameter");
    let after_nul =
        gen(json!({ "KeyId": "alias/vod", "EncryptionContext": { "video_id": "after-nul" } }))
            .await;
    let after_id = after_nul.request_id.clone();
    after_nul.ok();
    api.audit_until(&s.admin, "Operation=GenerateDataKey&Limit=1000", |rs| {
        rs.iter().any(|r| r["RequestId"] == after_id.as_str())
            && rs.iter().any(|r| {
                r["RequestId"] == nul.request_id.as_str() && r["Outcome"] == "InvalidParameter"
            })
    })
    .await;

    // Oversized body.
    let huge = format!(r#"{{"CiphertextBlob":"{}"}}"#, "A".repeat(1 << 20));
    let r = api
        .raw(
            api.request(reqwest::Method::POST, "/v1/decrypt", Some(&s.decryptor))
                .body(huge),
        )
        .await;
    r.assert_error(413, "PayloadTooLarge");
    assert_eq!(
        r.headers.get("connection").map(|v| v.to_str().unwrap()),
        Some("close")
    );

    // Routing and methods.
    api.get("/v1/nothing", &s.admin)
        .await
        .assert_error(404, "NotFound");
    api.delete("/v1/keys", &s.admin)
        .await
        .assert_error(405, "MethodNotAllowed");
    api.post("/v1/keys/alias/vod/explode", &s.admin, json!({}))
        .await
        .assert_error(404, "NotFound");
    api.post(
        "/v1/keys/alias/vod/rotate",
        &s.admin,
        json!({ "Force": true }),
    )
    .await
    .assert_error(400, "MalformedRequest");
    api.get("/v1/audit?Limit=0", &s.admin)
        .await
        .assert_error(400, "InvalidParameter");
    api.get("/v1/audit?Bogus=1", &s.admin)
        .await
        .assert_error(400, "MalformedRequest");
    api.get("/v1/audit?NextToken=@@", &s.admin)
        .await
        .assert_error(400, "InvalidParameter");
    api.delete("/v1/clients/not-a-uuid", &s.admin)
        .await
        .assert_error(404, "ClientNotFound");

    // The request id is always our own (L1 of the security review): the
    // caller's, if well-formed, is kept as ClientRequestId in the audit.
    let r = api
        .raw(
            api.request(reqwest::Method::GET, "/v1/nothing", None)
                .header("x-request-id", "trace-123"),
        )
        .await;
    assert_ne!(r.request_id, "trace-123");
    assert_eq!(r.request_id.len(), 32);
    r.assert_error(404, "NotFound");
    let r = api
        .raw(
            api.request(reqwest::Method::GET, "/v1/nothing", None)
                .header("x-request-id", "bad id with spaces"),
        )
        .await;
    assert_ne!(r.request_id, "bad id");

    // After all that, the key and its blob are untouched.
    let meta = api.get("/v1/keys/alias%2Fvod", &s.admin).await.ok().clone();
    assert_eq!(
        (
            meta["KeyState"].as_str(),
            meta["CurrentKeyVersionId"].as_u64()
        ),
        (Some("Enabled"), Some(1))
    );
    assert_eq!(
        api.decrypt(&s.decryptor, &blob, "v").await.ok()["Plaintext"],
        g["Plaintext"]
    );
    // No secret reached the server log.
    let log = s.kms.log_text();
    for secret in [
        g["Plaintext"].as_str().unwrap(),
        &s.generator,
        &s.decryptor,
        &s.admin,
        &s.root_key,
    ] {
        assert!(!log.contains(secret), "a secret reached the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_is_filtered_and_paginated() {
    let s = Setup::new().await;
    let api = &s.api;
    for i in 0..5 {
        api.generate(&s.generator, "alias/vod", &format!("p{i}"))
            .await
            .ok();
    }
    let all = api
        .audit_until(&s.admin, "Operation=GenerateDataKey", |rs| rs.len() == 5)
        .await;
    let r = &all[0];
    assert_eq!(r["KeyId"], s.key_id.as_str());
    assert_eq!(r["KeyVersionId"], 1);
    assert_eq!(r["Outcome"], "Success");
    assert_eq!(r["EncryptionContext"]["video_id"], "p4", "newest first");
    assert!(r["RequestId"].as_str().is_some_and(|x| !x.is_empty()));
    assert!(r["ClientId"].is_string());

    let mut seen = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let q = match &next {
            Some(t) => format!("/v1/audit?Operation=GenerateDataKey&Limit=2&NextToken={t}"),
            None => "/v1/audit?Operation=GenerateDataKey&Limit=2".to_owned(),
        };
        let page = api.get(&q, &s.admin).await.ok().clone();
        let records = page["Records"].as_array().unwrap();
        assert!(records.len() <= 2);
        seen.extend(records.iter().map(|r| r["EventId"].clone()));
        match page["NextToken"].as_str() {
            Some(t) => next = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(
        seen,
        all.iter().map(|r| r["EventId"].clone()).collect::<Vec<_>>()
    );

    let client_id = r["ClientId"].as_str().unwrap();
    let by_client = api
        .get(&format!("/v1/audit?ClientId={client_id}"), &s.admin)
        .await
        .ok()["Records"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(by_client, 5);
    let future = api
        .get("/v1/audit?StartTime=2999-01-01T00:00:00Z", &s.admin)
        .await
        .ok()["Records"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(future, 0);
    let other_key = api
        .get(
            &format!("/v1/audit?KeyId={}", uuid::Uuid::new_v4()),
            &s.admin,
        )
        .await
        .ok()["Records"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(other_key, 0);
}
