//! sipp, the SIP test tool, playing phones and Twilio's termination trunk
//! against a test sipd: command lines, error logs, the trunk's settings.

use std::process::Stdio;
use std::time::Duration;

use super::Sipd;

/// The path of a scenario of `tests/sipp/`, or `name` when it is a path.
pub fn scenario(name: &str) -> String {
    if name.starts_with('/') {
        return name.to_string();
    }
    format!("{}/tests/sipp/{name}", env!("CARGO_MANIFEST_DIR"))
}

pub fn sipp(s: &Sipd, dir: &std::path::Path, xml: &str, csv: &str) -> tokio::process::Command {
    sipp_n(s, dir, xml, csv, 1)
}

pub fn sipp_n(
    s: &Sipd,
    dir: &std::path::Path,
    xml: &str,
    csv: &str,
    calls: u32,
) -> tokio::process::Command {
    let inf = dir.join(format!("{xml}.csv"));
    std::fs::write(&inf, format!("SEQUENTIAL\n{csv}\n")).unwrap();
    let mut cmd = tokio::process::Command::new("sipp");
    cmd.arg(s.sip.to_string())
        .args(["-sf", &scenario(xml), "-inf"])
        .arg(&inf)
        .args([
            "-m",
            &calls.to_string(),
            "-r",
            "10",
            "-l",
            "10",
            "-i",
            "127.0.0.1",
            "-p",
            "0",
            "-mp",
            "0",
            "-timeout",
            "30s",
            "-timeout_error",
        ])
        .args(["-trace_err", "-nostdin"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

pub fn errors(dir: &std::path::Path) -> String {
    let mut out = String::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_name().to_string_lossy().ends_with("_errors.log") {
            out.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
    out
}

/// sipp as Twilio's termination trunk (trunk.xml) on a free port.
pub fn trunk_uas(dir: &std::path::Path) -> (u16, tokio::process::Child) {
    trunk_uas_with(dir, "trunk.xml")
}

/// sipp as the termination trunk playing `xml` on a free port.
pub fn trunk_uas_with(dir: &std::path::Path, xml: &str) -> (u16, tokio::process::Child) {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    (port, trunk_uas_on(dir, xml, port))
}

/// sipp as the termination trunk playing `xml` on `port` (one call).
pub fn trunk_uas_on(dir: &std::path::Path, xml: &str, port: u16) -> tokio::process::Child {
    tokio::process::Command::new("sipp")
        .args(["-sf", &scenario(xml), "-i", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .args([
            "-m",
            "1",
            "-timeout",
            "20s",
            "-timeout_error",
            "-trace_err",
            "-nostdin",
        ])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

pub async fn trunk_settings(s_port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("twilio.termination_uri", format!("127.0.0.1:{s_port}")),
        ("twilio.trunk_username", "trunkuser".into()),
        ("twilio.trunk_password", "trunkpw".into()),
        ("system.default_country", "1".into()),
        // The sipp trunk plays one INVITE scenario per Call-ID; sipd's
        // OPTIONS pings (their own test is in sip::addrs) would be calls.
        ("sip.trunk_options_interval", "0".into()),
    ]
}

/// Waits for a sipp child and fails with its error log when it failed.
pub async fn finished(name: &str, child: tokio::process::Child, dir: &std::path::Path) {
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success(), "{name}: {}", errors(dir));
}

/// Gives alice the DID +15550001111 as caller ID (outbound calls need one).
pub async fn alice_with_did(s: &Sipd) {
    s.add_devices(&[("alice", "pw-alice-2026", "201")]).await;
    let did = s.web.add_did("+15550001111").await;
    s.web
        .edit_device("alice", serde_json::json!({ "caller_id_did_id": did }))
        .await;
}
