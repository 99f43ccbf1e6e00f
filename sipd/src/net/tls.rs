//! The certificate sipd shows phones on its SIP-over-TLS port (RFC 3261
//! section 26.2, RFC 5630). An admin's own certificate and key (PEM files,
//! e.g. those the reverse proxy already obtains) are used when the settings
//! name them; otherwise sipd makes a self-signed one on first start and
//! keeps it in the data dir (`tls/sip.crt`, `tls/sip.key`), so phones that
//! pin it keep working across restarts. Its SHA-256 fingerprint is logged
//! and answered over gRPC for the UI. A renewed certificate (the files
//! rewritten, or the settings naming others) is served from the next
//! connection on, without a restart; one that does not load leaves the
//! old one in service.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use proto::pb::sipd::TlsInfoReply;
use proto::settings::Settings;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::Digest;

/// Where the self-signed certificate lives, under the data dir.
const DIR: &str = "tls";

/// The certificate and key files: the admin's, or sipd's own (made now
/// when missing).
pub fn files(
    data_dir: &Path,
    cert: &str,
    key: &str,
    names: &[String],
) -> anyhow::Result<(PathBuf, PathBuf)> {
    if !cert.trim().is_empty() && !key.trim().is_empty() {
        return Ok((PathBuf::from(cert.trim()), PathBuf::from(key.trim())));
    }
    let dir = data_dir.join(DIR);
    let (crt, pem) = (dir.join("sip.crt"), dir.join("sip.key"));
    if crt.exists() && pem.exists() {
        return Ok((crt, pem));
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let made = rcgen::generate_simple_self_signed(names.to_vec())
        .context("make a self-signed certificate")?;
    write_private(&pem, made.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(&crt, made.cert.pem()).with_context(|| format!("write {}", crt.display()))?;
    tracing::info!(cert = %crt.display(), "made a self-signed certificate for SIP over TLS");
    Ok((crt, pem))
}

/// Writes a key readable by sipd's user only.
fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("write {}", path.display()))?;
    f.write_all(data)
        .with_context(|| format!("write {}", path.display()))
}

/// A TLS acceptor for `cert` and `key`, and the certificate's SHA-256
/// fingerprint (`AB:CD:...`, as phones show it).
pub fn acceptor(cert: &Path, key: &Path) -> anyhow::Result<(tokio_rustls::TlsAcceptor, String)> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("read {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} holds no PEM certificate", cert.display()))?;
    let first = chain
        .first()
        .with_context(|| format!("{} holds no certificate", cert.display()))?;
    let fingerprint = fingerprint(first);
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("{} holds no PEM private key", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the certificate and key do not fit together")?;
    Ok((
        tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        fingerprint,
    ))
}

/// The connector sipd dials a secure trunk with (RFC 5630 section 3.1: it
/// must present a certificate for the host the termination URI names).
/// The certificate is checked against the platform's roots, as Twilio's
/// is, and those in `extra_roots` (a PEM file, for a private trunk or the
/// tests' stand-in). No client certificate: the trunk authenticates sipd
/// by digest.
pub fn connector(extra_roots: Option<&Path>) -> anyhow::Result<tokio_rustls::TlsConnector> {
    let extra: Vec<CertificateDer<'static>> = match extra_roots {
        Some(path) => CertificateDer::pem_file_iter(path)
            .with_context(|| format!("read {}", path.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("{} holds no PEM certificate", path.display()))?,
        None => Vec::new(),
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
            .context("load the platform's root certificates")?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// SHA-256 of the DER certificate, upper-case hex pairs joined by `:`.
pub fn fingerprint(cert: &[u8]) -> String {
    sha2::Sha256::digest(cert)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// What identifies the files in service: their paths and when they were
/// last written.
type Stamp = (PathBuf, PathBuf, Option<SystemTime>, Option<SystemTime>);

fn stamp(cert: &Path, key: &Path) -> Stamp {
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    (cert.to_owned(), key.to_owned(), mtime(cert), mtime(key))
}

/// The certificate sipd serves now, shared by the TLS acceptor (which asks
/// for it per connection) and the gRPC service (which reports it).
#[derive(Clone)]
pub struct Served {
    inner: Arc<RwLock<(tokio_rustls::TlsAcceptor, TlsInfoReply, Stamp)>>,
}

impl Served {
    /// Loads the certificate the settings name, else sipd's own (made now
    /// when missing, named for the realm, the public address and this
    /// host); `port` is the TLS port, for the report.
    pub fn load(data_dir: &Path, s: &Settings, port: u16) -> anyhow::Result<Served> {
        let loaded = load(data_dir, s, port)?;
        Ok(Served {
            inner: Arc::new(RwLock::new(loaded)),
        })
    }

    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        match self.inner.read() {
            Ok(g) => g.0.clone(),
            Err(p) => p.into_inner().0.clone(),
        }
    }

    pub fn info(&self) -> TlsInfoReply {
        match self.inner.read() {
            Ok(g) => g.1.clone(),
            Err(p) => p.into_inner().1.clone(),
        }
    }

    /// Loads again when the settings name other files or the files were
    /// rewritten. `true` when a new certificate is in service.
    pub fn refresh(&self, data_dir: &Path, s: &Settings) -> bool {
        let info = self.info();
        let Ok((cert, key)) = files(
            data_dir,
            s.str("sip.tls_certificate"),
            s.str("sip.tls_key"),
            &names(s),
        ) else {
            return false;
        };
        let same = match self.inner.read() {
            Ok(g) => g.2 == stamp(&cert, &key),
            Err(_) => false,
        };
        if same {
            return false;
        }
        let port = u16::try_from(info.port).unwrap_or_default();
        match load(data_dir, s, port) {
            Ok(loaded) => {
                tracing::info!(sha256 = %loaded.1.sha256, "SIP over TLS certificate replaced");
                if let Ok(mut g) = self.inner.write() {
                    *g = loaded;
                }
                true
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "the new SIP over TLS certificate does not load; keeping the old one");
                // Not tried again until the files change once more.
                if let Ok(mut g) = self.inner.write() {
                    g.2 = stamp(&cert, &key);
                }
                false
            }
        }
    }

    /// Checks for a renewed certificate every two seconds until `shutdown`.
    pub async fn watch(
        self,
        data_dir: PathBuf,
        settings: proto::settings::SettingsHandle,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
            self.refresh(&data_dir, &settings.get());
        }
    }
}

/// The names sipd's own certificate is made for.
fn names(s: &Settings) -> Vec<String> {
    [
        proto::sip_auth::realm(s.str("sip.realm")),
        s.str("sip.public_address").trim().to_string(),
        "localhost".to_string(),
        "127.0.0.1".to_string(),
    ]
    .into_iter()
    .filter(|n| !n.is_empty())
    .collect()
}

/// The acceptor, its report and the stamp of the files the settings name.
fn load(
    data_dir: &Path,
    s: &Settings,
    port: u16,
) -> anyhow::Result<(tokio_rustls::TlsAcceptor, TlsInfoReply, Stamp)> {
    let own =
        s.str("sip.tls_certificate").trim().is_empty() || s.str("sip.tls_key").trim().is_empty();
    let (cert, key) = files(
        data_dir,
        s.str("sip.tls_certificate"),
        s.str("sip.tls_key"),
        &names(s),
    )?;
    let (acceptor, fingerprint) = acceptor(&cert, &key)?;
    tracing::info!(cert = %cert.display(), sha256 = %fingerprint, "SIP over TLS certificate");
    let info = TlsInfoReply {
        port: u32::from(port),
        sha256: fingerprint,
        certificate_path: cert.display().to_string(),
        self_signed: own,
    };
    Ok((acceptor, info, stamp(&cert, &key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_certificate_is_made_once_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["gosip.test".to_string(), "127.0.0.1".to_string()];
        let (crt, key) = files(dir.path(), "", "", &names).unwrap();
        let first = std::fs::read(&crt).unwrap();
        let (_, fp) = acceptor(&crt, &key).unwrap();
        assert_eq!(fp.len(), 32 * 3 - 1, "{fp}");
        // Kept across restarts, the key private to sipd's user.
        let again = files(dir.path(), "", "", &names).unwrap();
        assert_eq!(again, (crt.clone(), key.clone()));
        assert_eq!(std::fs::read(&crt).unwrap(), first);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
        // A key that is not the certificate's is refused with a reason.
        let other = tempfile::tempdir().unwrap();
        let (_, key2) = files(other.path(), "", "", &names).unwrap();
        let err = acceptor(&crt, &key2).err().unwrap().to_string();
        assert!(err.contains("do not fit"), "{err}");
        let err = acceptor(&key, &key).err().unwrap();
        assert!(format!("{err:#}").contains("certificate"), "{err:#}");
    }
}
