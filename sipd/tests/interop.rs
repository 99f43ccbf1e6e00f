#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Real SIP software against a running sipd: sipp scenarios (register with
//! digest, wrong password, un-register, OPTIONS, TCP) and two baresip
//! instances registering. Needs the Debian packages `sip-tester` and
//! `baresip` (scripts/install-deps.sh).

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::Sipd;

fn scenario(name: &str) -> String {
    format!("{}/tests/sipp/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs one sipp scenario once; Ok when sipp reports success.
async fn sipp(s: &Sipd, dir: &Path, xml: &str, csv: &str, tcp: bool) -> Result<(), String> {
    let inf = dir.join(format!("{xml}.csv"));
    std::fs::write(&inf, format!("SEQUENTIAL\n{csv}\n")).unwrap();
    let mut cmd = tokio::process::Command::new("sipp");
    cmd.arg(s.sip.to_string())
        .args(["-sf", &scenario(xml), "-inf"])
        .arg(&inf)
        .args([
            "-m",
            "1",
            "-i",
            "127.0.0.1",
            "-p",
            "0",
            "-timeout",
            "15s",
            "-timeout_error",
        ])
        .args(["-trace_err", "-nostdin"])
        .args(if tcp {
            &["-t", "t1"][..]
        } else {
            &["-t", "u1"][..]
        })
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let out = cmd
        .output()
        .await
        .map_err(|e| format!("sipp: {e} (install sip-tester)"))?;
    if out.status.success() {
        return Ok(());
    }
    let mut errors = String::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_name().to_string_lossy().ends_with("_errors.log") {
            errors.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
    Err(format!(
        "sipp {xml} exit {:?}: {}{errors}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    ))
}

#[tokio::test]
async fn sipp_registers_with_digest_fails_with_a_wrong_password_and_unregisters() {
    let s = Sipd::start(&[]).await;
    s.add_devices(&[("alice", "s3cret-s3cret", "101")]).await;
    let dir = tempfile::tempdir().unwrap();
    let good = "alice;[authentication username=alice password=s3cret-s3cret]";
    sipp(&s, dir.path(), "options.xml", "x", false)
        .await
        .unwrap();
    sipp(
        &s,
        dir.path(),
        "register.xml",
        &format!("{good};300"),
        false,
    )
    .await
    .unwrap();
    s.eventually("udp row", || async {
        s.registrations().await.iter().any(|r| r.1 == "udp")
    })
    .await;
    // Over TCP sipp registers (its scenario fails without the 200) and
    // exits: with its connection its registration goes, and nothing
    // else's.
    sipp(&s, dir.path(), "register.xml", &format!("{good};300"), true)
        .await
        .unwrap();
    s.eventually("only the udp row", || async {
        let rows = s.registrations().await;
        rows.len() == 1 && rows[0].1 == "udp"
    })
    .await;
    sipp(
        &s,
        dir.path(),
        "register_wrong_password.xml",
        "alice;[authentication username=alice password=nope]",
        false,
    )
    .await
    .unwrap();
    s.eventually("security event", || async {
        s.security_events()
            .await
            .iter()
            .any(|e| e.0 == "sip_bad_password")
    })
    .await;
    sipp(&s, dir.path(), "unregister.xml", good, false)
        .await
        .unwrap();
    s.eventually("rows gone", || async { s.registrations().await.is_empty() })
        .await;
    s.stop().await;
}

fn baresip_dir(root: &Path, name: &str, port: u16, account: &str) -> std::path::PathBuf {
    let d = root.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("config"),
        format!(
            "poll_method epoll\nsip_listen 127.0.0.1:{port}\nnet_interface 127.0.0.1\n\
             module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule_tmp uuid.so\n\
             module_tmp account.so\nmodule_app menu.so\n\
             audio_player aufile,/dev/null\naudio_source aufile,/dev/null\n"
        ),
    )
    .unwrap();
    std::fs::write(d.join("accounts"), format!("{account}\n")).unwrap();
    d
}

#[tokio::test]
async fn two_baresip_instances_register() {
    let s = Sipd::start(&[]).await;
    s.add_devices(&[
        ("bob", "pw-bob-2026-x", "102"),
        ("carol", "pw-carol-2026", "103"),
    ])
    .await;
    let root = tempfile::tempdir().unwrap();
    let mut kids = Vec::new();
    for (user, pw) in [("bob", "pw-bob-2026-x"), ("carol", "pw-carol-2026")] {
        let port = testkit::ports::sip_pair();
        let d = baresip_dir(
            root.path(),
            user,
            port,
            &format!(
                "<sip:{user}@{};transport=udp>;auth_pass={pw};regint=300",
                s.sip
            ),
        );
        let child = tokio::process::Command::new("baresip")
            .arg("-f")
            .arg(&d)
            .args(["-t", "20"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("baresip (install baresip)");
        kids.push(child);
    }
    s.eventually("both baresip registered", || async {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT contact, user_agent FROM registrations ORDER BY contact")
                .fetch_all(&s.pool)
                .await
                .unwrap();
        rows.len() == 2
            && rows[0].0.starts_with("sip:bob")
            && rows[1].0.starts_with("sip:carol")
            && rows.iter().all(|r| r.1.starts_with("baresip"))
    })
    .await;
    for mut k in kids {
        let _ = k.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), k.wait()).await;
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_baresip_softphone_calls_another_through_gosip_and_media_flows_both_ways() {
    let s = Sipd::start_with_mediad(&[]).await;
    s.add_devices(&[
        ("bob", "pw-bob-2026-x", "102"),
        ("carol", "pw-carol-2026", "103"),
    ])
    .await;
    let root = tempfile::tempdir().unwrap();
    let tone = root.path().join("tone.wav");
    let sox = std::process::Command::new("sox")
        .args(["-n", "-r", "8000", "-c", "1", "-b", "16"])
        .arg(&tone)
        .args(["synth", "6", "sine", "440"])
        .status()
        .expect("sox");
    assert!(sox.success());
    let audio = |d: &Path| {
        let cfg = d.join("config");
        let c = std::fs::read_to_string(&cfg)
            .unwrap()
            .replace(
                "audio_source aufile,/dev/null",
                &format!("audio_source aufile,{}", tone.display()),
            )
            .replace("module g711.so", "module g711.so\nmodule aufile.so");
        std::fs::write(cfg, c).unwrap();
    };
    let carol_dir = baresip_dir(
        root.path(),
        "carol",
        testkit::ports::sip_pair(),
        &format!(
            "<sip:carol@{};transport=udp>;auth_pass=pw-carol-2026;regint=300;answermode=auto;audio_codecs=PCMU,PCMA",
            s.sip
        ),
    );
    audio(&carol_dir);
    let mut carol = tokio::process::Command::new("baresip")
        .arg("-f")
        .arg(&carol_dir)
        .args(["-t", "30"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("baresip");
    s.eventually("carol registered", || async {
        s.registrations().await.len() == 1
    })
    .await;
    let bob_dir = baresip_dir(
        root.path(),
        "bob",
        testkit::ports::sip_pair(),
        &format!(
            "<sip:bob@{};transport=udp>;auth_pass=pw-bob-2026-x;regint=300;audio_codecs=PCMU,PCMA",
            s.sip
        ),
    );
    audio(&bob_dir);
    let bob = tokio::process::Command::new("baresip")
        .arg("-f")
        .arg(&bob_dir)
        .args(["-t", "6", "-e"])
        .arg(format!("/dial sip:103@{}", s.sip))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .output();
    let _ = tokio::time::timeout(Duration::from_secs(20), bob).await;
    s.eventually("call answered, ended, media counted both ways", || async {
        let row: Option<(Option<String>, Option<String>, Option<String>)> =
            sqlx::query_as("SELECT answered_at, disposition, media_stats FROM cdrs")
                .fetch_optional(&s.pool)
                .await
                .unwrap();
        let Some((Some(_), Some(d), Some(stats))) = row else {
            return false;
        };
        let v: serde_json::Value = serde_json::from_str(&stats).unwrap();
        d == "answered"
            && v["a"]["packets_in"].as_u64().unwrap_or(0) > 50
            && v["b"]["packets_in"].as_u64().unwrap_or(0) > 50
    })
    .await;
    let _ = carol.start_kill();
    let _ = carol.wait().await;
    s.stop().await;
}
