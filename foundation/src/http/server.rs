//! The accept loop both servers (and `vodkms dev`) run: plain TCP or TLS,
//! HTTP/1.1 and HTTP/2, with limits against slow and abusive clients.
//!
//! - **Header timeout**: a request's head must arrive within it, counted
//!   from when the server starts waiting for it (hyper's HTTP/1 timer), so
//!   it also ends keep-alive connections left idle that long. A TLS
//!   handshake gets the same time.
//! - **Idle timeout**: a connection on which no byte moves either way for
//!   this long is closed (HTTP/2 connections with no streams, stalled
//!   bodies, readers that stopped reading).
//! - **Body timeout**: a request's whole body must arrive within it of its
//!   head (a total deadline: a trickle of bytes does not extend it).
//! - **Connection cap**: past it, a new plain-TCP connection gets an
//!   immediate `503` with `Connection: close`; a TLS one is closed (a
//!   handshake would cost what the cap saves).
//!
//! Shutdown stops accepting, lets requests in flight finish for up to
//! [`GRACE`], and closes idle connections at once.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt as _;

use super::tls::{self, TlsFiles};

/// How long requests in flight may take to finish after the shutdown signal.
pub const GRACE: Duration = Duration::from_secs(25);

/// Limits on each listener. [`Default`] suits a public endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_timeout: Duration,
    /// Open connections past which new ones are refused.
    pub max_connections: usize,
}

/// File descriptors kept for everything but client connections: the
/// database pool, files served, the KMS client's connections, logs.
const RESERVED_FDS: u64 = 256;

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(30),
            max_connections: default_max_connections(),
        }
    }
}

/// Raises the soft open-file limit to the hard one (as nginx's
/// `worker_rlimit_nofile` would) and leaves [`RESERVED_FDS`] of it for
/// everything that is not a client connection.
pub fn default_max_connections() -> usize {
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    usize::try_from(limit.saturating_sub(RESERVED_FDS).max(64)).unwrap_or(usize::MAX)
}

/// Serves `app` (which sees the peer address as `ConnectInfo<SocketAddr>`)
/// on `listener` until `shutdown`, over TLS when `tls` is given.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsFiles>,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let acceptor = match tls {
        Some(files) => {
            let config = tls::load(&files).await?;
            tokio::spawn(tls::reload_on_sighup(config.clone(), files));
            Some(config)
        }
        None => None,
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    let builder = Arc::new(builder);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of descriptors, or a connection reset before we
                    // took it: wait a little rather than spin or stop.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            REFUSED.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(refuse(stream, acceptor.is_some()));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let builder = Arc::clone(&builder);
        let acceptor = acceptor.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _open = Open::count(permit);
            let body_timeout = limits.body_timeout;
            let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                let deadline = Instant::now() + body_timeout;
                app.clone().oneshot(request.map(|body| {
                    axum::body::Body::new(DeadlineBody {
                        inner: body,
                        deadline,
                        sleep: None,
                    })
                }))
            });
            // Nothing sent at all is cut off at the header timeout too: the
            // protocol sniffing (HTTP/1 or 2) waits before hyper's timer runs.
            let stream = IdleTimeout::new(stream, limits.header_timeout, limits.idle_timeout);
            let served = match acceptor {
                None => {
                    let conn =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    watcher.watch(conn.into_owned()).await
                }
                Some(config) => {
                    let handshake =
                        tokio_rustls::TlsAcceptor::from(config.get_inner()).accept(stream);
                    match tokio::time::timeout(limits.header_timeout, handshake).await {
                        Ok(Ok(tls_stream)) => {
                            let conn = builder
                                .serve_connection_with_upgrades(TokioIo::new(tls_stream), service);
                            watcher.watch(conn.into_owned()).await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after the grace period were cut off");
    }
    Ok(())
}

static OPEN: AtomicU64 = AtomicU64::new(0);
static REFUSED: AtomicU64 = AtomicU64::new(0);

/// Client connections open in this process, and refused past the cap so
/// far (for `/metrics`).
pub fn connection_counts() -> (u64, u64) {
    (
        OPEN.load(Ordering::Relaxed),
        REFUSED.load(Ordering::Relaxed),
    )
}

/// One open connection: its slot under the cap, and the count.
struct Open(#[allow(dead_code)] tokio::sync::OwnedSemaphorePermit);

impl Open {
    fn count(permit: tokio::sync::OwnedSemaphorePermit) -> Self {
        OPEN.fetch_add(1, Ordering::Relaxed);
        Self(permit)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The answer past the connection cap: a plain `503` and close, written
/// within a second or not at all.
async fn refuse(mut stream: tokio::net::TcpStream, tls: bool) {
    if tls {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(&busy_answer()).await?;
        stream.shutdown().await
    })
    .await;
}

fn busy_answer() -> Vec<u8> {
    const BODY: &str =
        r#"{"Code":"TooManyConnections","Message":"too many open connections; try again"}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{BODY}",
        BODY.len()
    )
    .into_bytes()
}

/// A request body past its deadline: the error its reader sees.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimedOut;

/// A request body that fails with [`BodyTimedOut`] once `deadline` passes.
/// The timer is made only if the body is ever waited for.
struct DeadlineBody<B> {
    inner: B,
    deadline: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<B> http_body::Body for DeadlineBody<B>
where
    B: http_body::Body<Data = axum::body::Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = axum::body::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => {
                let deadline = self.deadline;
                let sleep = self
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut)))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Whether a body read failed because the body came too slowly.
pub fn is_body_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.is::<BodyTimedOut>() {
            return true;
        }
        next = e.source();
    }
    false
}

/// A stream that fails with `TimedOut` while being read once no byte has
/// moved either way for `limit`, or none has come at all within `first`.
struct IdleTimeout<S> {
    inner: S,
    limit: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<S> IdleTimeout<S> {
    fn new(inner: S, first: Duration, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            deadline: Box::pin(tokio::time::sleep(first)),
        }
    }

    fn moved(&mut self) {
        self.deadline.as_mut().reset(Instant::now() + self.limit);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    self.moved();
                }
                Poll::Ready(result)
            }
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection idle too long",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.moved();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.moved();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt as _;

    #[test]
    fn the_busy_answer_is_what_its_length_says() {
        let answer = busy_answer();
        let text = std::str::from_utf8(&answer).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(body.len(), length);
        let parsed: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(parsed["Code"], "TooManyConnections");
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_stream_times_out_and_a_busy_one_does_not() {
        let (client, server) = tokio::io::duplex(64);
        let mut idle = IdleTimeout::new(server, Duration::from_secs(5), Duration::from_secs(5));
        let mut client = client;
        // Bytes every 3 s keep it open past 5 s.
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(3)).await;
            client.write_all(b"x").await.unwrap();
            let mut one = [0u8; 1];
            idle.read_exact(&mut one).await.unwrap();
        }
        // Then silence: TimedOut after 5 s.
        let started = Instant::now();
        let mut one = [0u8; 1];
        let err = idle.read_exact(&mut one).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }
}
