//! Key state reaches every broker within a second: two brokers cache a key,
//! then disabling its master key, scheduling the key's deletion, and
//! revoking the brokers' own KMS client each stop releases from both caches
//! within 1 s (the cache TTL is 300 s). The brokers learn it from the KMS's
//! change feed (`GET /v1/changes`), never from KMS tables.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::brokers::BrokerSetup;
use serde_json::json;

/// Key status from a broker at `url` for `query`.
async fn status(url: &str, query: &str) -> u16 {
    reqwest::get(format!("{url}/v1/hls/key?{query}"))
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Waits at most 1 s, from `since`, for every broker to refuse the key.
async fn refused_within_a_second(urls: &[&str], query: &str, since: Instant, what: &str) {
    loop {
        let mut released = Vec::new();
        for url in urls {
            if status(url, query).await == 200 {
                released.push(*url);
            }
        }
        if released.is_empty() {
            return;
        }
        assert!(
            since.elapsed() < Duration::from_secs(1),
            "{what}: still released by {released:?} after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_deleting_and_revoking_reach_both_brokers_within_a_second() {
    let b = BrokerSetup::new().await;
    let second = BrokerSetup::start_broker(&b.kms, &b.secret_b64, &[]).await;
    let urls = [b.broker.url.as_str(), second.url.as_str()];
    let (_, edk) = b.data_key("film-k").await;
    let token = b.token("kim", &["film-k"]).await;
    let query = format!(
        "vid=film-k&Ciphertext={}&token={}",
        common::brokers::q(&edk),
        common::brokers::q(&token)
    );
    let admin = &b.kms.admin;
    let key = format!("/v1/keys/{}", b.kms.key_id);
    let api = &b.kms.api;

    // Cached in both (a second fetch is a cache hit).
    let warm = || async {
        for url in urls {
            for _ in 0..2 {
                assert_eq!(status(url, &query).await, 200, "{url}");
            }
        }
    };
    warm().await;

    let r = api.post(&format!("{key}/disable"), admin, json!({})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    refused_within_a_second(&urls, &query, Instant::now(), "disabled").await;
    let r = api.post(&format!("{key}/enable"), admin, json!({})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    common::eventually(5, "released again once enabled", || async {
        status(urls[0], &query).await == 200 && status(urls[1], &query).await == 200
    })
    .await;
    warm().await;

    let r = api
        .post(
            &format!("{key}/schedule-deletion"),
            admin,
            json!({ "PendingWindowInDays": 7 }),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    refused_within_a_second(&urls, &query, Instant::now(), "deletion scheduled").await;
    let r = api
        .post(&format!("{key}/cancel-deletion"), admin, json!({}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = api.post(&format!("{key}/enable"), admin, json!({})).await;
    assert!(r.status == 200 || r.status == 400, "{:?}", r.body);
    common::eventually(
        5,
        "released again once the deletion is cancelled",
        || async { status(urls[0], &query).await == 200 && status(urls[1], &query).await == 200 },
    )
    .await;
    warm().await;

    // The brokers' own KMS client (both use the same decrypt client).
    let me = reqwest::Client::new()
        .get(format!("{}/v1/whoami", b.kms.kms.url))
        .bearer_auth(&b.kms.decryptor)
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let client_id = me["ClientId"].as_str().unwrap().to_owned();
    let r = api.delete(&format!("/v1/clients/{client_id}"), admin).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    refused_within_a_second(&urls, &query, Instant::now(), "broker client revoked").await;
}
