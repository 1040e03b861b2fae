//! `POST /v1/encrypt` and `POST /v1/generate-random`, the native twins of the
//! cloud doors' Encrypt and GenerateRandom: round trips through decrypt,
//! limits, roles and key scopes, and the audit trail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine as _;
use common::Setup;
use serde_json::json;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(v: &serde_json::Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_bytes_decrypt_to_themselves_under_their_context() {
    let s = Setup::new().await;
    let api = &s.api;
    for len in [1usize, 16, 4096] {
        let plaintext: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
        let r = api
            .post(
                "/v1/encrypt",
                &s.generator,
                json!({"KeyId": "alias/vod", "Plaintext": b64(&plaintext),
                       "EncryptionContext": {"video_id": "film"}}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body["KeyId"], s.key_id.as_str());
        assert!(r.body.get("Plaintext").is_none(), "no plaintext comes back");
        let blob = r.body["CiphertextBlob"].as_str().unwrap().to_owned();
        let opened = api.decrypt(&s.decryptor, &blob, "film").await;
        assert_eq!(unb64(&opened.ok()["Plaintext"]), plaintext, "{len} bytes");
        // The context is bound into the blob like a data key's.
        api.decrypt(&s.decryptor, &blob, "other")
            .await
            .assert_error(400, "InvalidCiphertext");
    }
    // Limits: nothing, too much, not base64.
    for plaintext in [String::new(), b64(&[1u8; 4097])] {
        api.post(
            "/v1/encrypt",
            &s.generator,
            json!({"KeyId": "alias/vod", "Plaintext": plaintext}),
        )
        .await
        .assert_error(400, "InvalidParameter");
    }
    api.post(
        "/v1/encrypt",
        &s.generator,
        json!({"KeyId": "alias/vod", "Plaintext": "not base64!"}),
    )
    .await
    .assert_error(400, "MalformedRequest");
    // Roles: encrypting takes the generate role, as minting a data key does.
    api.post(
        "/v1/encrypt",
        &s.decryptor,
        json!({"KeyId": "alias/vod", "Plaintext": b64(b"x")}),
    )
    .await
    .assert_error(403, "AccessDenied");
    api.post(
        "/v1/encrypt",
        "vkms_nope",
        json!({"KeyId": "alias/vod", "Plaintext": b64(b"x")}),
    )
    .await
    .assert_error(401, "Unauthenticated");
    // A client limited to another key may not use this one.
    let other = api.create_key(&s.admin, "alias/other").await;
    let (_, scoped) = api
        .create_client(&s.admin, "generate", Some(vec![&other]))
        .await;
    api.post(
        "/v1/encrypt",
        &scoped,
        json!({"KeyId": "alias/vod", "Plaintext": b64(b"x")}),
    )
    .await
    .assert_error(403, "AccessDenied");
    let records = api
        .audit_until(&s.admin, "Operation=Encrypt", |rs| rs.len() >= 7)
        .await;
    let outcomes: Vec<&str> = records
        .iter()
        .map(|r| r["Outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes.iter().filter(|o| **o == "Success").count(),
        3,
        "{outcomes:?}"
    );
    assert!(outcomes.contains(&"AccessDenied") && outcomes.contains(&"InvalidParameter"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_come_in_the_asked_number_to_generate_clients() {
    let s = Setup::new().await;
    let api = &s.api;
    let mut seen = Vec::new();
    for n in [1u32, 32, 1024] {
        let r = api
            .post(
                "/v1/generate-random",
                &s.generator,
                json!({"NumberOfBytes": n}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let bytes = unb64(&r.ok()["Plaintext"]);
        assert_eq!(bytes.len(), n as usize);
        seen.push(bytes);
    }
    assert!(
        seen[2].iter().any(|b| *b != seen[2][0]),
        "1024 bytes all alike"
    );
    for n in [json!(0), json!(1025), json!(-1)] {
        let r = api
            .post(
                "/v1/generate-random",
                &s.generator,
                json!({"NumberOfBytes": n}),
            )
            .await;
        assert!(r.status == 400, "{n}: {:?}", r.body);
    }
    api.post("/v1/generate-random", &s.generator, json!({}))
        .await
        .assert_error(400, "MalformedRequest");
    api.post(
        "/v1/generate-random",
        &s.decryptor,
        json!({"NumberOfBytes": 8}),
    )
    .await
    .assert_error(403, "AccessDenied");
    // No key is involved: a generate client limited to some keys may ask.
    let (_, scoped) = api
        .create_client(&s.admin, "generate", Some(vec![&s.key_id]))
        .await;
    let r = api
        .post("/v1/generate-random", &scoped, json!({"NumberOfBytes": 8}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let records = api
        .audit_until(&s.admin, "Operation=GenerateRandom", |rs| rs.len() >= 7)
        .await;
    assert!(records.iter().all(|r| r["KeyId"].is_null()), "{records:#?}");
    assert_eq!(
        records.iter().filter(|r| r["Outcome"] == "Success").count(),
        4
    );
}

/// One credential for both data roles, as the AWS Encryption SDK wants it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_may_hold_both_data_roles_and_nothing_more() {
    let s = Setup::new().await;
    let api = &s.api;
    let r = api
        .post(
            "/v1/clients",
            &s.admin,
            json!({"Name": "sdk", "Roles": ["decrypt", "generate"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["Role"], "generate,decrypt");
    assert_eq!(r.body["Roles"], json!(["generate", "decrypt"]));
    let token = r.body["Token"].as_str().unwrap().to_owned();
    let me = api.get("/v1/whoami", &token).await;
    assert_eq!(me.ok()["Roles"], json!(["generate", "decrypt"]));
    // Both data calls with one token, and back to the same bytes.
    let encrypted = api
        .post(
            "/v1/encrypt",
            &token,
            json!({"KeyId": "alias/vod", "Plaintext": b64(b"one credential")}),
        )
        .await;
    let blob = encrypted.ok()["CiphertextBlob"]
        .as_str()
        .unwrap()
        .to_owned();
    let opened = api
        .post("/v1/decrypt", &token, json!({ "CiphertextBlob": blob }))
        .await;
    assert_eq!(unb64(&opened.ok()["Plaintext"]), b"one credential");
    let key = api.generate(&token, "alias/vod", "film").await;
    let blob = key.ok()["CiphertextBlob"].as_str().unwrap().to_owned();
    assert_eq!(api.decrypt(&token, &blob, "film").await.status, 200);
    // Nothing of an admin's.
    api.get("/v1/keys", &token)
        .await
        .assert_error(403, "AccessDenied");
    // Admin and issuer stand alone; unknown names and empty lists are refused;
    // Role and Roles together are ambiguous.
    for roles in [
        json!(["admin", "generate"]),
        json!(["issuer", "decrypt"]),
        json!([]),
        json!(["nope"]),
    ] {
        api.post(
            "/v1/clients",
            &s.admin,
            json!({"Name": "x", "Roles": roles}),
        )
        .await
        .assert_error(400, "InvalidParameter");
    }
    api.post(
        "/v1/clients",
        &s.admin,
        json!({"Name": "x", "Role": "decrypt", "Roles": ["decrypt"]}),
    )
    .await
    .assert_error(400, "MalformedRequest");
    // Another KMS process on the same database reads it from there.
    let kms = common::KmsProcess::start(&s.db, &s.root_key, &[]).await;
    let me = kms.api().get("/v1/whoami", &token).await;
    assert_eq!(me.ok()["Role"], "generate,decrypt");
}
