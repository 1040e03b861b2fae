//! The typed KMS client retries transient failures only, against a real HTTP
//! server on 127.0.0.1 that fails on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use kms_api::client::{ClientConfig, ClientError, KmsClient};
use kms_api::ApiToken;

/// Serves `/v1/whoami` and `/v1/keys`, answering `fail` for the first
/// `failures` calls of each, then success. Returns the URL and call counters.
async fn flaky(fail: StatusCode, failures: u32) -> (String, Arc<AtomicU32>, Arc<AtomicU32>) {
    let whoami_calls = Arc::new(AtomicU32::new(0));
    let create_calls = Arc::new(AtomicU32::new(0));
    let answer = move |calls: Arc<AtomicU32>, ok: &'static str| {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        if n < failures {
            let body = r#"{"Code":"ServiceUnavailable","Message":"later","RequestId":"r"}"#;
            (fail, [("retry-after", "0")], body).into_response()
        } else {
            (StatusCode::OK, ok).into_response()
        }
    };
    let (w, c) = (whoami_calls.clone(), create_calls.clone());
    let app = Router::new()
        .route(
            "/v1/whoami",
            get(move || {
                let w = w.clone();
                async move {
                    answer(w, r#"{"ClientId":"00000000-0000-0000-0000-000000000000","Name":"n","Role":"decrypt","KeyIds":null,"CreationDate":"2026-01-01T00:00:00Z","RevokedDate":null}"#)
                }
            }),
        )
        .route(
            "/v1/keys",
            post(move || {
                let c = c.clone();
                async move { answer(c, "{}") }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, whoami_calls, create_calls)
}

fn client(url: &str) -> KmsClient {
    let config = ClientConfig {
        retries: 2,
        backoff_base: Duration::from_millis(5),
        backoff_max: Duration::from_millis(20),
        ..ClientConfig::default()
    };
    KmsClient::new(url, ApiToken::from_presented("vkms_test"), config).unwrap()
}

#[tokio::test]
async fn retries_503_until_it_succeeds() {
    let (url, calls, _) = flaky(StatusCode::SERVICE_UNAVAILABLE, 2).await;
    let me = client(&url).whoami().await.unwrap();
    assert_eq!(me.role, "decrypt");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn gives_up_after_the_retries() {
    let (url, calls, _) = flaky(StatusCode::SERVICE_UNAVAILABLE, 10).await;
    let err = client(&url).whoami().await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert_eq!(err.code(), Some("ServiceUnavailable"));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn never_repeats_a_create_that_may_have_happened() {
    // 502: the request may have been carried out; creating twice is not safe.
    let (url, _, creates) = flaky(StatusCode::BAD_GATEWAY, 1).await;
    let c = client(&url);
    assert!(c.create_key(&Default::default()).await.is_err());
    assert_eq!(creates.load(Ordering::SeqCst), 1);
    // ...but a safe call is repeated after a 502.
    let (url, calls, _) = flaky(StatusCode::BAD_GATEWAY, 1).await;
    client(&url).whoami().await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn refusals_are_not_retried_and_keep_their_code() {
    let (url, calls, _) = flaky(StatusCode::FORBIDDEN, 1).await;
    match client(&url).whoami().await {
        Err(ClientError::Api {
            status: 403, code, ..
        }) => assert_eq!(code, "ServiceUnavailable"),
        other => panic!("{other:?}"),
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_refused_connection_is_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port(); // closed again: nothing listens there
    let err = client(&format!("http://127.0.0.1:{port}"))
        .whoami()
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Unavailable(_)), "{err}");
    assert!(KmsClient::new(
        "ftp://x",
        ApiToken::from_presented("t"),
        ClientConfig::default()
    )
    .is_err());
}
