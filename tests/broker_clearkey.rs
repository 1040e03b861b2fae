//! CENC content keys and the W3C Clear Key licence, against a real broker
//! and KMS on PostgreSQL: a transcoder registers (KID, video, EDK); an
//! entitled viewer's licence holds the data key; everyone else is refused
//! with a stable code; CORS answers the preflight; audited.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine as _;
use common::brokers::{BrokerSetup, ORIGIN};
use serde_json::{json, Value};

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn kid_hex(n: u8) -> String {
    format!(
        "{:032x}",
        u128::from(n) * 0x0101_0101_0101_0101_0101_0101_0101_0101
    )
}

async fn register(
    b: &BrokerSetup,
    token: &str,
    video: &str,
    kid: &str,
    blob: &str,
) -> common::Reply {
    b.api
        .post(
            "/v1/content-keys",
            token,
            json!({ "VideoId": video, "Kid": kid, "CiphertextBlob": blob }),
        )
        .await
}

/// POSTs a licence request with no Content-Type, as some players do.
async fn licence(b: &BrokerSetup, kids: &[&str], token: Option<&str>) -> common::Reply {
    let body = json!({ "kids": kids.iter().map(|k| b64url(&hex::decode(k).unwrap())).collect::<Vec<_>>(), "type": "temporary" });
    let path = match token {
        Some(t) => format!("/v1/clearkey/license?token={t}"),
        None => "/v1/clearkey/license".to_owned(),
    };
    b.api
        .raw(
            b.api
                .request(reqwest::Method::POST, &path, None)
                .body(body.to_string()),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_key_licences_only_for_entitled_viewers() {
    let b = BrokerSetup::with_env(&[("VODKMS_BODY_TIMEOUT_SECS", "2")]).await;
    let admin = b.kms.admin.clone();
    let (key_a, blob_a) = b.data_key("film-a").await;
    let (key_b, blob_b) = b.data_key("film-b").await;
    let (kid_a, kid_b) = (kid_hex(1), kid_hex(2));

    // The transcoder (a generate client) registers; a decrypt client may not.
    let r = register(&b, &b.kms.generator, "film-a", &kid_a, &blob_a).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["Kid"], kid_a.as_str());
    // The UUID form of a KID is read too.
    let uuid_form = format!(
        "{}-{}-{}-{}-{}",
        &kid_b[..8],
        &kid_b[8..12],
        &kid_b[12..16],
        &kid_b[16..20],
        &kid_b[20..]
    );
    assert_eq!(
        register(&b, &admin, "film-b", &uuid_form, &blob_b)
            .await
            .status,
        201
    );
    // The same again is fine; the KID for another video is not.
    assert_eq!(
        register(&b, &b.kms.generator, "film-a", &kid_a, &blob_a)
            .await
            .status,
        201
    );
    register(&b, &b.kms.generator, "film-b", &kid_a, &blob_b)
        .await
        .assert_error(409, "KidTaken");
    register(&b, &b.kms.decryptor, "film-a", &kid_hex(3), &blob_a)
        .await
        .assert_error(403, "AccessDenied");
    register(&b, &b.kms.generator, "film-a", "not-a-kid", &blob_a)
        .await
        .assert_error(400, "InvalidParameter");
    register(&b, &b.kms.generator, "film-a", &kid_hex(4), "garbage!")
        .await
        .assert_error(400, "InvalidCiphertext");
    // Admins read the registry; nobody reads keys from it.
    let listed = b.api.get("/v1/content-keys?VideoId=film-a", &admin).await;
    let keys = listed.ok()["ContentKeys"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["CiphertextBlob"], blob_a.as_str());
    // A generate client lists them too (to rewrap them); EDKs are not
    // secret. A decrypt client may not.
    let listed = b.api.get("/v1/content-keys", &b.kms.generator).await;
    assert_eq!(listed.ok()["ContentKeys"].as_array().unwrap().len(), 2);
    b.api
        .get("/v1/content-keys", &b.kms.decryptor)
        .await
        .assert_error(403, "AccessDenied");

    // The same KID and video with another EDK: accepted only when it is
    // the same key re-sealed (a rewrap), which then replaces the old EDK.
    let other_key_same_video = b.data_key("film-a").await.1;
    register(
        &b,
        &b.kms.generator,
        "film-a",
        &kid_a,
        &other_key_same_video,
    )
    .await
    .assert_error(409, "KidTaken");
    let resealed = b
        .kms
        .api
        .post(
            "/v1/re-encrypt",
            &b.kms.generator,
            json!({ "CiphertextBlob": blob_a, "SourceEncryptionContext": { "video_id": "film-a" } }),
        )
        .await
        .ok()["CiphertextBlob"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(resealed, blob_a);
    assert_eq!(
        register(&b, &b.kms.generator, "film-a", &kid_a, &resealed)
            .await
            .status,
        201
    );
    let listed = b.api.get("/v1/content-keys?VideoId=film-a", &admin).await;
    assert_eq!(
        listed.ok()["ContentKeys"][0]["CiphertextBlob"],
        resealed.as_str()
    );

    // An entitled viewer: the W3C answer, with the data key.
    let token_a = b.token("vic", &["film-a"]).await;
    let r = licence(&b, &[&kid_a], Some(&token_a)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["type"], "temporary");
    let jwk = &r.body["keys"][0];
    assert_eq!(jwk["kty"], "oct");
    assert_eq!(jwk["kid"], b64url(&hex::decode(&kid_a).unwrap()));
    assert_eq!(jwk["k"], b64url(&key_a));
    assert_eq!(r.headers["cache-control"], "private, no-store");
    // Both keys for a viewer of both; the raw bytes by KID too.
    let token_ab = b.token("val", &["film-a", "film-b"]).await;
    let r = licence(&b, &[&kid_a, &kid_b], Some(&token_ab)).await;
    let got: Vec<&Value> = r.ok()["keys"].as_array().unwrap().iter().collect();
    assert_eq!(got[1]["k"], b64url(&key_b));
    let (status, _, body) = b
        .fetch(
            &format!("/v1/clearkey/key?kid={kid_b}&token={token_ab}"),
            None,
            None,
        )
        .await;
    assert_eq!((status, body), (200, key_b.clone()));
    // The token in the Authorization header works as for keys.
    let r = b
        .api
        .raw(
            b.api
                .request(
                    reqwest::Method::POST,
                    "/v1/clearkey/license",
                    Some(&token_a),
                )
                .header("content-type", "application/octet-stream")
                .body(json!({ "kids": [b64url(&hex::decode(&kid_a).unwrap())] }).to_string()),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    // Refusals, each with its code.
    licence(&b, &[&kid_a], None)
        .await
        .assert_error(401, "MissingToken");
    licence(&b, &[&kid_b], Some(&token_a))
        .await
        .assert_error(403, "NotEntitled");
    // Partly entitled: refused whole.
    licence(&b, &[&kid_a, &kid_b], Some(&token_a))
        .await
        .assert_error(403, "NotEntitled");
    licence(&b, &[&kid_hex(9)], Some(&token_a))
        .await
        .assert_error(404, "UnknownKid");
    licence(&b, &[], Some(&token_a))
        .await
        .assert_error(400, "InvalidParameter");
    let r = b
        .api
        .raw(
            b.api
                .request(
                    reqwest::Method::POST,
                    &format!("/v1/clearkey/license?token={token_a}"),
                    None,
                )
                .body("not json"),
        )
        .await;
    r.assert_error(400, "InvalidParameter");
    // Authenticate before validating: junk without a token is a 401.
    let r = b
        .api
        .raw(
            b.api
                .request(reqwest::Method::POST, "/v1/clearkey/license", None)
                .body("not json"),
        )
        .await;
    r.assert_error(401, "MissingToken");
    // A body that stalls too (401, then a JSON 400 once the token is good),
    // after this broker's 2 s body timeout.
    for (token, expected) in [
        (None, "HTTP/1.1 401"),
        (Some(token_a.as_str()), "HTTP/1.1 400"),
    ] {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let path = match token {
            Some(t) => format!("/v1/clearkey/license?token={t}"),
            None => "/v1/clearkey/license".to_owned(),
        };
        let mut c = tokio::net::TcpStream::connect(("127.0.0.1", b.broker.port))
            .await
            .unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{{\"kids\":"
        );
        c.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            c.read_to_end(&mut answer),
        )
        .await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with(expected), "{answer}");
        assert!(answer.contains("\"Code\":"), "a JSON refusal: {answer}");
    }
    let (status, _, _) = b.fetch("/v1/clearkey/key?kid=zz", None, None).await;
    assert_eq!(status, 401);
    // A revoked token.
    let issued = b.issue("rex", &["film-a"], 600).await;
    let r = b
        .api
        .post(
            "/v1/revocations",
            &admin,
            json!({ "Type": "Token", "Id": issued["TokenId"] }),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    common::eventually(5, "the revoked token is refused", || async {
        licence(&b, &[&kid_a], issued["Token"].as_str())
            .await
            .status
            == 401
    })
    .await;
    licence(&b, &[&kid_a], issued["Token"].as_str())
        .await
        .assert_error(401, "TokenRevoked");

    // CORS: the preflight and the answer, as for keys.
    let resp = reqwest::Client::new()
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/v1/clearkey/license", b.broker.url),
        )
        .header("origin", ORIGIN)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(resp.headers()["access-control-allow-origin"], ORIGIN);
    assert!(resp.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("POST"));

    // Audited: releases with their outcomes, registrations with their KIDs.
    b.api
        .audit_until(&admin, "Operation=ReleaseLicence&Limit=100", |rs| {
            [
                "Success",
                "NotEntitled",
                "MissingToken",
                "UnknownKid",
                "TokenRevoked",
            ]
            .iter()
            .all(|o| rs.iter().any(|r| r["Outcome"] == *o))
        })
        .await;
    b.api
        .audit_until(&admin, "Operation=RegisterContentKey&Limit=100", |rs| {
            rs.iter().any(|r| r["Outcome"] == "KidTaken")
                && rs
                    .iter()
                    .any(|r| r["Outcome"] == "Success" && r["VideoId"] == "film-a")
        })
        .await;

    // Deleting a video's content keys ends its licences.
    let r = b
        .api
        .delete("/v1/content-keys?VideoId=film-a", &admin)
        .await;
    assert_eq!(r.ok()["Deleted"], 1);
    licence(&b, &[&kid_a], Some(&token_a))
        .await
        .assert_error(404, "UnknownKid");
}
