//! Access keys of API clients (the credentials of the AWS, Alibaba and
//! Tencent doors): created with the secret shown once, listed without it, at
//! most two per client also under parallel requests, deleted at once,
//! admin-only, audited, and re-wrapped with the root key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Setup;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_keys_are_shown_once_limited_and_deleted() {
    let s = Setup::new().await;
    let api = &s.api;
    let (client_id, _) = api.create_client(&s.admin, "decrypt", None).await;
    let path = format!("/v1/clients/{client_id}/access-keys");

    // Two at once at most, also when five requests race.
    let tasks: Vec<_> = (0..5)
        .map(|_| {
            let api = common::Api::new(&api.base);
            let (path, admin) = (path.clone(), s.admin.clone());
            tokio::spawn(async move { api.post(&path, &admin, json!({})).await })
        })
        .collect();
    let mut created = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        match r.status {
            201 => created.push(r.body),
            _ => r.assert_error(409, "LimitExceeded"),
        }
    }
    assert_eq!(created.len(), 2, "parallel requests passed the limit");
    for c in &created {
        let id = c["AccessKeyId"].as_str().unwrap();
        assert!(id.starts_with("VKMS") && id.len() == 20, "{id}");
        assert_eq!(c["SecretAccessKey"].as_str().unwrap().len(), 40);
        assert_eq!(c["ClientId"], client_id.as_str());
    }

    // Listed without secrets.
    let listed = api.get(&path, &s.admin).await;
    let keys = listed.ok()["AccessKeys"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 2);
    let text = listed.body.to_string();
    for c in &created {
        assert!(!text.contains(c["SecretAccessKey"].as_str().unwrap()));
    }

    // Only admins manage them.
    api.post(&path, &s.generator, json!({}))
        .await
        .assert_error(403, "AccessDenied");
    api.get(&path, &s.decryptor)
        .await
        .assert_error(403, "AccessDenied");
    api.post(&path, &s.admin, json!({"Extra": 1}))
        .await
        .assert_error(400, "MalformedRequest");

    // Unknown clients and keys.
    let ghost = uuid::Uuid::new_v4();
    api.post(
        &format!("/v1/clients/{ghost}/access-keys"),
        &s.admin,
        json!({}),
    )
    .await
    .assert_error(404, "ClientNotFound");
    api.get("/v1/clients/not-a-uuid/access-keys", &s.admin)
        .await
        .assert_error(404, "ClientNotFound");
    api.delete(&format!("{path}/VKMSNOSUCHKEY"), &s.admin)
        .await
        .assert_error(404, "AccessKeyNotFound");

    // Deleting one makes room for another.
    let first = created[0]["AccessKeyId"].as_str().unwrap();
    let r = api.delete(&format!("{path}/{first}"), &s.admin).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    api.delete(&format!("{path}/{first}"), &s.admin)
        .await
        .assert_error(404, "AccessKeyNotFound");
    assert_eq!(api.post(&path, &s.admin, json!({})).await.status, 201);

    // A revoked client gets no new ones.
    assert_eq!(
        api.delete(&format!("/v1/clients/{client_id}"), &s.admin)
            .await
            .status,
        204
    );
    api.post(&path, &s.admin, json!({}))
        .await
        .assert_error(404, "ClientNotFound");

    // Audited, naming the access key, never its secret.
    // Three deletes were audited (one unknown key, one success, one repeat);
    // the writer is asynchronous, so wait for the successful one by content.
    let deleted = |r: &serde_json::Value| {
        r["Outcome"] == "Success" && r["Detail"]["DeletedAccessKeyId"] == first
    };
    let records = api
        .audit_until(&s.admin, "Operation=DeleteAccessKey", |r| {
            r.iter().any(deleted)
        })
        .await;
    assert_eq!(records.iter().filter(|r| deleted(r)).count(), 1);
    let created_records = api
        .audit_until(&s.admin, "Operation=CreateAccessKey", |r| r.len() >= 8)
        .await;
    let all = serde_json::to_string(&created_records).unwrap();
    for c in &created {
        assert!(!all.contains(c["SecretAccessKey"].as_str().unwrap()));
    }
    assert!(created_records
        .iter()
        .any(|r| r["Outcome"] == "LimitExceeded"));
    assert!(created_records
        .iter()
        .any(|r| r["Detail"]["CreatedAccessKeyId"] == created[1]["AccessKeyId"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_manages_access_keys() {
    let s = Setup::new().await;
    let (client_id, _) = s.api.create_client(&s.admin, "generate", None).await;
    let run = |args: &[&str]| {
        let out = std::process::Command::new(common::BIN)
            .args(args)
            .arg("--json")
            .env("VODKMS_TOKEN", &s.admin)
            .env("VODKMS_KMS_URL", &s.kms.url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let created = run(&["clients", "access-keys", "create", &client_id]);
    let id = created["AccessKeyId"].as_str().unwrap().to_owned();
    assert_eq!(created["SecretAccessKey"].as_str().unwrap().len(), 40);
    let listed = run(&["clients", "access-keys", "list", &client_id]);
    assert_eq!(listed["AccessKeys"][0]["AccessKeyId"], id.as_str());
    let deleted = run(&["clients", "access-keys", "delete", &client_id, &id]);
    assert_eq!(deleted["Deleted"], true);
    let listed = run(&["clients", "access-keys", "list", &client_id]);
    assert!(listed["AccessKeys"].as_array().unwrap().is_empty());
}
