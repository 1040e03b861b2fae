//! Prometheus metrics for both servers, kept and rendered by
//! `metrics-exporter-prometheus`: requests by route, method and status, and
//! a latency histogram per route. Each series' handle is registered once and
//! kept, so the request path takes no registry lock once a route has been
//! seen. Labels are route templates (`/v1/keys/{key_id}`), never ids of
//! keys, videos or viewers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Instant;

pub use metrics::Label;
use metrics::{Counter, Histogram, Key, Metadata, Recorder as _};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use axum::extract::State;
use axum::http::{header, Method};
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

/// The request counters of one route, registered on first use, and its
/// latency histogram.
struct RouteStats {
    /// [method][status slot], slots being STATUSES then CLASSES.
    counts: Vec<OnceLock<Counter>>,
    latency: Histogram,
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

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// What both servers expose at `/metrics`, plus what each adds itself. One
/// recorder per server (not the process-wide one): `vodkms dev` runs both
/// servers in one process, and each shows only its own.
pub struct HttpMetrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    requests: String,
    duration: String,
    routes: RwLock<HashMap<String, Arc<RouteStats>>>,
    extra: Box<dyn Fn(&Exposition<'_>) + Send + Sync>,
    observed: AtomicU64,
}

/// Latency samples wait in the exporter until folded into their buckets:
/// fold them every this many requests, so memory stays bounded however
/// rarely /metrics is scraped.
const UPKEEP_EVERY: u64 = 4096;

impl HttpMetrics {
    /// `prefix`: `vodkms_kms` or `vodkms_broker`. `extra` adds the server's
    /// own metrics (audit buffer, caches, pool) at each scrape.
    pub fn new(
        prefix: &'static str,
        extra: impl Fn(&Exposition<'_>) + Send + Sync + 'static,
    ) -> Self {
        let requests = format!("{prefix}_http_requests_total");
        let duration = format!("{prefix}_http_request_duration_seconds");
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(duration.clone()), &BUCKETS)
            .map(PrometheusBuilder::build_recorder)
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        recorder.describe_counter(
            requests.clone().into(),
            None,
            "HTTP requests by route template, method and status.".into(),
        );
        recorder.describe_histogram(
            duration.clone().into(),
            None,
            "Time to answer, by route template.".into(),
        );
        Self {
            handle: recorder.handle(),
            recorder,
            requests,
            duration,
            routes: RwLock::new(HashMap::new()),
            extra: Box::new(extra),
            observed: AtomicU64::new(0),
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
        Arc::clone(routes.entry(route.to_owned()).or_insert_with(|| {
            let key = Key::from_parts(
                self.duration.clone(),
                vec![Label::new("route", route.to_owned())],
            );
            Arc::new(RouteStats {
                counts: (0..METHODS.len() * (STATUSES.len() + CLASSES.len()))
                    .map(|_| OnceLock::new())
                    .collect(),
                latency: self.recorder.register_histogram(&key, &METADATA),
            })
        }))
    }

    pub(crate) fn observe(&self, route: &str, method: &Method, status: u16, started: Instant) {
        let stats = self.route(route);
        let per_method = STATUSES.len() + CLASSES.len();
        let slot = method_slot(method) * per_method + status_slot(status);
        if let Some(c) = stats.counts.get(slot) {
            c.get_or_init(|| {
                let labels = vec![
                    Label::new("route", route.to_owned()),
                    Label::new("method", METHODS[slot / per_method]),
                    Label::new("status", status_label(slot % per_method)),
                ];
                self.recorder
                    .register_counter(&Key::from_parts(self.requests.clone(), labels), &METADATA)
            })
            .increment(1);
        }
        stats.latency.record(started.elapsed().as_secs_f64());
        if self.observed.fetch_add(1, Ordering::Relaxed) % UPKEEP_EVERY == UPKEEP_EVERY - 1 {
            self.handle.run_upkeep();
        }
    }

    /// The Prometheus text exposition (version 0.0.4), without the blank
    /// lines the exporter puts between families.
    pub fn render(&self) -> String {
        let exposition = Exposition(&self.recorder);
        let (open, refused) = super::server::connection_counts();
        exposition.metric(
            "vodkms_http_connections_open",
            "gauge",
            "Client connections open in this process.",
            open,
        );
        exposition.metric(
            "vodkms_http_connections_refused_total",
            "counter",
            "Connections refused past the connection cap (--max-connections).",
            refused,
        );
        (self.extra)(&exposition);
        let text = self.handle.render();
        let mut out = String::with_capacity(text.len());
        for line in text.lines().filter(|l| !l.is_empty()) {
            out.push_str(line);
            out.push('\n');
        }
        out
    }
}

/// Where a server sets its own metrics at each scrape.
pub struct Exposition<'a>(&'a PrometheusRecorder);

/// A metric value as the exporter takes it.
pub trait MetricValue {
    fn as_f64(&self) -> f64;
}

macro_rules! metric_value {
    ($($t:ty),*) => {$(
        impl MetricValue for $t {
            fn as_f64(&self) -> f64 {
                *self as f64
            }
        }
    )*};
}
metric_value!(u32, u64, usize, f64);

impl Exposition<'_> {
    /// Sets one gauge (`kind` "gauge") or counter ("counter") with its help.
    pub fn metric(
        &self,
        name: &'static str,
        kind: &str,
        help: &'static str,
        value: impl MetricValue,
    ) {
        self.labeled(name, kind, help, Vec::new(), value);
    }

    /// The same, with labels (fixed sets only: never ids).
    pub fn labeled(
        &self,
        name: &'static str,
        kind: &str,
        help: &'static str,
        labels: Vec<Label>,
        value: impl MetricValue,
    ) {
        let key = Key::from_parts(name, labels);
        if kind == "counter" {
            self.0.describe_counter(name.into(), None, help.into());
            self.0
                .register_counter(&key, &METADATA)
                .absolute(value.as_f64() as u64);
        } else {
            self.0.describe_gauge(name.into(), None, help.into());
            self.0.register_gauge(&key, &METADATA).set(value.as_f64());
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_time_and_server_metrics_render_as_prometheus_text() {
        let m = HttpMetrics::new("t", |out| {
            out.metric("t_buffered", "gauge", "Waiting.", 3u64);
            out.labeled(
                "t_decisions_total",
                "counter",
                "By outcome.",
                vec![Label::new("outcome", "Success")],
                7u64,
            );
        });
        let started = Instant::now();
        // More than one upkeep period: folded samples are all still counted.
        let n = UPKEEP_EVERY + 5;
        for _ in 0..n {
            m.observe("/v1/x/{id}", &Method::GET, 200, started);
        }
        m.observe(
            "/v1/x/{id}",
            &Method::from_bytes(b"BREW").unwrap(),
            418,
            started,
        );
        let text = m.render();
        assert!(!text.contains("\n\n"), "{text}");
        for line in [
            "# TYPE t_http_requests_total counter".to_owned(),
            format!(
                r#"t_http_requests_total{{route="/v1/x/{{id}}",method="GET",status="200"}} {n}"#
            ),
            r#"t_http_requests_total{route="/v1/x/{id}",method="OTHER",status="4xx"} 1"#.to_owned(),
            "# TYPE t_http_request_duration_seconds histogram".to_owned(),
            format!(
                r#"t_http_request_duration_seconds_count{{route="/v1/x/{{id}}"}} {}"#,
                n + 1
            ),
            "# HELP t_buffered Waiting.".to_owned(),
            "t_buffered 3".to_owned(),
            r#"t_decisions_total{outcome="Success"} 7"#.to_owned(),
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
        }
    }
}
