//! Tamper-evident audit against real processes and a real PostgreSQL: two
//! KMS processes and a broker write at once and verify clean; then each
//! kind of tampering, done with SQL as an attacker with database access
//! would, makes `vodkms audit verify` exit 1 and name what it found.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use audit_chain::{row_hash, Chain, Link};
use common::brokers::*;
use common::*;
use foundation::audit::Chained;
use kms::store::{PgStore, Store};
use sqlx::{Connection, Executor, PgConnection, Row};
use uuid::Uuid;

struct Files {
    _dir: tempfile::TempDir,
    key: PathBuf,
    public: PathBuf,
    copy: PathBuf,
}

/// A signing key made by `vodkms audit gen-signing-key`, its public half,
/// and where the checkpoint copy goes.
fn files() -> Files {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("audit-signing-key.pem");
    let out = Command::new(BIN)
        .args(["audit", "gen-signing-key", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = dir.path().join("audit-public-key.pem");
    std::fs::write(&public, &out.stdout).unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("-----BEGIN PUBLIC KEY-----"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the private key is readable by its owner only"
        );
    }
    let copy = dir.path().join("checkpoints.jsonl");
    Files {
        _dir: dir,
        key,
        public,
        copy,
    }
}

/// `vodkms audit verify`: (exit code, stdout).
fn verify(db: &str, f: &Files, extra: &[&str]) -> (i32, String) {
    let out = Command::new(BIN)
        .args(["audit", "verify", "--public-key"])
        .arg(&f.public)
        .arg("--copy")
        .arg(&f.copy)
        .args(extra)
        .env("DATABASE_URL", db)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.code() != Some(2),
        "verify could not check: {}{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), stdout)
}

fn assert_tampered(db: &str, f: &Files, what: &str, expect: &[&str]) {
    let (code, out) = verify(db, f, &[]);
    assert_eq!(code, 1, "{what}: verify must fail:\n{out}");
    for e in expect {
        assert!(out.contains(e), "{what}: the report names {e:?}:\n{out}");
    }
}

const TABLES: [&str; 3] = ["audit_log", "broker_audit", "audit_checkpoints"];

/// The untouched trails, to put back after each tampering.
async fn back_up(c: &mut PgConnection) {
    for t in TABLES {
        c.execute(format!("CREATE TABLE {t}_clean AS SELECT * FROM {t}").as_str())
            .await
            .unwrap();
    }
}

async fn restore(c: &mut PgConnection) {
    for t in TABLES {
        c.execute(format!("DELETE FROM {t}; INSERT INTO {t} SELECT * FROM {t}_clean").as_str())
            .await
            .unwrap();
    }
}

/// The KMS writer with the most records: (writer, its record count).
async fn busiest_writer(c: &mut PgConnection) -> (Uuid, i64) {
    let row = c
        .fetch_one(
            "SELECT writer_id, count(*) AS n FROM audit_log WHERE writer_id IS NOT NULL \
             GROUP BY writer_id ORDER BY n DESC LIMIT 1",
        )
        .await
        .unwrap();
    (row.get("writer_id"), row.get("n"))
}

async fn id_at(c: &mut PgConnection, table: &str, writer: Uuid, seq: i64) -> String {
    let id: Uuid = sqlx::query_scalar(&format!(
        "SELECT id FROM {table} WHERE writer_id = $1 AND writer_seq = $2"
    ))
    .bind(writer)
    .bind(seq)
    .fetch_one(&mut *c)
    .await
    .unwrap();
    id.to_string()
}

/// A KMS record an attacker makes up.
fn forged_record() -> kms::model::AuditRecord {
    let mut r = kms::model::AuditRecord {
        id: Uuid::now_v7(),
        time: chrono::Utc::now(),
        client_id: None,
        operation: kms::model::Operation::Decrypt,
        key_id: Some(Uuid::new_v4()),
        key_version: Some(1),
        encryption_context: None,
        outcome: "Success".into(),
        request_id: "forged".into(),
        detail: None,
        protocol: None,
        access_key_id: None,
        link: None,
    };
    r.normalize();
    r
}

/// Every record of `writer`, in order, as the store reads them.
async fn records_of(store: &PgStore, writer: Uuid) -> Vec<kms::model::AuditRecord> {
    store
        .audit_page(0, 100_000)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, r)| r.unwrap())
        .filter(|r| r.link.map(|l| l.writer) == Some(writer))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_writers_verify_clean_and_every_tampering_is_named() {
    let f = files();
    let key = f.key.to_str().unwrap().to_owned();
    let copy = f.copy.to_str().unwrap().to_owned();
    let env = [
        ("VODKMS_AUDIT_SIGNING_KEY_FILE", key.as_str()),
        ("VODKMS_AUDIT_CHECKPOINT_FILE", copy.as_str()),
        ("VODKMS_AUDIT_CHECKPOINT_RECORDS", "20"),
        ("VODKMS_AUDIT_CHECKPOINT_SECS", "1"),
    ];
    // KMS A (and bootstrap, signed too), KMS B and a broker on one database.
    let s = Setup::with_env(&env).await;
    let (_, issuer) = s.api.create_client(&s.admin, "issuer", None).await;
    let secret_b64 = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        rand::random::<[u8; 32]>(),
    );
    let mut broker_env = vec![
        ("VODKMS_CORS_ORIGINS", ORIGIN),
        ("VODKMS_COOKIE_SECURE", "false"),
    ];
    broker_env.extend_from_slice(&env);
    let broker =
        BrokerProcess::start_broker(&s.db, &s.kms.url, &s.decryptor, &secret_b64, &broker_env)
            .await;
    let kms_b = KmsProcess::start(&s.db, &s.root_key, &env).await;
    let (a, b, viewers) = (s.api.clone(), kms_b.api(), Api::new(&broker.url));

    let edk = a.generate(&s.generator, "alias/vod", "A").await.ok()["CiphertextBlob"]
        .as_str()
        .unwrap()
        .to_owned();
    let issued = viewers
        .post(
            "/v1/tokens",
            &issuer,
            serde_json::json!({ "Viewer": "alice", "VideoIds": ["A"], "TtlSeconds": 600 }),
        )
        .await;
    let token = issued.ok()["Token"].as_str().unwrap().to_owned();

    // All three write at once: key operations on both KMS processes (and
    // refusals of a junk token, which are aggregated), releases on the broker.
    let mut calls = Vec::new();
    for i in 0..60 {
        let (a, b, viewers) = (a.clone(), b.clone(), viewers.clone());
        let (generator, edk, token) = (s.generator.clone(), edk.clone(), token.clone());
        calls.push(tokio::spawn(async move {
            let api = if i % 2 == 0 { &a } else { &b };
            assert_eq!(api.generate(&generator, "alias/vod", "A").await.status, 200);
            assert_eq!(
                api.generate("junk-token", "alias/vod", "A").await.status,
                401
            );
            let (status, _, _) = fetch_from(
                &viewers,
                &format!(
                    "/v1/hls/key?vid=A&Ciphertext={}&token={}",
                    q(&edk),
                    q(&token)
                ),
                None,
                None,
            )
            .await;
            assert_eq!(status, 200);
        }));
    }
    for c in calls {
        c.await.unwrap();
    }
    // A graceful stop writes every record and each writer's last checkpoint.
    assert!(broker.terminate().success());
    assert!(kms_b.terminate().success());
    let Setup { kms: kms_a, db, .. } = s;
    assert!(kms_a.terminate().success());

    let (code, out) = verify(&db, &f, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("from 3 writers"),
        "KMS A, KMS B and bootstrap: {out}"
    );
    assert!(
        out.contains("broker trail:") && !out.contains("TAMPERED"),
        "{out}"
    );
    // An auditor's read-only role is enough: verify neither migrates nor
    // writes.
    let mut c = PgConnection::connect(&db).await.unwrap();
    let auditor = format!("auditor_{}", Uuid::new_v4().simple());
    c.execute(
        format!(
            "CREATE ROLE {auditor} LOGIN; \
             GRANT SELECT ON audit_log, broker_audit, audit_checkpoints TO {auditor}"
        )
        .as_str(),
    )
    .await
    .unwrap();
    let as_auditor = db.replacen("postgres://postgres@", &format!("postgres://{auditor}@"), 1);
    assert_ne!(as_auditor, db, "the test database URL names its user");
    let (code, out) = verify(&as_auditor, &f, &[]);
    assert_eq!(code, 0, "as a read-only role: {out}");
    let copied = std::fs::read_to_string(&f.copy).unwrap();
    assert!(
        copied.lines().count() >= 8,
        "the off-box copy has every checkpoint:\n{copied}"
    );

    // The export verifies on its own, and shows an edit too.
    let export = f.copy.with_file_name("export.jsonl");
    let out = Command::new(BIN)
        .args(["audit", "export", "--out"])
        .arg(&export)
        .env("DATABASE_URL", &db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exported = std::fs::read_to_string(&export).unwrap();
    assert!(exported.contains("\"Type\":\"Record\"") && exported.contains("\"Hash\""));
    let from_export = |path: &Path| {
        Command::new(BIN)
            .args(["audit", "verify", "--public-key"])
            .arg(&f.public)
            .arg("--from")
            .arg(path)
            .output()
            .unwrap()
            .status
            .code()
    };
    assert_eq!(from_export(&export), Some(0));
    let edited = exported.replacen("\"Outcome\":\"Success\"", "\"Outcome\":\"Forged\"", 1);
    assert_ne!(edited, exported);
    std::fs::write(&export, edited).unwrap();
    assert_eq!(from_export(&export), Some(1));

    back_up(&mut c).await;
    let store = PgStore::connect(&db).await.unwrap();
    let (w, n) = busiest_writer(&mut c).await;
    assert!(n > 10, "the busiest writer wrote {n} records");
    let k = n / 2;
    let id_k = id_at(&mut c, "audit_log", w, k).await;

    // An edited record.
    sqlx::query("UPDATE audit_log SET outcome = 'Forged' WHERE writer_id = $1 AND writer_seq = $2")
        .bind(w)
        .bind(k)
        .execute(&mut c)
        .await
        .unwrap();
    assert_tampered(&db, &f, "edited", &[&id_k, "was edited"]);
    restore(&mut c).await;
    assert_eq!(verify(&db, &f, &[]).0, 0, "restored");

    // A record deleted from the middle.
    sqlx::query("DELETE FROM audit_log WHERE writer_id = $1 AND writer_seq = $2")
        .bind(w)
        .bind(k)
        .execute(&mut c)
        .await
        .unwrap();
    assert_tampered(
        &db,
        &f,
        "deleted from the middle",
        &[&format!("between seq {} and {} are missing", k - 1, k + 1)],
    );
    restore(&mut c).await;

    // The newest records deleted.
    sqlx::query("DELETE FROM audit_log WHERE writer_id = $1 AND writer_seq > $2")
        .bind(w)
        .bind(n - 3)
        .execute(&mut c)
        .await
        .unwrap();
    assert_tampered(
        &db,
        &f,
        "newest deleted",
        &["the newest records were deleted"],
    );
    restore(&mut c).await;

    // Two records reordered.
    for (from, to) in [(k, -1), (k + 1, k), (-1, k + 1)] {
        sqlx::query(
            "UPDATE audit_log SET writer_seq = $3 WHERE writer_id = $1 AND writer_seq = $2",
        )
        .bind(w)
        .bind(from)
        .bind(to)
        .execute(&mut c)
        .await
        .unwrap();
    }
    assert_tampered(&db, &f, "reordered", &[&id_k, "TAMPERED"]);
    restore(&mut c).await;

    // A forged record inserted plainly, without chain fields.
    c.execute(
        "INSERT INTO audit_log (id, event_time, operation, outcome, request_id) \
         VALUES ('00000000-0000-4000-8000-00000000f00d', now(), 'Decrypt', 'Success', 'forged')",
    )
    .await
    .unwrap();
    assert_tampered(
        &db,
        &f,
        "inserted without chain fields",
        &[
            "00000000-0000-4000-8000-00000000f00d",
            "carry no chain fields",
        ],
    );
    // Only records dated before an upgrade to chaining may be let through.
    let (code, _) = verify(&db, &f, &["--unchained-before", "2000-01-01T00:00:00Z"]);
    assert_eq!(
        code, 1,
        "a record from after the given time is still reported"
    );
    let (code, out) = verify(&db, &f, &["--unchained-before", "2999-01-01T00:00:00Z"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("1 records from before --unchained-before"),
        "{out}"
    );
    restore(&mut c).await;

    // A forged record in a chain of its own, correctly hashed, unsigned.
    let mut fake = forged_record();
    fake.link = Some(Chain::new(Uuid::new_v4()).append(&fake.canonical()));
    store.append_audit(&[fake]).await.unwrap();
    assert_tampered(&db, &f, "a forged chain", &["no signed checkpoint"]);
    restore(&mut c).await;

    // A forged record appended to a writer that had ended.
    let last = records_of(&store, w).await.pop().unwrap().link.unwrap();
    let mut appended = forged_record();
    let seq = last.seq + 1;
    appended.link = Some(Link {
        writer: w,
        seq,
        prev: last.hash,
        hash: row_hash(w, seq, &last.hash, &appended.canonical()),
    });
    let appended_id = appended.id.to_string();
    store.append_audit(&[appended]).await.unwrap();
    assert_tampered(&db, &f, "appended after the end", &[&appended_id, "forged"]);
    restore(&mut c).await;

    // The whole chain replaced by a recomputed one: record k's outcome
    // changed, every hash after it recomputed from scratch.
    let mut records = records_of(&store, w).await;
    records[(k - 1) as usize].outcome = "Forged".into();
    let mut chain = Chain::new(w);
    for r in &mut records {
        r.link = Some(chain.append(&r.canonical()));
    }
    sqlx::query("DELETE FROM audit_log WHERE writer_id = $1")
        .bind(w)
        .execute(&mut c)
        .await
        .unwrap();
    store.append_audit(&records).await.unwrap();
    assert_tampered(
        &db,
        &f,
        "recomputed chain",
        &["is not the record its checkpoint signed"],
    );
    restore(&mut c).await;

    // A checkpoint deleted: its successor no longer follows, and the
    // off-box copy has it.
    sqlx::query("DELETE FROM audit_checkpoints WHERE writer_id = $1 AND number = 2")
        .bind(w)
        .execute(&mut c)
        .await
        .unwrap();
    assert_tampered(
        &db,
        &f,
        "checkpoint deleted",
        &["checkpoint 3 of writer", "in the off-box copy is missing"],
    );
    restore(&mut c).await;

    // The broker's trail is held to the same rules.
    let row = c
        .fetch_one("SELECT writer_id, writer_seq, id FROM broker_audit WHERE writer_id IS NOT NULL ORDER BY writer_seq DESC LIMIT 1")
        .await
        .unwrap();
    let broker_id: Uuid = row.get("id");
    sqlx::query("UPDATE broker_audit SET viewer = 'mallory' WHERE id = $1")
        .bind(broker_id)
        .execute(&mut c)
        .await
        .unwrap();
    assert_tampered(
        &db,
        &f,
        "broker record edited",
        &[&broker_id.to_string(), "was edited"],
    );
    restore(&mut c).await;
    assert_eq!(verify(&db, &f, &[]).0, 0, "restored at the end");
}

/// A bad signing key or an unwritable copy stops a server at start, saying
/// which; a bad public key makes verify exit 2 (not checked), not 0 or 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_audit_settings_are_refused_clearly() {
    let db = fresh_database().await;
    let root = random_root_key();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.pem");
    std::fs::write(
        &bad,
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let log = KmsProcess::try_start(
        &db,
        &root,
        &[("VODKMS_AUDIT_SIGNING_KEY_FILE", bad.to_str().unwrap())],
    )
    .await
    .err()
    .expect("a KMS with a bad audit signing key must not start");
    assert!(log.contains("VODKMS_AUDIT_SIGNING_KEY_FILE"), "{log}");
    assert!(
        !log.contains("bm90IGEga2V5"),
        "the key file's content is never printed: {log}"
    );
    let log = KmsProcess::try_start(
        &db,
        &root,
        &[(
            "VODKMS_AUDIT_CHECKPOINT_FILE",
            "/nonexistent-dir/copy.jsonl",
        )],
    )
    .await
    .err()
    .expect("a KMS with an unwritable checkpoint copy must not start");
    assert!(log.contains("VODKMS_AUDIT_CHECKPOINT_FILE"), "{log}");
    let out = Command::new(BIN)
        .args(["audit", "verify", "--public-key"])
        .arg(&bad)
        .env("DATABASE_URL", &db)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("public key"));
}
