//! The OpenAPI documents at `/openapi.json`: every route the routers declare
//! (read from their source) is documented with its methods, every
//! documented operation is routed (the server does not answer "no such
//! route" or 405), and every schema reference resolves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::brokers::BrokerSetup;
use serde_json::Value;

/// `(openapi path, method)` of every `.route(...)` in a router's source.
fn declared_routes(file: &str) -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap();
    let mut out = BTreeSet::new();
    for chunk in text.split(".route(").skip(1) {
        let end = [";", ".fallback", ".layer(", ".method_not_allowed"]
            .iter()
            .filter_map(|m| chunk.find(m))
            .min()
            .unwrap_or(chunk.len());
        let chunk = &chunk[..end];
        let path = chunk.split('"').nth(1).unwrap();
        let path = path.replace("{*", "{");
        let mut found = false;
        for method in ["get", "post", "patch", "delete", "put"] {
            if chunk.contains(&format!("{method}(")) {
                out.insert((path.clone(), method.to_owned()));
                found = true;
            }
        }
        assert!(found, "no method found for route {path} in {file}");
    }
    out
}

fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |m| (path.clone(), m.clone()))
        })
        .collect()
}

fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r.clone());
            }
            map.values().for_each(|x| refs(x, out));
        }
        Value::Array(items) => items.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

async fn check(base: &str, source: &str) {
    let doc: Value = reqwest::get(format!("{base}/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    let declared = declared_routes(source);
    assert!(
        declared.len() >= 15,
        "{source}: only {} routes found",
        declared.len()
    );
    let documented = documented(&doc);
    let missing: Vec<_> = declared.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "{source}: routes missing from the document: {missing:?}"
    );
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{r}"));
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "dangling {r}"
        );
    }
    // A real OpenAPI 3 validator accepts it (what client generators need).
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_json::to_vec(&doc).unwrap()).unwrap();
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import json, sys; from openapi_spec_validator import validate; validate(json.load(open(sys.argv[1])))",
        ])
        .arg(file.path())
        .output()
        .expect("python3: scripts/test installs openapi-spec-validator");
    assert!(
        out.status.success(),
        "{source}: not a valid OpenAPI 3 document: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every documented operation reaches a handler.
    let http = reqwest::Client::new();
    for (path, method) in &documented {
        let concrete = path
            .split('/')
            .map(|s| if s.starts_with('{') { "x" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let resp = http
            .request(m, format!("{base}{concrete}"))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        assert_ne!(status, 405, "{method} {path} is documented but not routed");
        assert!(
            !body.contains("no such route"),
            "{method} {path} is documented but not routed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_documents_cover_every_route() {
    let b = BrokerSetup::new().await;
    check(&b.kms.kms.url, "kms/src/http/mod.rs").await;
    check(&b.broker.url, "broker/src/http/mod.rs").await;
    // The schemas are the handlers' own types.
    let doc: Value = reqwest::get(format!("{}/openapi.json", b.kms.kms.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let generate = &doc["components"]["schemas"]["GenerateDataKeyRequest"];
    assert!(generate["properties"]["KeyId"].is_object(), "{generate}");
    assert!(generate["required"]
        .as_array()
        .unwrap()
        .contains(&Value::from("KeyId")));
}
