//! Regression tests for the security review (issue 11): each test performs
//! the attack a finding describes against real processes and sees it refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine as _;
use common::brokers::*;
use common::*;
use serde_json::{json, Value};

/// M2: a `generate` client (a transcoder) may not move a video's EDK to
/// another video, which would let one subscription decrypt every video.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m2_generate_client_cannot_rewrap_an_edk_to_another_video() {
    let b = BrokerSetup::new().await;
    let (key_a, edk_a) = b.data_key("film-a").await;
    let api = &b.kms.api;
    // The attack: re-encrypt film-a's public EDK to film-b's context.
    let moved = rewrap(&b, &edk_a, "film-a", "film-b").await;
    moved.assert_error(403, "AccessDenied");
    assert!(moved.body["Message"]
        .as_str()
        .unwrap()
        .contains("decrypt right"));
    // Not even through a wrong source context (the check comes first).
    rewrap(&b, &edk_a, "film-b", "film-a")
        .await
        .assert_error(403, "AccessDenied");

    // A viewer entitled only to film-b gets nothing from film-a's EDK.
    let token_b = b.token("mallory", &["film-b"]).await;
    let query = format!("vid=film-b&Ciphertext={}&token={}", q(&edk_a), q(&token_b));
    assert_eq!(b.key_status(&query).await, (403, "KeyNotForVideo".into()));

    // Rewrapping within the same context (e.g. onto a new key) still works.
    let same = rewrap(&b, &edk_a, "film-a", "film-a").await;
    let rewrapped = same.ok()["CiphertextBlob"].as_str().unwrap().to_owned();
    let plain = api.decrypt(&b.kms.decryptor, &rewrapped, "film-a").await;
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(plain.ok()["Plaintext"].as_str().unwrap())
            .unwrap(),
        key_a
    );
    // The refusal is audited.
    api.audit_until(&b.kms.admin, "Operation=ReEncrypt", |r| {
        r.iter().any(|r| r["Outcome"] == "AccessDenied")
    })
    .await;
}

/// `re-encrypt` of `edk` by the transcoder, from one video's context to another's.
async fn rewrap(b: &BrokerSetup, edk: &str, from: &str, to: &str) -> Reply {
    b.kms
        .api
        .post(
            "/v1/re-encrypt",
            &b.kms.generator,
            json!({
                "CiphertextBlob": edk,
                "SourceEncryptionContext": { "video_id": from },
                "DestinationEncryptionContext": { "video_id": to },
            }),
        )
        .await
}

/// M3: an issuer limited to one master key mints `VideoIds: ["*"]`; its
/// tokens release no key sealed under another master key, and it may revoke
/// only the tokens it issued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m3_scoped_issuer_power_stops_at_its_keys() {
    let b = BrokerSetup::new().await;
    let kms = &b.kms;
    let other_key = kms.api.create_key(&kms.admin, "alias/other").await;
    let (_, scoped) = kms
        .api
        .create_client(&kms.admin, "issuer", Some(vec![&kms.key_id]))
        .await;
    // A key under the issuer's master key, and one under another.
    let (_, edk_in) = b.data_key("film-in").await;
    let out = kms
        .api
        .generate(&kms.generator, &other_key, "film-out")
        .await;
    let edk_out = out.ok()["CiphertextBlob"].as_str().unwrap().to_owned();

    let mint = |issuer: String| {
        let api = b.api.clone();
        async move {
            let r = api
                .post(
                    "/v1/tokens",
                    &issuer,
                    json!({ "Viewer": "eve", "VideoIds": ["*"] }),
                )
                .await;
            assert_eq!(r.status, 201, "{:?}", r.body);
            r.body
        }
    };
    let issued = mint(scoped.clone()).await;
    let token = issued["Token"].as_str().unwrap();
    let key = |vid: &str, edk: &str| format!("vid={vid}&Ciphertext={}&token={}", q(edk), q(token));
    assert_eq!(b.key_status(&key("film-in", &edk_in)).await.0, 200);
    assert_eq!(
        b.key_status(&key("film-out", &edk_out)).await,
        (403, "KeyNotInScope".into())
    );
    // An unscoped issuer's token still reaches both.
    let wide = b.token("eve", &["*"]).await;
    let wide_q = format!("vid=film-out&Ciphertext={}&token={}", q(&edk_out), q(&wide));
    assert_eq!(b.key_status(&wide_q).await.0, 200);

    // Revocations: its own token, yes; another issuer's token, a viewer or a
    // whole video, no.
    let revoke = |who: &str, kind: &str, id: &str| {
        let api = b.api.clone();
        let body = json!({ "Type": kind, "Id": id });
        let who = who.to_owned();
        async move { api.post("/v1/revocations", &who, body).await }
    };
    let other_issued = mint(b.issuer.clone()).await;
    revoke(&scoped, "Token", other_issued["TokenId"].as_str().unwrap())
        .await
        .assert_error(403, "AccessDenied");
    revoke(&scoped, "Video", "film-out")
        .await
        .assert_error(403, "AccessDenied");
    revoke(&scoped, "Viewer", "eve")
        .await
        .assert_error(403, "AccessDenied");
    assert_eq!(b.key_status(&wide_q).await.0, 200, "nothing was revoked");
    let own = revoke(&scoped, "Token", issued["TokenId"].as_str().unwrap()).await;
    assert_eq!(own.status, 201, "{:?}", own.body);
    assert_eq!(
        b.key_status(&key("film-in", &edk_in)).await,
        (401, "TokenRevoked".into())
    );
    // The unscoped issuer may still take a video down.
    assert_eq!(revoke(&b.issuer, "Video", "film-out").await.status, 201);
}

/// L4: text variants of one EDK (padding, standard base64) share one cache
/// entry instead of each forcing a KMS decrypt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l4_edk_text_variants_share_one_cache_entry() {
    let b = BrokerSetup::new().await;
    let (_, edk) = b.data_key("film").await;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&edk)
        .unwrap();
    let variants = [
        edk.clone(),
        base64::engine::general_purpose::STANDARD.encode(&bytes),
        base64::engine::general_purpose::URL_SAFE.encode(&bytes),
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(&bytes),
    ];
    assert!(variants[1] != variants[0] && variants[2] != variants[0]);
    let token = b.token("alice", &["film"]).await;
    for v in &variants {
        let query = format!("vid=film&Ciphertext={}&token={}", q(v), q(&token));
        assert_eq!(b.key_status(&query).await.0, 200, "{v}");
    }
    let metrics = reqwest::get(format!("{}/metrics", b.broker.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last())
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(value("vodkms_broker_key_cache_misses_total"), 1);
    assert_eq!(value("vodkms_broker_key_cache_hits_total"), 3);
    // And the KMS saw exactly one Decrypt.
    let records: Vec<Value> = b
        .kms
        .api
        .audit_until(&b.kms.admin, "Operation=Decrypt", |r| !r.is_empty())
        .await;
    assert_eq!(records.len(), 1, "{records:#?}");
}

/// A broker behind a proxy on 127.0.0.1 that sets X-Forwarded-For.
async fn behind_proxy(extra: &[(&str, &str)]) -> BrokerSetup {
    let mut env = vec![
        ("VODKMS_CLIENT_IP_HEADER", "X-Forwarded-For"),
        ("VODKMS_TRUSTED_PROXIES", "127.0.0.1/32,::1"),
    ];
    env.extend_from_slice(extra);
    BrokerSetup::with_env(&env).await
}

async fn make_viewer(b: &BrokerSetup, name: &str, password: &str) {
    let r = b
        .api
        .post(
            "/v1/viewers",
            &b.kms.admin,
            json!({ "Username": name, "Password": password, "Entitlements": ["film"] }),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
}

/// `(status, value of the vodkms_device cookie set, if any)`.
async fn sign_in(
    b: &BrokerSetup,
    user: &str,
    password: &str,
    from: Option<&str>,
    device: Option<&str>,
) -> (u16, Option<String>) {
    let mut req = b
        .api
        .request(reqwest::Method::POST, "/v1/login", None)
        .json(&json!({ "Username": user, "Password": password }));
    if let Some(addr) = from {
        req = req.header("X-Forwarded-For", addr);
    }
    if let Some(d) = device {
        req = req.header("Cookie", format!("vodkms_device={d}"));
    }
    let r = b.api.raw(req).await;
    let device = r
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("vodkms_device="))
        .map(|c| c.split(';').next().unwrap().to_owned());
    (r.status, device)
}

/// M1: 60 parallel guesses from one address, the 60th right. The limit is
/// taken before the password is hashed, so only the first few run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m1_parallel_guesses_from_one_address_are_throttled_before_hashing() {
    let b = BrokerSetup::new().await;
    make_viewer(&b, "vera", "correct horse").await;
    let guesses = (0..60).map(|i| {
        let password = if i == 59 {
            "correct horse".to_owned()
        } else {
            format!("guess number {i}")
        };
        let b = &b;
        async move { sign_in(b, "vera", &password, None, None).await.0 }
    });
    let statuses = futures_util::future::join_all(guesses).await;
    let hashed = statuses.iter().filter(|s| **s != 429).count();
    assert!(
        statuses.iter().all(|s| [200, 401, 429].contains(s)),
        "{statuses:?}"
    );
    assert!(
        (1..=5).contains(&hashed),
        "{hashed} guesses ran: {statuses:?}"
    );
    // The audit has them all, refused ones included.
    b.api
        .audit_until(&b.kms.admin, "Operation=Login&Limit=100", |r| r.len() >= 60)
        .await;
}

/// M1 and M1b: a botnet (many forwarded addresses) exhausts the account's
/// limit for unknown browsers, but the owner's browser, which signed in
/// before, still gets in, from any address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m1_many_addresses_cannot_lock_the_owner_out() {
    let b = behind_proxy(&[]).await;
    make_viewer(&b, "vera", "correct horse").await;
    let (status, device) = sign_in(&b, "vera", "correct horse", Some("192.0.2.1"), None).await;
    assert_eq!(status, 200);
    let device = device.expect("a device cookie");

    let mut statuses = Vec::new();
    for wave in 0..3 {
        let guesses = (0..20).map(|i| {
            let addr = format!("198.51.100.{}", wave * 20 + i + 1);
            let b = &b;
            async move {
                sign_in(b, "vera", "not the password", Some(&addr), None)
                    .await
                    .0
            }
        });
        statuses.extend(futures_util::future::join_all(guesses).await);
    }
    assert!(
        statuses.contains(&401) && statuses.contains(&429),
        "{statuses:?}"
    );
    // Refill adds one slot every 5 s, so before each check the attack goes
    // on until it is refused again: the account's limit is empty right then.
    let mut fresh = 0;
    let mut exhaust = || {
        fresh += 1;
        let first = fresh * 100;
        let b = &b;
        async move {
            for n in first..first + 100 {
                let addr = format!("198.51.100.{}", n % 250 + 1);
                if sign_in(b, "vera", "not the password", Some(&addr), None)
                    .await
                    .0
                    == 429
                {
                    return;
                }
            }
            panic!("the account's limit never refused");
        }
    };
    // A new browser on a new address: refused, the account is under attack.
    exhaust().await;
    let (status, _) = sign_in(&b, "vera", "correct horse", Some("203.0.113.7"), None).await;
    assert_eq!(status, 429);
    // The owner's browser: in, even from another address.
    let (status, _) = sign_in(
        &b,
        "vera",
        "correct horse",
        Some("203.0.113.8"),
        Some(&device),
    )
    .await;
    assert_eq!(status, 200);
    // A forged or foreign device cookie is no better than none.
    let last = device.chars().last().unwrap();
    let forged = format!(
        "{}{}",
        &device[..device.len() - 1],
        if last == 'A' { 'B' } else { 'A' }
    );
    exhaust().await;
    let (status, _) = sign_in(
        &b,
        "vera",
        "correct horse",
        Some("203.0.113.9"),
        Some(&forged),
    )
    .await;
    assert_eq!(status, 429);
    make_viewer(&b, "other", "other password").await;
    let (_, other_device) = sign_in(&b, "other", "other password", Some("192.0.2.2"), None).await;
    exhaust().await;
    let (status, _) = sign_in(
        &b,
        "vera",
        "correct horse",
        Some("203.0.113.10"),
        other_device.as_deref(),
    )
    .await;
    assert_eq!(status, 429);
}

/// M1b: X-Forwarded-For counts only from a trusted proxy, and then only
/// its right-most untrusted entry; IPv6 is limited by /64.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m1b_forwarded_addresses_are_believed_only_from_trusted_proxies() {
    let limits = [
        ("VODKMS_ADDRESS_RATE", "0.001"),
        ("VODKMS_ADDRESS_BURST", "2"),
    ];
    let (_, edk) = {
        let b = behind_proxy(&limits).await;
        let (k, edk) = b.data_key("film").await;
        let token = b.token("alice", &["film"]).await;
        let key = |xff: &str| {
            let req = b
                .api
                .request(
                    reqwest::Method::GET,
                    &format!(
                        "/v1/hls/key?vid=film&Ciphertext={}&token={}",
                        q(&edk),
                        q(&token)
                    ),
                    None,
                )
                .header("X-Forwarded-For", xff.to_owned());
            let api = b.api.clone();
            async move { api.raw_bytes(req).await.0 }
        };
        // Each client address has its own budget of 2.
        assert_eq!(key("203.0.113.5").await, 200);
        assert_eq!(key("203.0.113.5").await, 200);
        assert_eq!(key("203.0.113.5").await, 429);
        // Prepending a fake address changes nothing: the proxy's entry counts.
        assert_eq!(key("198.51.100.1, 203.0.113.5").await, 429);
        assert_eq!(key("203.0.113.6").await, 200);
        // IPv6: one /64 is one caller.
        assert_eq!(key("2001:db8:1:2::1").await, 200);
        assert_eq!(key("2001:db8:1:2::2").await, 200);
        assert_eq!(key("2001:db8:1:2:ffff::3").await, 429);
        assert_eq!(key("2001:db8:1:3::1").await, 200);
        // The audit names the forwarded address.
        b.api
            .audit_until(&b.kms.admin, "Limit=100", |r| {
                r.iter().any(|r| r["Address"] == "203.0.113.5")
                    && r.iter().any(|r| r["Address"] == "2001:db8:1:2::2")
            })
            .await;
        (k, edk)
    };
    let _ = edk;

    // Without the proxy trusted, the header is the caller's word: ignored.
    let b = BrokerSetup::with_env(&[
        ("VODKMS_CLIENT_IP_HEADER", "X-Forwarded-For"),
        ("VODKMS_TRUSTED_PROXIES", "192.0.2.250"),
        limits[0],
        limits[1],
    ])
    .await;
    let (_, edk) = b.data_key("film").await;
    let token = b.token("alice", &["film"]).await;
    let path = format!(
        "/v1/hls/key?vid=film&Ciphertext={}&token={}",
        q(&edk),
        q(&token)
    );
    let mut statuses = Vec::new();
    for i in 1..=4 {
        let req = b
            .api
            .request(reqwest::Method::GET, &path, None)
            .header("X-Forwarded-For", format!("198.51.100.{i}"));
        statuses.push(b.api.raw_bytes(req).await.0);
    }
    assert_eq!(statuses, [200, 200, 429, 429]);
    let records = b
        .api
        .audit_until(&b.kms.admin, "Limit=100", |r| r.len() >= 2)
        .await;
    assert!(
        records.iter().all(|r| r["Address"] != "198.51.100.1"),
        "{records:#?}"
    );

    // A header without trusted proxies is a configuration error.
    let db = fresh_database().await;
    let started = ServerProcess::spawn(
        &["broker", "serve"],
        free_port(),
        &[
            ("DATABASE_URL", db.as_str()),
            ("VODKMS_KMS_URL", b.kms.kms.url.as_str()),
            ("VODKMS_KMS_TOKEN", b.kms.decryptor.as_str()),
            ("VODKMS_TOKEN_SECRET", b.secret_b64.as_str()),
            ("VODKMS_CLIENT_IP_HEADER", "X-Forwarded-For"),
        ],
        "broker",
    )
    .await;
    let log = started.err().expect("refused to start");
    assert!(log.contains("VODKMS_TRUSTED_PROXIES"), "{log}");
}

/// The tokens in a served playlist, each with the absolute URL its URI
/// resolves to by WHATWG rules (as a browser's player would fetch it).
fn tokens_by_destination(playlist_url: &str, playlist: &str) -> Vec<(url::Url, String)> {
    let base = url::Url::parse(playlist_url).unwrap();
    let mut uris: Vec<String> = Vec::new();
    for line in playlist.lines() {
        if let Some(at) = line.find("URI=\"") {
            let rest = &line[at + 5..];
            uris.push(rest[..rest.find('"').unwrap()].to_owned());
        } else if !line.starts_with('#') && !line.is_empty() {
            uris.push(line.to_owned());
        }
    }
    uris.into_iter()
        .filter_map(|uri| {
            let resolved = base.join(&uri).ok()?;
            let token = resolved
                .query_pairs()
                .find(|(k, _)| k == "token")
                .map(|(_, v)| v.into_owned())
                .filter(|t| !t.is_empty())?;
            Some((resolved, token))
        })
        .collect()
}

/// M5: served playlists carry the viewer's token only in URIs that reach
/// the broker's own key endpoints, judged as a browser resolves them, and
/// the token written names no more videos than the playlist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m5_playlist_tokens_reach_only_the_brokers_own_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let origin = dir.path();
    let b = BrokerSetup::with_env(&[("VODKMS_ORIGIN_DIR", origin.to_str().unwrap())]).await;
    let (_, edk) = b.data_key("v").await;
    let own = url::Url::parse(&b.broker.url).unwrap();
    let q_edk = q(&edk);
    let key_uris = [
        format!("{}/v1/hls/key?vid=v&Ciphertext={q_edk}", b.broker.url),
        format!("/v1/hls/key?vid=v&Ciphertext={q_edk}"),
        format!("https://evil.example/v1/hls/key?vid=v&Ciphertext={q_edk}"),
        format!("//evil.example/v1/hls/key?vid=v&Ciphertext={q_edk}"),
        format!("\\\\evil.example/v1/hls/key?vid=v&Ciphertext={q_edk}"),
        format!("/\\evil.example/v1/hls/key?vid=v&Ciphertext={q_edk}"),
        format!("http:\\\\evil.example\\v1\\hls\\key?vid=v&Ciphertext={q_edk}"),
        format!(
            "http://127.0.0.1:{}@evil.example/v1/hls/key?vid=v&Ciphertext={q_edk}",
            b.broker.port
        ),
        format!("http://127.0.0.1:1/v1/hls/key?vid=v&Ciphertext={q_edk}"),
    ];
    let mut media = String::from("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n");
    for (i, uri) in key_uris.iter().enumerate() {
        media.push_str(&format!(
            "#EXT-X-KEY:METHOD=AES-128,URI=\"{uri}\",IV=0x{i:032x}\n#EXTINF:2,\ns{i}.ts\n"
        ));
    }
    media.push_str("#EXT-X-ENDLIST\n");
    std::fs::create_dir_all(origin.join("v/lo")).unwrap();
    std::fs::write(origin.join("v/lo/index.m3u8"), &media).unwrap();
    std::fs::write(
        origin.join("v/master.m3u8"),
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nlo/index.m3u8\n\
         #EXT-X-STREAM-INF:BANDWIDTH=2\n//evil.example/hi.m3u8\n\
         #EXT-X-STREAM-INF:BANDWIDTH=3\n\\\\evil.example/hi.m3u8\n\
         #EXT-X-STREAM-INF:BANDWIDTH=4\nhttps://evil.example/hi.m3u8\n",
    )
    .unwrap();
    std::fs::write(
        origin.join("v/alibaba.m3u8"),
        format!(
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n\
             #EXT-X-KEY:METHOD=AES-128,URI=\"/?Ciphertext={q_edk}\",IV=0x00\n#EXTINF:2,\ns0.ts\n"
        ),
    )
    .unwrap();

    let token = b.token("alice", &["v", "w", "x"]).await;
    let get = |path: &str, token: &str| {
        let api = b.api.clone();
        let path = format!("/v1/hls/playlist/{path}?token={}", q(token));
        async move {
            let (status, _, body) = fetch_from(&api, &path, None, None).await;
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
            String::from_utf8(body).unwrap()
        }
    };
    let url_of = |path: &str| format!("{}/v1/hls/playlist/{path}", b.broker.url);

    let served = get("v/lo/index.m3u8", &token).await;
    let found = tokens_by_destination(&url_of("v/lo/index.m3u8"), &served);
    // Exactly the two URIs on the broker's key endpoint got one.
    assert_eq!(found.len(), 2, "{served}");
    for (dest, t) in &found {
        assert_eq!(dest.origin(), own.origin(), "{dest}");
        assert_eq!(dest.path(), "/v1/hls/key");
        // Names only the playlist's video, not all three of the token's.
        assert_eq!(token_payload(t)["vids"], json!(["v"]));
    }
    assert_eq!(served.matches("token=").count(), 2, "{served}");

    // The master: only its same-host media playlist gets a token, naming the
    // videos of its media playlists (it names none itself).
    let served = get("v/master.m3u8", &token).await;
    let found = tokens_by_destination(&url_of("v/master.m3u8"), &served);
    assert_eq!(found.len(), 1, "{served}");
    assert_eq!(found[0].0.origin(), own.origin());
    assert_eq!(token_payload(&found[0].1)["vids"], json!(["v"]));
    assert_eq!(served.matches("token=").count(), 1, "{served}");

    // A playlist whose key URIs name no video: a token naming several gets
    // none written; a token naming one gets that one.
    let served = get("v/alibaba.m3u8", &token).await;
    assert!(served.contains("token=\""), "{served}");
    assert!(tokens_by_destination(&url_of("v/alibaba.m3u8"), &served).is_empty());
    let single = b.token("alice", &["v"]).await;
    let served = get("v/alibaba.m3u8", &single).await;
    let found = tokens_by_destination(&url_of("v/alibaba.m3u8"), &served);
    assert_eq!(found.len(), 1, "{served}");
    assert_eq!(token_payload(&found[0].1)["vids"], json!(["v"]));
}

/// L3: whether an alias exists is not revealed to callers that may not use
/// it: the role is checked before the alias is looked up, and a client
/// limited to some keys gets the same refusal for a missing alias as for
/// one outside its scope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l3_aliases_do_not_leak_to_callers_without_rights() {
    let s = Setup::new().await;
    let api = &s.api;
    let other = api.create_key(&s.admin, "alias/other").await;
    let (_, scoped) = api
        .create_client(&s.admin, "generate", Some(vec![&other]))
        .await;
    for alias in ["alias/vod", "alias/does-not-exist"] {
        api.generate(&s.decryptor, alias, "v")
            .await
            .assert_error(403, "AccessDenied");
        api.generate(&scoped, alias, "v")
            .await
            .assert_error(403, "AccessDenied");
        api.get(&format!("/v1/keys/{alias}"), &s.generator)
            .await
            .assert_error(403, "AccessDenied");
        api.post(&format!("/v1/keys/{alias}/rotate"), &s.decryptor, json!({}))
            .await
            .assert_error(403, "AccessDenied");
    }
    // Those allowed still learn what they need.
    api.generate(&s.generator, "alias/does-not-exist", "v")
        .await
        .assert_error(404, "KeyNotFound");
    api.generate(&scoped, "alias/other", "v").await.ok();
}

/// L2: static serving refuses hidden files, key and keyinfo files, symlinks
/// out of the folder, and never redirects (`/web///x` once redirected to the
/// scheme-relative `//x/`, an open redirect).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l2_static_files_stay_in_their_folder() {
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web");
    let origin = dir.path().join("origin");
    let outside = dir.path().join("outside");
    for d in [
        &web,
        &origin,
        &outside,
        &web.join("demo"),
        &origin.join("v"),
    ] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(web.join("player.html"), "<p>player</p>").unwrap();
    std::fs::write(web.join("demo/index.html"), "<p>demo</p>").unwrap();
    std::fs::write(web.join(".env"), "SECRET=1").unwrap();
    std::fs::write(web.join("film.key"), [7u8; 16]).unwrap();
    std::fs::write(web.join("enc.keyinfo"), "uri\nfile\n").unwrap();
    std::fs::write(outside.join("secret.html"), "outside").unwrap();
    std::fs::write(outside.join("s0.ts"), [1u8; 188]).unwrap();
    std::fs::write(
        outside.join("index.m3u8"),
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\ns0.ts\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.join("secret.html"), web.join("out.html")).unwrap();
    std::os::unix::fs::symlink(&outside, web.join("outdir")).unwrap();
    std::os::unix::fs::symlink(web.join("player.html"), web.join("in.html")).unwrap();
    std::os::unix::fs::symlink(outside.join("s0.ts"), origin.join("v/s0.ts")).unwrap();
    std::os::unix::fs::symlink(outside.join("index.m3u8"), origin.join("v/index.m3u8")).unwrap();
    std::fs::write(origin.join("v/s1.ts"), [2u8; 188]).unwrap();

    let b = BrokerSetup::with_env(&[
        ("VODKMS_WEB_DIR", web.to_str().unwrap()),
        ("VODKMS_ORIGIN_DIR", origin.to_str().unwrap()),
    ])
    .await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let token = b.token("alice", &["v"]).await;
    for (path, want) in [
        ("/web/player.html".to_owned(), 200),
        ("/web/in.html".to_owned(), 200),
        ("/web/demo/".to_owned(), 200),
        ("/web/.env".to_owned(), 404),
        ("/web/%2Eenv".to_owned(), 404),
        ("/web/film.key".to_owned(), 404),
        ("/web/FILM.KEY".to_owned(), 404),
        ("/web/enc.keyinfo".to_owned(), 404),
        ("/web/out.html".to_owned(), 404),
        ("/web/outdir/secret.html".to_owned(), 404),
        ("/web/../outside/secret.html".to_owned(), 404),
        ("/web/%2E%2E/outside/secret.html".to_owned(), 404),
        ("/web/demo".to_owned(), 404),
        ("/web///demo".to_owned(), 404),
        ("/web//evil.example/".to_owned(), 404),
        ("/web/%5C%5Cevil.example/".to_owned(), 404),
        ("/v1/hls/playlist/v/s1.ts".to_owned(), 200),
        ("/v1/hls/playlist/v/s0.ts".to_owned(), 404),
        (
            format!("/v1/hls/playlist/v/index.m3u8?token={}", q(&token)),
            404,
        ),
    ] {
        let r = http
            .get(format!("{}{path}", b.broker.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), want, "{path}");
        assert!(r.headers().get("location").is_none(), "{path} redirected");
        let body = r.text().await.unwrap();
        assert!(
            !body.contains("outside") && !body.contains("SECRET"),
            "{path}: {body}"
        );
    }
}

/// L7: secret variables do not stay readable in `/proc/PID/environ` of the
/// running servers, and a password on the command line is warned about.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l7_secrets_leave_the_environment() {
    let b = BrokerSetup::new().await;
    let environ = |pid: u32| std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let contains =
        |hay: &[u8], needle: &str| hay.windows(needle.len()).any(|w| w == needle.as_bytes());
    let kms_env = environ(b.kms.kms.pid());
    assert!(
        contains(&kms_env, "VODKMS_ROOT_KEY="),
        "the name stays, the value goes"
    );
    assert!(!contains(&kms_env, &b.kms.root_key));
    let broker_env = environ(b.broker.pid());
    assert!(!contains(&broker_env, &b.secret_b64));
    assert!(!contains(&broker_env, &b.kms.decryptor));
    // They still work: the broker reached the KMS with its token and signs.
    let (_, edk) = b.data_key("film").await;
    let token = b.token("alice", &["film"]).await;
    let query = format!("vid=film&Ciphertext={}&token={}", q(&edk), q(&token));
    assert_eq!(b.key_status(&query).await.0, 200);

    let kms = ServerProcess::spawn(
        &["kms", "serve", "--database-url", &b.kms.db],
        free_port(),
        &[("VODKMS_ROOT_KEY", b.kms.root_key.as_str())],
        "kms",
    )
    .await
    .unwrap();
    eventually(10, "the warning is logged", || {
        let log = kms.log_text();
        async move { log.contains("--database-url puts the database password on the command line") }
    })
    .await;
}

/// M4: a KMS process cut off from the database stops honouring what it
/// cannot confirm once `--max-stale-secs` has passed: a client revoked and
/// a key disabled through a second process are refused (503 meanwhile, the
/// real answer once the database is back), never served on trust.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m4_a_kms_cut_off_from_the_database_stops_trusting_its_cache() {
    use common::proxy::{upstream_of, DbProxy};
    let db = fresh_database().await;
    let proxy = DbProxy::start(upstream_of(&db)).await;
    let root = random_root_key();
    let cut_off = KmsProcess::start(
        &proxy.url_for(&db),
        &root,
        &[("VODKMS_MAX_STALE_SECS", "2")],
    )
    .await;
    let second = KmsProcess::start(&db, &root, &[]).await;
    let admin = bootstrap(&db, &root);
    let (a, b) = (cut_off.api(), second.api());
    a.create_key(&admin, "alias/vod").await;
    let (decryptor_id, decryptor) = a.create_client(&admin, "decrypt", None).await;
    let (_, generator) = a.create_client(&admin, "generate", None).await;
    let blob = a.generate(&generator, "alias/vod", "v").await.ok()["CiphertextBlob"]
        .as_str()
        .unwrap()
        .to_owned();
    a.decrypt(&decryptor, &blob, "v").await.ok();
    let ready = |api: &Api| {
        let api = api.clone();
        async move {
            api.raw(api.request(reqwest::Method::GET, "/readyz", None))
                .await
        }
    };
    let r = ready(&a).await;
    assert_eq!(r.body["MaxStaleSeconds"], 2, "{:?}", r.body);

    proxy.cut();
    b.delete(&format!("/v1/clients/{decryptor_id}"), &admin)
        .await;
    b.post("/v1/keys/alias/vod/disable", &admin, json!({}))
        .await
        .ok();
    // Past the bound: refused, whatever the cache says.
    let slow = Api::with_timeout(&a.base, std::time::Duration::from_secs(15));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let (decrypt_status, generate_status) = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the cut-off KMS kept serving from its cache"
        );
        let d = slow.decrypt(&decryptor, &blob, "v").await;
        let g = slow.generate(&generator, "alias/vod", "v2").await;
        if d.status != 200 && g.status != 200 {
            break (d, g);
        }
    };
    decrypt_status.assert_error(503, "ServiceUnavailable");
    generate_status.assert_error(503, "ServiceUnavailable");
    let metrics = reqwest::get(format!("{}/metrics", a.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let unconfirmed: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("vodkms_kms_cache_unconfirmed_seconds "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(unconfirmed > 2.0, "{unconfirmed}");

    // The database back: the real answers.
    proxy.restore();
    eventually(30, "the revoked client is refused", || {
        let a = a.clone();
        let (decryptor, blob) = (decryptor.clone(), blob.clone());
        async move { a.decrypt(&decryptor, &blob, "v").await.status == 401 }
    })
    .await;
    a.generate(&generator, "alias/vod", "v3")
        .await
        .assert_error(409, "KeyDisabled");
    // Heartbeats confirm the caches again once the change listener is back.
    eventually(30, "the caches are confirmed again", || {
        let r = ready(&a);
        async move {
            let r = r.await;
            r.status == 200 && r.body["CacheUnconfirmedSeconds"].as_f64().unwrap() < 2.0
        }
    })
    .await;
}

/// M4, broker side: a key learnt from the KMS is released from the cache no
/// longer than `--max-stale-secs`, so a key disabled at the KMS stops then
/// (the key cache TTL alone would have kept it for 300 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m4_the_brokers_key_cache_is_bounded_too() {
    let b = BrokerSetup::with_env(&[("VODKMS_MAX_STALE_SECS", "1")]).await;
    let r = b
        .api
        .raw(b.api.request(reqwest::Method::GET, "/readyz", None))
        .await;
    assert_eq!(r.body["KeyCacheMaxAgeSeconds"], 1, "{:?}", r.body);
    let (_, edk) = b.data_key("film").await;
    let token = b.token("alice", &["film"]).await;
    let query = format!("vid=film&Ciphertext={}&token={}", q(&edk), q(&token));
    assert_eq!(b.key_status(&query).await.0, 200);
    b.kms
        .api
        .post("/v1/keys/alias/vod/disable", &b.kms.admin, json!({}))
        .await
        .ok();
    eventually(20, "the disabled key is refused", || {
        let f = b.key_status(&query);
        async move { f.await == (403, "KeyDisabled".to_owned()) }
    })
    .await;
}

/// L1: the request id is always the server's own, so a caller cannot make
/// audit records share (or spoof) an id; the caller's is kept beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l1_callers_do_not_choose_audit_request_ids() {
    let b = BrokerSetup::new().await;
    let kms = &b.kms;
    let r = kms
        .api
        .raw(
            kms.api
                .request(
                    reqwest::Method::POST,
                    "/v1/generate-data-key",
                    Some(&kms.generator),
                )
                .header("X-Request-Id", "chosen-by-caller")
                .json(&json!({ "KeyId": "alias/vod", "EncryptionContext": { "video_id": "v" } })),
        )
        .await;
    r.ok();
    assert_ne!(r.request_id, "chosen-by-caller");
    let records = kms
        .api
        .audit_until(&kms.admin, "Operation=GenerateDataKey", |r| !r.is_empty())
        .await;
    assert_eq!(records[0]["RequestId"], r.request_id.as_str());
    assert_eq!(records[0]["Detail"]["ClientRequestId"], "chosen-by-caller");

    let r = b
        .api
        .raw(
            b.api
                .request(reqwest::Method::POST, "/v1/tokens", Some(&b.issuer))
                .header("X-Request-Id", "chosen-too")
                .json(&json!({ "Viewer": "v", "VideoIds": ["v"] })),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_ne!(r.request_id, "chosen-too");
    let records = b
        .api
        .audit_until(&kms.admin, "Operation=IssueToken", |r| !r.is_empty())
        .await;
    assert_eq!(records[0]["RequestId"], r.request_id.as_str());
    assert_eq!(records[0]["Detail"]["ClientRequestId"], "chosen-too");
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name}"))
        .parse()
        .unwrap()
}

async fn metrics_of(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// L1: unknown credentials are cheap. Made-up API tokens are refused
/// without a database query each (the KMS knows every client's digest), and
/// their refusals are merged in the audit; the broker's management routes
/// are rate limited per address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l1_a_flood_of_unknown_tokens_costs_no_query_each() {
    let b = BrokerSetup::new().await;
    let kms = &b.kms;
    let before = metric(
        &metrics_of(&kms.api.base).await,
        "vodkms_kms_credential_lookups_total",
    );
    const FLOOD: usize = 400;
    let started = std::time::Instant::now();
    for chunk in 0..FLOOD / 50 {
        let requests = (0..50).map(|i| {
            let api = kms.api.clone();
            let junk = format!("vkms_{}{chunk}x{i}", uuid::Uuid::new_v4().simple());
            async move { api.decrypt(&junk, "AAAA", "v").await.status }
        });
        let statuses = futures_util::future::join_all(requests).await;
        assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    }
    let after = metric(
        &metrics_of(&kms.api.base).await,
        "vodkms_kms_credential_lookups_total",
    );
    // The database sees at most the allowance of 20 lookups a second (20 at
    // once), however many tokens arrive, not one each.
    let secs = started.elapsed().as_secs_f64();
    let allowance = 20.0 + 20.0 * secs + 1.0;
    assert!(
        after - before <= allowance,
        "{} lookups for {FLOOD} requests in {secs:.1} s",
        after - before
    );
    // Real clients are unaffected, also one made a moment ago.
    let (_, fresh) = kms.api.create_client(&kms.admin, "decrypt", None).await;
    let (_, edk) = b.data_key("v").await;
    kms.api.decrypt(&fresh, &edk, "v").await.ok();
    // The refusals are a few audit records with counts, not one each.
    let records = kms
        .api
        .audit_until(&kms.admin, "Operation=Decrypt&Limit=1000", |r| {
            r.iter()
                .filter(|r| r["Outcome"] == "Unauthenticated")
                .map(|r| r["Detail"]["Count"].as_u64().unwrap_or(1))
                .sum::<u64>()
                >= FLOOD as u64
        })
        .await;
    let refusal_records = records
        .iter()
        .filter(|r| r["Outcome"] == "Unauthenticated")
        .count();
    // At most one record per operation and flush interval (100 ms).
    let intervals = (started.elapsed().as_secs_f64() * 10.0).ceil() as usize + 2;
    assert!(
        refusal_records <= intervals,
        "{refusal_records} records in {intervals} flush intervals"
    );

    // The broker's management routes: limited per address.
    let mut limited = false;
    for chunk in 0..20 {
        let requests = (0..50).map(|i| {
            let api = b.api.clone();
            let junk = format!("vkms_{}{chunk}x{i}", uuid::Uuid::new_v4().simple());
            async move {
                api.post(
                    "/v1/tokens",
                    &junk,
                    json!({ "Viewer": "v", "VideoIds": ["v"] }),
                )
                .await
                .status
            }
        });
        let statuses = futures_util::future::join_all(requests).await;
        assert!(
            statuses.iter().all(|s| [401, 429].contains(s)),
            "{statuses:?}"
        );
        if statuses.contains(&429) {
            limited = true;
            break;
        }
    }
    assert!(limited, "the broker's management routes were never limited");
}

/// L6: with a large revocation set, a broker that reloads everything (its
/// change listener was cut, so it may have missed notifications) keeps a
/// revocation made through another broker meanwhile: it is refused at once
/// and stays refused, never overwritten by the reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l6_a_full_reload_cannot_lose_a_concurrent_revocation() {
    use sqlx::Connection as _;
    let b = BrokerSetup::new().await;
    let other = BrokerSetup::start_broker(&b.kms, &b.secret_b64, &[]).await;
    let mut db = sqlx::PgConnection::connect(&b.kms.db).await.unwrap();
    sqlx::query(
        "INSERT INTO broker_revocations (kind, subject, revoked_at, expires_at, seq, lifted) \
         SELECT 'Token', 'bulk-' || g, now(), now() + interval '1 day', \
         nextval('broker_revocation_seq'), false FROM generate_series(1, 300000) g",
    )
    .execute(&mut db)
    .await
    .unwrap();
    let (_, edk) = b.data_key("film").await;
    let token = b.token("alice", &["film"]).await;
    let query = format!("vid=film&Ciphertext={}&token={}", q(&edk), q(&token));
    assert_eq!(b.key_status(&query).await.0, 200);

    // Cut every change listener: each process reconnects and reloads all.
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
    )
    .execute(&mut db)
    .await
    .unwrap();
    let r = Api::new(&other.url)
        .post(
            "/v1/revocations",
            &b.kms.admin,
            json!({ "Type": "Video", "Id": "film" }),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    eventually(20, "the first broker refuses the video", || {
        let f = b.key_status(&query);
        async move { f.await == (403, "VideoRevoked".to_owned()) }
    })
    .await;
    // And keeps refusing while the reload finishes and after.
    eventually(60, "the first broker holds the bulk revocations", || {
        let base = b.broker.url.clone();
        async move { metric(&metrics_of(&base).await, "vodkms_broker_revocations") >= 300_000.0 }
    })
    .await;
    for _ in 0..10 {
        assert_eq!(b.key_status(&query).await, (403, "VideoRevoked".to_owned()));
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
