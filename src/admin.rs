//! Admin commands on top of the typed KMS client: `vodkms keys|clients|
//! viewers|tokens|audit`. Human tables by default, `--json` for scripts.
//!
//! Exit codes scripts can rely on: 0 done; 1 a local problem (no token, bad
//! file); 2 bad usage (from clap); 3 the server refused (4xx other than 404);
//! 4 not found (404); 5 the server is unavailable (network, 5xx).

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use kms_api::client::{ClientConfig, ClientError, KmsClient, Method};
use serde_json::{json, Value};
use zeroize::Zeroizing;

#[derive(Args)]
pub struct Target {
    /// Base URL of the KMS (e.g. http://127.0.0.1:8200, or .../kms for `vodkms dev`).
    #[arg(long, env = "VODKMS_KMS_URL", global = true)]
    kms_url: Option<String>,
    /// Base URL of the broker (viewers, tokens, the broker's audit).
    #[arg(long, env = "VODKMS_BROKER_URL", global = true)]
    broker_url: Option<String>,
    /// Print JSON (the API's own answer) instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// PEM file of a private CA to trust for https:// servers.
    #[arg(long, env = "VODKMS_CA_FILE", global = true)]
    ca_file: Option<std::path::PathBuf>,
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create a master key.
    Create {
        #[arg(long)]
        alias: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// Rotate automatically every N days.
        #[arg(long)]
        rotation_days: Option<u32>,
        /// Bind data keys minted for a video (video_id context) to that
        /// video's secret, so `vodkms videos shred` can crypto-shred it.
        #[arg(long)]
        per_video_keys: bool,
    },
    /// List master keys.
    List,
    /// Show one key (id or alias/NAME) with its versions.
    Show {
        key: String,
    },
    /// Add a version that becomes primary; old versions keep decrypting.
    Rotate {
        key: String,
    },
    /// Stop the key from generating and decrypting.
    Disable {
        key: String,
    },
    Enable {
        key: String,
    },
    /// Destroy the key after a waiting period (7 to 30 days).
    ScheduleDeletion {
        key: String,
        #[arg(long, default_value_t = 30)]
        days: u32,
    },
    CancelDeletion {
        key: String,
    },
    /// Refuse EDKs of versions below MIN (KeyVersionRetired); a lower MIN
    /// (1) brings them back. Rewrap published EDKs first (vodkms hls rewrap).
    RetireVersions {
        key: String,
        min: u32,
    },
    /// Decrypts per version over the last DAYS days: is retiring safe?
    Usage {
        key: String,
        #[arg(long, default_value_t = 30)]
        days: u32,
    },
}

#[derive(Subcommand)]
pub enum VideosCommand {
    /// A video's crypto-shred state.
    Show { video: String },
    /// Crypto-shred a video: its per-video keys are refused at once, and
    /// after WINDOW days (0: now) can never be decrypted again.
    Shred {
        video: String,
        #[arg(long, default_value_t = 7)]
        window_days: u32,
    },
    /// Cancel a scheduled shred before its date.
    CancelShred { video: String },
}

#[derive(Subcommand)]
pub enum ClientsCommand {
    /// Create an API client; its token is shown once.
    Create {
        #[arg(long)]
        name: String,
        /// admin | generate | decrypt | issuer, or data roles together:
        /// `generate,decrypt`
        #[arg(long)]
        role: String,
        /// Limit the client to these keys (repeat); default every key.
        #[arg(long = "key")]
        keys: Vec<String>,
    },
    List,
    /// Revoke a client by id: its token stops working at once.
    Revoke {
        id: uuid::Uuid,
    },
    /// Access keys for the AWS, Alibaba Cloud and Tencent Cloud SDKs.
    #[command(subcommand)]
    AccessKeys(AccessKeysCommand),
}

#[derive(Subcommand)]
pub enum AccessKeysCommand {
    /// Create an access key for a client (at most 2); the secret is shown once.
    Create { client_id: uuid::Uuid },
    /// List a client's access keys (no secrets).
    List { client_id: uuid::Uuid },
    /// Delete an access key: requests signed with it are refused at once.
    Delete {
        client_id: uuid::Uuid,
        access_key_id: String,
    },
}

#[derive(Subcommand)]
pub enum ViewersCommand {
    /// Create a viewer account; the password is read from VODKMS_VIEWER_PASSWORD
    /// or the first line of standard input.
    Create {
        username: String,
        /// Video ids the viewer may watch (repeat), or `*`.
        #[arg(long = "video")]
        videos: Vec<String>,
    },
    List,
    Show {
        username: String,
    },
    /// Change entitlements or turn the account off or on (ends its tokens when off).
    Update {
        username: String,
        #[arg(long = "video")]
        videos: Vec<String>,
        #[arg(long, conflicts_with = "enable")]
        disable: bool,
        #[arg(long)]
        enable: bool,
        /// This viewer's concurrent-stream limit (0: none; `default`: the
        /// broker's --max-streams-per-viewer).
        #[arg(long)]
        max_streams: Option<String>,
        /// This viewer's addresses-per-token limit (0: none; `default`).
        #[arg(long)]
        max_addresses_per_token: Option<String>,
    },
    Delete {
        username: String,
    },
}

#[derive(Subcommand)]
pub enum SessionsCommand {
    /// A viewer's playback sessions that have not gone idle.
    List {
        #[arg(long)]
        viewer: String,
    },
    /// End a session: it no longer counts, and its token is revoked.
    End { session_id: String },
}

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Show a video's own page-origin allow-list.
    Show { video: String },
    /// Set the page origins a video may be played from (`none`: requests
    /// without Origin or Referer).
    Set {
        video: String,
        #[arg(long = "origin", required = true)]
        origins: Vec<String>,
    },
    /// Remove a video's own list (the broker-wide one applies again).
    Delete { video: String },
}

#[derive(Subcommand)]
pub enum TokensCommand {
    /// Mint a playback token (needs an `issuer` token in VODKMS_TOKEN).
    Mint {
        #[arg(long)]
        viewer: String,
        #[arg(long = "video", required = true)]
        videos: Vec<String>,
        #[arg(long)]
        ttl: Option<u64>,
    },
    /// Revoke a token (by TokenId), every token of a viewer, or a video.
    Revoke {
        /// Token | Viewer | Video
        #[arg(long = "type", default_value = "Token")]
        kind: String,
        id: String,
    },
}

#[derive(Args)]
pub struct AuditArgs {
    /// The broker's trail (key releases, sign-ins) instead of the KMS's.
    #[arg(long)]
    broker: bool,
    /// Keep printing new records as they are written.
    #[arg(long)]
    follow: bool,
    #[arg(long, default_value_t = 20)]
    limit: u32,
    /// Only this operation (e.g. Decrypt, ReleaseKey).
    #[arg(long)]
    operation: Option<String>,
    /// KMS: only this key id.
    #[arg(long)]
    key: Option<String>,
    /// Broker: only this viewer.
    #[arg(long)]
    viewer: Option<String>,
    /// Broker: only this video.
    #[arg(long)]
    video: Option<String>,
}

/// What went wrong, with the exit code it maps to.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn local(message: impl Into<String>) -> Self {
        Self {
            code: 1,
            message: message.into(),
        }
    }
}

fn from_client(what: &str, e: ClientError) -> Failure {
    match e {
        ClientError::Api {
            status: 404,
            code,
            message,
        } => Failure {
            code: 4,
            message: format!("{what}: not found ({code}): {message}"),
        },
        ClientError::Api {
            status: 401,
            code,
            message,
        } => Failure {
            code: 3,
            message: format!(
                "{what}: not signed in ({code}: {message}). Is VODKMS_TOKEN the token of an active client?"
            ),
        },
        ClientError::Api {
            status: 403,
            code,
            message,
        } => Failure {
            code: 3,
            message: format!(
                "{what}: refused ({code}: {message}). This needs a client of another role."
            ),
        },
        ClientError::Api {
            status,
            code,
            message,
        } if status < 500 => Failure {
            code: 3,
            message: format!("{what}: refused ({status} {code}): {message}"),
        },
        other => Failure {
            code: 5,
            message: format!("{what}: the server is unavailable ({other}); check the URL and retry"),
        },
    }
}

fn client(t: &Target, url: Option<&str>, which: &str, flag: &str) -> Result<KmsClient, Failure> {
    let url = url.ok_or_else(|| {
        Failure::local(format!(
            "no {which} URL: give {flag} or set VODKMS_{}_URL",
            which.to_uppercase()
        ))
    })?;
    let token = std::env::var("VODKMS_TOKEN")
        .ok()
        .map(Zeroizing::new)
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| Failure::local("set VODKMS_TOKEN to your API client token"))?;
    let ca_pem = t
        .ca_file
        .as_ref()
        .map(|p| {
            std::fs::read(p).map_err(|e| Failure::local(format!("reading {}: {e}", p.display())))
        })
        .transpose()?;
    let config = ClientConfig {
        retries: 1,
        ca_pem,
        ..ClientConfig::default()
    };
    KmsClient::new(url, kms_api::ApiToken::from_presented(token.trim()), config)
        .map_err(|e| Failure::local(e.to_string()))
}

fn kms(t: &Target) -> Result<KmsClient, Failure> {
    client(t, t.kms_url.as_deref(), "kms", "--kms-url")
}

fn broker(t: &Target) -> Result<KmsClient, Failure> {
    client(t, t.broker_url.as_deref(), "broker", "--broker-url")
}

fn finish(result: Result<(), Failure>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

async fn call(
    c: &KmsClient,
    what: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value, Failure> {
    let safe = method == Method::GET || method == Method::DELETE;
    c.request_json(method, path, body.as_ref(), safe)
        .await
        .map_err(|e| from_client(what, e))
}

/// One path segment, percent-encoded (aliases keep their slash).
fn seg(s: &str) -> String {
    kms_api::client::path_segment(s)
}

pub async fn keys(t: Target, cmd: KeysCommand) -> ExitCode {
    finish(keys_inner(&t, cmd).await)
}

async fn keys_inner(t: &Target, cmd: KeysCommand) -> Result<(), Failure> {
    let c = kms(t)?;
    let (what, answer) = match cmd {
        KeysCommand::Create {
            alias,
            description,
            rotation_days,
            per_video_keys,
        } => {
            let body = json!({
                "Alias": alias, "Description": description, "RotationPeriodInDays": rotation_days,
                "PerVideoKeys": per_video_keys.then_some(true),
            });
            let body = strip_nulls(body);
            (
                "create key",
                call(&c, "create key", Method::POST, "/v1/keys", Some(body)).await?,
            )
        }
        KeysCommand::List => {
            let v = call(&c, "list keys", Method::GET, "/v1/keys", None).await?;
            return print(t, &v, |v| key_table(v["Keys"].as_array()));
        }
        KeysCommand::Show { key } => {
            let path = format!("/v1/keys/{}", seg(&key));
            (
                "show key",
                call(&c, "show key", Method::GET, &path, None).await?,
            )
        }
        KeysCommand::Rotate { key } => ("rotate", action(&c, &key, "rotate", json!({})).await?),
        KeysCommand::Disable { key } => ("disable", action(&c, &key, "disable", json!({})).await?),
        KeysCommand::Enable { key } => ("enable", action(&c, &key, "enable", json!({})).await?),
        KeysCommand::ScheduleDeletion { key, days } => (
            "schedule deletion",
            action(
                &c,
                &key,
                "schedule-deletion",
                json!({ "PendingWindowInDays": days }),
            )
            .await?,
        ),
        KeysCommand::CancelDeletion { key } => (
            "cancel deletion",
            action(&c, &key, "cancel-deletion", json!({})).await?,
        ),
        KeysCommand::RetireVersions { key, min } => (
            "retire versions",
            action(
                &c,
                &key,
                "retire-versions",
                json!({ "MinDecryptionVersion": min }),
            )
            .await?,
        ),
        KeysCommand::Usage { key, days } => {
            // One segment (alias%2FNAME): `/v1/keys/alias/...` paths name
            // aliases, which may contain slashes themselves.
            let key = seg(&key).replace('/', "%2F");
            let path = format!("/v1/keys/{key}/version-usage?Days={days}");
            let v = call(&c, "version usage", Method::GET, &path, None).await?;
            return print(t, &v, |v| {
                let mut out = String::from("VERSION  RETIRED  DECRYPTS  REFUSED  LAST DECRYPT\n");
                for e in v["Versions"].as_array().into_iter().flatten() {
                    out.push_str(&format!(
                        "{:<8} {:<8} {:<9} {:<8} {}\n",
                        e["KeyVersionId"],
                        e["Retired"],
                        e["Decrypts"],
                        e["RefusedAsRetired"],
                        e["LastDecrypt"].as_str().unwrap_or("-"),
                    ));
                }
                out
            });
        }
    };
    let _ = what;
    print(t, &answer, |v| {
        if v.get("KeyState").is_some() {
            key_table(Some(&vec![v.clone()]))
        } else {
            fields(v)
        }
    })
}

async fn action(c: &KmsClient, key: &str, action: &str, body: Value) -> Result<Value, Failure> {
    let path = format!("/v1/keys/{}/{action}", seg(key));
    call(c, action, Method::POST, &path, Some(body)).await
}

pub async fn videos(t: Target, cmd: VideosCommand) -> ExitCode {
    finish(videos_inner(&t, cmd).await)
}

async fn videos_inner(t: &Target, cmd: VideosCommand) -> Result<(), Failure> {
    let c = kms(t)?;
    let answer = match cmd {
        VideosCommand::Show { video } => {
            let path = format!("/v1/videos/{}", seg(&video));
            call(&c, "show video", Method::GET, &path, None).await?
        }
        VideosCommand::Shred { video, window_days } => {
            let path = format!(
                "/v1/videos/{}?PendingWindowInDays={window_days}",
                seg(&video)
            );
            call(&c, "shred video", Method::DELETE, &path, None).await?
        }
        VideosCommand::CancelShred { video } => {
            let path = format!("/v1/videos/{}/cancel-shred", seg(&video));
            call(&c, "cancel shred", Method::POST, &path, Some(json!({}))).await?
        }
    };
    print(t, &answer, fields)
}

pub async fn clients(t: Target, cmd: ClientsCommand) -> ExitCode {
    finish(clients_inner(&t, cmd).await)
}

async fn clients_inner(t: &Target, cmd: ClientsCommand) -> Result<(), Failure> {
    let c = kms(t)?;
    match cmd {
        ClientsCommand::Create { name, role, keys } => {
            let roles: Vec<&str> = role.split(',').map(str::trim).collect();
            let mut body = match roles.as_slice() {
                [one] => json!({ "Name": name, "Role": one }),
                several => json!({ "Name": name, "Roles": several }),
            };
            if !keys.is_empty() {
                body["KeyIds"] = json!(keys);
            }
            let v = call(&c, "create client", Method::POST, "/v1/clients", Some(body)).await?;
            print(t, &v, |v| {
                let mut out = fields(v);
                out.push_str("\nThe token is shown this once; only its SHA-256 is kept.\n");
                out
            })
        }
        ClientsCommand::List => {
            let v = call(&c, "list clients", Method::GET, "/v1/clients", None).await?;
            print(t, &v, |v| {
                table(
                    &["CLIENT ID", "NAME", "ROLE", "CREATED", "REVOKED"],
                    rows(
                        v["Clients"].as_array(),
                        &["ClientId", "Name", "Role", "CreationDate", "RevokedDate"],
                    ),
                )
            })
        }
        ClientsCommand::Revoke { id } => {
            let path = format!("/v1/clients/{id}");
            call(&c, "revoke client", Method::DELETE, &path, None).await?;
            print(t, &json!({ "ClientId": id, "Revoked": true }), fields)
        }
        ClientsCommand::AccessKeys(cmd) => access_keys(t, &c, cmd).await,
    }
}

async fn access_keys(t: &Target, c: &KmsClient, cmd: AccessKeysCommand) -> Result<(), Failure> {
    match cmd {
        AccessKeysCommand::Create { client_id } => {
            let path = format!("/v1/clients/{client_id}/access-keys");
            let v = call(c, "create access key", Method::POST, &path, None).await?;
            print(t, &v, |v| {
                let mut out = fields(v);
                out.push_str(
                    "\nThe secret is shown this once; the KMS keeps it only wrapped under its root key.\n",
                );
                out
            })
        }
        AccessKeysCommand::List { client_id } => {
            let path = format!("/v1/clients/{client_id}/access-keys");
            let v = call(c, "list access keys", Method::GET, &path, None).await?;
            print(t, &v, |v| {
                table(
                    &["ACCESS KEY ID", "CLIENT ID", "CREATED"],
                    rows(
                        v["AccessKeys"].as_array(),
                        &["AccessKeyId", "ClientId", "CreationDate"],
                    ),
                )
            })
        }
        AccessKeysCommand::Delete {
            client_id,
            access_key_id,
        } => {
            let path = format!(
                "/v1/clients/{client_id}/access-keys/{}",
                seg(&access_key_id)
            );
            call(c, "delete access key", Method::DELETE, &path, None).await?;
            let answer = json!({ "AccessKeyId": access_key_id, "Deleted": true });
            print(t, &answer, fields)
        }
    }
}

pub async fn viewers(t: Target, cmd: ViewersCommand) -> ExitCode {
    finish(viewers_inner(&t, cmd).await)
}

fn read_password() -> Result<Zeroizing<String>, Failure> {
    if let Ok(p) = std::env::var("VODKMS_VIEWER_PASSWORD") {
        return Ok(Zeroizing::new(p));
    }
    let mut line = Zeroizing::new(String::new());
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| Failure::local(format!("reading the password from standard input: {e}")))?;
    let trimmed = Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_owned());
    if trimmed.is_empty() {
        return Err(Failure::local(
            "no password: set VODKMS_VIEWER_PASSWORD or pipe it on standard input",
        ));
    }
    Ok(trimmed)
}

async fn viewers_inner(t: &Target, cmd: ViewersCommand) -> Result<(), Failure> {
    let c = broker(t)?;
    let viewer_table = |v: &Value| {
        let list = match v.get("Viewers") {
            Some(list) => list.as_array().cloned(),
            None => Some(vec![v.clone()]),
        };
        table(
            &["USERNAME", "ENTITLEMENTS", "ENABLED", "CREATED"],
            rows(
                list.as_ref(),
                &["Username", "Entitlements", "Enabled", "CreationDate"],
            ),
        )
    };
    let v = match cmd {
        ViewersCommand::Create { username, videos } => {
            let password = read_password()?;
            let body = json!({ "Username": username, "Password": password.as_str(), "Entitlements": videos });
            call(&c, "create viewer", Method::POST, "/v1/viewers", Some(body)).await?
        }
        ViewersCommand::List => call(&c, "list viewers", Method::GET, "/v1/viewers", None).await?,
        ViewersCommand::Show { username } => {
            let path = format!("/v1/viewers/{}", seg(&username).replace('/', "%2F"));
            call(&c, "show viewer", Method::GET, &path, None).await?
        }
        ViewersCommand::Update {
            username,
            videos,
            disable,
            enable,
            max_streams,
            max_addresses_per_token,
        } => {
            let mut body = json!({});
            if !videos.is_empty() {
                body["Entitlements"] = json!(videos);
            }
            if disable || enable {
                body["Enabled"] = json!(enable);
            }
            for (field, value) in [
                ("MaxStreams", max_streams),
                ("MaxAddressesPerToken", max_addresses_per_token),
            ] {
                match value.as_deref() {
                    None => {}
                    Some("default") => body[field] = Value::Null,
                    Some(n) => {
                        let n: u32 = n.parse().map_err(|_| {
                            Failure::local(format!("{field}: a number, or `default`"))
                        })?;
                        body[field] = json!(n);
                    }
                }
            }
            let path = format!("/v1/viewers/{}", seg(&username).replace('/', "%2F"));
            call(&c, "update viewer", Method::PATCH, &path, Some(body)).await?
        }
        ViewersCommand::Delete { username } => {
            let path = format!("/v1/viewers/{}", seg(&username).replace('/', "%2F"));
            call(&c, "delete viewer", Method::DELETE, &path, None).await?;
            json!({ "Username": username, "Deleted": true })
        }
    };
    if v.get("Deleted").is_some() {
        return print(t, &v, fields);
    }
    print(t, &v, viewer_table)
}

pub async fn tokens(t: Target, cmd: TokensCommand) -> ExitCode {
    finish(tokens_inner(&t, cmd).await)
}

async fn tokens_inner(t: &Target, cmd: TokensCommand) -> Result<(), Failure> {
    let c = broker(t)?;
    let v = match cmd {
        TokensCommand::Mint {
            viewer,
            videos,
            ttl,
        } => {
            let body =
                strip_nulls(json!({ "Viewer": viewer, "VideoIds": videos, "TtlSeconds": ttl }));
            call(&c, "mint token", Method::POST, "/v1/tokens", Some(body)).await?
        }
        TokensCommand::Revoke { kind, id } => {
            let body = json!({ "Type": kind, "Id": id });
            call(&c, "revoke", Method::POST, "/v1/revocations", Some(body)).await?
        }
    };
    print(t, &v, fields)
}

pub async fn sessions(t: Target, cmd: SessionsCommand) -> ExitCode {
    finish(sessions_inner(&t, cmd).await)
}

async fn sessions_inner(t: &Target, cmd: SessionsCommand) -> Result<(), Failure> {
    let c = broker(t)?;
    match cmd {
        SessionsCommand::List { viewer } => {
            let path = format!("/v1/sessions?Viewer={}", seg(&viewer).replace('/', "%2F"));
            let v = call(&c, "list sessions", Method::GET, &path, None).await?;
            print(t, &v, |v| {
                table(
                    &[
                        "SESSION",
                        "STREAM",
                        "TOKEN",
                        "ADDRESS",
                        "STARTED",
                        "LAST SEEN",
                    ],
                    rows(
                        v.get("Sessions").and_then(Value::as_array),
                        &[
                            "SessionId",
                            "Stream",
                            "TokenId",
                            "Address",
                            "StartDate",
                            "LastSeenDate",
                        ],
                    ),
                )
            })
        }
        SessionsCommand::End { session_id } => {
            let path = format!("/v1/sessions/{}", seg(&session_id).replace('/', "%2F"));
            let v = call(&c, "end session", Method::DELETE, &path, None).await?;
            print(t, &v, fields)
        }
    }
}

pub async fn policy(t: Target, cmd: PolicyCommand) -> ExitCode {
    finish(policy_inner(&t, cmd).await)
}

async fn policy_inner(t: &Target, cmd: PolicyCommand) -> Result<(), Failure> {
    let c = broker(t)?;
    let path = |video: &str| {
        format!(
            "/v1/videos/{}/playback-policy",
            seg(video).replace('/', "%2F")
        )
    };
    let v = match cmd {
        PolicyCommand::Show { video } => {
            call(&c, "show policy", Method::GET, &path(&video), None).await?
        }
        PolicyCommand::Set { video, origins } => {
            let body = json!({ "AllowedOrigins": origins });
            call(&c, "set policy", Method::PUT, &path(&video), Some(body)).await?
        }
        PolicyCommand::Delete { video } => {
            call(&c, "delete policy", Method::DELETE, &path(&video), None).await?;
            json!({ "VideoId": video, "Deleted": true })
        }
    };
    print(t, &v, fields)
}

pub async fn audit(t: Target, args: AuditArgs) -> ExitCode {
    finish(audit_inner(&t, args).await)
}

async fn audit_inner(t: &Target, a: AuditArgs) -> Result<(), Failure> {
    let c = if a.broker { broker(t)? } else { kms(t)? };
    let mut query = vec![format!("Limit={}", a.limit.clamp(1, 1000))];
    let mut add = |name: &str, v: &Option<String>| {
        if let Some(v) = v {
            query.push(format!("{name}={}", seg(v).replace('/', "%2F")));
        }
    };
    add("Operation", &a.operation);
    if a.broker {
        add("Viewer", &a.viewer);
        add("VideoId", &a.video);
    } else {
        add("KeyId", &a.key);
    }
    let base = query.join("&");
    let columns: &[&str] = if a.broker {
        &[
            "EventTime",
            "Operation",
            "Outcome",
            "Viewer",
            "VideoId",
            "Address",
        ]
    } else {
        &[
            "EventTime",
            "Operation",
            "Outcome",
            "ClientId",
            "KeyId",
            "KeyVersionId",
        ]
    };
    let heads: Vec<String> = columns.iter().map(|c| c.to_uppercase()).collect();
    let heads: Vec<&str> = heads.iter().map(String::as_str).collect();
    let first = call(
        &c,
        "read the audit trail",
        Method::GET,
        &format!("/v1/audit?{base}"),
        None,
    )
    .await?;
    let mut records: Vec<Value> = first["Records"].as_array().cloned().unwrap_or_default();
    records.reverse(); // oldest first, like a log
    if !a.follow {
        return print(t, &first, |_| table(&heads, rows(Some(&records), columns)));
    }
    // Follow: print what is there, then poll for records newer than the last seen.
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut header = !t.json;
    loop {
        let fresh: Vec<&Value> = records
            .iter()
            .filter(|r| seen.insert(r["EventId"].to_string()))
            .collect();
        for r in fresh {
            if t.json {
                println!("{r}");
            } else {
                let line = table(&heads, rows(Some(&vec![r.clone()]), columns));
                let mut lines = line.lines();
                let head = lines.next().unwrap_or_default();
                if header {
                    println!("{head}");
                    header = false;
                }
                for l in lines {
                    println!("{l}");
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let next = call(
            &c,
            "read the audit trail",
            Method::GET,
            &format!("/v1/audit?{base}"),
            None,
        )
        .await?;
        records = next["Records"].as_array().cloned().unwrap_or_default();
        records.reverse();
    }
}

fn strip_nulls(mut v: Value) -> Value {
    if let Some(map) = v.as_object_mut() {
        map.retain(|_, x| !x.is_null());
    }
    v
}

fn print(t: &Target, v: &Value, human: impl FnOnce(&Value) -> String) -> Result<(), Failure> {
    if t.json {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    } else {
        print!("{}", human(v));
    }
    Ok(())
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

fn rows(list: Option<&Vec<Value>>, keys: &[&str]) -> Vec<Vec<String>> {
    list.map(|l| {
        l.iter()
            .map(|item| keys.iter().map(|k| cell(&item[*k])).collect())
            .collect()
    })
    .unwrap_or_default()
}

fn key_table(list: Option<&Vec<Value>>) -> String {
    table(
        &[
            "KEY ID",
            "ALIASES",
            "STATE",
            "VERSION",
            "ROTATION DAYS",
            "DELETION DATE",
        ],
        rows(
            list,
            &[
                "KeyId",
                "Aliases",
                "KeyState",
                "CurrentKeyVersionId",
                "RotationPeriodInDays",
                "DeletionDate",
            ],
        ),
    )
}

/// `NAME  value` lines for one object.
fn fields(v: &Value) -> String {
    let Some(map) = v.as_object() else {
        return format!("{v}\n");
    };
    let width = map.keys().map(String::len).max().unwrap_or(0);
    map.iter()
        .map(|(k, x)| format!("{k:width$}  {}\n", cell(x)))
        .collect()
}

fn table(heads: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = heads.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:w$}", w = widths.get(i).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join("  ");
        s.truncate(s.trim_end().len());
        s.push('\n');
        s
    };
    let mut out = line(heads.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out.push_str(&line(r));
    }
    out
}
