//! The stand-in's TLS identity for secure trunking: a root of its own (the
//! part of the public PKI a test can hand sipd with `GOSIP_TRUNK_CA_FILE`)
//! and a server certificate signed by it for the names the trunk answers
//! to, as Twilio's edge presents one for `*.pstn.twilio.com`.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A root and a server certificate (PEM) signed by it.
#[derive(Clone)]
pub struct Identity {
    /// The root, to be trusted by the client.
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Identity {
    /// A fresh root, and a certificate from it for `names` (DNS names or
    /// IP addresses).
    pub fn new(names: &[&str]) -> anyhow::Result<Self> {
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        // Each root its own name, as another CA's would be.
        ca.distinguished_name.push(
            DnType::CommonName,
            format!("GoSIP stand-in root {:08x}", rand::random::<u32>()),
        );
        let root = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
        let mut leaf =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("trunk"),
        );
        let key = KeyPair::generate()?;
        let cert = leaf.signed_by(&key, &root)?;
        Ok(Self {
            ca_pem: root.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A TLS acceptor serving the certificate.
    pub fn acceptor(&self) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
        let chain = vec![CertificateDer::from_pem_slice(self.cert_pem.as_bytes())?];
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }
}
