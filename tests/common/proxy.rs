//! A TCP proxy in front of PostgreSQL that a test can cut (closing every
//! connection and refusing new ones) and restore: a database outage on demand.
//! It also counts the statements the clients run, read from the protocol.
#![allow(clippy::unwrap_used, dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct DbProxy {
    pub addr: SocketAddr,
    cut: watch::Sender<bool>,
    statements: Arc<AtomicU64>,
}

impl DbProxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, watch_cut) = watch::channel(false);
        let statements = Arc::new(AtomicU64::new(0));
        let counter = statements.clone();
        tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    return;
                };
                if *watch_cut.borrow() {
                    continue; // dropped: connection refused in effect
                }
                let mut cut_rx = watch_cut.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut from_client, to_client) = inbound.into_split();
                    let (from_server, mut to_server) = outbound.into_split();
                    let down = async move {
                        let (mut from_server, mut to_client) = (from_server, to_client);
                        tokio::io::copy(&mut from_server, &mut to_client).await
                    };
                    let up = async move {
                        let mut frames = Frames::default();
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = from_client.read(&mut buf).await?;
                            if n == 0 {
                                return Ok::<_, std::io::Error>(());
                            }
                            counter.fetch_add(frames.statements_in(&buf[..n]), Ordering::Relaxed);
                            to_server.write_all(&buf[..n]).await?;
                        }
                    };
                    tokio::select! {
                        _ = down => {}
                        _ = up => {}
                        _ = cut_rx.wait_for(|c| *c) => {}
                    }
                });
            }
        });
        Self {
            addr,
            cut,
            statements,
        }
    }

    /// Statements the clients have sent so far: simple queries and
    /// extended-protocol executions.
    pub fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    pub fn restore(&self) {
        self.cut.send_replace(false);
    }

    /// `url` (a postgres URL) rewritten to go through this proxy.
    pub fn url_for(&self, url: &str) -> String {
        let (scheme_user, rest) = url.split_once('@').unwrap();
        let (_, path) = rest.split_once('/').unwrap();
        format!("{scheme_user}@{}/{path}", self.addr)
    }
}

/// The host:port of a postgres URL.
pub fn upstream_of(url: &str) -> SocketAddr {
    let rest = url.split_once('@').unwrap().1;
    let hostport = rest.split_once('/').unwrap().0;
    let hostport = hostport.replace("localhost", "127.0.0.1");
    hostport.parse().unwrap()
}

/// The client side of the PostgreSQL protocol, cut into messages: the
/// untyped start (SSL or GSS requests, then the startup message), then
/// `type, length, body` frames.
#[derive(Default)]
struct Frames {
    pending: Vec<u8>,
    started: bool,
}

impl Frames {
    /// How many `Q` (query) and `E` (execute) messages `bytes` completes.
    fn statements_in(&mut self, bytes: &[u8]) -> u64 {
        self.pending.extend_from_slice(bytes);
        let mut count = 0;
        loop {
            let header = if self.started { 5 } else { 4 };
            if self.pending.len() < header {
                return count;
            }
            let at = header - 4;
            let len = u32::from_be_bytes(self.pending[at..at + 4].try_into().unwrap()) as usize;
            let total = at + len;
            if self.pending.len() < total.max(header) {
                return count;
            }
            if self.started {
                count += u64::from(matches!(self.pending[0], b'Q' | b'E'));
            } else {
                // SSLRequest and GSSENCRequest come before the startup message.
                let code = self
                    .pending
                    .get(4..8)
                    .map(|c| u32::from_be_bytes(c.try_into().unwrap()));
                self.started = !matches!(code, Some(80877103 | 80877104));
            }
            self.pending.drain(..total.max(header));
        }
    }
}
