//! Serving over TLS (rustls) or plain TCP, with graceful shutdown; both
//! servers use it. The certificate and key are PEM files, read again on
//! SIGHUP: new connections get the new certificate, open ones keep theirs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use axum_server::tls_rustls::RustlsConfig;

/// PEM certificate chain and private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// rustls needs one process-wide crypto provider; ring is the one built in.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Loads the certificate and key, or says which file is wrong.
pub async fn load(files: &TlsFiles) -> std::io::Result<RustlsConfig> {
    install_crypto_provider();
    RustlsConfig::from_pem_file(&files.cert, &files.key)
        .await
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "TLS certificate {} / key {}: {e}",
                    files.cert.display(),
                    files.key.display()
                ),
            )
        })
}

/// How long requests in flight may take to finish after the shutdown signal.
const GRACE: Duration = Duration::from_secs(25);

/// Serves `app` (which sees the peer address) until `shutdown`, then lets
/// requests in flight finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<TlsFiles>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    let Some(files) = tls else {
        return axum::serve(listener, service)
            .with_graceful_shutdown(shutdown)
            .await;
    };
    let config = load(&files).await?;
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopper.graceful_shutdown(Some(GRACE));
    });
    tokio::spawn(reload_on_sighup(config.clone(), files));
    let std_listener = listener.into_std()?;
    axum_server::from_tcp_rustls(std_listener, config)
        .handle(handle)
        .serve(service)
        .await
}

#[cfg(unix)]
async fn reload_on_sighup(config: RustlsConfig, files: TlsFiles) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hups) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; TLS certificates will not be reloaded");
        return;
    };
    while hups.recv().await.is_some() {
        match config.reload_from_pem_file(&files.cert, &files.key).await {
            Ok(()) => tracing::info!(cert = %files.cert.display(), "TLS certificate reloaded"),
            // Keep serving the old certificate rather than nothing.
            Err(e) => {
                tracing::error!(error = %e, "TLS reload failed; keeping the previous certificate")
            }
        }
    }
}

#[cfg(not(unix))]
async fn reload_on_sighup(_config: RustlsConfig, _files: TlsFiles) {}
