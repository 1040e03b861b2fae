//! Structured logs: `--log-format json` gives one JSON object per line, and
//! one access event per request with request id, route, status, latency and
//! a hash of the caller's credential, never the credential.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use sha2::{Digest, Sha256};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_access_log_has_one_event_per_request_and_no_secret() {
    let s = common::Setup::with_env(&[("VODKMS_LOG_FORMAT", "json")]).await;
    let r = s
        .api
        .raw(
            s.api
                .request(reqwest::Method::GET, "/v1/keys", Some(&s.admin))
                .header("X-Request-Id", "trace-me-1"),
        )
        .await;
    assert_eq!(r.status, 200);
    let want_hash: String = Sha256::digest(s.admin.as_bytes())[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    common::eventually(10, "the access event", || async {
        s.kms.log_text().contains("trace-me-1")
    })
    .await;
    let log = s.kms.log_text();
    let mut found = None;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if v["client_request_id"] == "trace-me-1" {
            found = Some(v);
        }
    }
    let event = found.expect("no access event for the request");
    assert_eq!(event["target"], "vodkms::access");
    assert_eq!(event["request_id"], r.request_id.as_str());
    assert_eq!(event["route"], "/v1/keys");
    assert_eq!(event["method"], "GET");
    assert_eq!(event["status"], 200);
    assert!(event["latency_us"].is_u64());
    assert_eq!(event["credential"], want_hash);
    for secret in [&s.admin, &s.generator, &s.decryptor, &s.root_key] {
        assert!(!log.contains(secret.as_str()), "a secret reached the log");
    }
}
