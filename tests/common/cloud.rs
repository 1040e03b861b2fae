//! Requests signed the way the cloud SDKs sign them (with cloudsig's
//! signers), for what the SDKs will not send: expired times, replays,
//! tampering.

use chrono::Utc;
use serde_json::{json, Value};

use super::Api;

pub fn host(api: &Api) -> String {
    api.base.trim_start_matches("http://").to_owned()
}

/// A signed AWS KMS request, as the SDKs make one.
pub fn aws_request(
    api: &Api,
    key: (&str, &str),
    target: &str,
    body: &Value,
    at: chrono::DateTime<Utc>,
) -> reqwest::RequestBuilder {
    aws_request_at(api, "/", key, target, body, at)
}

/// The same at another path (`/kms/` in `vodkms dev`).
pub fn aws_request_at(
    api: &Api,
    path: &str,
    key: (&str, &str),
    target: &str,
    body: &Value,
    at: chrono::DateTime<Utc>,
) -> reqwest::RequestBuilder {
    let body = body.to_string();
    let mut headers = http::HeaderMap::new();
    headers.insert("host", host(api).parse().unwrap());
    headers.insert(
        "x-amz-date",
        at.format("%Y%m%dT%H%M%SZ").to_string().parse().unwrap(),
    );
    headers.insert(
        "x-amz-target",
        format!("TrentService.{target}").parse().unwrap(),
    );
    headers.insert(
        "content-type",
        "application/x-amz-json-1.1".parse().unwrap(),
    );
    let uri: http::Uri = path.parse().unwrap();
    let req = cloudsig::Request {
        method: &http::Method::POST,
        uri: &uri,
        headers: &headers,
        body: body.as_bytes(),
    };
    let auth = cloudsig::sigv4::authorize(
        &req,
        key.0,
        key.1.as_bytes(),
        "us-east-1",
        "kms",
        &["content-type", "host", "x-amz-date", "x-amz-target"],
    )
    .unwrap();
    let mut builder = api.request(reqwest::Method::POST, path, None).body(body);
    for (k, v) in &headers {
        if k != "host" {
            builder = builder.header(k.as_str(), v.as_bytes());
        }
    }
    builder.header("authorization", auth)
}

/// A classic-SDK (RPC v1) Alibaba request with every parameter in the query.
pub fn alibaba_rpc(
    api: &Api,
    key: (&str, &str),
    action: &str,
    params: &[(&str, &str)],
    nonce: &str,
    at: chrono::DateTime<Utc>,
) -> reqwest::RequestBuilder {
    let at = at.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let mut all: Vec<(String, String)> = vec![
        ("Action".into(), action.into()),
        ("Version".into(), "2016-01-20".into()),
        ("AccessKeyId".into(), key.0.into()),
        ("SignatureMethod".into(), "HMAC-SHA1".into()),
        ("SignatureVersion".into(), "1.0".into()),
        ("SignatureNonce".into(), nonce.into()),
        ("Timestamp".into(), at),
        ("Format".into(), "JSON".into()),
    ];
    all.extend(
        params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let sig = cloudsig::rpc::sign("POST", &all, key.1.as_bytes());
    all.push(("Signature".into(), sig));
    let query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&all)
        .finish();
    api.request(reqwest::Method::POST, &format!("/?{query}"), None)
}

/// A Tencent Cloud request (TC3), as the SDKs make one.
pub fn tencent_request(
    api: &Api,
    key: (&str, &str),
    action: &str,
    body: &Value,
    at: i64,
) -> reqwest::RequestBuilder {
    let body = body.to_string();
    let mut headers = http::HeaderMap::new();
    headers.insert("host", host(api).parse().unwrap());
    headers.insert("content-type", "application/json".parse().unwrap());
    headers.insert("x-tc-timestamp", at.to_string().parse().unwrap());
    let uri: http::Uri = "/".parse().unwrap();
    let req = cloudsig::Request {
        method: &http::Method::POST,
        uri: &uri,
        headers: &headers,
        body: body.as_bytes(),
    };
    let auth = cloudsig::tc3::authorize(&req, key.0, key.1.as_bytes(), "kms").unwrap();
    api.request(reqwest::Method::POST, "/", None)
        .body(body)
        .header("content-type", "application/json")
        .header("x-tc-timestamp", at.to_string())
        .header("x-tc-action", action)
        .header("x-tc-version", "2019-01-18")
        .header("x-tc-region", "ap-guangzhou")
        .header("authorization", auth)
}

/// A client of `roles` (limited to `keys` if given) with an access key.
pub async fn client_with_key(
    s: &super::Setup,
    roles: &[&str],
    keys: Option<Vec<&str>>,
) -> (String, String, String) {
    let mut body = json!({ "Name": format!("sdk-{}", roles.join("-")), "Roles": roles });
    if let Some(k) = keys {
        body["KeyIds"] = json!(k);
    }
    let r = s.api.post("/v1/clients", &s.admin, body).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let client = r.body["ClientId"].as_str().unwrap().to_owned();
    let r = s
        .api
        .post(
            &format!("/v1/clients/{client}/access-keys"),
            &s.admin,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    (
        client,
        r.body["AccessKeyId"].as_str().unwrap().to_owned(),
        r.body["SecretAccessKey"].as_str().unwrap().to_owned(),
    )
}
