//! The broker HTTP API: `app(state)` builds the router; `serve` runs it.

mod clearkey;
mod cors;
mod error;
mod extract;
mod handlers;
mod key_query;
mod media;
mod origin;
mod risk;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::DefaultBodyLimit;
use axum::http::HeaderName;
use axum::middleware;
use axum::routing::{get, post};
use axum::Router;

pub use clearkey::licence_kids;
pub use cors::CorsOrigins;
pub use error::{status_of, ApiError};
pub use extract::{client_address, ipv6_prefix};
pub use key_query::KeyQuery;
pub use media::safe_relative;

use crate::service::Broker;
use handlers as h;

/// The cookie `/v1/login` sets and key requests read.
pub const COOKIE_NAME: &str = "vodkms_token";
/// The cookie that tells `/v1/login` this browser signed in before.
pub const DEVICE_COOKIE_NAME: &str = "vodkms_device";
/// Management bodies are small; key requests have none.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub cors: CorsOrigins,
    /// `Secure` on the sign-in cookie (off only for plain-HTTP development).
    pub cookie_secure: bool,
    /// `Lax`, `Strict` or `None` (`None` needs `Secure`; browsers say so).
    pub cookie_same_site: String,
    /// Take the caller's address from this header, but only when the TCP
    /// peer is one of `trusted_proxies` (see `extract::client_address`).
    pub client_ip_header: Option<HeaderName>,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Playlists (rewritten per viewer) and segments served at
    /// `/v1/hls/playlist/{path}`.
    pub origin_dir: Option<PathBuf>,
    /// The broker's public key endpoints (`--key-uri-base`): the only
    /// absolute key URIs of served playlists that get the viewer's token.
    pub token_targets: hls::rewrite::TokenTargets,
    /// Static files (a player page) served at `/web/{path}`.
    pub web_dir: Option<PathBuf>,
}

impl HttpConfig {
    /// The broker's public `scheme://host[:port]` (from `--key-uri-base`), or
    /// "" for root-relative URLs.
    pub fn public_base(&self) -> String {
        self.token_targets.first_origin().unwrap_or_default()
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            cors: CorsOrigins::None,
            cookie_secure: true,
            cookie_same_site: "Lax".into(),
            client_ip_header: None,
            trusted_proxies: Vec::new(),
            origin_dir: None,
            token_targets: hls::rewrite::TokenTargets::default(),
            web_dir: None,
        }
    }
}

/// `--trusted-proxies`: comma-separated addresses or CIDR ranges.
pub fn parse_trusted_proxies(text: &str) -> Result<Vec<ipnet::IpNet>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<ipnet::IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| format!("{s:?} is not an address or a CIDR range"))
        })
        .collect()
}

impl HttpConfig {
    /// A `Set-Cookie` value of the token cookie; `max_age` 0 clears it.
    fn cookie(&self, token: &str, max_age: u64) -> String {
        self.set_cookie(COOKIE_NAME, token, "/", max_age)
    }

    /// The device cookie: sent back to `/v1/login` only.
    fn device_cookie(&self, value: &str) -> String {
        let max_age = u64::try_from(crate::service::DEVICE_COOKIE_SECS).unwrap_or(0);
        self.set_cookie(DEVICE_COOKIE_NAME, value, "/v1/login", max_age)
    }

    fn set_cookie(&self, name: &str, value: &str, path: &str, max_age: u64) -> String {
        let mut c = format!(
            "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite={}",
            self.cookie_same_site
        );
        if self.cookie_secure {
            c.push_str("; Secure");
        }
        c
    }
}

/// What every handler reads, behind one `Arc`: extractors clone the state
/// per request, and one reference count is cheaper than three.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub broker: Broker,
    pub http: Arc<HttpConfig>,
    origin: Option<Arc<origin::Origin>>,
    /// `private, max-age=N` for the longest N, what most key answers carry.
    key_cache_control: (u64, axum::http::HeaderValue),
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub fn app(broker: Broker, http: HttpConfig) -> Router {
    build(broker, http, true)
}

/// The broker with `fallback` answering every path it does not know, outside
/// its own middleware (`vodkms dev` puts the KMS API there).
pub fn app_with_fallback(broker: Broker, http: HttpConfig, fallback: Router) -> Router {
    build(broker, http, false).fallback_service(fallback)
}

fn build(broker: Broker, http: HttpConfig, own_fallback: bool) -> Router {
    let cors = Arc::new(http.cors.clone());
    let web_dir = http.web_dir.clone();
    let state = AppState(Arc::new(Shared {
        origin: http
            .origin_dir
            .clone()
            .map(|d| Arc::new(origin::Origin::new(d, http.token_targets.clone()))),
        key_cache_control: {
            let max = broker.key_max_age().as_secs();
            let value = axum::http::HeaderValue::from_str(&format!("private, max-age={max}"))
                .unwrap_or(axum::http::HeaderValue::from_static("private, no-cache"));
            (max, value)
        },
        broker,
        http: Arc::new(http),
    }));
    let source = state.broker.clone();
    let metrics = Arc::new(foundation::http::metrics::HttpMetrics::new(
        "vodkms_broker",
        move |out| source.write_metrics(out),
    ));
    let mut router = Router::new()
        .route(
            "/metrics",
            get(foundation::http::metrics::scrape).with_state(metrics.clone()),
        )
        .route("/openapi.json", get(openapi_document))
        .route("/healthz", get(h::healthz))
        .route("/readyz", get(h::readyz))
        .route("/v1/hls/key", get(h::hls_key))
        .route(
            "/v1/content-keys",
            post(clearkey::register)
                .get(clearkey::list)
                .delete(clearkey::delete),
        )
        .route("/v1/clearkey/license", post(clearkey::licence))
        .route("/v1/clearkey/key", get(clearkey::raw_key))
        // Alibaba-style key URI: `https://host/?Ciphertext=EDK&MtsHlsUriToken=T`.
        .route("/", get(h::hls_key))
        .route("/v1/login", post(h::login))
        .route("/v1/logout", post(h::logout))
        .route("/v1/tokens", post(h::issue_token))
        .route("/v1/viewers", post(h::create_viewer).get(h::list_viewers))
        .route(
            "/v1/viewers/{username}",
            get(h::get_viewer)
                .patch(h::update_viewer)
                .delete(h::delete_viewer),
        )
        .route(
            "/v1/revocations",
            post(h::revoke)
                .get(h::list_revocations)
                .delete(h::lift_revocation),
        )
        .route("/v1/audit", get(h::audit))
        .route("/v1/sessions", get(risk::list_sessions))
        .route(
            "/v1/sessions/{id}",
            axum::routing::delete(risk::end_session),
        )
        .route(
            "/v1/videos/{video_id}/playback-policy",
            get(risk::get_policy)
                .put(risk::put_policy)
                .delete(risk::delete_policy),
        )
        .route("/v1/hls/playlist/{*path}", get(media::origin_file))
        .route(
            "/v1/hls/clearkey/{*path}",
            get(media::origin_file_clear_key),
        );
    if web_dir.is_some() {
        // Our own handler, not ServeDir: no redirects (ServeDir's trailing
        // slash one turned `/web///x` into `//x/`), no hidden or key files,
        // no symlinks out of the folder.
        router = router.nest_service("/web", get(media::web_file).with_state(state.clone()));
    }
    if own_fallback {
        router = router.fallback(foundation::http::not_found);
    }
    router
        .method_not_allowed_fallback(foundation::http::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state((cors, metrics), cors::edge))
        .with_state(state)
}

/// `GET /openapi.json`.
async fn openapi_document() -> axum::Json<serde_json::Value> {
    axum::Json(document())
}

/// The broker's OpenAPI document: every route of `app`, with the schemas of
/// the types its handlers use.
pub fn document() -> serde_json::Value {
    use crate::api::*;
    use foundation::http::openapi::{
        schema, Answer, Auth, Op, Param, QueryParam, NEXT_TOKEN_PATTERN,
    };
    const KEY_QUERY: &[QueryParam] = &[
        (
            "vid",
            false,
            "the video (may be left out when the token names one video)",
            Param::Text,
        ),
        (
            "Ciphertext",
            true,
            "the EDK (base64url)",
            Param::Pattern(EDK_PATTERN),
        ),
        ("token", false, "the playback token", Param::Text),
        (
            "MtsHlsUriToken",
            false,
            "the playback token, Alibaba style",
            Param::Text,
        ),
    ];
    const TOKEN_QUERY: &[QueryParam] = &[
        ("token", false, "the playback token", Param::Text),
        (
            "MtsHlsUriToken",
            false,
            "the playback token, Alibaba style",
            Param::Text,
        ),
    ];
    const KID_QUERY: &[QueryParam] = &[
        (
            "kid",
            true,
            "the KID: 32 hex digits or a UUID",
            Param::Pattern(KID_PATTERN),
        ),
        ("token", false, "the playback token", Param::Text),
        (
            "MtsHlsUriToken",
            false,
            "the playback token, Alibaba style",
            Param::Text,
        ),
    ];
    const KID_PATTERN: &str = "^([0-9a-fA-F]{32}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$";
    const LIFT_QUERY: &[QueryParam] = &[
        (
            "Type",
            true,
            "what is revoked",
            Param::OneOf(&["Token", "Viewer", "Video"]),
        ),
        (
            "Id",
            true,
            "the revoked token id, viewer or video",
            Param::Pattern("^[!-~]{1,128}$"),
        ),
    ];
    const AUDIT_QUERY: &[QueryParam] = &[
        ("Viewer", false, "only this viewer", Param::Text),
        (
            "VideoId",
            false,
            "only this video",
            Param::Pattern(VIDEO_ID_PATTERN),
        ),
        (
            "Operation",
            false,
            "e.g. ReleaseKey",
            Param::OneOf(&crate::model::BrokerOperation::NAMES),
        ),
        ("Outcome", false, "Success or a refusal code", Param::Text),
        ("StartTime", false, "RFC 3339, inclusive", Param::DateTime),
        ("EndTime", false, "RFC 3339, exclusive", Param::DateTime),
        (
            "Limit",
            false,
            "1 to 1000",
            Param::Integer { min: 1, max: 1000 },
        ),
        (
            "NextToken",
            false,
            "from the previous page",
            Param::Pattern(NEXT_TOKEN_PATTERN),
        ),
    ];
    /// A video id: 1 to 256 printable ASCII characters, no spaces.
    const VIDEO_ID_PATTERN: &str = "^[!-~]{1,256}$";
    const VIDEO_PATH: &[(&str, Param)] = &[("video_id", Param::Pattern(VIDEO_ID_PATTERN))];
    /// A viewer (a token's `sub`): 1 to 256 bytes, no control characters.
    const VIEWER_PATTERN: &str = r"^[^\u0000-\u001f\u007f-\u009f]{1,64}$";
    /// An EDK as key URIs carry it: base64url, 60 to 4096 characters.
    const EDK_PATTERN: &str = "^[A-Za-z0-9_-]{60,4096}$";
    let key = Answer::Bytes(200, "application/octet-stream");
    let ops = [
        Op::new(
            "GET",
            "/v1/hls/key",
            "The 16 key bytes, for an entitled viewer",
            Auth::Playback,
            None,
            key,
        )
        .with_query(KEY_QUERY),
        Op::new(
            "GET",
            "/",
            "The same, for Alibaba-style key URIs",
            Auth::Playback,
            None,
            key,
        )
        .with_query(KEY_QUERY),
        Op::new(
            "GET",
            "/v1/hls/playlist/{*path}",
            "A playlist or DASH MPD of the origin folder with a fresh token in its key URIs (CENC key tags as identity ones naming /v1/clearkey/key; an MPD with the Clear Key element and licence URL), or a segment",
            Auth::Playback,
            None,
            Answer::Bytes(200, "application/vnd.apple.mpegurl"),
        )
        .with_query(TOKEN_QUERY),
        Op::new(
            "GET",
            "/v1/hls/clearkey/{*path}",
            "The same as /v1/hls/playlist, CENC key tags as KEYFORMAT=\"org.w3.clearkey\" (hls.js with EME Clear Key)",
            Auth::Playback,
            None,
            Answer::Bytes(200, "application/vnd.apple.mpegurl"),
        )
        .with_query(TOKEN_QUERY),
        Op::new(
            "POST",
            "/v1/clearkey/license",
            "W3C Clear Key licence: {kids: [base64url]} in, {keys: [{kty, kid, k}], type} out; every KID must be registered to a video the token is entitled to (else the whole request is refused); any Content-Type",
            Auth::Playback,
            Some(schema::<clearkey::LicenceBody>),
            Answer::Json(200, schema::<serde_json::Value>),
        )
        .with_query(TOKEN_QUERY),
        Op::new(
            "GET",
            "/v1/clearkey/key",
            "One content key's 16 bytes by ?kid=HEX, for HLS KEYFORMAT=\"identity\" key tags",
            Auth::Playback,
            None,
            key,
        )
        .with_query(KID_QUERY),
        Op::new(
            "POST",
            "/v1/content-keys",
            "Register a CENC content key: its KID, video and EDK (a KMS generate client or an admin); the same KID and video with another EDK of the same key replaces it (a rewrap)",
            Auth::ApiClient,
            Some(schema::<clearkey::RegisterContentKeyRequest>),
            Answer::Json(201, schema::<clearkey::ContentKeyInfo>),
        ),
        Op::new(
            "GET",
            "/v1/content-keys",
            "Registered content keys, all or ?VideoId= (admin, or a KMS generate client: those of its master keys)",
            Auth::ApiClient,
            None,
            Answer::Json(200, schema::<clearkey::ContentKeysResponse>),
        )
        .with_query(&[(
            "VideoId",
            false,
            "only this video's",
            Param::Pattern(VIDEO_ID_PATTERN),
        )]),
        Op::new(
            "DELETE",
            "/v1/content-keys",
            "Delete a video's content keys, ?VideoId= (admin)",
            Auth::ApiClient,
            None,
            Answer::Json(200, schema::<serde_json::Value>),
        )
        .with_query(&[(
            "VideoId",
            true,
            "the video",
            Param::Pattern(VIDEO_ID_PATTERN),
        )]),
        Op::new(
            "POST",
            "/v1/login",
            "Sign a viewer in: the token, also as the vodkms_token cookie",
            Auth::None,
            Some(schema::<LoginRequest>),
            Answer::Json(200, schema::<TokenResponse>),
        ),
        Op::new(
            "POST",
            "/v1/logout",
            "Revoke the presented token, if any, and clear the cookie (needs no token: signing out always works)",
            Auth::None,
            None,
            Answer::Empty(204),
        ),
        Op::new(
            "POST",
            "/v1/tokens",
            "Mint a playback token (issuer)",
            Auth::ApiClient,
            Some(schema::<IssueTokenRequest>),
            Answer::Json(201, schema::<TokenResponse>),
        ),
        Op::new(
            "POST",
            "/v1/viewers",
            "Create a viewer account (admin)",
            Auth::ApiClient,
            Some(schema::<CreateViewerRequest>),
            Answer::Json(201, schema::<ViewerInfo>),
        ),
        Op::new(
            "GET",
            "/v1/viewers",
            "List viewer accounts (admin)",
            Auth::ApiClient,
            None,
            Answer::Json(200, schema::<ListViewersResponse>),
        ),
        Op::new(
            "GET",
            "/v1/viewers/{username}",
            "Show a viewer (admin)",
            Auth::ApiClient,
            None,
            Answer::Json(200, schema::<ViewerInfo>),
        ),
        Op::new(
            "PATCH",
            "/v1/viewers/{username}",
            "Change a viewer; turning it off ends its tokens (admin)",
            Auth::ApiClient,
            Some(schema::<UpdateViewerRequest>),
            Answer::Json(200, schema::<ViewerInfo>),
        ),
        Op::new(
            "DELETE",
            "/v1/viewers/{username}",
            "Delete a viewer and end its tokens (admin)",
            Auth::ApiClient,
            None,
            Answer::Empty(204),
        ),
        Op::new(
            "POST",
            "/v1/revocations",
            "Revoke a token, a viewer's tokens or a video (admin, issuer)",
            Auth::ApiClient,
            Some(schema::<RevokeRequest>),
            Answer::Json(201, schema::<RevocationInfo>),
        ),
        Op::new(
            "GET",
            "/v1/revocations",
            "Revocations in force (admin)",
            Auth::ApiClient,
            None,
            Answer::Json(200, schema::<ListRevocationsResponse>),
        ),
        Op::new(
            "DELETE",
            "/v1/revocations",
            "Lift a revocation (admin)",
            Auth::ApiClient,
            None,
            Answer::Empty(204),
        )
        .with_query(LIFT_QUERY),
        Op::new(
            "GET",
            "/v1/audit",
            "The broker's audit trail, newest first (admin)",
            Auth::ApiClient,
            None,
            Answer::Json(200, schema::<BrokerAuditResponse>),
        )
        .with_query(AUDIT_QUERY),
        Op::new(
            "GET",
            "/v1/sessions",
            "A viewer's playback sessions that have not gone idle (admin)",
            Auth::ApiClient,
            None,
            Answer::Json(200, schema::<ListSessionsResponse>),
        )
        .with_query(&[(
            "Viewer",
            true,
            "the viewer",
            Param::Pattern(VIEWER_PATTERN),
        )]),
        Op::new(
            "DELETE",
            "/v1/sessions/{id}",
            "End a playback session: it no longer counts, and its token is revoked (admin)",
            Auth::ApiClient,
            None,
            Answer::Json(200, schema::<SessionInfo>),
        )
        .with_path_params(&[("id", Param::Uuid)]),
        Op::new(
            "GET",
            "/v1/videos/{video_id}/playback-policy",
            "A video's own page-origin allow-list (admin)",
            Auth::ApiClient,
            None,
            Answer::Json(200, schema::<PlaybackPolicyInfo>),
        )
        .with_path_params(VIDEO_PATH),
        Op::new(
            "PUT",
            "/v1/videos/{video_id}/playback-policy",
            "Set the page origins a video's keys, licences and playlists may be fetched from (admin)",
            Auth::ApiClient,
            Some(schema::<PlaybackPolicyRequest>),
            Answer::Json(200, schema::<PlaybackPolicyInfo>),
        )
        .with_path_params(VIDEO_PATH),
        Op::new(
            "DELETE",
            "/v1/videos/{video_id}/playback-policy",
            "Remove a video's own allow-list: the broker-wide one applies (admin)",
            Auth::ApiClient,
            None,
            Answer::Empty(204),
        )
        .with_path_params(VIDEO_PATH),
    ];
    foundation::http::openapi::document(
        "vodkms key broker",
        "Playback tokens, viewer sign-in, HLS key and playlist delivery.",
        &ops,
        schema::<foundation::http::ErrorBody>,
    )
}

/// Serves until `shutdown` resolves (requests in flight finish), over TLS
/// when `tls` is given, then writes every buffered audit record, retrying
/// while the database is away.
pub async fn serve(
    listener: tokio::net::TcpListener,
    broker: Broker,
    http: HttpConfig,
    tls: Option<foundation::http::tls::TlsFiles>,
    limits: foundation::http::server::ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = app(broker.clone(), http);
    foundation::http::server::serve(listener, app, tls, limits, shutdown).await?;
    broker
        .drain(Instant::now() + foundation::http::SHUTDOWN_FLUSH_DEADLINE)
        .await
        .map_err(|lost| std::io::Error::other(format!("{lost} audit records could not be written")))
}
