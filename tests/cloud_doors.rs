//! The cloud doors at `POST /` of `vodkms kms serve`.
//!
//! - The real SDKs, unchanged (boto3, the aws CLI, aws-encryption-sdk-cli,
//!   aliyun-python-sdk-kms, alibabacloud-kms20160120, tencentcloud-sdk-python),
//!   pinned in tests/sdk/requirements.txt and installed by scripts/test, run
//!   tests/sdk/cloud_sdks.py against a KMS on PostgreSQL: round trips across
//!   doors, each SDK's errors, key management.
//! - Hand-signed requests (cloudsig's signers) for what the SDKs will not
//!   send: expired times, replayed nonces, garbage. Every answer is 4xx in
//!   the door's dialect (Tencent's: HTTP 200 with `Response.Error`), never
//!   5xx, and the refusals are audited with the protocol and access key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use chrono::Utc;
use common::cloud::{alibaba_rpc, aws_request, client_with_key, host, tencent_request};
use common::{eventually, KmsProcess, Reply, Setup};
use serde_json::{json, Value};

/// The Python of target/cloud-sdks, where scripts/test installs the SDKs.
fn sdk_python() -> String {
    std::env::var("VODKMS_SDK_PYTHON").unwrap_or_else(|_| {
        let p = concat!(env!("CARGO_MANIFEST_DIR"), "/target/cloud-sdks/bin/python");
        assert!(
            std::path::Path::new(p).exists(),
            "the cloud SDKs are not installed: run scripts/test (it installs tests/sdk/requirements.txt into target/cloud-sdks)"
        );
        p.to_owned()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cloud_sdks_work_against_vodkms_unchanged() {
    let s = Setup::new().await;
    let other = s.api.create_key(&s.admin, "alias/other").await;
    let good = client_with_key(&s, &["generate", "decrypt"], None).await;
    let (deleted_client, deleted_id, deleted_secret) =
        client_with_key(&s, &["generate", "decrypt"], None).await;
    let r = s
        .api
        .delete(
            &format!("/v1/clients/{deleted_client}/access-keys/{deleted_id}"),
            &s.admin,
        )
        .await;
    assert_eq!(r.status, 204);
    let revoked = client_with_key(&s, &["generate", "decrypt"], None).await;
    assert_eq!(
        s.api
            .delete(&format!("/v1/clients/{}", revoked.0), &s.admin)
            .await
            .status,
        204
    );
    let decrypt_only = client_with_key(&s, &["decrypt"], None).await;
    let limited = client_with_key(&s, &["generate", "decrypt"], Some(vec![other.as_str()])).await;
    let admin = client_with_key(&s, &["admin"], None).await;

    let work = tempfile::tempdir().unwrap();
    let config = json!({
        "host": host(&s.api),
        "key_alias": "alias/vod",
        "key_arn": format!("arn:aws:kms:us-east-1:000000000000:key/{}", s.key_id),
        "other_key": other,
        "workdir": work.path(),
        "access_keys": {
            "good": [good.1, good.2],
            "wrong_secret": [good.1, format!("{}x", good.2)],
            "deleted": [deleted_id, deleted_secret],
            "revoked": [revoked.1, revoked.2],
            "decrypt_only": [decrypt_only.1, decrypt_only.2],
            "limited": [limited.1, limited.2],
            "admin": [admin.1, admin.2],
        },
    });
    let out = tokio::process::Command::new(sdk_python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/sdk/cloud_sdks.py"
        ))
        .env("VODKMS_SDK_CONFIG", config.to_string())
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", work.path().join("none"))
        .env("AWS_SHARED_CREDENTIALS_FILE", work.path().join("none"))
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "the SDK checks failed:\n{}\n{}\nKMS log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        s.kms.log_text()
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(summary["checks"].as_u64().unwrap() > 100, "{summary}");

    // Audited: each door's successes name it and the access key; each
    // door's refusals of a wrong secret are recorded too.
    let good_client = good.0.clone();
    let records = s
        .api
        .audit_until(
            &s.admin,
            &format!("ClientId={good_client}&Operation=GenerateDataKey&Limit=1000"),
            |r| {
                ["aws", "alibaba", "tencent"].iter().all(|p| {
                    r.iter()
                        .any(|x| x["Protocol"] == *p && x["AccessKeyId"] == good.1.as_str())
                })
            },
        )
        .await;
    assert!(records.iter().all(|r| r["Outcome"] == "Success"));
    s.api
        .audit_until(&s.admin, "Operation=GenerateDataKey&Limit=1000", |r| {
            ["aws", "alibaba", "tencent"].iter().all(|p| {
                r.iter()
                    .any(|x| x["Protocol"] == *p && x["Outcome"] == "SignatureDoesNotMatch")
            }) && r
                .iter()
                .any(|x| x["Outcome"] == "AccessDenied" && x["ClientId"] == limited.0.as_str())
        })
        .await;
    // Plaintexts never reach the log.
    let log = s.kms.log_text();
    assert!(
        !log.contains(&good.2),
        "a secret access key reached the log"
    );
}

fn assert_aws_error(r: &Reply, code: &str) {
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(r.body["__type"], code, "{:?}", r.body);
    assert!(
        r.headers.contains_key("date"),
        "every answer has a Date header"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_replayed_and_garbage_requests_are_refused_in_dialect() {
    let s = Setup::new().await;
    let (client, id, secret) = client_with_key(&s, &["generate", "decrypt"], None).await;
    let key = (id.as_str(), secret.as_str());
    let gdk = json!({ "KeyId": "alias/vod", "KeySpec": "AES_256" });
    let now = Utc::now();

    // A good AWS request: 200 with a Date header and the JSON 1.1 type.
    let r = s
        .api
        .raw(aws_request(&s.api, key, "GenerateDataKey", &gdk, now))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.headers.contains_key("date"));
    assert_eq!(r.headers["content-type"], "application/x-amz-json-1.1");

    // Expired (and from the future), in each dialect.
    for skew in [-10i64, 10] {
        let at = now + chrono::Duration::minutes(skew);
        let r = s
            .api
            .raw(aws_request(&s.api, key, "GenerateDataKey", &gdk, at))
            .await;
        assert_aws_error(&r, "InvalidSignatureException");
        let r = s
            .api
            .raw(alibaba_rpc(
                &s.api,
                key,
                "GenerateDataKey",
                &[("KeyId", "alias/vod")],
                &format!("old{skew}"),
                at,
            ))
            .await;
        assert_eq!(
            (r.status, r.body["Code"].as_str()),
            (400, Some("InvalidTimeStamp.Expired")),
            "{:?}",
            r.body
        );
        let r = s
            .api
            .raw(tencent_request(
                &s.api,
                key,
                "GenerateDataKey",
                &json!({"KeyId": "alias/vod", "KeySpec": "AES_128"}),
                at.timestamp(),
            ))
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.body["Response"]["Error"]["Code"], "AuthFailure.SignatureExpire",
            "{:?}",
            r.body
        );
    }

    // A replayed Alibaba nonce: the second is refused.
    let first = s
        .api
        .raw(alibaba_rpc(
            &s.api,
            key,
            "GenerateDataKey",
            &[("KeyId", "alias/vod")],
            "nonce-1",
            now,
        ))
        .await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    assert_eq!(
        first.headers["content-type"],
        "application/json;charset=utf-8"
    );
    let again = s
        .api
        .raw(alibaba_rpc(
            &s.api,
            key,
            "GenerateDataKey",
            &[("KeyId", "alias/vod")],
            "nonce-1",
            now,
        ))
        .await;
    assert_eq!(
        (again.status, again.body["Code"].as_str()),
        (400, Some("SignatureNonceUsed")),
        "{:?}",
        again.body
    );

    // ACS3 (the current Alibaba SDKs' signing) refuses a nonce twice too.
    let acs3 = |nonce: &str| {
        let body = "";
        let mut headers = http::HeaderMap::new();
        for (k, v) in [
            ("host", common::cloud::host(&s.api)),
            ("x-acs-action", "GenerateDataKey".to_owned()),
            ("x-acs-version", "2016-01-20".to_owned()),
            ("x-acs-date", now.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
            ("x-acs-signature-nonce", nonce.to_owned()),
            (
                "x-acs-content-sha256",
                cloudsig::sha256_hex(body.as_bytes()),
            ),
        ] {
            headers.insert(k, v.parse().unwrap());
        }
        let uri: http::Uri = "/?KeyId=alias%2Fvod".parse().unwrap();
        let req = cloudsig::Request {
            method: &http::Method::POST,
            uri: &uri,
            headers: &headers,
            body: body.as_bytes(),
        };
        let auth = cloudsig::acs3::authorize(&req, key.0, key.1.as_bytes()).unwrap();
        let mut b = s
            .api
            .request(reqwest::Method::POST, "/?KeyId=alias%2Fvod", None);
        for (k, v) in &headers {
            if k != "host" {
                b = b.header(k.as_str(), v.as_bytes());
            }
        }
        b.header("authorization", auth)
    };
    let first = s.api.raw(acs3("acs3-nonce")).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    let again = s.api.raw(acs3("acs3-nonce")).await;
    assert_eq!(
        (again.status, again.body["Code"].as_str()),
        (400, Some("SignatureNonceUsed")),
        "{:?}",
        again.body
    );
    // One blob format: what a door minted, the native API opens.
    let minted = s
        .api
        .raw(aws_request(
            &s.api,
            key,
            "GenerateDataKey",
            &json!({"KeyId": "alias/vod", "KeySpec": "AES_128", "EncryptionContext": {"video_id": "v"}}),
            now,
        ))
        .await;
    let opened = s
        .api
        .decrypt(
            &s.decryptor,
            minted.body["CiphertextBlob"].as_str().unwrap(),
            "v",
        )
        .await;
    assert_eq!(opened.ok()["Plaintext"], minted.body["Plaintext"]);
    // Tencent's dialect: an unknown action is an error envelope.
    let r = s
        .api
        .raw(tencent_request(
            &s.api,
            key,
            "DropEverything",
            &json!({}),
            now.timestamp(),
        ))
        .await;
    assert_eq!(
        r.body["Response"]["Error"]["Code"], "InvalidAction",
        "{:?}",
        r.body
    );

    // A wrong signature on an Encrypt: refused without echoing the plaintext
    // (the string to sign is shown only for requests without one).
    let r = s
        .api
        .raw(alibaba_rpc(
            &s.api,
            (&id, "wrong-secret"),
            "Encrypt",
            &[("KeyId", "alias/vod"), ("Plaintext", "c2VjcmV0LXRleHQ=")],
            "nonce-enc",
            now,
        ))
        .await;
    assert_eq!(r.body["Code"], "SignatureDoesNotMatch", "{:?}", r.body);
    assert!(
        !r.body.to_string().contains("c2VjcmV0LXRleHQ"),
        "{:?}",
        r.body
    );
    let r = s
        .api
        .raw(alibaba_rpc(
            &s.api,
            (&id, "wrong-secret"),
            "GenerateDataKey",
            &[("KeyId", "alias/vod")],
            "nonce-gdk",
            now,
        ))
        .await;
    assert!(
        r.body["Message"]
            .as_str()
            .unwrap()
            .contains("string to sign is:POST&"),
        "{:?}",
        r.body
    );

    // Garbage at POST /: always 4xx, never 5xx.
    let garbage: Vec<(&str, reqwest::RequestBuilder)> = vec![
        (
            "no headers",
            s.api.request(reqwest::Method::POST, "/", None).body("{}"),
        ),
        (
            "unknown target",
            s.api
                .request(reqwest::Method::POST, "/", None)
                .header("x-amz-target", "TrentService.Nope")
                .body("{}"),
        ),
        (
            "other service",
            s.api
                .request(reqwest::Method::POST, "/", None)
                .header("x-amz-target", "DynamoDB_20120810.ListTables")
                .body("{}"),
        ),
        (
            "unsigned",
            s.api
                .request(reqwest::Method::POST, "/", None)
                .header("x-amz-target", "TrentService.Decrypt")
                .body("{}"),
        ),
        (
            "junk signature",
            s.api
                .request(reqwest::Method::POST, "/", None)
                .header("x-amz-target", "TrentService.Decrypt")
                .header("x-amz-date", "20261201T000000Z")
                .header(
                    "authorization",
                    "AWS4-HMAC-SHA256 Credential=x/y, SignedHeaders=host, Signature=zz",
                )
                .body("{}"),
        ),
        (
            "bad algorithm",
            s.api
                .request(reqwest::Method::POST, "/", None)
                .header("x-amz-target", "TrentService.Decrypt")
                .header("authorization", "Basic eDp5")
                .body("{}"),
        ),
        (
            "huge body",
            s.api
                .request(reqwest::Method::POST, "/", None)
                .header("x-amz-target", "TrentService.Decrypt")
                .body(vec![b'a'; 400 * 1024]),
        ),
        (
            "alibaba unsigned",
            s.api
                .request(reqwest::Method::POST, "/?Action=Decrypt", None),
        ),
        (
            "alibaba unknown action",
            s.api
                .request(reqwest::Method::POST, "/?Action=DropEverything", None),
        ),
        (
            "alibaba junk signature",
            s.api.request(
                reqwest::Method::POST,
                "/?Action=Decrypt&Signature=%%%&SignatureMethod=HMAC-SHA1",
                None,
            ),
        ),
        (
            "acs3 junk",
            s.api
                .request(reqwest::Method::POST, "/", None)
                .header("x-acs-action", "Decrypt")
                .header("authorization", "ACS3-HMAC-SHA256 nonsense"),
        ),
        (
            "binary",
            s.api
                .request(reqwest::Method::POST, "/", None)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(vec![0xffu8, 0xfe, 0, 1]),
        ),
    ];
    for (what, req) in garbage {
        let (status, headers, body) = s.api.raw_bytes(req).await;
        assert!(
            (400..500).contains(&status),
            "{what}: {status} {}",
            String::from_utf8_lossy(&body)
        );
        assert!(headers.contains_key("date"), "{what}: no Date header");
    }
    // Signed, but not JSON; temporary credentials; another region.
    let r = s
        .api
        .raw(aws_request(
            &s.api,
            key,
            "GenerateDataKey",
            &json!("text"),
            now,
        ))
        .await;
    assert_aws_error(&r, "SerializationException");
    let r = s
        .api
        .raw(
            aws_request(&s.api, key, "GenerateDataKey", &gdk, now)
                .header("x-amz-security-token", "t"),
        )
        .await;
    assert_aws_error(&r, "UnrecognizedClientException");
    let r = s
        .api
        .raw(aws_request(
            &s.api,
            key,
            "Decrypt",
            &json!({"CiphertextBlob": "AAAA"}),
            now,
        ))
        .await;
    assert_aws_error(&r, "InvalidCiphertextException");
    let r = s
        .api
        .raw(aws_request(
            &s.api,
            key,
            "GenerateDataKey",
            &json!({"KeyId": "arn:aws:kms:eu-west-1:000000000000:alias/vod", "KeySpec": "AES_128"}),
            now,
        ))
        .await;
    assert_aws_error(&r, "NotFoundException");
    // A tampered body under a good signature.
    let signed = aws_request(&s.api, key, "GenerateDataKey", &gdk, now)
        .build()
        .unwrap();
    let mut tampered = reqwest::Client::new().post(signed.url().clone());
    for (k, v) in signed.headers() {
        tampered = tampered.header(k, v);
    }
    let r = s
        .api
        .raw(tampered.body(json!({ "KeyId": "alias/vod", "KeySpec": "AES_128" }).to_string()))
        .await;
    assert_aws_error(&r, "InvalidSignatureException");

    // The refusals are audited, naming the door and access key.
    s.api
        .audit_until(&s.admin, &format!("ClientId={client}&Limit=1000"), |r| {
            let has = |p: &str, o: &str| {
                r.iter().any(|x| {
                    x["Protocol"] == p && x["Outcome"] == o && x["AccessKeyId"] == id.as_str()
                })
            };
            has("aws", "RequestExpired")
                && has("alibaba", "RequestExpired")
                && has("tencent", "RequestExpired")
                && has("alibaba", "ReplayedRequest")
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_access_key_is_refused_by_every_process_and_rekey_keeps_the_others() {
    let s = Setup::new().await;
    let (client, id, secret) = client_with_key(&s, &["generate", "decrypt"], None).await;
    let (_, id2, secret2) = client_with_key(&s, &["generate", "decrypt"], None).await;
    let gdk = json!({ "KeyId": "alias/vod", "KeySpec": "AES_256" });
    let b = KmsProcess::start(&s.db, &s.root_key, &[]).await;
    let b_api = b.api();
    // Warm B's cache with the key.
    let r = b_api
        .raw(aws_request(
            &b_api,
            (&id, &secret),
            "GenerateDataKey",
            &gdk,
            Utc::now(),
        ))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = s
        .api
        .delete(&format!("/v1/clients/{client}/access-keys/{id}"), &s.admin)
        .await;
    assert_eq!(r.status, 204);
    let r = s
        .api
        .raw(aws_request(
            &s.api,
            (&id, &secret),
            "GenerateDataKey",
            &gdk,
            Utc::now(),
        ))
        .await;
    assert_aws_error(&r, "UnrecognizedClientException");
    eventually(5, "B refuses an access key deleted through A", || async {
        let r = b_api
            .raw(aws_request(
                &b_api,
                (&id, &secret),
                "GenerateDataKey",
                &gdk,
                Utc::now(),
            ))
            .await;
        r.status == 400 && r.body["__type"] == "UnrecognizedClientException"
    })
    .await;
    assert!(b.terminate().success());

    // rekey-root re-wraps access key secrets with the master keys.
    let Setup {
        db, root_key, kms, ..
    } = s;
    assert!(kms.terminate().success());
    let new_root = common::random_root_key();
    let out = std::process::Command::new(common::BIN)
        .arg("rekey-root")
        .env("DATABASE_URL", &db)
        .env("VODKMS_ROOT_KEY", &root_key)
        .env("VODKMS_NEW_ROOT_KEY", &new_root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["AccessKeys"], 1, "{printed}");
    let kms = KmsProcess::start(&db, &new_root, &[]).await;
    let api = kms.api();
    let r = api
        .raw(aws_request(
            &api,
            (&id2, &secret2),
            "GenerateDataKey",
            &gdk,
            Utc::now(),
        ))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}
