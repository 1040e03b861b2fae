//! TLS end to end: the KMS and the broker over HTTPS with certificates of a
//! test CA, the broker verifying the KMS's certificate against that CA, a key
//! released over HTTPS, clients without the CA refused, and a new certificate
//! served after SIGHUP without a restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{Api, ServerProcess};
use rcgen::{BasicConstraints, Certificate, CertificateParams, IsCa, KeyPair};
use serde_json::json;

struct Ca {
    cert: Certificate,
    key: KeyPair,
}

impl Ca {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self { cert, key }
    }

    /// A server certificate for 127.0.0.1 and localhost, written as PEM.
    fn issue(&self, dir: &Path, name: &str) -> Vec<u8> {
        let params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        write_atomically(&dir.join(format!("{name}.crt")), cert.pem().as_bytes());
        write_atomically(
            &dir.join(format!("{name}.key")),
            key.serialize_pem().as_bytes(),
        );
        cert.der().to_vec()
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(tmp, path).unwrap();
}

/// The DER of the certificate a new connection to `url` is served.
async fn served_cert(client: &reqwest::Client, url: &str) -> Vec<u8> {
    let resp = client.get(format!("{url}/healthz")).send().await.unwrap();
    resp.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .unwrap()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_and_broker_over_https_with_a_private_ca_and_sighup_reload() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let ca_pem = ca.cert.pem().into_bytes();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    let first_der = ca.issue(dir.path(), "kms");
    ca.issue(dir.path(), "broker");
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();

    let db = common::fresh_database().await;
    let root = common::random_root_key();
    let kms = ServerProcess::spawn_tls(
        &["kms", "serve"],
        common::free_port(),
        &[
            ("DATABASE_URL", &db),
            ("VODKMS_ROOT_KEY", &root),
            ("VODKMS_TLS_CERT", &p("kms.crt")),
            ("VODKMS_TLS_KEY", &p("kms.key")),
        ],
        "kms-tls",
        &ca_pem,
    )
    .await
    .unwrap_or_else(|log| panic!("{log}"));
    assert!(kms.url.starts_with("https://"));
    let admin = common::bootstrap(&db, &root);
    let api = Api::with_ca(&kms.url, &ca_pem);
    api.create_key(&admin, "alias/vod").await;
    let (_, generator) = api.create_client(&admin, "generate", None).await;
    let (_, decryptor) = api.create_client(&admin, "decrypt", None).await;
    let (_, issuer) = api.create_client(&admin, "issuer", None).await;
    let generated = api.generate(&generator, "alias/vod", "film").await;
    let plain = base64::engine::general_purpose::STANDARD
        .decode(generated.ok()["Plaintext"].as_str().unwrap())
        .unwrap();
    let edk = generated.ok()["CiphertextBlob"]
        .as_str()
        .unwrap()
        .to_owned();

    // Without the CA, a client refuses the server; plain HTTP gets no answer.
    assert!(reqwest::get(format!("{}/healthz", kms.url)).await.is_err());
    let plain_http = kms.url.replace("https://", "http://");
    let answered = reqwest::Client::new()
        .get(format!("{plain_http}/healthz"))
        .timeout(Duration::from_secs(3))
        .send()
        .await;
    assert!(answered.map(|r| !r.status().is_success()).unwrap_or(true));

    // The broker over HTTPS, reaching the KMS over HTTPS through the CA file.
    let secret = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let broker = ServerProcess::spawn_tls(
        &["broker", "serve"],
        common::free_port(),
        &[
            ("DATABASE_URL", &db),
            ("VODKMS_KMS_URL", &kms.url),
            ("VODKMS_KMS_TOKEN", &decryptor),
            ("VODKMS_KMS_CA_FILE", &p("ca.pem")),
            ("VODKMS_TOKEN_SECRET", &secret),
            ("VODKMS_TLS_CERT", &p("broker.crt")),
            ("VODKMS_TLS_KEY", &p("broker.key")),
        ],
        "broker-tls",
        &ca_pem,
    )
    .await
    .unwrap_or_else(|log| panic!("{log}"));
    let bapi = Api::with_ca(&broker.url, &ca_pem);
    let token = bapi
        .post(
            "/v1/tokens",
            &issuer,
            json!({"Viewer": "v", "VideoIds": ["film"]}),
        )
        .await
        .ok()["Token"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = common::tls_client(&ca_pem)
        .get(format!(
            "{}/v1/hls/key?vid=film&Ciphertext={edk}&token={token}",
            broker.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(key.status(), 200);
    assert_eq!(key.bytes().await.unwrap().to_vec(), plain);

    // A new certificate in the same files, SIGHUP: new connections get it.
    let client = common::tls_client(&ca_pem);
    assert_eq!(served_cert(&client, &kms.url).await, first_der);
    let second_der = ca.issue(dir.path(), "kms");
    assert_ne!(first_der, second_der);
    Command::new("kill")
        .args(["-HUP", &kms.pid().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // A fresh client: a new connection, so a new handshake.
        if served_cert(&common::tls_client(&ca_pem), &kms.url).await == second_der {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Still the same process, still serving keys.
    assert_eq!(
        api.generate(&generator, "alias/vod", "film").await.status,
        200
    );
    assert!(kms.log_text().contains("TLS certificate reloaded"));
}
