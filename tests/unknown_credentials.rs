//! Unknown credentials stay cheap on every door: a flood of made-up access
//! keys (signed in each cloud's dialect) at the KMS, and of forged or junk
//! playback tokens at the broker's licence and key routes, makes no
//! database statement per request. Each process reaches PostgreSQL through
//! a proxy that counts the statements it sends (`Q` and `E` messages).
//!
//! What a flood may cost is bounded by time, not by requests: the KMS's
//! lookups of ids it has not seen (20 a second, so keys made on another
//! process are found) and the audit flushes of the merged refusals (10 a
//! second, a few statements each).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Instant;

use ::broker::token::TokenKeys;
use chrono::Utc;
use common::brokers::{claims, now, ORIGIN};
use common::cloud::{alibaba_rpc, aws_request, tencent_request};
use common::proxy::{upstream_of, DbProxy};
use common::*;
use kms::crypto::SecretBytes;
use serde_json::{json, Value};

/// Statements a flood of `secs` may cost whatever its size: the audit
/// flushes of merged refusals (10 a second, up to 4 statements each) and,
/// at the KMS, the unknown-id lookups (20 at once, then 20 a second).
fn allowance(secs: f64, lookups: bool) -> f64 {
    let flushes = 4.0 * (10.0 * secs + 2.0);
    flushes + if lookups { 20.0 + 20.0 * secs } else { 0.0 }
}

fn random_id(prefix: &str, len: usize) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
    format!("{prefix}{}", &id[..len - prefix.len()])
}

/// GenerateDataKey through the AWS door, signed with `key`.
async fn generate_with(api: &Api, key: (&str, &str)) -> Reply {
    let gdk = json!({ "KeyId": "alias/vod", "KeySpec": "AES_256" });
    api.raw(aws_request(api, key, "GenerateDataKey", &gdk, Utc::now()))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unknown_access_keys_costs_no_statement_each() {
    let db = fresh_database().await;
    let proxy = DbProxy::start(upstream_of(&db)).await;
    let root = random_root_key();
    let kms = KmsProcess::start(&proxy.url_for(&db), &root, &[]).await;
    let admin = bootstrap(&db, &root);
    let api = kms.api();
    api.create_key(&admin, "alias/vod").await;
    let r = api
        .post(
            "/v1/clients",
            &admin,
            json!({ "Name": "sdk", "Roles": ["generate"] }),
        )
        .await;
    let client = r.ok()["ClientId"].as_str().unwrap().to_owned();
    let r = api
        .post(
            &format!("/v1/clients/{client}/access-keys"),
            &admin,
            json!({}),
        )
        .await;
    let (id, secret) = (
        r.body["AccessKeyId"].as_str().unwrap().to_owned(),
        r.body["SecretAccessKey"].as_str().unwrap().to_owned(),
    );
    let gdk = json!({ "KeyId": "alias/vod", "KeySpec": "AES_256" });
    let real = generate_with(&api, (&id, &secret)).await;
    assert_eq!(real.status, 200, "{:?}", real.body);

    const FLOOD: usize = 900;
    let before = proxy.statements();
    assert!(before > 0, "the KMS reaches the database through the proxy");
    let started = Instant::now();
    for chunk in 0..FLOOD / 60 {
        let requests = (0..60).map(|i| {
            let api = api.clone();
            let gdk = gdk.clone();
            async move {
                let fake = random_id("AKIA", 20);
                let secret = random_id("", 30);
                let key = (fake.as_str(), secret.as_str());
                let now = Utc::now();
                match i % 3 {
                    0 => {
                        let r = api
                            .raw(aws_request(&api, key, "GenerateDataKey", &gdk, now))
                            .await;
                        (
                            r.status,
                            r.body["__type"].clone(),
                            "UnrecognizedClientException",
                        )
                    }
                    1 => {
                        let nonce = format!("n{chunk}-{i}");
                        let params = [("KeyId", "alias/vod"), ("NumberOfBytes", "16")];
                        let r = api
                            .raw(alibaba_rpc(
                                &api,
                                key,
                                "GenerateDataKey",
                                &params,
                                &nonce,
                                now,
                            ))
                            .await;
                        (
                            r.status,
                            r.body["Code"].clone(),
                            "InvalidAccessKeyId.NotFound",
                        )
                    }
                    _ => {
                        let body = json!({ "KeyId": "alias/vod", "KeySpec": "AES_128" });
                        let r = api
                            .raw(tencent_request(
                                &api,
                                key,
                                "GenerateDataKey",
                                &body,
                                now.timestamp(),
                            ))
                            .await;
                        (
                            r.status,
                            r.body["Response"]["Error"]["Code"].clone(),
                            "AuthFailure.SecretIdNotFound",
                        )
                    }
                }
            }
        });
        for (status, code, want) in futures_util::future::join_all(requests).await {
            assert!(
                status == 400 || status == 404 || status == 200,
                "{status} {code}"
            );
            assert_eq!(code, want);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let spent = (proxy.statements() - before) as f64;
    println!("{FLOOD} unknown access keys in {secs:.1} s: {spent} statements");
    assert!(
        spent <= allowance(secs, true) && spent < FLOOD as f64 / 4.0,
        "{spent} statements for {FLOOD} requests in {secs:.1} s"
    );

    // The real key still works, and the refusals are a few merged records.
    let r = generate_with(&api, (&id, &secret)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let records = api
        .audit_until(&admin, "Operation=GenerateDataKey&Limit=1000", |rs| {
            rs.iter()
                .filter(|r| r["Outcome"] == "Unauthenticated")
                .map(|r| r["Detail"]["Count"].as_u64().unwrap_or(1))
                .sum::<u64>()
                >= FLOOD as u64
        })
        .await;
    let merged = records
        .iter()
        .filter(|r| r["Outcome"] == "Unauthenticated")
        .count();
    assert!(merged < FLOOD / 10, "{merged} refusal records");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_forged_playback_tokens_costs_no_statement_each() {
    let kms = Setup::new().await;
    let (_, issuer) = kms.api.create_client(&kms.admin, "issuer", None).await;
    let proxy = DbProxy::start(upstream_of(&kms.db)).await;
    let secret: Vec<u8> = (0..32).map(|_| rand::random::<u8>()).collect();
    let secret_b64 = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(&secret)
    };
    let broker = BrokerProcess::start_broker(
        &proxy.url_for(&kms.db),
        &kms.kms.url,
        &kms.decryptor,
        &secret_b64,
        &[
            ("VODKMS_ADDRESS_RATE", "0"),
            ("VODKMS_CORS_ORIGINS", ORIGIN),
            ("VODKMS_COOKIE_SECURE", "false"),
        ],
    )
    .await;
    let b = Api::new(&broker.url);
    let edk = kms
        .api
        .generate(&kms.generator, "alias/vod", "film")
        .await
        .ok()["CiphertextBlob"]
        .as_str()
        .unwrap()
        .to_owned();

    // Tokens an attacker can make: signed with a secret of their own (valid
    // and long expired), unsigned, and junk.
    let theirs = TokenKeys::new(Some(SecretBytes::new(vec![9u8; 32])), None, 0, i64::MAX).unwrap();
    let t = now();
    let forged = theirs.sign(&claims("eve", &["film"], t, t + 600)).unwrap();
    let expired = theirs
        .sign(&claims("eve", &["film"], t - 7200, t - 3600))
        .unwrap();
    let unsigned = {
        let mut parts: Vec<&str> = forged.split('.').collect();
        parts[0] = "eyJhbGciOiJub25lIn0";
        parts[2] = "";
        parts.join(".")
    };
    let tokens = [forged, expired, unsigned, "junk".to_owned()];
    let kid = "ASNFZ4mrze8BI0VniavN7w";
    const FLOOD: usize = 1200;
    // And genuine tokens, each with its own id, issued longer ago than any
    // playback session may last (12 h by default): refused on their `iat`
    // before any session lookup, so they cost no query either.
    let ours = TokenKeys::new(Some(SecretBytes::new(secret.clone())), None, 0, i64::MAX).unwrap();
    let old: Vec<String> = (0..FLOOD / 2)
        .map(|_| {
            ours.sign(&claims("olga", &["film"], t - 50_000, t - 49_000))
                .unwrap()
        })
        .collect();

    let before = proxy.statements();
    assert!(
        before > 0,
        "the broker reaches the database through the proxy"
    );
    let started = Instant::now();
    for chunk in 0..FLOOD / 60 {
        let requests = (0..60).map(|i| {
            let b = b.clone();
            let n = chunk * 60 + i;
            let token = if n % 2 == 0 {
                old[n / 2].clone()
            } else {
                tokens[n / 2 % tokens.len()].clone()
            };
            let edk = edk.clone();
            async move {
                let r = match (i / 2) % 4 {
                    0 => b
                        .request(reqwest::Method::POST, "/v1/clearkey/license", Some(&token))
                        .json(&json!({ "kids": [kid], "type": "temporary" })),
                    1 => b
                        .request(
                            reqwest::Method::POST,
                            &format!("/v1/clearkey/license?token={}", brokers::q(&token)),
                            None,
                        )
                        .body(format!("{{\"kids\":[\"{kid}\"]}}")),
                    2 => b
                        .request(
                            reqwest::Method::GET,
                            "/v1/clearkey/key?kid=0123456789abcdef0123456789abcdef",
                            None,
                        )
                        .header("Cookie", format!("vodkms_token={token}")),
                    _ => b.request(
                        reqwest::Method::GET,
                        &format!(
                            "/v1/hls/key?vid=film&Ciphertext={edk}&token={}",
                            brokers::q(&token)
                        ),
                        None,
                    ),
                };
                b.raw(r).await
            }
        });
        for r in futures_util::future::join_all(requests).await {
            assert_eq!(r.status, 401, "{:?}", r.body);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let spent = (proxy.statements() - before) as f64;
    println!("{FLOOD} forged playback tokens in {secs:.1} s: {spent} statements");
    assert!(
        spent <= allowance(secs, false) && spent < FLOOD as f64 / 4.0,
        "{spent} statements for {FLOOD} requests in {secs:.1} s"
    );

    // A real viewer is unaffected, and the refusals are merged records.
    let r = b
        .post(
            "/v1/tokens",
            &issuer,
            json!({ "Viewer": "vera", "VideoIds": ["film"], "TtlSeconds": 600 }),
        )
        .await;
    let token = r.ok()["Token"].as_str().unwrap().to_owned();
    let (status, _, key) = brokers::fetch_from(
        &b,
        &format!("/v1/hls/key?vid=film&Ciphertext={edk}&token={token}"),
        None,
        None,
    )
    .await;
    assert_eq!((status, key.len()), (200, 16));
    let records: Vec<Value> = b
        .audit_until(&kms.admin, "Operation=ReleaseLicence&Limit=1000", |rs| {
            rs.iter()
                .filter(|r| r["Outcome"] != "Success")
                .map(|r| r["Detail"]["Count"].as_u64().unwrap_or(1))
                .sum::<u64>()
                >= (FLOOD / 2) as u64
        })
        .await;
    assert!(
        records.len() < FLOOD / 20,
        "{} licence refusal records",
        records.len()
    );
}
