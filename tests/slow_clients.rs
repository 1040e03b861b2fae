//! Slow and abusive clients against a real KMS process: half-sent headers,
//! idle keep-alive connections and stalled bodies are cut off at their
//! timeouts, past the connection cap new connections get a 503, and
//! ordinary requests are served all along. (scripts/bench holds 10,000 slow
//! connections for 60 s and measures the p99 of ordinary requests.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::Setup;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Reads until the server closes the connection (or `limit` passes);
/// returns what it sent and how long that took.
async fn until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut got = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the server kept the connection open past {limit:?}"
    );
    (
        String::from_utf8_lossy(&got).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_idle_connections_and_stalled_bodies_are_cut_off() {
    let s = Setup::with_env(&[
        ("VODKMS_HEADER_TIMEOUT_SECS", "2"),
        ("VODKMS_BODY_TIMEOUT_SECS", "2"),
        ("VODKMS_IDLE_TIMEOUT_SECS", "30"),
    ])
    .await;
    let addr = format!("127.0.0.1:{}", s.kms.port);

    // 200 connections that never finish their headers, 50 that send nothing.
    let mut slow = Vec::new();
    for i in 0..250 {
        let mut c = TcpStream::connect(&addr).await.unwrap();
        if i < 200 {
            c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .await
                .unwrap();
        }
        slow.push(c);
    }
    // Ordinary requests are served meanwhile.
    for _ in 0..20 {
        let r = s.api.generate(&s.generator, "alias/vod", "v").await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    for c in &mut slow {
        let (_, took) = until_closed(c, Duration::from_secs(10)).await;
        assert!(took < Duration::from_secs(10));
    }

    // A keep-alive connection left idle after its request is closed too.
    let mut kept = TcpStream::connect(&addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    kept.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let (_, took) = until_closed(&mut kept, Duration::from_secs(10)).await;
    assert!(
        took >= Duration::from_millis(1500),
        "closed too early: {took:?}"
    );

    // A body that stalls half way gets 408 RequestTimeout, then the close.
    let mut stalled = TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/generate-data-key HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"KeyId\":",
        s.generator
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    let (answer, took) = until_closed(&mut stalled, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"Code\":\"RequestTimeout\""), "{answer}");
    assert!(took >= Duration::from_millis(1500), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_cap_new_connections_get_503_until_room_is_made() {
    let s = Setup::with_env(&[
        ("VODKMS_MAX_CONNECTIONS", "20"),
        ("VODKMS_HEADER_TIMEOUT_SECS", "30"),
    ])
    .await;
    let addr = format!("127.0.0.1:{}", s.kms.port);
    // The test client's own pooled connection may hold a slot: wait for
    // the server to count only ours.
    let mut held = Vec::new();
    let mut refused = None;
    for _ in 0..40 {
        let mut c = TcpStream::connect(&addr).await.unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut head = [0u8; 12];
        match tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut head)).await {
            Ok(Ok(_)) if &head == b"HTTP/1.1 200" => held.push(c),
            Ok(Ok(_)) => {
                let (rest, _) = until_closed(&mut c, Duration::from_secs(5)).await;
                refused = Some(format!("{}{rest}", String::from_utf8_lossy(&head)));
                break;
            }
            other => panic!("no answer: {other:?}"),
        }
    }
    let refused = refused.expect("40 connections and none refused");
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("TooManyConnections"), "{refused}");
    assert!(held.len() <= 20, "{} held", held.len());
    // Room again once the held connections go.
    drop(held);
    common::eventually(10, "a slot frees up", || async {
        reqwest::Client::new()
            .get(format!("{}/healthz", s.kms.url))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    let metrics = reqwest::get(format!("{}/metrics", s.kms.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("vodkms_http_connections_refused_total"),
        "{metrics}"
    );
}
