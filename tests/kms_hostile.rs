//! Hostile input: hundreds of mangled requests (wrong types, huge and odd
//! values, missing and unknown fields, garbage bodies, paths and headers).
//! None may get a 5xx or an answer outside the error contract, and none may
//! change a key it was not aimed at. Seeded, so a failure can be replayed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

fn odd_value(rng: &mut StdRng, blob: &str) -> Value {
    match rng.gen_range(0..16) {
        0 => Value::Null,
        1 => json!(rng.gen::<i64>()),
        2 => json!(-1),
        3 => json!(u64::MAX),
        4 => json!(1e308),
        5 => json!(true),
        6 => json!([1, "a", null]),
        7 => json!({ "nested": { "deeper": [] } }),
        8 => json!(""),
        9 => json!("x".repeat(rng.gen_range(1000..20_000))),
        10 => json!("\u{0}\u{1f}\u{202e}ünï©ødé\u{fffd}"),
        11 => json!("alias/../../etc/passwd"),
        12 => json!(prefix(blob, rng.gen_range(0..blob.len()))),
        13 => {
            let mut b: Vec<char> = blob.chars().collect();
            let i = rng.gen_range(0..b.len());
            b[i] = if b[i] == 'A' { 'B' } else { 'A' };
            json!(b.into_iter().collect::<String>())
        }
        14 => json!({ "video_id": "x".repeat(5000) }),
        _ => json!(uuid::Uuid::new_v4().to_string()),
    }
}

/// The first `n` characters (never splits one).
fn prefix(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

fn mangle(rng: &mut StdRng, template: &Value, blob: &str) -> String {
    let mut v = template.clone();
    let obj = v.as_object_mut().unwrap();
    let keys: Vec<String> = obj.keys().cloned().collect();
    match rng.gen_range(0..8) {
        0..=3 if !keys.is_empty() => {
            let k = &keys[rng.gen_range(0..keys.len())];
            obj.insert(k.clone(), odd_value(rng, blob));
        }
        4 if !keys.is_empty() => {
            obj.remove(&keys[rng.gen_range(0..keys.len())]);
        }
        5 => {
            obj.insert("Unexpected".into(), odd_value(rng, blob));
        }
        6 => {
            let text = v.to_string();
            return prefix(&text, rng.gen_range(0..text.chars().count())); // truncated JSON
        }
        _ => {
            let bytes: Vec<u8> = (0..rng.gen_range(0..64))
                .map(|_| rng.gen_range(0x20..0x7f))
                .collect();
            return String::from_utf8(bytes).unwrap();
        }
    }
    v.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mangled_requests_never_get_a_5xx_or_touch_other_keys() {
    let seed = std::env::var("HOSTILE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_u64);
    println!("HOSTILE_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let s = Setup::new().await;
    let api = &s.api;
    api.create_key(&s.admin, "alias/fuzz").await;
    let keep = api
        .generate(&s.generator, "alias/vod", "keep")
        .await
        .ok()
        .clone();
    let blob = keep["CiphertextBlob"].as_str().unwrap().to_owned();
    let before = api.get("/v1/keys/alias%2Fvod", &s.admin).await.ok().clone();

    let ctx = json!({ "video_id": "keep" });
    let endpoints: Vec<(&str, &str, Value)> = vec![
        (
            "/v1/generate-data-key",
            &s.generator,
            json!({ "KeyId": "alias/vod", "KeySpec": "AES_128", "EncryptionContext": ctx }),
        ),
        (
            "/v1/generate-data-key-without-plaintext",
            &s.generator,
            json!({ "KeyId": "alias/vod", "NumberOfBytes": 16 }),
        ),
        (
            "/v1/decrypt",
            &s.decryptor,
            json!({ "CiphertextBlob": blob, "EncryptionContext": ctx }),
        ),
        (
            "/v1/re-encrypt",
            &s.generator,
            json!({ "CiphertextBlob": blob, "SourceEncryptionContext": ctx, "DestinationKeyId": "alias/vod", "DestinationEncryptionContext": ctx }),
        ),
        (
            "/v1/keys",
            &s.admin,
            json!({ "Alias": "alias/new", "Description": "d", "RotationPeriodInDays": 30 }),
        ),
        (
            "/v1/clients",
            &s.admin,
            json!({ "Name": "n", "Role": "decrypt", "KeyIds": ["alias/fuzz"] }),
        ),
        (
            "/v1/keys/alias/fuzz/schedule-deletion",
            &s.admin,
            json!({ "PendingWindowInDays": 7 }),
        ),
        ("/v1/keys/alias/fuzz/rotate", &s.admin, json!({})),
    ];
    let check = |r: &Reply, what: &str| {
        assert!(r.status < 500, "{what} -> {} {:?}", r.status, r.body);
        if r.status >= 400 {
            r.assert_error(r.status, r.code());
        }
    };

    for i in 0..400 {
        let (path, token, template) = &endpoints[i % endpoints.len()];
        let body = mangle(&mut rng, template, &blob);
        let r = api
            .raw(
                api.request(reqwest::Method::POST, path, Some(token))
                    .body(body.clone()),
            )
            .await;
        check(&r, &format!("POST {path} {}", prefix(&body, 200)));
    }

    // Paths, methods and credentials.
    let segments = [
        "%00",
        "..",
        "%2e%2e%2f",
        "alias",
        "alias%2F",
        &"k".repeat(5000),
        "%ff%fe",
        "rotate",
        "{KeyId}",
        "00000000-0000-0000-0000-000000000000",
    ];
    let methods = [
        reqwest::Method::GET,
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
        reqwest::Method::PATCH,
    ];
    for _ in 0..150 {
        let mut path = String::from("/v1");
        for _ in 0..rng.gen_range(1..5) {
            path.push('/');
            path.push_str(segments[rng.gen_range(0..segments.len())]);
        }
        let method = methods[rng.gen_range(0..methods.len())].clone();
        let auth = match rng.gen_range(0..4) {
            0 => format!("Bearer {}", s.admin),
            1 => "Bearer".to_owned(),
            2 => format!("Basic {}", s.admin),
            _ => format!("Bearer {}", "z".repeat(rng.gen_range(0..9000))),
        };
        let req = api
            .request(method.clone(), &path, None)
            .header("authorization", auth);
        let r = api.raw(req.body("{}")).await;
        check(&r, &format!("{method} {}", prefix(&path, 120)));
    }

    // The key nothing was aimed at is exactly as it was and still works.
    let after = api.get("/v1/keys/alias%2Fvod", &s.admin).await.ok().clone();
    assert_eq!(before, after);
    let d = api.decrypt(&s.decryptor, &blob, "keep").await;
    assert_eq!(d.ok()["Plaintext"], keep["Plaintext"]);
    let log = s.kms.log_text();
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
}

/// Authenticate before validate: a malformed body or field gets 401 from a
/// caller without a valid token, and its 400 only once the token is good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_body_is_refused_401_until_the_token_is_good() {
    let s = Setup::new().await;
    let api = &s.api;
    let bad_bodies: &[(&str, &str)] = &[
        ("/v1/generate-data-key", "{not json"),
        (
            "/v1/generate-data-key",
            r#"{"KeyId":"alias/vod","KeySpec":"AES_512"}"#,
        ),
        ("/v1/generate-data-key-without-plaintext", r#"{"KeyId":7}"#),
        ("/v1/decrypt", r#"{"CiphertextBlob":["x"]}"#),
        ("/v1/encrypt", r#"{"KeyId":"alias/vod","Plaintext":"%%%"}"#),
        ("/v1/generate-random", r#"{"NumberOfBytes":"many"}"#),
        ("/v1/re-encrypt", "[]"),
    ];
    for (path, body) in bad_bodies {
        for token in [None, Some("vkms_not-a-real-token")] {
            let r = api
                .raw(
                    api.request(reqwest::Method::POST, path, token)
                        .header("content-type", "application/json")
                        .body(body.to_string()),
                )
                .await;
            assert_eq!(r.status, 401, "{path} {body} token {token:?}: {:?}", r.body);
        }
        // Re-encrypt takes the generate role (a decrypt client is refused
        // 403 before its body is looked at).
        let token = if path.contains("decrypt") && !path.contains("re-encrypt") {
            &s.decryptor
        } else {
            &s.generator
        };
        let r = api
            .raw(
                api.request(reqwest::Method::POST, path, Some(token))
                    .header("content-type", "application/json")
                    .body(body.to_string()),
            )
            .await;
        assert_eq!(r.status, 400, "{path} {body}: {:?}", r.body);
    }
}
