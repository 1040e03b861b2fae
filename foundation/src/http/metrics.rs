//! Prometheus metrics for both servers: requests by route, method and status,
//! and a latency histogram per route, kept in atomics (no lock on the request
//! path once a route has been seen). Labels are route templates
//! (`/v1/keys/{key_id}`), never ids of keys, videos or viewers.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Upper bounds of the latency buckets, seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
const METHODS: [&str; 8] = [
    "GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "OTHER",
];
/// Status codes counted one by one; anything else by its class (`2xx`...).
const STATUSES: [u16; 20] = [
    200, 201, 204, 206, 304, 400, 401, 403, 404, 405, 409, 410, 413, 415, 429, 500, 502, 503, 504,
    0,
];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

struct RouteStats {
    /// [method][status slot], slots being STATUSES then CLASSES.
    counts: Vec<AtomicU64>,
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl RouteStats {
    fn new() -> Self {
        Self {
            counts: (0..METHODS.len() * (STATUSES.len() + CLASSES.len()))
                .map(|_| AtomicU64::new(0))
                .collect(),
            buckets: Default::default(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }
}

fn method_slot(m: &Method) -> usize {
    METHODS
        .iter()
        .position(|x| *x == m.as_str())
        .unwrap_or(METHODS.len() - 1)
}

fn status_slot(status: u16) -> usize {
    match STATUSES.iter().position(|s| *s == status && status != 0) {
        Some(i) => i,
        None => STATUSES.len() + usize::from(status / 100).clamp(1, 5) - 1,
    }
}

fn status_label(slot: usize) -> String {
    match STATUSES.get(slot) {
        Some(s) => s.to_string(),
        None => CLASSES[slot - STATUSES.len()].to_owned(),
    }
}

/// What both servers expose at `/metrics`, plus what each adds itself.
pub struct HttpMetrics {
    prefix: &'static str,
    routes: RwLock<HashMap<String, Arc<RouteStats>>>,
    extra: Box<dyn Fn(&mut String) + Send + Sync>,
}

impl HttpMetrics {
    /// `prefix`: `vodkms_kms` or `vodkms_broker`. `extra` appends the
    /// server's own metrics (audit buffer, caches, pool) at each scrape.
    pub fn new(prefix: &'static str, extra: impl Fn(&mut String) + Send + Sync + 'static) -> Self {
        Self {
            prefix,
            routes: RwLock::new(HashMap::new()),
            extra: Box::new(extra),
        }
    }

    fn route(&self, route: &str) -> Arc<RouteStats> {
        if let Some(s) = self
            .routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(route)
        {
            return Arc::clone(s);
        }
        let mut routes = self.routes.write().unwrap_or_else(|p| p.into_inner());
        Arc::clone(
            routes
                .entry(route.to_owned())
                .or_insert_with(|| Arc::new(RouteStats::new())),
        )
    }

    fn observe(&self, route: &str, method: &Method, status: u16, started: Instant) {
        let stats = self.route(route);
        let slot = method_slot(method) * (STATUSES.len() + CLASSES.len()) + status_slot(status);
        if let Some(c) = stats.counts.get(slot) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let elapsed = started.elapsed();
        let secs = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            stats.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        stats.count.fetch_add(1, Ordering::Relaxed);
        stats.sum_micros.fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// The Prometheus text exposition (version 0.0.4).
    pub fn render(&self) -> String {
        let p = self.prefix;
        let mut out = String::with_capacity(8192);
        let routes: Vec<(String, Arc<RouteStats>)> = {
            let map = self.routes.read().unwrap_or_else(|p| p.into_inner());
            let mut v: Vec<_> = map
                .iter()
                .map(|(k, s)| (k.clone(), Arc::clone(s)))
                .collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        let _ = writeln!(
            out,
            "# HELP {p}_http_requests_total HTTP requests by route template, method and status."
        );
        let _ = writeln!(out, "# TYPE {p}_http_requests_total counter");
        for (route, s) in &routes {
            for (i, c) in s.counts.iter().enumerate() {
                let n = c.load(Ordering::Relaxed);
                if n == 0 {
                    continue;
                }
                let per_method = STATUSES.len() + CLASSES.len();
                let _ = writeln!(
                    out,
                    "{p}_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{}\"}} {n}",
                    escape(route),
                    METHODS[i / per_method],
                    status_label(i % per_method)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP {p}_http_request_duration_seconds Time to answer, by route template."
        );
        let _ = writeln!(out, "# TYPE {p}_http_request_duration_seconds histogram");
        for (route, s) in &routes {
            let route = escape(route);
            let mut cumulative = 0;
            for (i, b) in BUCKETS.iter().enumerate() {
                cumulative += s.buckets[i].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "{p}_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{b}\"}} {cumulative}"
                );
            }
            let count = s.count.load(Ordering::Relaxed);
            let sum = s.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(
                out,
                "{p}_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                out,
                "{p}_http_request_duration_seconds_sum{{route=\"{route}\"}} {sum}"
            );
            let _ = writeln!(
                out,
                "{p}_http_request_duration_seconds_count{{route=\"{route}\"}} {count}"
            );
        }
        (self.extra)(&mut out);
        out
    }
}

/// A label value as Prometheus wants it quoted.
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Writes one gauge or counter with its HELP and TYPE lines.
pub fn write_metric(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    value: impl std::fmt::Display,
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    let _ = writeln!(out, "{name} {value}");
}

/// Counts every request that reached a route (or the fallback, as `unmatched`).
pub async fn track(State(m): State<Arc<HttpMetrics>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    // MatchedPath is a shared string: cloning it copies no text.
    let route = req.extensions().get::<MatchedPath>().cloned();
    let resp = next.run(req).await;
    m.observe(
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        &method,
        resp.status().as_u16(),
        started,
    );
    resp
}

/// `GET /metrics`.
pub async fn scrape(State(m): State<Arc<HttpMetrics>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        m.render(),
    )
        .into_response()
}
