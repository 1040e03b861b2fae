//! `/metrics` on both servers: valid Prometheus text, requests counted by
//! route template, key releases by outcome, cache hits and misses, and no
//! video, viewer or key ids in any label.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;

use common::brokers::BrokerSetup;

/// Parses the text exposition strictly enough to catch a malformed line:
/// `# HELP`/`# TYPE` comments, and `name{label="value",...} number` samples
/// whose family was declared by a TYPE line. Returns sample → value.
fn parse(text: &str) -> HashMap<String, f64> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kind, name, tail) = (
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap_or(""),
            );
            match kind {
                "HELP" => assert!(!tail.is_empty(), "empty HELP: {line}"),
                "TYPE" => {
                    assert!(["counter", "gauge", "histogram"].contains(&tail), "{line}");
                    types.insert(name.to_owned(), tail.to_owned());
                }
                _ => panic!("unknown comment: {line}"),
            }
            continue;
        }
        assert!(!line.trim().is_empty(), "blank line in exposition");
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad name: {line}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
                for pair in labels[1..labels.len() - 1].split("\",") {
                    let (k, v) = pair.split_once("=\"").unwrap_or_else(|| panic!("{line}"));
                    assert!(
                        k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                        "{line}"
                    );
                    assert!(!v.trim_end_matches('"').contains('"'), "{line}");
                }
            }
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        assert!(types.contains_key(family), "sample without TYPE: {line}");
        samples.insert(series.to_owned(), value);
    }
    samples
}

async fn scrape(url: &str) -> (String, HashMap<String, f64>) {
    let r = reqwest::get(format!("{url}/metrics")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = r.text().await.unwrap();
    let parsed = parse(&text);
    (text, parsed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_servers_expose_prometheus_metrics_that_count_requests() {
    let b = BrokerSetup::new().await;
    let (key, edk) = b.data_key("film-secret-id").await;
    drop(key);

    let (_, kms) = scrape(&b.kms.kms.url).await;
    let generated = r#"vodkms_kms_http_requests_total{route="/v1/generate-data-key",method="POST",status="200"}"#;
    assert_eq!(kms.get(generated), Some(&1.0), "{kms:#?}");
    b.kms
        .api
        .generate(&b.kms.generator, "alias/vod", "film-secret-id")
        .await
        .ok();
    let (kms_text, kms) = scrape(&b.kms.kms.url).await;
    assert_eq!(kms.get(generated), Some(&2.0));
    assert!(kms.contains_key(
        r#"vodkms_kms_http_request_duration_seconds_count{route="/v1/generate-data-key"}"#
    ));
    assert!(kms.contains_key("vodkms_kms_audit_buffered"));
    assert!(kms["vodkms_kms_db_connections"] >= 1.0);

    // The broker: one miss, one hit, one refusal.
    let token = b.token("alice", &["film-secret-id"]).await;
    for _ in 0..2 {
        assert_eq!(
            b.key_status(&format!(
                "vid=film-secret-id&Ciphertext={edk}&token={token}"
            ))
            .await
            .0,
            200
        );
    }
    assert_eq!(
        b.key_status(&format!("vid=other&Ciphertext={edk}&token={token}"))
            .await
            .1,
        "NotEntitled"
    );
    let (broker_text, broker) = scrape(&b.broker.url).await;
    assert_eq!(
        broker.get(r#"vodkms_broker_decisions_total{operation="ReleaseKey",outcome="Success"}"#),
        Some(&2.0),
        "{broker_text}"
    );
    assert_eq!(
        broker
            .get(r#"vodkms_broker_decisions_total{operation="ReleaseKey",outcome="NotEntitled"}"#),
        Some(&1.0)
    );
    assert_eq!(broker["vodkms_broker_key_cache_misses_total"], 1.0);
    assert_eq!(broker["vodkms_broker_key_cache_hits_total"], 1.0);
    assert_eq!(
        broker.get(
            r#"vodkms_broker_http_requests_total{route="/v1/hls/key",method="GET",status="403"}"#
        ),
        Some(&1.0)
    );
    // No ids of videos, viewers or keys in any label.
    for text in [&kms_text, &broker_text] {
        assert!(
            !text.contains("film-secret-id")
                && !text.contains("alice")
                && !text.contains(&b.kms.key_id)
        );
    }
}
