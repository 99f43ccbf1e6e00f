//! The HTTP client Gotify pushes and webhooks go through. Their URLs come
//! from users and admins, so the client must not become a way to reach this
//! machine or the LAN behind it (server-side request forgery):
//!
//! - host names are resolved here, and only addresses that
//!   [`proto::ssrf::vet`] keeps are handed to the connector: the check and
//!   the connection use the same answer, so a name that changes to
//!   127.0.0.1 after it was saved (DNS rebinding) is still refused;
//! - IP literals, which the connector never resolves, are checked before
//!   the request is built;
//! - redirects are not followed (a public server could otherwise point the
//!   request at a private one), and no proxy from the environment is used
//!   (the proxy would resolve the name, not us);
//! - the admin's `notify.allowed_private_hosts` is read at every request,
//!   so a change applies without a restart.

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use proto::settings::Settings;
use proto::ssrf::{ALLOW_KEY, AllowList, Refused};
use tokio::sync::watch;

/// The guarded client and the settings its allow-list comes from.
#[derive(Clone)]
pub struct Outbound {
    http: reqwest::Client,
    settings: watch::Receiver<Arc<Settings>>,
}

impl Outbound {
    pub fn new(settings: watch::Receiver<Arc<Settings>>) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("GoSIP-notifyd/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Vetting {
                settings: settings.clone(),
            })
            .build()
            .context("http client")?;
        Ok(Self { http, settings })
    }

    /// A POST to `url` once its host, if an IP literal, is allowed; the
    /// connector vets host names when it resolves them.
    pub fn post(&self, url: reqwest::Url) -> Result<reqwest::RequestBuilder, Refused> {
        let allow = self.allow_list();
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = literal {
            let port = url.port_or_known_default().unwrap_or(0);
            let host = url.host_str().unwrap_or_default();
            proto::ssrf::vet(host, [SocketAddr::new(ip, port)], &allow)?;
        }
        Ok(self.http.post(url))
    }

    fn allow_list(&self) -> AllowList {
        AllowList::parse(self.settings.borrow().str(ALLOW_KEY))
    }
}

/// The refusal inside a request error, when the resolver refused the host.
pub fn refusal(e: &reqwest::Error) -> Option<&Refused> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(r) = c.downcast_ref::<Refused>() {
            return Some(r);
        }
        cur = c.source();
    }
    None
}

/// Resolves names with the system resolver and keeps what the allow-list
/// and [`proto::ssrf::is_public`] let through.
struct Vetting {
    settings: watch::Receiver<Arc<Settings>>,
}

impl reqwest::dns::Resolve for Vetting {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        let allow = AllowList::parse(self.settings.borrow().str(ALLOW_KEY));
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept = proto::ssrf::vet(&host, found, &allow)?;
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbound(allow: &str) -> Outbound {
        let mut s = Settings::defaults();
        s.set(ALLOW_KEY, allow);
        let (_tx, rx) = watch::channel(Arc::new(s));
        Outbound::new(rx).unwrap()
    }

    /// A loopback listener that counts the connections it accepts.
    async fn counting_listener() -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = l.accept().await {
                h.fetch_add(1, Ordering::SeqCst);
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                // The whole request first: an answer before it is a
                // protocol error to the client.
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = sock
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            }
        });
        (port, hits)
    }

    #[tokio::test]
    async fn loopback_literals_are_refused_before_any_connection() {
        let (port, hits) = counting_listener().await;
        let out = outbound("");
        for url in [
            format!("http://127.0.0.1:{port}/"),
            format!("http://[::ffff:127.0.0.1]:{port}/"),
            format!("http://2130706433:{port}/"),
            format!("http://0.0.0.0:{port}/"),
        ] {
            let err = out.post(url.parse().unwrap()).unwrap_err();
            assert!(matches!(err, Refused::Private { .. }), "{url}: {err}");
        }
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_at_connect_time_unless_allowed() {
        let (port, hits) = counting_listener().await;
        let url: reqwest::Url = format!("http://localhost:{port}/").parse().unwrap();
        let err = outbound("")
            .post(url.clone())
            .unwrap()
            .send()
            .await
            .unwrap_err();
        assert!(
            matches!(refusal(&err), Some(Refused::Private { host }) if host == "localhost"),
            "{err:?}"
        );
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);

        let resp = outbound("LocalHost")
            .post(url)
            .unwrap()
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
