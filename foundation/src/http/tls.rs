//! TLS (rustls) for both servers. The certificate and key are PEM files,
//! read again on SIGHUP: new connections get the new certificate, open ones
//! keep theirs. The accept loop is `super::server`.

use std::path::PathBuf;

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

/// Reloads the certificate and key on every SIGHUP.
#[cfg(unix)]
pub(super) async fn reload_on_sighup(config: RustlsConfig, files: TlsFiles) {
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
pub(super) async fn reload_on_sighup(_config: RustlsConfig, _files: TlsFiles) {}
