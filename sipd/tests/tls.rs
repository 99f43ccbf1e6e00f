#![allow(clippy::unwrap_used, clippy::expect_used)]
//! SIP over TLS from the outside: which certificate sipd serves on its TLS
//! port, checked by a TLS client that trusts exactly one certificate, and
//! a renewed certificate taking over without a restart.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::Sipd;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// Whether a TLS handshake with sipd succeeds for a client that trusts
/// only the certificate in `pem`.
async fn trusts(s: &Sipd, pem: &Path) -> bool {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(pem).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(s.sips).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .is_ok()
}

async fn shown(s: &Sipd) -> serde_json::Value {
    s.web
        .api
        .ok(&s.web.admin, 200, "GET", "/api/system/sip-tls", None)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_without_a_restart_and_a_broken_one_changes_nothing() {
    let s = Sipd::start(&[]).await;
    let own = s.dir.join("tls").join("sip.crt");
    assert!(trusts(&s, &own).await, "sipd serves its own certificate");
    assert_eq!(shown(&s).await["self_signed"], true);

    // The admin's certificate (as a reverse proxy would obtain it), named
    // on the settings screen.
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("pbx.crt"), dir.path().join("pbx.key"));
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    s.web
        .settings(&[
            ("sip.tls_certificate", cert.to_str().unwrap()),
            ("sip.tls_key", key.to_str().unwrap()),
        ])
        .await;
    let want = sipd::net::tls::fingerprint(made.cert.der());
    s.eventually("sipd serves the admin's certificate", || async {
        shown(&s).await["sha256"] == want.as_str()
    })
    .await;
    assert_eq!(shown(&s).await["self_signed"], false);
    assert!(trusts(&s, &cert).await, "the new certificate is served");
    assert!(!trusts(&s, &own).await, "the old one is not");

    // A renewal gone wrong (a truncated file): the working one stays.
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(shown(&s).await["sha256"], want.as_str());
    let kept = dir.path().join("kept.crt");
    std::fs::write(&kept, made.cert.pem()).unwrap();
    assert!(
        trusts(&s, &kept).await,
        "still served after a broken renewal"
    );
    s.stop().await;
}
