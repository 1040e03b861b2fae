//! The TOML configuration file: it starts a server, flags and environment
//! override it, unknown keys and secrets in it are refused with a clear
//! message, and `vodkms config check` lists every problem.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

fn vodkms(args: &[&str]) -> std::process::Output {
    Command::new(common::BIN)
        .args(args)
        .env_remove("VODKMS_CONFIG")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_starts_the_kms_and_bad_ones_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let db = common::fresh_database().await;
    std::fs::write(path("database_url"), &db).unwrap();
    std::fs::write(path("root.key"), common::random_root_key()).unwrap();
    let config = path("vodkms.toml");
    std::fs::write(
        &config,
        format!(
            "log_format = \"json\"\n[kms]\nlisten = \"127.0.0.1:1\"\ndatabase_url_file = {:?}\n\
             root_key_file = {:?}\naudit_flush_ms = 50\n",
            path("database_url"),
            path("root.key")
        ),
    )
    .unwrap();
    // Everything from the file; the --listen flag beats the file's address.
    let kms = common::ServerProcess::spawn(
        &["--config", &config, "kms", "serve"],
        common::free_port(),
        &[("DATABASE_URL", ""), ("VODKMS_ROOT_KEY", "")],
        "kms-config",
    )
    .await
    .unwrap_or_else(|log| panic!("{log}"));
    assert_eq!(
        reqwest::get(format!("{}/readyz", kms.url))
            .await
            .unwrap()
            .status(),
        200
    );
    // log_format = "json" came from the file too.
    let first = kms.log_text().lines().next().unwrap_or_default().to_owned();
    assert!(
        serde_json::from_str::<serde_json::Value>(&first).is_ok(),
        "{first}"
    );
    let ok = vodkms(&["config", "check", "--config", &config]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    // An unknown key: refused at start, naming it.
    std::fs::write(
        path("typo.toml"),
        "[kms]\nlisten = \"127.0.0.1:0\"\ncache_ttl = 5\n",
    )
    .unwrap();
    let out = vodkms(&["--config", &path("typo.toml"), "kms", "serve"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown field `cache_ttl`") && err.contains("cache_ttl_secs"),
        "{err}"
    );

    // A secret in the file: refused, saying what to use instead.
    std::fs::write(path("secret.toml"), "[kms]\nroot_key = \"abc\"\n").unwrap();
    let out = vodkms(&["--config", &path("secret.toml"), "kms", "serve"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("secrets are never read from the config file")
            && err.contains("root_key_file"),
        "{err}"
    );

    // A wrong type: refused with its place.
    std::fs::write(path("type.toml"), "[broker]\ntoken_rate = \"fast\"\n").unwrap();
    let out = vodkms(&["config", "check", "--config", &path("type.toml")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("token_rate"));

    // config check lists every problem at once.
    std::fs::write(
        path("bad.toml"),
        "[broker]\nkms_url = \"kms:8200\"\ntoken_secret_file = \"/nope/secret\"\ntls_cert = \"/nope/c.pem\"\n\
         cors_origins = [\"not an origin\"]\ncookie_same_site = \"Sometimes\"\n",
    )
    .unwrap();
    let out = vodkms(&["config", "check", "--config", &path("bad.toml")]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "kms_url",
        "token_secret_file",
        "tls_cert and tls_key",
        "cors_origins",
        "cookie_same_site",
    ] {
        assert!(err.contains(want), "{want} not reported:\n{err}");
    }
}
