//! A TCP proxy in front of PostgreSQL that a test can cut (closing every
//! connection and refusing new ones) and restore: a database outage on demand.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct DbProxy {
    pub addr: SocketAddr,
    cut: watch::Sender<bool>,
}

impl DbProxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, watch_cut) = watch::channel(false);
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if *watch_cut.borrow() {
                    continue; // dropped: connection refused in effect
                }
                let mut cut_rx = watch_cut.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut_rx.wait_for(|c| *c) => {}
                    }
                });
            }
        });
        Self { addr, cut }
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
