//! Who may have a key: revocation (at once, across processes, even from the
//! cache), viewer accounts and sign-in, API client roles, the audit trail,
//! long playback, and a KMS outage.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::brokers::*;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_take_effect_at_once_even_from_the_cache() {
    let b = BrokerSetup::new().await;
    // A second broker on the same database hears of revocations by notification.
    let other = BrokerSetup::start_broker(&b.kms, &b.secret_b64, &[]).await;
    let (_, edk) = b.data_key("film").await;
    let issued = b.issue("alice", &["film"], 600).await;
    let token = issued["Token"].as_str().unwrap().to_owned();
    let query = format!("vid=film&Ciphertext={}&token={}", q(&edk), q(&token));
    let other_status = |query: String| {
        let api = Api::new(&other.url);
        async move {
            fetch_from(&api, &format!("/v1/hls/key?{query}"), None, None)
                .await
                .0
        }
    };
    // Warm both caches.
    assert_eq!(b.key_status(&query).await.0, 200);
    assert_eq!(other_status(query.clone()).await, 200);

    // A whole video: refused at once here, from the cache.
    let admin = &b.kms.admin;
    let r = b
        .api
        .post(
            "/v1/revocations",
            admin,
            json!({ "Type": "Video", "Id": "film" }),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["ExpiresAt"], Value::Null);
    assert_eq!(b.key_status(&query).await, (403, "VideoRevoked".into()));
    eventually(10, "the other broker refuses the video", || {
        let f = other_status(query.clone());
        async move { f.await == 403 }
    })
    .await;
    let listed = b.api.get("/v1/revocations", admin).await;
    assert!(listed.ok()["Revocations"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["Type"] == "Video" && r["Id"] == "film"));
    let r = b
        .api
        .delete("/v1/revocations?Type=Video&Id=film", admin)
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert_eq!(b.key_status(&query).await.0, 200);
    eventually(10, "the other broker releases again", || {
        let f = other_status(query.clone());
        async move { f.await == 200 }
    })
    .await;
    b.api
        .delete("/v1/revocations?Type=Video&Id=film", admin)
        .await
        .assert_error(404, "RevocationNotFound");

    // One token, by its id: the issuer (app backend) may revoke too.
    let r = b
        .api
        .post(
            "/v1/revocations",
            &b.issuer,
            json!({ "Type": "Token", "Id": issued["TokenId"] }),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(b.key_status(&query).await, (401, "TokenRevoked".into()));
    eventually(10, "the other broker refuses the token", || {
        let f = other_status(query.clone());
        async move { f.await == 401 }
    })
    .await;

    // A viewer: every token so far, but not the ones issued after.
    let before = b.token("bob", &["film"]).await;
    let bob_q = |t: &str| format!("vid=film&Ciphertext={}&token={}", q(&edk), q(t));
    assert_eq!(b.key_status(&bob_q(&before)).await.0, 200);
    let r = b
        .api
        .post(
            "/v1/revocations",
            admin,
            json!({ "Type": "Viewer", "Id": "bob" }),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(
        b.key_status(&bob_q(&before)).await,
        (401, "TokenRevoked".into())
    );
    let after = b.token("bob", &["film"]).await;
    assert_eq!(b.key_status(&bob_q(&after)).await.0, 200);

    // Bad revocation requests.
    b.api
        .post(
            "/v1/revocations",
            admin,
            json!({ "Type": "Planet", "Id": "x" }),
        )
        .await
        .assert_error(400, "InvalidParameter");
    b.api
        .post(
            "/v1/revocations",
            admin,
            json!({ "Type": "Video", "Id": "" }),
        )
        .await
        .assert_error(400, "InvalidParameter");
    b.api
        .post(
            "/v1/revocations",
            &b.kms.decryptor,
            json!({ "Type": "Video", "Id": "x" }),
        )
        .await
        .assert_error(403, "AccessDenied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_accounts_sign_in_and_roles() {
    let b = BrokerSetup::new().await;
    let admin = &b.kms.admin;
    let (_, edk_a) = b.data_key("A").await;
    let (_, edk_b) = b.data_key("B").await;
    let create = json!({ "Username": "vera", "Password": "correct horse", "Entitlements": ["A"] });

    // Roles: only an unscoped admin manages viewers; only an issuer mints tokens.
    b.api
        .raw(
            b.api
                .request(reqwest::Method::POST, "/v1/viewers", None)
                .json(&create),
        )
        .await
        .assert_error(401, "Unauthenticated");
    b.api
        .post("/v1/viewers", "vkms_not-a-real-token", create.clone())
        .await
        .assert_error(401, "Unauthenticated");
    for token in [&b.issuer, &b.kms.decryptor, &b.kms.generator] {
        b.api
            .post("/v1/viewers", token, create.clone())
            .await
            .assert_error(403, "AccessDenied");
    }
    b.api
        .post(
            "/v1/tokens",
            admin,
            json!({ "Viewer": "x", "VideoIds": ["A"] }),
        )
        .await
        .assert_error(403, "AccessDenied");
    for (body, what) in [
        (
            json!({ "Username": "bad name", "Password": "correct horse" }),
            "space in name",
        ),
        (
            json!({ "Username": "v", "Password": "short" }),
            "short password",
        ),
        (
            json!({ "Username": "v", "Password": "correct horse", "Entitlements": [""] }),
            "empty id",
        ),
        (
            json!({ "Username": "v", "Password": "correct horse", "Extra": 1 }),
            "unknown field",
        ),
    ] {
        let r = b.api.post("/v1/viewers", admin, body).await;
        assert_eq!(r.status, 400, "{what}: {:?}", r.body);
    }
    let r = b.api.post("/v1/viewers", admin, create.clone()).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert!(r.body.get("PasswordHash").is_none());
    b.api
        .post("/v1/viewers", admin, create.clone())
        .await
        .assert_error(409, "ViewerExists");

    // Sign in: token in the body and an HttpOnly cookie.
    let login = |user: &str, pass: &str| {
        b.api
            .request(reqwest::Method::POST, "/v1/login", None)
            .json(&json!({ "Username": user, "Password": pass }))
    };
    let ok = b.api.raw(login("vera", "correct horse")).await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    let token = ok.body["Token"].as_str().unwrap().to_owned();
    let cookie = ok.headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.starts_with(&format!("vodkms_token={token};")),
        "{cookie}"
    );
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=3600"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    let key_a = format!("/v1/hls/key?vid=A&Ciphertext={}", q(&edk_a));
    let key_b = format!("/v1/hls/key?vid=B&Ciphertext={}", q(&edk_b));
    assert_eq!(b.fetch(&key_a, None, Some(&token)).await.0, 200);
    assert_eq!(b.fetch(&key_b, None, Some(&token)).await.0, 403);

    // Unknown user and wrong password: the same answer.
    let wrong = b.api.raw(login("vera", "wrong horse!")).await;
    let unknown = b.api.raw(login("nobody", "correct horse")).await;
    wrong.assert_error(401, "InvalidCredentials");
    unknown.assert_error(401, "InvalidCredentials");
    assert_eq!(wrong.body["Message"], unknown.body["Message"]);
    assert!(!wrong.headers.contains_key("set-cookie"));

    // Entitlements grow: old token unchanged, next sign-in carries B.
    let r = b
        .api
        .raw(
            b.api
                .request(reqwest::Method::PATCH, "/v1/viewers/vera", Some(admin))
                .json(&json!({ "Entitlements": ["A", "B"] })),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(b.fetch(&key_a, None, Some(&token)).await.0, 200);
    let second = b.api.raw(login("vera", "correct horse")).await.body["Token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(b.fetch(&key_b, None, Some(&second)).await.0, 200);

    // Disabled: tokens end at once and sign-in fails like a wrong password.
    let r = b
        .api
        .raw(
            b.api
                .request(reqwest::Method::PATCH, "/v1/viewers/vera", Some(admin))
                .json(&json!({ "Enabled": false })),
        )
        .await;
    assert_eq!(r.status, 200);
    let (status, _, body) = b.fetch(&key_a, None, Some(&second)).await;
    assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));
    b.api
        .raw(login("vera", "correct horse"))
        .await
        .assert_error(401, "InvalidCredentials");

    // Sign-out revokes the token it carried.
    let r = b
        .api
        .raw(
            b.api
                .request(reqwest::Method::PATCH, "/v1/viewers/vera", Some(admin))
                .json(&json!({ "Enabled": true })),
        )
        .await;
    assert_eq!(r.status, 200);
    let third = b.api.raw(login("vera", "correct horse")).await.body["Token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(b.fetch(&key_a, None, Some(&third)).await.0, 200);
    let out = b
        .api
        .raw(
            b.api
                .request(reqwest::Method::POST, "/v1/logout", None)
                .header("Cookie", format!("vodkms_token={third}")),
        )
        .await;
    assert_eq!(out.status, 204);
    assert!(out.headers["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    assert_eq!(b.fetch(&key_a, None, Some(&third)).await.0, 401);

    // Deleted: gone, tokens dead.
    let fourth = b.api.raw(login("vera", "correct horse")).await.body["Token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(b.api.delete("/v1/viewers/vera", admin).await.status, 204);
    b.api
        .get("/v1/viewers/vera", admin)
        .await
        .assert_error(404, "ViewerNotFound");
    assert_eq!(b.fetch(&key_a, None, Some(&fourth)).await.0, 401);

    // Throttling: failed sign-ins to one account answer 429 with Retry-After.
    let r = b
        .api
        .post(
            "/v1/viewers",
            admin,
            json!({ "Username": "tess", "Password": "correct horse" }),
        )
        .await;
    assert_eq!(r.status, 201);
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(b.api.raw(login("tess", "guess-guess")).await);
    }
    let throttled = statuses.iter().find(|r| r.status == 429).expect("no 429");
    throttled.assert_error(429, "TooManyRequests");
    assert!(throttled.headers.contains_key("retry-after"));
    // Even the right password waits now: no guessing around the limit.
    assert_eq!(b.api.raw(login("tess", "correct horse")).await.status, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_issuing_rules() {
    let b = BrokerSetup::new().await;
    let (key, edk) = b.data_key("A").await;
    let issued = b.issue("app-user-42", &["A"], 120).await;
    let expires: chrono::DateTime<chrono::Utc> =
        issued["ExpiresAt"].as_str().unwrap().parse().unwrap();
    let left = (expires - chrono::Utc::now()).num_seconds();
    assert!((100..=121).contains(&left), "{left}");
    let (status, _, body) = b
        .fetch(
            &format!("/v1/hls/key?vid=A&Ciphertext={}", q(&edk)),
            Some(issued["Token"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!((status, body), (200, key));
    for (body, what) in [
        (json!({ "Viewer": "", "VideoIds": ["A"] }), "empty viewer"),
        (json!({ "Viewer": "u", "VideoIds": [] }), "no videos"),
        (
            json!({ "Viewer": "u", "VideoIds": ["A"], "TtlSeconds": 0 }),
            "zero ttl",
        ),
        (
            json!({ "Viewer": "u", "VideoIds": ["A"], "TtlSeconds": 86_401 }),
            "too long",
        ),
        (json!({ "Viewer": "u", "VideoIds": "A" }), "not a list"),
    ] {
        let r = b.api.post("/v1/tokens", &b.issuer, body).await;
        assert_eq!(r.status, 400, "{what}: {:?}", r.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_release_and_refusal_is_audited() {
    let b = BrokerSetup::new().await;
    let (_, edk) = b.data_key("A").await;
    let issued = b.issue("alice", &["A"], 600).await;
    let token = issued["Token"].as_str().unwrap();
    let ok = format!("vid=A&Ciphertext={}&token={}", q(&edk), q(token));
    for _ in 0..3 {
        assert_eq!(b.key_status(&ok).await.0, 200);
    }
    assert_eq!(
        b.key_status(&format!("vid=B&Ciphertext={}&token={}", q(&edk), q(token)))
            .await,
        (403, "NotEntitled".into())
    );
    let records = b
        .api
        .audit_until(&b.kms.admin, "Operation=ReleaseKey&Viewer=alice", |rs| {
            let released: u64 = rs
                .iter()
                .filter(|r| r["Outcome"] == "Success")
                .map(|r| r["Detail"]["Count"].as_u64().unwrap_or(1))
                .sum();
            released == 3 && rs.iter().any(|r| r["Outcome"] == "NotEntitled")
        })
        .await;
    let success = records.iter().find(|r| r["Outcome"] == "Success").unwrap();
    assert_eq!(success["VideoId"], "A");
    assert_eq!(success["TokenId"], issued["TokenId"]);
    assert_eq!(success["Address"], "127.0.0.1");
    assert_eq!(success["KeyId"].as_str().unwrap(), b.kms.key_id);
    assert_eq!(success["KeyVersionId"], 1);
    let refused = records
        .iter()
        .find(|r| r["Outcome"] == "NotEntitled")
        .unwrap();
    assert_eq!(refused["VideoId"], "B");
    // Token issuing is audited with the issuer's client id.
    let issued_records = b
        .api
        .audit_until(&b.kms.admin, "Operation=IssueToken", |rs| !rs.is_empty())
        .await;
    assert!(issued_records[0]["ClientId"].is_string());
    // Only an admin reads the trail.
    b.api
        .get("/v1/audit", &b.issuer)
        .await
        .assert_error(403, "AccessDenied");
    b.api
        .get("/v1/audit?Operation=Nope", &b.kms.admin)
        .await
        .assert_error(400, "InvalidParameter");
}

/// A playback session carries an expired token only until `iat` plus the
/// session's maximum age, however recently keys were fetched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_playback_session_ends_at_its_maximum_age() {
    let env = [
        ("VODKMS_TOKEN_LEEWAY_SECS", "0"),
        ("VODKMS_SESSION_MAX_SECS", "6"),
    ];
    let b = BrokerSetup::with_env(&env).await;
    let (key, edk) = b.data_key("film").await;
    let issued = std::time::Instant::now();
    let token = b.issue("alice", &["film"], 2).await["Token"]
        .as_str()
        .unwrap()
        .to_owned();
    let query = format!("vid=film&Ciphertext={}&token={}", q(&edk), q(&token));
    assert_eq!(b.key_status(&query).await.0, 200);
    // Expired (exp = iat + 2), inside the maximum age: the session carries it
    // (a second and a half of slack for a loaded machine).
    tokio::time::sleep(Duration::from_millis(3500).saturating_sub(issued.elapsed())).await;
    let (status, _, body) = b.fetch(&format!("/v1/hls/key?{query}"), None, None).await;
    assert_eq!((status, body), (200, key));
    // Past iat + 6 s: refused, though the session was used a moment ago.
    tokio::time::sleep(Duration::from_millis(8500).saturating_sub(issued.elapsed())).await;
    assert_eq!(b.key_status(&query).await, (401, "TokenExpired".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_playback_outlives_the_token_in_the_playlist() {
    let env = [("VODKMS_TOKEN_LEEWAY_SECS", "0")];
    let b = BrokerSetup::with_env(&env).await;
    let (key, edk) = b.data_key("film").await;
    let playing = b.issue("alice", &["film"], 2).await["Token"]
        .as_str()
        .unwrap()
        .to_owned();
    let idle = b.issue("alice", &["film"], 2).await["Token"]
        .as_str()
        .unwrap()
        .to_owned();
    let query = |t: &str| format!("vid=film&Ciphertext={}&token={}", q(&edk), q(t));
    // Playback starts while the token is valid...
    assert_eq!(b.key_status(&query(&playing)).await.0, 200);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    // ...and goes on past `exp`; a token never used is simply expired.
    let (status, headers, body) = b
        .fetch(&format!("/v1/hls/key?{}", query(&playing)), None, None)
        .await;
    assert_eq!((status, body), (200, key.clone()));
    assert_eq!(headers["cache-control"], "private, no-cache");
    assert_eq!(
        b.key_status(&query(&idle)).await,
        (401, "TokenExpired".into())
    );
    // Another broker process finds the session in the database.
    let other = BrokerSetup::start_broker(&b.kms, &b.secret_b64, &env).await;
    let api = Api::new(&other.url);
    eventually(10, "the other broker continues the session", || {
        let api = api.clone();
        let path = format!("/v1/hls/key?{}", query(&playing));
        async move { fetch_from(&api, &path, None, None).await.0 == 200 }
    })
    .await;
    // Revoking the viewer ends the session too.
    let r = b
        .api
        .post(
            "/v1/revocations",
            &b.kms.admin,
            json!({ "Type": "Viewer", "Id": "alice" }),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(
        b.key_status(&query(&playing)).await,
        (401, "TokenRevoked".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_outage_answers_503_then_recovers_without_a_restart() {
    // No key cache, so every request needs the KMS.
    let b = BrokerSetup::with_env(&[("VODKMS_KEY_CACHE_TTL_SECS", "0")]).await;
    let (key, edk) = b.data_key("A").await;
    let token = b.token("alice", &["A"]).await;
    let path = format!(
        "/v1/hls/key?vid=A&Ciphertext={}&token={}",
        q(&edk),
        q(&token)
    );
    assert_eq!(b.fetch(&path, None, None).await.0, 200);

    let BrokerSetup { kms, api, .. } = b;
    let Setup {
        db,
        root_key,
        kms: kms_process,
        ..
    } = kms;
    let port = kms_process.port;
    drop(kms_process); // killed
    let (status, headers, body) = fetch_from(&api, &path, None, None).await;
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["retry-after"], "5");
    assert_eq!(headers["access-control-allow-origin"], ORIGIN);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["Code"], "KmsUnavailable");

    // The KMS comes back on its address: the same broker serves again.
    let _kms = ServerProcess::try_start_kms_on(port, &db, &root_key, &[])
        .await
        .unwrap();
    let (status, _, body) = fetch_from(&api, &path, None, None).await;
    assert_eq!((status, body), (200, key));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_refuses_to_start_with_a_wrong_kms_token() {
    let s = Setup::new().await;
    let secret = "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=";
    for (token, expected) in [
        (s.generator.as_str(), "needs one of role `decrypt`"),
        ("vkms_unknown", "does not know VODKMS_KMS_TOKEN"),
    ] {
        let env = [
            ("DATABASE_URL", s.db.as_str()),
            ("VODKMS_KMS_TOKEN", token),
            ("VODKMS_TOKEN_SECRET", secret),
            ("VODKMS_KMS_URL", s.kms.url.as_str()),
        ];
        let log =
            match ServerProcess::spawn(&["broker", "serve"], free_port(), &env, "broker").await {
                Ok(_) => panic!("started with {expected}"),
                Err(log) => log,
            };
        assert!(log.contains(expected), "{log}");
    }
    // A short HS256 secret is refused too, naming the variable.
    let env = [
        ("DATABASE_URL", s.db.as_str()),
        ("VODKMS_KMS_TOKEN", s.decryptor.as_str()),
        ("VODKMS_TOKEN_SECRET", "c2hvcnQ="),
        ("VODKMS_KMS_URL", s.kms.url.as_str()),
    ];
    let Err(log) = ServerProcess::spawn(&["broker", "serve"], free_port(), &env, "broker").await
    else {
        panic!("started with a short secret");
    };
    assert!(log.contains("VODKMS_TOKEN_SECRET"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_writes_buffered_audit_records_before_exit() {
    // Batches would only be written every 10 minutes: shutdown must write them.
    let b = BrokerSetup::with_env(&[("VODKMS_AUDIT_FLUSH_MS", "600000")]).await;
    let (_, edk) = b.data_key("A").await;
    let token = b.token("alice", &["A"]).await;
    let query = format!("vid=A&Ciphertext={}&token={}", q(&edk), q(&token));
    assert_eq!(b.key_status(&query).await.0, 200);
    let BrokerSetup {
        kms,
        broker,
        secret_b64,
        ..
    } = b;
    assert!(broker.terminate().success());
    let next = BrokerSetup::start_broker(&kms, &secret_b64, &[]).await;
    let records = Api::new(&next.url)
        .audit_until(&kms.admin, "Operation=ReleaseKey", |rs| !rs.is_empty())
        .await;
    assert_eq!(records[0]["Viewer"], "alice");
    assert_eq!(records[0]["Outcome"], "Success");
}
