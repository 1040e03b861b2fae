//! The admin CLI against real servers: the whole key lifecycle, clients,
//! viewers, tokens and audit, with `--json` for scripts and the exit codes
//! scripts rely on (0 done, 1 local, 3 refused, 4 not found, 5 unavailable).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use common::brokers::BrokerSetup;
use serde_json::Value;

struct Cli<'a> {
    b: &'a BrokerSetup,
}

impl Cli<'_> {
    fn run(&self, token: &str, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new(common::BIN)
            .args(args)
            .env("VODKMS_TOKEN", token)
            .env("VODKMS_KMS_URL", &self.b.kms.kms.url)
            .env("VODKMS_BROKER_URL", &self.b.broker.url)
            .env_remove("VODKMS_VIEWER_PASSWORD")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
        drop(input);
        child.wait_with_output().unwrap()
    }

    /// `--json` output of a command that must succeed.
    fn json(&self, token: &str, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.run(token, &all, None);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Exit code and stderr of a command that must fail.
    fn fails(&self, token: &str, args: &[&str]) -> (i32, String) {
        let out = self.run(token, args, None);
        assert!(!out.status.success(), "{args:?} succeeded");
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_key_lifecycle_and_the_rest_from_the_cli() {
    let b = BrokerSetup::new().await;
    let cli = Cli { b: &b };
    let admin = b.kms.admin.as_str();

    let created = cli.json(
        admin,
        &[
            "keys",
            "create",
            "--alias",
            "alias/cli",
            "--rotation-days",
            "30",
        ],
    );
    assert_eq!(created["KeyState"], "Enabled");
    assert_eq!(created["RotationPeriodInDays"], 30);
    let key_id = created["KeyId"].as_str().unwrap().to_owned();
    let listed = cli.json(admin, &["keys", "list"]);
    assert!(listed["Keys"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["KeyId"] == key_id.as_str()));
    // The human table names the key too.
    let table = cli.run(admin, &["keys", "list"], None);
    assert!(String::from_utf8_lossy(&table.stdout).contains("alias/cli"));
    assert_eq!(
        cli.json(admin, &["keys", "rotate", "alias/cli"])["KeyVersionId"],
        2
    );
    let shown = cli.json(admin, &["keys", "show", &key_id]);
    assert_eq!(shown["CurrentKeyVersionId"], 2);
    // Retiring version 1, its usage report, and the undo.
    let retired = cli.json(admin, &["keys", "retire-versions", "alias/cli", "2"]);
    assert_eq!(retired["MinDecryptionVersion"], 2);
    let usage = cli.json(admin, &["keys", "usage", "alias/cli", "--days", "7"]);
    assert_eq!(usage["Versions"][0]["Retired"], true);
    assert_eq!(usage["Versions"][1]["Retired"], false);
    let table = cli.run(admin, &["keys", "usage", "alias/cli"], None);
    assert!(String::from_utf8_lossy(&table.stdout).contains("RETIRED"));
    let (code, err) = cli.fails(admin, &["keys", "retire-versions", "alias/cli", "3"]);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("MinDecryptionVersion"), "{err}");
    let back = cli.json(admin, &["keys", "retire-versions", "alias/cli", "1"]);
    assert_eq!(back["MinDecryptionVersion"], 1);
    // A per-video key and a video's shred, scheduled and cancelled.
    let pv = cli.json(
        admin,
        &[
            "keys",
            "create",
            "--alias",
            "alias/cli-pv",
            "--per-video-keys",
        ],
    );
    assert_eq!(pv["PerVideoKeys"], true);
    let shred = cli.json(
        admin,
        &["videos", "shred", "cli-film", "--window-days", "5"],
    );
    assert_eq!(shred["State"], "PendingShred");
    assert_eq!(
        cli.json(admin, &["videos", "cancel-shred", "cli-film"])["State"],
        "Active"
    );
    assert_eq!(
        cli.json(admin, &["videos", "show", "cli-film"])["State"],
        "Active"
    );
    assert_eq!(
        cli.json(admin, &["keys", "disable", "alias/cli"])["KeyState"],
        "Disabled"
    );
    assert_eq!(
        cli.json(admin, &["keys", "enable", "alias/cli"])["KeyState"],
        "Enabled"
    );
    let pending = cli.json(
        admin,
        &["keys", "schedule-deletion", "alias/cli", "--days", "7"],
    );
    assert_eq!(pending["KeyState"], "PendingDeletion");
    assert!(pending["DeletionDate"].is_string());
    assert_eq!(
        cli.json(admin, &["keys", "cancel-deletion", "alias/cli"])["KeyState"],
        "Disabled"
    );

    // Exit codes and messages that say what to do.
    let (code, err) = cli.fails(admin, &["keys", "show", "alias/nope"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("not found"), "{err}");
    let (code, err) = cli.fails(&b.kms.generator, &["keys", "list"]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("AccessDenied") && err.contains("role"),
        "{err}"
    );
    let (code, err) = cli.fails("vkms_not-a-token", &["keys", "list"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("VODKMS_TOKEN"), "{err}");
    let (code, err) = cli.fails(
        admin,
        &["keys", "schedule-deletion", "alias/cli", "--days", "3"],
    );
    assert_eq!(code, 3, "{err}");
    let out = Command::new(common::BIN)
        .args(["keys", "list", "--kms-url", "http://127.0.0.1:1"])
        .env("VODKMS_TOKEN", admin)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5));
    let out = Command::new(common::BIN)
        .args(["keys", "list", "--kms-url", &b.kms.kms.url])
        .env_remove("VODKMS_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("VODKMS_TOKEN"));

    // Clients: create (token shown once), list, revoke; the revoked token stops working.
    let client = cli.json(
        admin,
        &[
            "clients",
            "create",
            "--name",
            "cli-gen",
            "--role",
            "generate",
            "--key",
            "alias/vod",
        ],
    );
    let token = client["Token"].as_str().unwrap().to_owned();
    let id = client["ClientId"].as_str().unwrap().to_owned();
    let clients = cli.json(admin, &["clients", "list"]);
    assert!(clients["Clients"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["ClientId"] == id.as_str()));
    cli.json(admin, &["clients", "revoke", &id]);
    let (code, _) = cli.fails(&token, &["keys", "list"]);
    assert_eq!(code, 3);

    // The KMS audit trail saw it all. Records are written in batches, so the
    // CLI is asked again until they are there, with a deadline.
    let expected = [
        "CreateKey",
        "RotateKey",
        "DisableKey",
        "EnableKey",
        "ScheduleKeyDeletion",
        "CancelKeyDeletion",
    ];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let trail = cli.json(admin, &["audit", "--key", &key_id, "--limit", "50"]);
        let ops: Vec<String> = trail["Records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["Operation"].as_str().unwrap().to_owned())
            .collect();
        let missing: Vec<&str> = expected
            .into_iter()
            .filter(|op| !ops.iter().any(|o| o == op))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{missing:?} missing from {ops:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // Broker: viewers (password on stdin), tokens, revocation, the broker's trail.
    let out = cli.run(
        admin,
        &["viewers", "create", "bob", "--video", "film", "--json"],
        Some("correct horse\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let login = b
        .api
        .raw(
            b.api
                .request(reqwest::Method::POST, "/v1/login", None)
                .json(&serde_json::json!({"Username": "bob", "Password": "correct horse"})),
        )
        .await;
    assert_eq!(login.status, 200, "the password from stdin is the one set");
    let updated = cli.json(admin, &["viewers", "update", "bob", "--disable"]);
    assert_eq!(updated["Enabled"], false);
    let minted = cli.json(
        &b.issuer,
        &[
            "tokens", "mint", "--viewer", "carol", "--video", "film", "--ttl", "60",
        ],
    );
    let token_id = minted["TokenId"].as_str().unwrap().to_owned();
    let revoked = cli.json(admin, &["tokens", "revoke", &token_id]);
    assert_eq!(revoked["Type"], "Token");
    let (_, code) = b
        .key_status(&format!(
            "vid=film&Ciphertext=x&token={}",
            minted["Token"].as_str().unwrap()
        ))
        .await;
    assert_eq!(code, "TokenRevoked");
    cli.json(admin, &["viewers", "delete", "bob"]);
    let (code, _) = cli.fails(admin, &["viewers", "show", "bob"]);
    assert_eq!(code, 4);
    b.api
        .audit_until(admin, "Operation=Revoke", |rs| !rs.is_empty())
        .await;
    let broker_trail = cli.json(admin, &["audit", "--broker", "--operation", "Revoke"]);
    assert!(!broker_trail["Records"].as_array().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_follow_prints_new_records_as_they_are_written() {
    let b = BrokerSetup::new().await;
    let mut child = Command::new(common::BIN)
        .args(["audit", "--follow", "--json", "--operation", "CreateKey"])
        .env("VODKMS_TOKEN", &b.kms.admin)
        .env("VODKMS_KMS_URL", &b.kms.kms.url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // A key made after --follow started must show up on its output.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let new_key = b.kms.api.create_key(&b.kms.admin, "alias/followed").await;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut seen = Vec::new();
    let found = loop {
        match rx.recv_timeout(std::time::Duration::from_millis(200)) {
            Ok(line) => {
                let v: Value =
                    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
                assert_eq!(v["Operation"], "CreateKey", "{line}");
                if v["KeyId"] == new_key.as_str() {
                    break true;
                }
                seen.push(line);
            }
            Err(_) if std::time::Instant::now() > deadline => break false,
            Err(_) => {}
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(found, "the new record never appeared; saw {seen:?}");
}

/// Risk control from the CLI: a video's page-origin list, a viewer's own
/// stream limit, and a viewer's sessions (list, end one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_playback_policies_from_the_cli() {
    let b = BrokerSetup::with_env(&[("VODKMS_MAX_STREAMS_PER_VIEWER", "1")]).await;
    let cli = Cli { b: &b };
    let admin = b.kms.admin.as_str();

    let set = cli.json(
        admin,
        &[
            "policy",
            "set",
            "film",
            "--origin",
            "https://WWW.example.com/",
            "--origin",
            "none",
        ],
    );
    assert_eq!(
        set["AllowedOrigins"],
        serde_json::json!(["https://www.example.com", "none"])
    );
    let shown = cli.json(admin, &["policy", "show", "film"]);
    assert_eq!(shown["VideoId"], "film");
    let (code, stderr) = cli.fails(
        admin,
        &["policy", "set", "film", "--origin", "www.example.com"],
    );
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("InvalidParameter"), "{stderr}");

    let (_, edk) = b.data_key("film").await;
    let token = b.token("cleo", &["film"]).await;
    let (status, _) = b
        .key_status(&format!("vid=film&Ciphertext={edk}&token={token}"))
        .await;
    // The test client sends an Origin the film's own list does not name.
    assert_eq!(status, 403);
    cli.json(admin, &["policy", "delete", "film"]);
    let (code, _) = cli.fails(admin, &["policy", "show", "film"]);
    assert_eq!(code, 4);
    let (status, _) = b
        .key_status(&format!("vid=film&Ciphertext={edk}&token={token}"))
        .await;
    assert_eq!(status, 200);

    let listed = cli.json(admin, &["sessions", "list", "--viewer", "cleo"]);
    let sessions = listed["Sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{listed}");
    let id = sessions[0]["SessionId"].as_str().unwrap();
    let human = cli.run(admin, &["sessions", "list", "--viewer", "cleo"], None);
    assert!(String::from_utf8_lossy(&human.stdout).contains(id));
    let ended = cli.json(admin, &["sessions", "end", id]);
    assert_eq!(ended["TokenId"], token_id(&token));
    let (status, code) = b
        .key_status(&format!("vid=film&Ciphertext={edk}&token={token}"))
        .await;
    assert_eq!((status, code.as_str()), (401, "TokenRevoked"));
    let (code, _) = cli.fails(admin, &["sessions", "end", id]);
    assert_eq!(code, 4);

    // A broker account's own limit, set and cleared.
    cli.run(
        admin,
        &["viewers", "create", "dora", "--video", "film", "--json"],
        Some("a long enough password\n"),
    );
    let updated = cli.json(admin, &["viewers", "update", "dora", "--max-streams", "3"]);
    assert_eq!(updated["MaxStreams"], 3);
    let cleared = cli.json(
        admin,
        &["viewers", "update", "dora", "--max-streams", "default"],
    );
    assert!(cleared.get("MaxStreams").is_none(), "{cleared}");
}

fn token_id(token: &str) -> String {
    common::brokers::token_payload(token)["jti"]
        .as_str()
        .unwrap()
        .to_owned()
}
