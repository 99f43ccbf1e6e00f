//! Authentication between the daemons. Their gRPC ports accept calls that
//! hang up calls, send SMS and read settings, and under Compose they listen
//! on a bridge network every container can reach, so each call carries a
//! shared secret: `authorization: Bearer <secret>`.
//!
//! The secret lives in `$GOSIP_DATA_DIR/grpc.secret` (0600, 32 random bytes
//! as hex). Whichever daemon starts first creates it; the others read it.
//! Every server checks it with [`RequireSecret`] except for the `Daemon`
//! health call, which probes and monitors use; every client adds it with
//! [`authed`].

use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::codegen::http;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

/// File name of the secret inside the data dir.
pub const SECRET_FILE: &str = "grpc.secret";

/// Calls answered without the secret: the health probe only.
const OPEN_PATHS: &[&str] = &["/gosip.common.Daemon/Health"];

/// Random bytes in a secret.
const SECRET_BYTES: usize = 32;

/// The shared secret. Never printed: `Debug` shows a placeholder.
#[derive(Clone)]
pub struct Secret {
    /// `Bearer <hex>`, ready for the `authorization` header.
    bearer: MetadataValue<Ascii>,
    raw: Arc<[u8]>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(********)")
    }
}

/// Why the secret file could not be read or created.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Reading, creating or linking the file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file does not hold 64 hex digits.
    #[error("{path} is not 64 hex digits; delete it and restart every daemon")]
    Malformed { path: PathBuf },
}

impl Secret {
    /// Reads `grpc.secret` from `data_dir`, creating it when it is absent.
    ///
    /// Five daemons may start at the same moment on an empty data dir. The
    /// new secret is written completely to a file of this process's own
    /// (created with O_EXCL, mode 0600) and then hard-linked to its final
    /// name, which fails if the name exists: the file appears whole or not
    /// at all, exactly one daemon's secret wins, and the losers read it.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, SecretError> {
        let path = data_dir.join(SECRET_FILE);
        match Self::read(&path) {
            Err(SecretError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {}
            other => return other,
        }
        let io = |p: &Path| {
            let p = p.to_owned();
            move |source| SecretError::Io { path: p, source }
        };
        fs::create_dir_all(data_dir).map_err(io(data_dir))?;
        let mut bytes = [0u8; SECRET_BYTES];
        rand::fill(&mut bytes);
        let tmp = data_dir.join(format!(
            ".{SECRET_FILE}.{}.{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let written = (|| {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(hex::encode(bytes).as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(io(&tmp)(e));
        }
        let linked = fs::hard_link(&tmp, &path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                tracing::info!(path = %path.display(), "created the gRPC secret");
                Ok(Self::from_bytes(&bytes))
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Self::read(&path),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// A secret from its 64 hex digits.
    pub fn from_hex(hex_digits: &str) -> Option<Self> {
        let s = hex_digits.trim();
        if s.len() != SECRET_BYTES * 2 {
            return None;
        }
        hex::decode(s).ok().map(|b| Self::from_bytes(&b))
    }

    /// A fresh random secret (for test servers that have no data dir).
    pub fn random() -> Self {
        let mut bytes = [0u8; SECRET_BYTES];
        rand::fill(&mut bytes);
        Self::from_bytes(&bytes)
    }

    /// The `authorization` value clients send.
    pub fn bearer(&self) -> MetadataValue<Ascii> {
        self.bearer.clone()
    }

    /// Whether an `authorization` header carries this secret. Compares in
    /// constant time so the answer time does not reveal a matching prefix.
    pub fn accepts(&self, header: Option<&http::HeaderValue>) -> bool {
        let Some(v) = header.and_then(|h| h.to_str().ok()) else {
            return false;
        };
        let Some(given) = v
            .strip_prefix("Bearer ")
            .and_then(|h| hex::decode(h.trim()).ok())
        else {
            return false;
        };
        given.len() == self.raw.len()
            && given
                .iter()
                .zip(self.raw.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }

    fn read(path: &Path) -> Result<Self, SecretError> {
        let text = fs::read_to_string(path).map_err(|source| SecretError::Io {
            path: path.to_owned(),
            source,
        })?;
        if let Ok(meta) = fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(path = %path.display(), "the gRPC secret is readable by others; making it 0600");
            let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o600));
        }
        Self::from_hex(&text).ok_or_else(|| SecretError::Malformed {
            path: path.to_owned(),
        })
    }

    fn from_bytes(bytes: &[u8]) -> Self {
        let value = format!("Bearer {}", hex::encode(bytes));
        // Hex digits and one space are always a valid ASCII metadata value.
        let bearer = value
            .parse()
            .unwrap_or_else(|_| unreachable!("hex is valid header text"));
        Self {
            bearer,
            raw: bytes.into(),
        }
    }
}

/// The client side: adds the secret to every call.
#[derive(Clone)]
pub struct Bearer(MetadataValue<Ascii>);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

/// A channel whose calls carry the secret; use it wherever a generated
/// client takes a `Channel` (`SipdClient::new(authed(channel, &secret))`).
pub type AuthChannel = InterceptedService<Channel, Bearer>;

/// Wraps `channel` so that every call carries `secret`.
pub fn authed(channel: Channel, secret: &Secret) -> AuthChannel {
    InterceptedService::new(channel, Bearer(secret.bearer()))
}

/// How long a daemon waits for another daemon's gRPC port to accept a
/// connection: they run on one host or one bridge network, so a second is
/// plenty and a longer wait only delays the caller's fallback.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// How long one gRPC call may take before the caller gives up: the slowest
/// answers (twiliod asking Twilio for a check, a backup's settle) stay
/// within it.
pub const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A gRPC address that is not a URI.
#[derive(Debug, thiserror::Error)]
#[error("bad gRPC address {addr}: {source}")]
pub struct AddressError {
    addr: String,
    source: tonic::transport::Error,
}

/// The one way a daemon reaches another: `addr` is `host:port` (or a full
/// `http://` URI), the channel connects on first use and reconnects after a
/// failure, with [`CONNECT_TIMEOUT`] and [`CALL_TIMEOUT`], and every call
/// carries `secret`. A peer that is down makes calls fail with
/// `Unavailable`, never the caller's start.
pub fn channel(addr: &str, secret: &Secret) -> Result<AuthChannel, AddressError> {
    let url = if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    };
    let endpoint = tonic::transport::Endpoint::from_shared(url).map_err(|source| AddressError {
        addr: addr.to_owned(),
        source,
    })?;
    let channel = endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(CALL_TIMEOUT)
        .connect_lazy();
    Ok(authed(channel, secret))
}

/// Connects to `url` (`http://host:port`) now, for tools that want to fail
/// at once when the daemon is not there; the channel's calls carry `secret`.
pub async fn connect(url: String, secret: &Secret) -> Result<AuthChannel, tonic::transport::Error> {
    let channel = tonic::transport::Endpoint::from_shared(url)?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(CALL_TIMEOUT)
        .connect()
        .await?;
    Ok(authed(channel, secret))
}

/// The server side: a tower layer for `tonic::transport::Server::layer`
/// that answers `UNAUTHENTICATED` to any call without the secret, except
/// the health probe.
#[derive(Clone, Debug)]
pub struct RequireSecret {
    secret: Secret,
}

impl RequireSecret {
    pub fn new(secret: Secret) -> Self {
        Self { secret }
    }
}

impl<S> tower::Layer<S> for RequireSecret {
    type Service = Checked<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Checked {
            inner,
            secret: self.secret.clone(),
        }
    }
}

/// The service [`RequireSecret`] wraps around a daemon's gRPC routes.
#[derive(Clone, Debug)]
pub struct Checked<S> {
    inner: S,
    secret: Secret,
}

impl<S, B> tower::Service<http::Request<B>> for Checked<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let path = req.uri().path();
        if OPEN_PATHS.contains(&path) || self.secret.accepts(req.headers().get("authorization")) {
            return Box::pin(self.inner.call(req));
        }
        let peer = req
            .extensions()
            .get::<tonic::transport::server::TcpConnectInfo>()
            .and_then(|i| i.remote_addr());
        tracing::warn!(
            peer = ?peer,
            path,
            with_header = req.headers().contains_key("authorization"),
            "gRPC call without the right secret refused"
        );
        let status = Status::unauthenticated("missing or wrong gRPC secret");
        Box::pin(std::future::ready(Ok(status.into_http())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::common::daemon_client::DaemonClient;
    use crate::pb::common::{HealthRequest, ReloadRequest};

    #[test]
    fn the_first_start_creates_a_private_secret_and_later_starts_read_it() {
        let dir = tempfile::tempdir().unwrap();
        let a = Secret::load_or_create(dir.path()).unwrap();
        let path = dir.path().join(SECRET_FILE);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim().len(), 64);
        assert!(text.trim().bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let b = Secret::load_or_create(dir.path()).unwrap();
        assert!(b.accepts(Some(&a.bearer().to_str().unwrap().parse().unwrap())));
        assert_ne!(
            Secret::load_or_create(tempfile::tempdir().unwrap().path())
                .unwrap()
                .bearer(),
            a.bearer()
        );
        // No temporary files are left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn daemons_starting_together_all_end_up_with_one_secret() {
        let dir = tempfile::tempdir().unwrap();
        let secrets: Vec<Secret> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| Secret::load_or_create(dir.path()).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let on_disk = Secret::load_or_create(dir.path()).unwrap();
        for s in &secrets {
            assert_eq!(s.bearer(), on_disk.bearer());
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_damaged_secret_file_is_an_error_not_a_new_secret() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(SECRET_FILE), "abc").unwrap();
        assert!(matches!(
            Secret::load_or_create(dir.path()),
            Err(SecretError::Malformed { .. })
        ));
    }

    #[test]
    fn only_the_exact_secret_is_accepted() {
        let s = Secret::random();
        let good: http::HeaderValue = s.bearer().to_str().unwrap().parse().unwrap();
        assert!(s.accepts(Some(&good)));
        let other: http::HeaderValue = Secret::random().bearer().to_str().unwrap().parse().unwrap();
        assert!(!s.accepts(Some(&other)));
        let bare: http::HeaderValue = good.to_str().unwrap()[7..].parse().unwrap();
        assert!(!s.accepts(Some(&bare)));
        assert!(!s.accepts(None));
        assert!(!s.accepts(Some(&"Bearer ".parse().unwrap())));
        assert_eq!(format!("{s:?}"), "Secret(********)");
    }

    /// A real tonic server with the layer: calls without the secret or with
    /// a wrong one are refused, the health probe is not, and a client that
    /// carries the secret gets through.
    #[tokio::test]
    async fn a_server_refuses_calls_without_the_secret_except_health() {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::db::open(dir.path()).await.unwrap();
        let settings = crate::settings::SettingsHandle::new(pool.clone())
            .await
            .unwrap();
        let secret = Secret::load_or_create(dir.path()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .layer(RequireSecret::new(secret.clone()))
                .add_service(
                    crate::daemon::DaemonService::new("test", pool, settings).into_server(),
                )
                .serve_with_incoming_shutdown(
                    crate::daemon::incoming(listener),
                    stop.clone().cancelled_owned(),
                ),
        );
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();

        let mut bare = DaemonClient::new(channel.clone());
        let err = bare.reload(ReloadRequest {}).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        assert!(bare.health(HealthRequest {}).await.is_ok());

        let mut wrong = DaemonClient::new(authed(channel.clone(), &Secret::random()));
        let err = wrong.reload(ReloadRequest {}).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);

        let mut good = DaemonClient::new(authed(channel, &secret));
        good.reload(ReloadRequest {}).await.unwrap();
        assert_eq!(
            good.health(HealthRequest {})
                .await
                .unwrap()
                .into_inner()
                .daemon,
            "test"
        );
        stop.cancel();
        server.await.unwrap().unwrap();
    }
}
