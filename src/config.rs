//! The optional TOML configuration file (`--config FILE` or `VODKMS_CONFIG`).
//!
//! Parsed once, before anything else, into typed sections that reject unknown
//! keys. Precedence: flags, then environment, then the file, then defaults:
//! the file only fills `VODKMS_*` variables that are not set, so clap sees
//! one set of typed settings whichever way they came. Secrets are never in
//! the file: only paths of files holding them (`*_file`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// `text` or `json`.
    pub log_format: Option<String>,
    pub kms: Option<KmsSection>,
    pub broker: Option<BrokerSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KmsSection {
    pub listen: Option<SocketAddr>,
    pub database_url_file: Option<PathBuf>,
    pub root_key_file: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub cache_ttl_secs: Option<u64>,
    pub audit_buffer: Option<usize>,
    pub audit_flush_ms: Option<u64>,
    pub maintenance_interval_secs: Option<u64>,
    pub max_stale_secs: Option<u64>,
    pub aws_region: Option<String>,
    pub aws_account_id: Option<String>,
    pub alibaba_region: Option<String>,
    pub tencent_region: Option<String>,
    pub header_timeout_secs: Option<u64>,
    pub idle_timeout_secs: Option<u64>,
    pub body_timeout_secs: Option<u64>,
    pub max_connections: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerSection {
    pub listen: Option<SocketAddr>,
    pub kms_url: Option<String>,
    pub database_url_file: Option<PathBuf>,
    pub kms_token_file: Option<PathBuf>,
    pub kms_ca_file: Option<PathBuf>,
    pub token_secret_file: Option<PathBuf>,
    pub token_public_key_file: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub cors_origins: Option<Vec<String>>,
    pub cookie_secure: Option<bool>,
    pub cookie_same_site: Option<String>,
    pub client_ip_header: Option<String>,
    pub trusted_proxies: Option<Vec<String>>,
    pub key_uri_base: Option<Vec<String>>,
    pub key_cache_ttl_secs: Option<u64>,
    pub key_cache_capacity: Option<usize>,
    pub max_stale_secs: Option<u64>,
    pub key_max_age_secs: Option<u64>,
    pub token_leeway_secs: Option<u64>,
    pub max_token_lifetime_secs: Option<u64>,
    pub login_token_ttl_secs: Option<u64>,
    pub session_idle_secs: Option<u64>,
    pub session_max_secs: Option<u64>,
    pub token_rate: Option<f64>,
    pub token_burst: Option<f64>,
    pub address_rate: Option<f64>,
    pub address_burst: Option<f64>,
    pub management_rate: Option<f64>,
    pub management_burst: Option<f64>,
    pub audit_buffer: Option<usize>,
    pub audit_flush_ms: Option<u64>,
    pub origin_dir: Option<PathBuf>,
    pub web_dir: Option<PathBuf>,
    pub playlist_token_ttl_secs: Option<u64>,
    pub header_timeout_secs: Option<u64>,
    pub idle_timeout_secs: Option<u64>,
    pub body_timeout_secs: Option<u64>,
    pub max_connections: Option<usize>,
    pub max_streams_per_viewer: Option<u64>,
    pub stream_idle_secs: Option<u64>,
    pub max_addresses_per_token: Option<u64>,
    pub share_max_addresses: Option<u64>,
    pub share_max_videos: Option<u64>,
    pub share_window_secs: Option<u64>,
    pub allowed_page_origins: Option<Vec<String>>,
    pub bind_playlist_tokens: Option<bool>,
    pub risk_webhook_url: Option<String>,
    pub risk_webhook_secret_file: Option<PathBuf>,
}

/// `(VARIABLE, value)` for every key that is set.
macro_rules! vars {
    ($s:expr, { $($field:ident => $var:literal),* $(,)? }) => {{
        let mut out: Vec<(&'static str, String)> = Vec::new();
        $( if let Some(v) = &$s.$field { out.push(($var, Setting::text(v))); } )*
        out
    }};
}

trait Setting {
    fn text(&self) -> String;
}
impl Setting for PathBuf {
    fn text(&self) -> String {
        self.display().to_string()
    }
}
impl Setting for Vec<String> {
    fn text(&self) -> String {
        self.join(",")
    }
}
macro_rules! display_setting {
    ($($t:ty),*) => { $( impl Setting for $t { fn text(&self) -> String { self.to_string() } } )* };
}
display_setting!(String, SocketAddr, u64, usize, f64, bool);

impl KmsSection {
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        vars!(self, {
            listen => "VODKMS_LISTEN",
            database_url_file => "DATABASE_URL_FILE",
            root_key_file => "VODKMS_ROOT_KEY_FILE",
            tls_cert => "VODKMS_TLS_CERT",
            tls_key => "VODKMS_TLS_KEY",
            cache_ttl_secs => "VODKMS_CACHE_TTL_SECS",
            audit_buffer => "VODKMS_AUDIT_BUFFER",
            audit_flush_ms => "VODKMS_AUDIT_FLUSH_MS",
            maintenance_interval_secs => "VODKMS_MAINTENANCE_INTERVAL_SECS",
            max_stale_secs => "VODKMS_MAX_STALE_SECS",
            aws_region => "VODKMS_AWS_REGION",
            aws_account_id => "VODKMS_AWS_ACCOUNT_ID",
            alibaba_region => "VODKMS_ALIBABA_REGION",
            tencent_region => "VODKMS_TENCENT_REGION",
            header_timeout_secs => "VODKMS_HEADER_TIMEOUT_SECS",
            idle_timeout_secs => "VODKMS_IDLE_TIMEOUT_SECS",
            body_timeout_secs => "VODKMS_BODY_TIMEOUT_SECS",
            max_connections => "VODKMS_MAX_CONNECTIONS",
        })
    }
}

impl BrokerSection {
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        vars!(self, {
            listen => "VODKMS_BROKER_LISTEN",
            kms_url => "VODKMS_KMS_URL",
            database_url_file => "DATABASE_URL_FILE",
            kms_token_file => "VODKMS_KMS_TOKEN_FILE",
            kms_ca_file => "VODKMS_KMS_CA_FILE",
            token_secret_file => "VODKMS_TOKEN_SECRET_FILE",
            token_public_key_file => "VODKMS_TOKEN_PUBLIC_KEY_FILE",
            tls_cert => "VODKMS_TLS_CERT",
            tls_key => "VODKMS_TLS_KEY",
            cors_origins => "VODKMS_CORS_ORIGINS",
            cookie_secure => "VODKMS_COOKIE_SECURE",
            cookie_same_site => "VODKMS_COOKIE_SAMESITE",
            client_ip_header => "VODKMS_CLIENT_IP_HEADER",
            trusted_proxies => "VODKMS_TRUSTED_PROXIES",
            key_uri_base => "VODKMS_KEY_URI_BASE",
            key_cache_ttl_secs => "VODKMS_KEY_CACHE_TTL_SECS",
            key_cache_capacity => "VODKMS_KEY_CACHE_CAPACITY",
            max_stale_secs => "VODKMS_MAX_STALE_SECS",
            key_max_age_secs => "VODKMS_KEY_MAX_AGE_SECS",
            token_leeway_secs => "VODKMS_TOKEN_LEEWAY_SECS",
            max_token_lifetime_secs => "VODKMS_MAX_TOKEN_LIFETIME_SECS",
            login_token_ttl_secs => "VODKMS_LOGIN_TOKEN_TTL_SECS",
            session_idle_secs => "VODKMS_SESSION_IDLE_SECS",
            session_max_secs => "VODKMS_SESSION_MAX_SECS",
            token_rate => "VODKMS_TOKEN_RATE",
            token_burst => "VODKMS_TOKEN_BURST",
            address_rate => "VODKMS_ADDRESS_RATE",
            address_burst => "VODKMS_ADDRESS_BURST",
            management_rate => "VODKMS_MANAGEMENT_RATE",
            management_burst => "VODKMS_MANAGEMENT_BURST",
            audit_buffer => "VODKMS_AUDIT_BUFFER",
            audit_flush_ms => "VODKMS_AUDIT_FLUSH_MS",
            origin_dir => "VODKMS_ORIGIN_DIR",
            web_dir => "VODKMS_WEB_DIR",
            playlist_token_ttl_secs => "VODKMS_PLAYLIST_TOKEN_TTL_SECS",
            header_timeout_secs => "VODKMS_HEADER_TIMEOUT_SECS",
            idle_timeout_secs => "VODKMS_IDLE_TIMEOUT_SECS",
            body_timeout_secs => "VODKMS_BODY_TIMEOUT_SECS",
            max_connections => "VODKMS_MAX_CONNECTIONS",
            max_streams_per_viewer => "VODKMS_MAX_STREAMS_PER_VIEWER",
            stream_idle_secs => "VODKMS_STREAM_IDLE_SECS",
            max_addresses_per_token => "VODKMS_MAX_ADDRESSES_PER_TOKEN",
            share_max_addresses => "VODKMS_SHARE_MAX_ADDRESSES",
            share_max_videos => "VODKMS_SHARE_MAX_VIDEOS",
            share_window_secs => "VODKMS_SHARE_WINDOW_SECS",
            allowed_page_origins => "VODKMS_ALLOWED_PAGE_ORIGINS",
            bind_playlist_tokens => "VODKMS_BIND_PLAYLIST_TOKENS",
            risk_webhook_url => "VODKMS_RISK_WEBHOOK_URL",
            risk_webhook_secret_file => "VODKMS_RISK_WEBHOOK_SECRET_FILE",
        })
    }
}

/// Keys people reach for that hold secrets, and what to use instead.
const SECRET_KEYS: &[(&str, &str)] = &[
    (
        "database_url",
        "database_url_file, or DATABASE_URL in the environment",
    ),
    ("root_key", "root_key_file, or VODKMS_ROOT_KEY"),
    ("kms_token", "kms_token_file, or VODKMS_KMS_TOKEN"),
    ("token_secret", "token_secret_file, or VODKMS_TOKEN_SECRET"),
    ("token_public_key", "token_public_key_file"),
    (
        "risk_webhook_secret",
        "risk_webhook_secret_file, or VODKMS_RISK_WEBHOOK_SECRET",
    ),
];

/// Reads and checks the file; the error says where and what.
pub fn load(path: &Path) -> Result<ConfigFile, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("config file {}: {e}", path.display()))?;
    parse(&text, &path.display().to_string())
}

/// Parses a config file's text; `origin` names it in the error. Fuzzed
/// (`fuzz/`: config_file).
pub fn parse(text: &str, origin: &str) -> Result<ConfigFile, String> {
    toml::from_str(text).map_err(|e| {
        let mut message = format!("config file {origin}: {e}");
        for (key, instead) in SECRET_KEYS {
            if message.contains(&format!("unknown field `{key}`")) {
                message.push_str(&format!(
                    "\nsecrets are never read from the config file: use {instead}"
                ));
            }
        }
        message
    })
}

/// Which section a command line runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Kms,
    Broker,
    Other,
}

/// The top-level commands; the first of these on the line decides (flag
/// values in between are skipped).
const COMMANDS: &[&str] = &[
    "kms",
    "broker",
    "bootstrap",
    "rekey-root",
    "gen-root-key",
    "dev",
    "keys",
    "clients",
    "viewers",
    "tokens",
    "sessions",
    "policy",
    "audit",
    "probe",
    "datakey",
    "hls",
    "config",
    "help",
];

/// The top-level command of a command line.
pub fn command_of(args: &[String]) -> Option<&str> {
    args.iter()
        .skip(1)
        .find(|a| COMMANDS.contains(&a.as_str()))
        .map(String::as_str)
}

pub fn role_of(args: &[String]) -> Role {
    match command_of(args) {
        Some("kms" | "bootstrap" | "rekey-root") => Role::Kms,
        Some("broker") => Role::Broker,
        _ => Role::Other,
    }
}

/// The config file named by `--config FILE`, `--config=FILE` or VODKMS_CONFIG.
pub fn path_from(args: &[String]) -> Option<PathBuf> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(p) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(p));
        }
    }
    std::env::var_os("VODKMS_CONFIG").map(PathBuf::from)
}

/// The variables the file gives for `role`, minus those already set.
pub fn missing_vars(file: &ConfigFile, role: Role) -> Vec<(&'static str, String)> {
    let mut vars = match role {
        Role::Kms => file.kms.as_ref().map(KmsSection::vars).unwrap_or_default(),
        Role::Broker => file
            .broker
            .as_ref()
            .map(BrokerSection::vars)
            .unwrap_or_default(),
        Role::Other => Vec::new(),
    };
    if let Some(f) = &file.log_format {
        vars.push(("VODKMS_LOG_FORMAT", f.clone()));
    }
    let set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
    // A secret given directly in the environment beats the file's path to one.
    const SHADOWED: &[(&str, &str)] = &[
        ("DATABASE_URL_FILE", "DATABASE_URL"),
        ("VODKMS_ROOT_KEY_FILE", "VODKMS_ROOT_KEY"),
        ("VODKMS_KMS_TOKEN_FILE", "VODKMS_KMS_TOKEN"),
        ("VODKMS_TOKEN_SECRET_FILE", "VODKMS_TOKEN_SECRET"),
        ("VODKMS_TOKEN_PUBLIC_KEY_FILE", "VODKMS_TOKEN_PUBLIC_KEY"),
    ];
    vars.retain(|(k, _)| {
        !set(k)
            && !SHADOWED
                .iter()
                .any(|(file, direct)| k == file && set(direct))
    });
    vars
}

/// `vodkms config check`: every problem found in the file, for both servers.
pub fn check(path: &Path) -> Vec<String> {
    let file = match load(path) {
        Ok(f) => f,
        Err(e) => return vec![e],
    };
    let mut problems = Vec::new();
    if let Some(f) = &file.log_format {
        if !["text", "json"].contains(&f.as_str()) {
            problems.push(format!("log_format must be text or json, not {f:?}"));
        }
    }
    if file.kms.is_none() && file.broker.is_none() {
        problems.push("the file has neither a [kms] nor a [broker] section".into());
    }
    let readable = |problems: &mut Vec<String>, section: &str, key: &str, p: &Option<PathBuf>| {
        if let Some(p) = p {
            if let Err(e) = std::fs::metadata(p) {
                problems.push(format!(
                    "[{section}] {key} = {:?}: {e}",
                    p.display().to_string()
                ));
            }
        }
    };
    if let Some(k) = &file.kms {
        readable(
            &mut problems,
            "kms",
            "database_url_file",
            &k.database_url_file,
        );
        readable(&mut problems, "kms", "root_key_file", &k.root_key_file);
        readable(&mut problems, "kms", "tls_cert", &k.tls_cert);
        readable(&mut problems, "kms", "tls_key", &k.tls_key);
        if k.tls_cert.is_some() != k.tls_key.is_some() {
            problems.push("[kms] tls_cert and tls_key go together".into());
        }
        if let Some(p) = &k.root_key_file {
            if let Ok(bytes) = std::fs::read(p) {
                let text = String::from_utf8_lossy(&bytes);
                if bytes.len() != 32 && kms::crypto::RootKey::from_base64(text.trim()).is_err() {
                    problems
                        .push("[kms] root_key_file holds neither 32 bytes nor their base64".into());
                }
            }
        }
    }
    if let Some(b) = &file.broker {
        for (key, p) in [
            ("database_url_file", &b.database_url_file),
            ("kms_token_file", &b.kms_token_file),
            ("kms_ca_file", &b.kms_ca_file),
            ("token_secret_file", &b.token_secret_file),
            ("token_public_key_file", &b.token_public_key_file),
            ("tls_cert", &b.tls_cert),
            ("tls_key", &b.tls_key),
            ("origin_dir", &b.origin_dir),
            ("web_dir", &b.web_dir),
        ] {
            readable(&mut problems, "broker", key, p);
        }
        if b.tls_cert.is_some() != b.tls_key.is_some() {
            problems.push("[broker] tls_cert and tls_key go together".into());
        }
        match &b.kms_url {
            None => problems.push("[broker] kms_url is required".into()),
            Some(u) if !(u.starts_with("http://") || u.starts_with("https://")) => problems.push(
                format!("[broker] kms_url {u:?} must start with http:// or https://"),
            ),
            Some(_) => {}
        }
        if b.token_secret_file.is_none() && b.token_public_key_file.is_none() {
            problems.push(
                "[broker] needs token_secret_file or token_public_key_file (or the environment's VODKMS_TOKEN_SECRET)"
                    .into(),
            );
        }
        if let Some(p) = &b.token_secret_file {
            if let Ok(text) = std::fs::read_to_string(p) {
                if broker::token::TokenKeys::secret_from_base64(text.trim()).is_err() {
                    problems.push(
                        "[broker] token_secret_file must hold base64 of at least 32 bytes".into(),
                    );
                }
            }
        }
        if let Some(origins) = &b.cors_origins {
            if let Err(e) = broker::http::CorsOrigins::parse(&origins.join(",")) {
                problems.push(format!("[broker] cors_origins: {e}"));
            }
        }
        if let Some(bases) = &b.key_uri_base {
            if let Err(e) = hls::rewrite::TokenTargets::new(bases) {
                problems.push(format!("[broker] key_uri_base: {e}"));
            }
        }
        if let Some(proxies) = &b.trusted_proxies {
            if let Err(e) = broker::http::parse_trusted_proxies(&proxies.join(",")) {
                problems.push(format!("[broker] trusted_proxies: {e}"));
            }
        }
        if let Some(s) = &b.cookie_same_site {
            if !["lax", "strict", "none"].contains(&s.to_ascii_lowercase().as_str()) {
                problems.push(format!(
                    "[broker] cookie_same_site must be Lax, Strict or None, not {s:?}"
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_paths() {
        let a = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(role_of(&a("vodkms kms serve --listen x")), Role::Kms);
        assert_eq!(
            role_of(&a("vodkms --log-format json broker serve")),
            Role::Broker
        );
        assert_eq!(role_of(&a("vodkms keys list")), Role::Other);
        assert_eq!(
            path_from(&a("vodkms --config /a.toml kms serve")),
            Some(PathBuf::from("/a.toml"))
        );
        assert_eq!(
            path_from(&a("vodkms kms serve --config=/b.toml")),
            Some(PathBuf::from("/b.toml"))
        );
    }
}
