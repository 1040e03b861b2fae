//! The crate map is the layering (README, "Crate map"): the broker and the
//! packaging tools reach the KMS only through its wire contract, and the
//! foundation knows nothing above it. Read from `cargo tree`, the way a
//! reader would check it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::process::Command;

/// Every workspace crate `package` depends on, directly or not, with its
/// dev- and build-dependencies.
fn workspace_deps(package: &str) -> BTreeSet<String> {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "-p",
            package,
            "--prefix",
            "none",
            "-e",
            "normal,build,dev",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let deps: BTreeSet<String> = text
        .lines()
        .filter(|l| l.contains(env!("CARGO_MANIFEST_DIR")))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != package)
        .map(str::to_owned)
        .collect();
    deps
}

#[test]
fn the_broker_cannot_reach_the_kms_server() {
    let deps = workspace_deps("broker");
    assert!(
        !deps.contains("kms"),
        "broker depends on the KMS server crate: {deps:?}"
    );
    // It does reach the KMS, through the wire contract: the check above reads
    // the tree it means to.
    assert!(
        deps.contains("kms-api") && deps.contains("foundation"),
        "{deps:?}"
    );
}

#[test]
fn the_packaging_tools_stand_alone() {
    let deps = workspace_deps("hls");
    assert!(deps.is_empty(), "hls depends on {deps:?}");
}

#[test]
fn the_wire_contract_and_the_foundation_stay_below_the_servers() {
    let contract = workspace_deps("kms-api");
    assert_eq!(
        contract,
        BTreeSet::from(["audit-chain".to_owned(), "foundation".to_owned()])
    );
    // The audit pipeline chains records by the pure audit-chain rules.
    let foundation = workspace_deps("foundation");
    assert_eq!(foundation, BTreeSet::from(["audit-chain".to_owned()]));
    // The KMS server builds on both and on the signature verifiers, and on
    // nothing of the broker's.
    let kms = workspace_deps("kms");
    assert_eq!(
        kms,
        BTreeSet::from([
            "audit-chain".to_owned(),
            "cloudsig".to_owned(),
            "foundation".to_owned(),
            "kms-api".to_owned()
        ])
    );
}

#[test]
fn the_audit_chain_rules_stand_alone() {
    let deps = workspace_deps("audit-chain");
    assert!(deps.is_empty(), "audit-chain depends on {deps:?}");
}

#[test]
fn the_signature_verifiers_stand_alone() {
    let deps = workspace_deps("cloudsig");
    assert!(deps.is_empty(), "cloudsig depends on {deps:?}");
}
