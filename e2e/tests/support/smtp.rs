//! The real SMTP server the notification tests read mail back from:
//! `notifyd/tests/smtp_sink.py` (Debian `python3-aiosmtpd`). Included by
//! the tests that need it with `#[path = "support/smtp.rs"] mod smtp;`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mail_parser::{Message, MessageParser};

/// The real SMTP server: `notifyd/tests/smtp_sink.py` on a fixed port,
/// saving each message as `<dir>/<n>.eml`.
pub struct Smtp {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Smtp {
    fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../notifyd/tests/smtp_sink.py")
    }

    pub async fn start(port: u16, dir: &Path) -> Smtp {
        let mut s = Smtp {
            port,
            dir: dir.to_owned(),
            child: None,
        };
        s.spawn().await;
        s
    }

    /// Starts the server and waits for its "ready" line (printed once the
    /// port is bound; an early exit closes stdout instead).
    pub async fn spawn(&mut self) {
        assert!(self.child.is_none());
        std::fs::create_dir_all(&self.dir).unwrap();
        let mut child = Command::new("/usr/bin/python3")
            .arg("-W")
            .arg("ignore")
            .arg(Self::script())
            .arg(self.port.to_string())
            .arg(&self.dir)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 with aiosmtpd (Debian python3-aiosmtpd)");
        let stdout = child.stdout.take().unwrap();
        self.child = Some(child);
        let ready = tokio::task::spawn_blocking(move || {
            use std::io::BufRead;
            let mut line = String::new();
            std::io::BufReader::new(stdout).read_line(&mut line).ok();
            line
        });
        let line = tokio::time::timeout(Duration::from_secs(20), ready)
            .await
            .expect("the SMTP server to start")
            .unwrap();
        assert_eq!(line.trim(), "ready", "SMTP server on port {}", self.port);
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Raw messages received so far, in arrival order.
    pub fn messages(&self) -> Vec<Vec<u8>> {
        let mut names: Vec<_> = std::fs::read_dir(&self.dir)
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names.iter().map(|p| std::fs::read(p).unwrap()).collect()
    }

    /// Messages whose subject contains `needle`.
    pub fn about(&self, needle: &str) -> Vec<Vec<u8>> {
        self.messages()
            .into_iter()
            .filter(|raw| parse(raw).subject().is_some_and(|s| s.contains(needle)))
            .collect()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn parse(raw: &[u8]) -> Message<'_> {
    MessageParser::default().parse(raw).expect("a MIME message")
}

/// The `To` addresses of a message.
pub fn recipients(m: &Message<'_>) -> Vec<String> {
    m.to()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.address().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
