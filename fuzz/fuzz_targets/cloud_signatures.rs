#![no_main]
//! The cloud doors' signature parsers and verifiers (AWS SigV4, Tencent TC3,
//! Alibaba ACS3 and RPC v1) on arbitrary requests: never a panic, and never
//! a signature accepted under a secret it was not made with. The input is
//! split into a path and query, header lines and a body.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, "\n\n");
    let target = parts.next().unwrap_or("/");
    let head = parts.next().unwrap_or("");
    let body = parts.next().unwrap_or("").as_bytes();
    let Ok(uri) = target.parse::<http::Uri>() else {
        return;
    };
    let mut headers = http::HeaderMap::new();
    for line in head.lines() {
        if let Some((k, v)) = line.split_once(':') {
            if let (Ok(k), Ok(v)) = (
                http::HeaderName::from_bytes(k.trim().as_bytes()),
                http::HeaderValue::from_str(v.trim()),
            ) {
                headers.append(k, v);
            }
        }
    }
    let req = cloudsig::Request {
        method: &http::Method::POST,
        uri: &uri,
        headers: &headers,
        body,
    };
    // A fixed secret the fuzzer cannot know: a match would be a forgery.
    let secret = b"fuzz-secret-never-in-the-input-\x00\xff";
    if let Ok(c) = cloudsig::sigv4::parse(&req) {
        assert_ne!(cloudsig::sigv4::verify(&c, &req, secret), Ok(true));
    }
    if let Ok(c) = cloudsig::tc3::parse(&req) {
        assert_ne!(cloudsig::tc3::verify(&c, &req, secret), Ok(true));
    }
    if let Ok(c) = cloudsig::acs3::parse(&req) {
        assert_ne!(cloudsig::acs3::verify(&c, &req, secret), Ok(true));
    }
    let params: Vec<(String, String)> = uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    if let Ok(c) = cloudsig::rpc::parse(&params) {
        assert!(!cloudsig::rpc::verify(&c, "POST", &params, secret));
    }
});
