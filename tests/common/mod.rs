//! Test harness: a fresh database per test on the PostgreSQL that
//! `scripts/test` started, real `vodkms` processes on 127.0.0.1, and a TCP
//! proxy that can cut the database away from a server.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod brokers;
pub mod cloud;
pub mod media;
pub mod proxy;

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::{Connection, Executor, PgConnection};

pub const BIN: &str = env!("CARGO_BIN_EXE_vodkms");

pub fn admin_database_url() -> String {
    std::env::var("DATABASE_URL")
        .expect("DATABASE_URL is unset: run the tests through scripts/test")
}

/// `url` with its database name replaced.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, ""), |(b, q)| (b, q));
    let (server, _) = base
        .rsplit_once('/')
        .expect("DATABASE_URL has no database path");
    if query.is_empty() {
        format!("{server}/{name}")
    } else {
        format!("{server}/{name}?{query}")
    }
}

/// Creates an empty database and returns its URL.
pub async fn fresh_database() -> String {
    let admin = admin_database_url();
    let name = format!("vodkms_t_{}", uuid::Uuid::new_v4().simple());
    let mut conn = PgConnection::connect(&admin)
        .await
        .expect("connect to DATABASE_URL");
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap();
    conn.close().await.ok();
    with_database(&admin, &name)
}

/// A path for a new SQLite database file under the target's temp folder.
pub fn fresh_sqlite_path() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("vodkms-{}.db", uuid::Uuid::new_v4().simple()))
}

/// A client that trusts only the public roots and the test CA `ca_pem`.
pub fn tls_client(ca_pem: &[u8]) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem).unwrap())
        .tls_info(true)
        .build()
        .unwrap()
}

pub fn random_root_key() -> String {
    let out = Command::new(BIN).arg("gen-root-key").output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn log_path(tag: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{tag}-{}.log", uuid::Uuid::new_v4().simple()))
}

/// A running `vodkms` server (KMS or broker); killed on drop.
pub struct ServerProcess {
    pub url: String,
    pub port: u16,
    pub log: PathBuf,
    child: Child,
}

pub type KmsProcess = ServerProcess;
pub type BrokerProcess = ServerProcess;

impl ServerProcess {
    pub async fn start(db: &str, root_key: &str, env: &[(&str, &str)]) -> Self {
        match Self::try_start(db, root_key, env).await {
            Ok(p) => p,
            Err(log) => panic!("KMS did not start:\n{log}"),
        }
    }

    /// `Err(log)` if the process exits before answering /healthz.
    pub async fn try_start(db: &str, root_key: &str, env: &[(&str, &str)]) -> Result<Self, String> {
        Self::try_start_kms_on(free_port(), db, root_key, env).await
    }

    pub async fn try_start_kms_on(
        port: u16,
        db: &str,
        root_key: &str,
        env: &[(&str, &str)],
    ) -> Result<Self, String> {
        let mut all = vec![("DATABASE_URL", db), ("VODKMS_ROOT_KEY", root_key)];
        all.extend_from_slice(env);
        Self::spawn(&["kms", "serve"], port, &all, "kms").await
    }

    /// `vodkms broker serve` against `kms_url`, with `kms_token` (a decrypt
    /// client) and the HS256 `secret` (base64).
    pub async fn start_broker(
        db: &str,
        kms_url: &str,
        kms_token: &str,
        secret: &str,
        env: &[(&str, &str)],
    ) -> Self {
        // Its own address is the key URI base of the playlists tests write.
        let port = free_port();
        let own = format!("http://127.0.0.1:{port}");
        let mut all = vec![
            ("DATABASE_URL", db),
            ("VODKMS_KMS_TOKEN", kms_token),
            ("VODKMS_TOKEN_SECRET", secret),
            ("VODKMS_KMS_URL", kms_url),
            ("VODKMS_KEY_URI_BASE", own.as_str()),
        ];
        all.extend_from_slice(env);
        match Self::spawn(&["broker", "serve"], port, &all, "broker").await {
            Ok(p) => p,
            Err(log) => panic!("broker did not start:\n{log}"),
        }
    }

    /// Runs `vodkms ARGS --listen 127.0.0.1:PORT` until it answers /healthz;
    /// what it prints goes to its log.
    pub async fn spawn(
        args: &[&str],
        port: u16,
        env: &[(&str, &str)],
        tag: &str,
    ) -> Result<Self, String> {
        Self::spawn_with(args, port, env, tag, "http", reqwest::Client::new(), None).await
    }

    /// As `spawn`, confined to CPU 0 (`taskset`), as a one-core machine or
    /// container runs it.
    pub async fn spawn_on_one_core(
        args: &[&str],
        port: u16,
        env: &[(&str, &str)],
        tag: &str,
    ) -> Result<Self, String> {
        let http = reqwest::Client::new();
        Self::spawn_with(args, port, env, tag, "http", http, Some("0")).await
    }

    /// As `spawn`, for a server that serves HTTPS with a certificate of the
    /// test CA `ca_pem`.
    pub async fn spawn_tls(
        args: &[&str],
        port: u16,
        env: &[(&str, &str)],
        tag: &str,
        ca_pem: &[u8],
    ) -> Result<Self, String> {
        Self::spawn_with(args, port, env, tag, "https", tls_client(ca_pem), None).await
    }

    async fn spawn_with(
        args: &[&str],
        port: u16,
        env: &[(&str, &str)],
        tag: &str,
        scheme: &str,
        http: reqwest::Client,
        cpus: Option<&str>,
    ) -> Result<Self, String> {
        let log = log_path(tag);
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = match cpus {
            // taskset execs the server: the child's pid stays the server's.
            Some(list) => {
                let mut c = Command::new("taskset");
                c.args(["-c", list, BIN]);
                c
            }
            None => Command::new(BIN),
        };
        cmd.args(args)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "info,kms=debug,broker=debug,sqlx=warn")
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let url = format!("{scheme}://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(_status) = child.try_wait().unwrap() {
                return Err(std::fs::read_to_string(&log).unwrap_or_default());
            }
            if let Ok(r) = http.get(format!("{url}/healthz")).send().await {
                if r.status().is_success() {
                    return Ok(Self {
                        url,
                        port,
                        log,
                        child,
                    });
                }
            }
            assert!(
                Instant::now() < deadline,
                "{tag} did not answer /healthz in time"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn api(&self) -> Api {
        Api::new(&self.url)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(self) -> std::process::ExitStatus {
        self.signal_term();
        self.wait_exit()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal_term(&self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    }

    /// Waits (at most 60 s) for the process to exit.
    pub fn wait_exit(mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `vodkms bootstrap` and returns the admin token.
pub fn bootstrap(db: &str, root_key: &str) -> String {
    bootstrap_with(db, root_key, &[])
}

/// `vodkms bootstrap` with the servers' environment (its audit settings).
pub fn bootstrap_with(db: &str, root_key: &str, env: &[(&str, &str)]) -> String {
    let out = Command::new(BIN)
        .arg("bootstrap")
        .env("DATABASE_URL", db)
        .env("VODKMS_ROOT_KEY", root_key)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bootstrap failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("bootstrap prints JSON");
    v["Token"]
        .as_str()
        .expect("bootstrap JSON has Token")
        .to_owned()
}

/// A response: status, JSON body (Null if none), request id header.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub request_id: String,
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["Code"].as_str().unwrap_or("")
    }

    /// Asserts an error reply with this status and code, in the documented shape.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status, self.code()),
            (status, code),
            "{:?}",
            self.body
        );
        assert!(
            self.body["Message"].as_str().is_some_and(|m| !m.is_empty()),
            "{:?}",
            self.body
        );
        assert_eq!(
            self.body["RequestId"].as_str(),
            Some(self.request_id.as_str()),
            "{:?}",
            self.body
        );
    }

    #[track_caller]
    pub fn ok(&self) -> &Value {
        assert!(
            (200..300).contains(&self.status),
            "expected success, got {} {:?}",
            self.status,
            self.body
        );
        &self.body
    }
}

#[derive(Clone)]
pub struct Api {
    pub base: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.to_owned(),
            http: reqwest::Client::new(),
        }
    }

    /// Over HTTPS, trusting the test CA `ca_pem`.
    pub fn with_ca(base: &str, ca_pem: &[u8]) -> Self {
        Self {
            base: base.to_owned(),
            http: tls_client(ca_pem),
        }
    }

    /// Requests that take longer than `timeout` fail the test.
    pub fn with_timeout(base: &str, timeout: Duration) -> Self {
        Self {
            base: base.to_owned(),
            http: reqwest::Client::builder().timeout(timeout).build().unwrap(),
        }
    }

    pub async fn raw(&self, req: reqwest::RequestBuilder) -> Reply {
        let resp = req.send().await.expect("request failed");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let request_id = headers
            .get("x-request-id")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let bytes = resp.bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| panic!("non-JSON body: {}", String::from_utf8_lossy(&bytes)))
        };
        Reply {
            status,
            body,
            request_id,
            headers,
        }
    }

    /// A response whose body is not JSON (key bytes).
    pub async fn raw_bytes(
        &self,
        req: reqwest::RequestBuilder,
    ) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
        let resp = req.send().await.expect("request failed");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, headers, resp.bytes().await.unwrap().to_vec())
    }

    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.raw(self.request(reqwest::Method::GET, path, Some(token)))
            .await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.raw(
            self.request(reqwest::Method::POST, path, Some(token))
                .json(&body),
        )
        .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Reply {
        self.raw(self.request(reqwest::Method::DELETE, path, Some(token)))
            .await
    }

    pub async fn create_key(&self, admin: &str, alias: &str) -> String {
        let r = self
            .post("/v1/keys", admin, json!({ "Alias": alias }))
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        r.body["KeyId"].as_str().unwrap().to_owned()
    }

    /// Creates a client and returns `(ClientId, Token)`.
    pub async fn create_client(
        &self,
        admin: &str,
        role: &str,
        key_ids: Option<Vec<&str>>,
    ) -> (String, String) {
        let mut body = json!({ "Name": format!("{role}-client"), "Role": role });
        if let Some(ids) = key_ids {
            body["KeyIds"] = json!(ids);
        }
        let r = self.post("/v1/clients", admin, body).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        (
            r.body["ClientId"].as_str().unwrap().to_owned(),
            r.body["Token"].as_str().unwrap().to_owned(),
        )
    }

    pub async fn generate(&self, token: &str, key: &str, video: &str) -> Reply {
        self.post(
            "/v1/generate-data-key",
            token,
            json!({ "KeyId": key, "EncryptionContext": { "video_id": video } }),
        )
        .await
    }

    pub async fn decrypt(&self, token: &str, blob: &str, video: &str) -> Reply {
        self.post(
            "/v1/decrypt",
            token,
            json!({ "CiphertextBlob": blob, "EncryptionContext": { "video_id": video } }),
        )
        .await
    }

    /// Audit records matching `query`, polling until `pred` holds (records are
    /// written in batches, a moment after the call).
    pub async fn audit_until(
        &self,
        admin: &str,
        query: &str,
        pred: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = self.get(&format!("/v1/audit?{query}"), admin).await;
            let records = r.ok()["Records"].as_array().unwrap().clone();
            if pred(&records) {
                return records;
            }
            assert!(
                Instant::now() < deadline,
                "audit never matched; last: {records:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Polls `f` until it returns true, for at most `secs` seconds.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A server with an admin, a key `alias/vod`, and generate/decrypt clients.
pub struct Setup {
    pub db: String,
    pub root_key: String,
    pub kms: KmsProcess,
    pub api: Api,
    pub admin: String,
    pub key_id: String,
    pub generator: String,
    pub decryptor: String,
}

impl Setup {
    pub async fn new() -> Self {
        Self::with_env(&[]).await
    }

    pub async fn with_env(env: &[(&str, &str)]) -> Self {
        let db = fresh_database().await;
        let root_key = random_root_key();
        let kms = KmsProcess::start(&db, &root_key, env).await;
        let admin = bootstrap_with(&db, &root_key, env);
        let api = kms.api();
        let key_id = api.create_key(&admin, "alias/vod").await;
        let (_, generator) = api.create_client(&admin, "generate", None).await;
        let (_, decryptor) = api.create_client(&admin, "decrypt", None).await;
        Self {
            db,
            root_key,
            kms,
            api,
            admin,
            key_id,
            generator,
            decryptor,
        }
    }
}
