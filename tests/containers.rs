//! What can be checked of the container files without a Docker engine: the
//! compose file parses, every command, flag and environment variable it uses
//! exists in the binary, secrets are declared and mounted where the
//! `*_FILE` variables point, and the image runs as a non-root user.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Command;

use serde_yaml::Value;

fn repo(file: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap()
}

/// `vodkms ARGS --help`: succeeds only if every subcommand and flag exists.
fn help(args: &[String]) -> String {
    let out = Command::new(common::BIN)
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "vodkms {args:?} is not a valid command line: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn compose_file_matches_the_binary() {
    let compose: Value = serde_yaml::from_str(&repo("docker-compose.yml")).unwrap();
    let services = compose["services"].as_mapping().unwrap();
    let declared: Vec<String> = compose["secrets"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    for name in ["postgres", "kms", "broker"] {
        assert!(services.contains_key(name), "no {name} service");
    }
    for name in ["kms", "broker"] {
        let s = &compose["services"][name];
        let command = strings(&s["command"]);
        let text = help(&command);
        let secrets = strings(&s["secrets"]);
        for secret in &secrets {
            assert!(
                declared.contains(secret),
                "{name}: secret {secret} is not declared"
            );
        }
        for (key, value) in s["environment"].as_mapping().unwrap() {
            let key = key.as_str().unwrap();
            if key == "RUST_LOG" {
                continue;
            }
            assert!(
                text.contains(&format!("env: {key}")),
                "{name}: `{key}` is not read by vodkms {command:?}"
            );
            if key.ends_with("_FILE") {
                let path = value.as_str().unwrap();
                let secret = path
                    .strip_prefix("/run/secrets/")
                    .unwrap_or_else(|| panic!("{key}={path}"));
                assert!(
                    secrets.contains(&secret.to_owned()),
                    "{name}: {key} points at unmounted {secret}"
                );
            }
        }
        // Health checks run the binary itself (the image has no curl).
        let check = strings(&s["healthcheck"]["test"]);
        assert_eq!(&check[..3], ["CMD", "vodkms", "probe"], "{name}");
        help(&check[1..3].iter().skip(1).cloned().collect::<Vec<_>>());
        assert!(check[3].ends_with("/readyz"));
    }
    assert_eq!(
        compose["services"]["broker"]["depends_on"]["kms"]["condition"],
        "service_healthy"
    );
}

#[test]
fn dockerfile_runs_the_binary_as_a_non_root_user() {
    let text = repo("Dockerfile");
    let last_stage = text.rsplit("\nFROM ").next().unwrap();
    let user = last_stage
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the runtime stage sets USER");
    assert!(
        !user.starts_with("root") && !user.starts_with("0"),
        "USER {user}"
    );
    assert!(last_stage.contains("COPY --from=build /vodkms /usr/local/bin/vodkms"));
    assert!(last_stage.contains(r#"ENTRYPOINT ["/usr/local/bin/vodkms"]"#));
    let cmd = last_stage
        .lines()
        .find_map(|l| l.strip_prefix("CMD "))
        .unwrap();
    let cmd: Vec<String> = serde_json::from_str(cmd).unwrap();
    help(&cmd);
    assert!(
        text.contains("--locked"),
        "the image builds what Cargo.lock pins"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_url_from_a_file_and_the_probe_command() {
    let db = common::fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let url_file = dir.path().join("database_url");
    std::fs::write(&url_file, format!("{db}\n")).unwrap();
    let root = common::random_root_key();
    let port = common::free_port();
    let kms = common::ServerProcess::spawn(
        &["kms", "serve"],
        port,
        &[
            // The harness's own DATABASE_URL would be inherited: blank it.
            ("DATABASE_URL", ""),
            ("DATABASE_URL_FILE", url_file.to_str().unwrap()),
            ("VODKMS_ROOT_KEY", &root),
        ],
        "kms-file",
    )
    .await
    .unwrap();
    let probe = |url: String| {
        Command::new(common::BIN)
            .args(["probe", &url])
            .output()
            .unwrap()
    };
    assert!(probe(format!("{}/readyz", kms.url)).status.success());
    let missing = probe(format!("{}/no-such-route", kms.url));
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("404"));
    assert!(
        !probe(format!("http://127.0.0.1:{}/readyz", common::free_port()))
            .status
            .success()
    );
    // Both at once is refused, clearly.
    let out = Command::new(common::BIN)
        .args(["kms", "serve"])
        .env("DATABASE_URL", &db)
        .env("DATABASE_URL_FILE", &url_file)
        .env("VODKMS_ROOT_KEY", &root)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("not both"));
}
