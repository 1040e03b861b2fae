//! Key delivery through a real broker, KMS and PostgreSQL: every token
//! transport, the exact response players need, and every refusal.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::brokers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_token_transport_gets_the_exact_key() {
    let b = BrokerSetup::new().await;
    let (key, edk) = b.data_key("film-1").await;
    let token = b.token("alice", &["film-1"]).await;
    let path = format!("/v1/hls/key?vid=film-1&Ciphertext={}", q(&edk));

    let via_query = b
        .fetch(&format!("{path}&MtsHlsUriToken={}", q(&token)), None, None)
        .await;
    let via_token_param = b
        .fetch(&format!("{path}&token={}", q(&token)), None, None)
        .await;
    let via_bearer = b.fetch(&path, Some(&token), None).await;
    let via_cookie = b.fetch(&path, None, Some(&token)).await;
    // Alibaba's contract: `/?Ciphertext=EDK&MtsHlsUriToken=T`, no vid (the token names one video).
    let alibaba = b
        .fetch(
            &format!("/?Ciphertext={}&MtsHlsUriToken={}", q(&edk), q(&token)),
            None,
            None,
        )
        .await;
    for (what, (status, headers, body)) in [
        ("query MtsHlsUriToken", via_query),
        ("query token", via_token_param),
        ("bearer", via_bearer),
        ("cookie", via_cookie),
        ("alibaba", alibaba),
    ] {
        assert_eq!(status, 200, "{what}: {}", String::from_utf8_lossy(&body));
        assert_eq!(body, key, "{what}");
        assert_eq!(
            headers["content-type"], "application/octet-stream",
            "{what}"
        );
        assert_eq!(headers["content-length"], "16", "{what}");
        let cache = headers["cache-control"].to_str().unwrap();
        assert!(cache.starts_with("private, max-age="), "{what}: {cache}");
        let max_age: u64 = cache["private, max-age=".len()..].parse().unwrap();
        assert!((1..=60).contains(&max_age), "{what}: {cache}");
        assert_eq!(headers["access-control-allow-origin"], ORIGIN, "{what}");
        assert_eq!(
            headers["access-control-allow-credentials"], "true",
            "{what}"
        );
        assert!(
            headers.get_all("vary").iter().any(|v| v == "Origin"),
            "{what}"
        );
    }

    // Standard base64 of the EDK (what some tools write) works as well.
    let std_b64 = {
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&edk)
            .unwrap();
        base64::engine::general_purpose::STANDARD.encode(raw)
    };
    let (status, _, body) = b
        .fetch(
            &format!("/v1/hls/key?vid=film-1&Ciphertext={}", q(&std_b64)),
            Some(&token),
            None,
        )
        .await;
    assert_eq!((status, body), (200, key.clone()));

    // An invalid query token does not hide a valid cookie behind it.
    let (status, _, body) = b
        .fetch(&format!("{path}&token=not-a-jwt"), None, Some(&token))
        .await;
    assert_eq!((status, body), (200, key));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_has_its_status_code_and_cors_headers() {
    let b = BrokerSetup::new().await;
    let (_, edk_a) = b.data_key("A").await;
    let (_, edk_b) = b.data_key("B").await;
    let token_a = b.token("alice", &["A"]).await;
    let token_all = b.token("root", &["*"]).await;
    let token_ab = b.token("bob", &["A", "B"]).await;
    let t = now();
    let expired = b.sign(&claims("alice", &["A"], t - 7200, t - 3600));
    let mut other_aud = claims("alice", &["A"], t, t + 600);
    other_aud.aud = broker::token::Audience::One("someone-else".into());
    let other_aud = b.sign(&other_aud);
    let forged = {
        // Signed with another secret.
        let keys = broker::token::TokenKeys::new(
            Some(kms::crypto::SecretBytes::new(vec![1; 32])),
            None,
            0,
            86_400,
        )
        .unwrap();
        keys.sign(&claims("alice", &["*"], t, t + 600)).unwrap()
    };
    let unknown_key = {
        // A well-formed blob naming a key that does not exist.
        use base64::Engine as _;
        let mut raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&edk_a)
            .unwrap();
        raw[1..17].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    };
    let k = |vid: &str, edk: &str, tok: &str| {
        format!(
            "vid={}&Ciphertext={}&MtsHlsUriToken={}",
            q(vid),
            q(edk),
            q(tok)
        )
    };
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "no token",
            format!("vid=A&Ciphertext={}", q(&edk_a)),
            401,
            "MissingToken",
        ),
        ("junk token", k("A", &edk_a, "junk"), 401, "InvalidToken"),
        ("other secret", k("A", &edk_a, &forged), 401, "InvalidToken"),
        ("expired", k("A", &edk_a, &expired), 401, "TokenExpired"),
        (
            "wrong audience",
            k("A", &edk_a, &other_aud),
            401,
            "InvalidToken",
        ),
        // Token for A, vid=A, but B's EDK: the KMS refuses the context.
        (
            "B's EDK under vid=A",
            k("A", &edk_b, &token_a),
            403,
            "KeyNotForVideo",
        ),
        // A token for every video cannot unlock B's key by claiming vid=A either.
        (
            "forged vid, wildcard token",
            k("A", &edk_b, &token_all),
            403,
            "KeyNotForVideo",
        ),
        (
            "vid outside the token",
            k("B", &edk_b, &token_a),
            403,
            "NotEntitled",
        ),
        (
            "unknown key",
            k("A", &unknown_key, &token_a),
            404,
            "KeyNotFound",
        ),
        (
            "no Ciphertext",
            format!("vid=A&token={}", q(&token_a)),
            400,
            "InvalidParameter",
        ),
        (
            "junk Ciphertext",
            k("A", "%%%", &token_a),
            400,
            "InvalidCiphertext",
        ),
        (
            "truncated Ciphertext",
            k("A", &edk_a[..40], &token_a),
            400,
            "InvalidCiphertext",
        ),
        (
            "vid with a space",
            k("A B", &edk_a, &token_a),
            400,
            "InvalidParameter",
        ),
        (
            "no vid, two videos",
            format!("Ciphertext={}&token={}", q(&edk_a), q(&token_ab)),
            400,
            "MissingVideoId",
        ),
    ];
    for (what, query, status, code) in cases {
        let (s, headers, body) = b.fetch(&format!("/v1/hls/key?{query}"), None, None).await;
        let v: serde_json::Value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| panic!("{what}: non-JSON {}", String::from_utf8_lossy(&body)));
        assert_eq!(
            (s, v["Code"].as_str().unwrap()),
            (status, code),
            "{what}: {v}"
        );
        assert!(
            v["Message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}"
        );
        assert_eq!(
            v["RequestId"].as_str().unwrap(),
            headers["x-request-id"].to_str().unwrap(),
            "{what}"
        );
        // CORS on errors too, or the player sees status 0.
        assert_eq!(headers["access-control-allow-origin"], ORIGIN, "{what}");
        assert_eq!(headers["cache-control"], "no-store", "{what}");
        if status == 401 {
            assert!(headers.contains_key("www-authenticate"), "{what}");
        }
    }

    // Preflight: 204 allowing GET and the Authorization header.
    let pre = b
        .api
        .raw_bytes(
            b.api
                .request(reqwest::Method::OPTIONS, "/v1/hls/key?vid=A", None)
                .header("Origin", ORIGIN)
                .header("Access-Control-Request-Method", "GET")
                .header("Access-Control-Request-Headers", "authorization"),
        )
        .await;
    assert_eq!(pre.0, 204);
    assert_eq!(pre.1["access-control-allow-origin"], ORIGIN);
    assert!(pre.1["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("GET"));
    assert!(pre.1["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("Authorization"));

    // An origin not on the list gets no CORS grant, on success or error.
    for query in [k("A", &edk_a, &token_a), "vid=A".to_owned()] {
        let (_, headers, _) = b
            .api
            .raw_bytes(
                b.api
                    .request(reqwest::Method::GET, &format!("/v1/hls/key?{query}"), None)
                    .header("Origin", "https://evil.example"),
            )
            .await;
        assert!(!headers.contains_key("access-control-allow-origin"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_429_with_retry_after() {
    let b =
        BrokerSetup::with_env(&[("VODKMS_TOKEN_RATE", "0.5"), ("VODKMS_TOKEN_BURST", "3")]).await;
    let (_, edk) = b.data_key("A").await;
    let token = b.token("alice", &["A"]).await;
    let query = format!("vid=A&Ciphertext={}&token={}", q(&edk), q(&token));
    for _ in 0..3 {
        assert_eq!(b.key_status(&query).await.0, 200);
    }
    let (status, headers, body) = b.fetch(&format!("/v1/hls/key?{query}"), None, None).await;
    assert_eq!(status, 429, "{}", String::from_utf8_lossy(&body));
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    assert_eq!(headers["access-control-allow-origin"], ORIGIN);
    // Another viewer's token is not held back by this one's limit.
    let other = b.token("bob", &["A"]).await;
    assert_eq!(
        b.key_status(&format!("vid=A&Ciphertext={}&token={}", q(&edk), q(&other)))
            .await
            .0,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eddsa_tokens_from_an_app_backend() {
    use ed25519_dalek::SigningKey;
    let signing = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let public = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(signing.verifying_key().to_bytes())
    };
    let b = BrokerSetup::with_env(&[("VODKMS_TOKEN_PUBLIC_KEY", &public)]).await;
    let (key, edk) = b.data_key("A").await;
    let t = now();
    let good = broker::token::sign_eddsa(&signing, &claims("carol", &["A"], t, t + 300));
    let (status, _, body) = b
        .fetch(
            &format!("/v1/hls/key?vid=A&Ciphertext={}", q(&edk)),
            Some(&good),
            None,
        )
        .await;
    assert_eq!((status, body), (200, key));
    // HS256 with the public key as the secret: the classic confusion attack.
    let confused = {
        let keys = broker::token::TokenKeys::new(
            Some(kms::crypto::SecretBytes::new(
                signing.verifying_key().to_bytes().to_vec(),
            )),
            None,
            0,
            86_400,
        )
        .unwrap();
        keys.sign(&claims("mallory", &["*"], t, t + 300)).unwrap()
    };
    let (status, code) = b
        .key_status(&format!(
            "vid=A&Ciphertext={}&token={}",
            q(&edk),
            q(&confused)
        ))
        .await;
    assert_eq!((status, code.as_str()), (401, "InvalidToken"));
    // The broker's own tokens keep working beside EdDSA ones.
    let own = b.token("dave", &["A"]).await;
    let (status, _) = b
        .key_status(&format!("vid=A&Ciphertext={}&token={}", q(&edk), q(&own)))
        .await;
    assert_eq!(status, 200);
}
