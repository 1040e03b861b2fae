//! CORS on every response, errors included (a CORS failure looks like status
//! 0 to hls.js, hiding the real answer), and the `OPTIONS` preflight.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The allow-list of page origins (`scheme://host[:port]`), or any origin.
#[derive(Debug, Clone, Default)]
pub enum CorsOrigins {
    /// Same-origin only: no CORS headers at all.
    #[default]
    None,
    List(Vec<String>),
    /// Echo whatever origin asks. With cookies, any site can fetch keys for
    /// a signed-in viewer: for development only.
    Any,
}

impl CorsOrigins {
    /// Parses `VODKMS_CORS_ORIGINS`: comma-separated origins, or `*`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let items: Vec<&str> = text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if items.is_empty() {
            return Ok(Self::None);
        }
        if items == ["*"] {
            return Ok(Self::Any);
        }
        let mut list = Vec::new();
        for item in items {
            let origin = item.trim_end_matches('/');
            let valid = (origin.starts_with("http://") || origin.starts_with("https://"))
                && !origin["https://".len().min(origin.len())..].contains('/')
                && HeaderValue::from_str(origin).is_ok();
            if !valid {
                return Err(format!(
                    "{item:?} is not an origin (scheme://host[:port], no path), or use * alone"
                ));
            }
            list.push(origin.to_ascii_lowercase());
        }
        Ok(Self::List(list))
    }

    fn allows(&self, origin: &HeaderValue) -> bool {
        match self {
            Self::None => false,
            Self::Any => true,
            Self::List(list) => origin
                .to_str()
                .is_ok_and(|o| list.iter().any(|a| a.eq_ignore_ascii_case(o))),
        }
    }
}

const ALLOW_METHODS: HeaderValue = HeaderValue::from_static("GET, POST, PATCH, DELETE, OPTIONS");
const ALLOW_HEADERS: HeaderValue =
    HeaderValue::from_static("Authorization, Content-Type, X-Request-Id");
const EXPOSE_HEADERS: HeaderValue = HeaderValue::from_static("X-Request-Id, Retry-After");

fn allow(headers: &mut HeaderMap, origin: HeaderValue) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
}

/// The edge of every broker request in one layer: the foundation's (request
/// id, access log, metrics) with CORS. A preflight from an allowed origin is
/// answered here.
pub async fn edge(
    State((origins, metrics)): State<(
        std::sync::Arc<CorsOrigins>,
        std::sync::Arc<foundation::http::metrics::HttpMetrics>,
    )>,
    mut req: Request,
    next: Next,
) -> Response {
    let edge = foundation::http::Edge::begin(&mut req);
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .filter(|o| origins.allows(o))
        .cloned();
    let preflight = req.method() == Method::OPTIONS;
    let mut resp = if preflight {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(req).await
    };
    let headers = resp.headers_mut();
    if let Some(origin) = origin {
        allow(headers, origin);
        if preflight {
            headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, ALLOW_METHODS);
            headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOW_HEADERS);
            headers.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
        } else {
            headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSE_HEADERS);
        }
    }
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    edge.finish(resp, &metrics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_origins() {
        assert!(matches!(CorsOrigins::parse(""), Ok(CorsOrigins::None)));
        assert!(matches!(CorsOrigins::parse("*"), Ok(CorsOrigins::Any)));
        let list = CorsOrigins::parse("https://a.example, http://127.0.0.1:8080/").unwrap();
        assert!(list.allows(&HeaderValue::from_static("https://a.example")));
        assert!(list.allows(&HeaderValue::from_static("http://127.0.0.1:8080")));
        assert!(!list.allows(&HeaderValue::from_static("https://b.example")));
        assert!(!list.allows(&HeaderValue::from_static("null")));
        for bad in [
            "a.example",
            "https://a.example/path",
            "*, https://a.example",
            "ftp://x",
        ] {
            assert!(CorsOrigins::parse(bad).is_err(), "{bad}");
        }
    }
}
