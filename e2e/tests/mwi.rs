//! The message-waiting light (RFC 3842) through the five real daemons, set
//! up through the API as an admin does: a sipp phone subscribes to its own
//! mailbox with digest and hears "nothing waiting"; a caller who gets no
//! answer leaves a voicemail through the Twilio stand-in and the phone is
//! told "1 new"; the voicemail played in the web UI (the API) turns the
//! light off ("0 new, 1 old"); unsubscribing ends it with a final NOTIFY.
//! The scenario file checks each NOTIFY's body, so sipp fails on a wrong
//! count. Needs `cargo build --bins` first.

use std::process::Stdio;
use std::time::{Duration, Instant};

use e2e::System;
use e2e::standin::{CallScript, DialOutcome, RecordScript, Standin};
use serde_json::json;

const DID: &str = "+15551230000";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscribed_phone_hears_of_a_new_voicemail_and_of_it_being_played() {
    let twilio = Standin::start().await.expect("stand-in");
    let sys = System::start_with(&[("GOSIP_DEVICE_RELOAD_SECS", "1")])
        .await
        .expect("system");
    let api = e2e::Api::new(&sys);
    let base = sys.base_url();
    let admin = api.setup(&sys, DID).await;
    api.connect_twilio(&admin, &twilio, json!({"system.public_url": base}))
        .await;
    twilio.add_number_for(DID, &base);
    // The admin's desk phone.
    let (s, dev, _) = api
        .call(
            &admin,
            "POST",
            "/api/devices",
            Some(json!({"name": "desk", "username": "desk", "extension": "201"})),
        )
        .await;
    assert_eq!(s, 201, "{dev}");
    let password = dev["password"].as_str().unwrap().to_owned();

    // The phone subscribes (sipd learns the device within a second).
    let dir = tempfile::tempdir().unwrap();
    let inf = dir.path().join("mwi.csv");
    std::fs::write(
        &inf,
        format!("SEQUENTIAL\ndesk;[authentication username=desk password={password}]\n"),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let sipp = tokio::process::Command::new("sipp")
        .arg(sys.sip_addr().to_string())
        .arg("-sf")
        .arg(e2e::sipp_scenario("mwi_subscriber.xml"))
        .arg("-inf")
        .arg(&inf)
        .args([
            "-m",
            "1",
            "-i",
            "127.0.0.1",
            "-p",
            "0",
            "-timeout",
            "120s",
            "-timeout_error",
        ])
        .args(["-trace_err", "-nostdin"])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("sipp (apt install sip-tester)");

    // Wait until sipd holds the subscription: its first NOTIFY went out
    // (sipd's counts are read every 2 s; give the phone that first round).
    tokio::time::sleep(Duration::from_secs(3)).await;

    // A caller gets no answer and leaves a voicemail.
    let o = e2e::standin::scenario::run(
        &twilio,
        &CallScript {
            from: "+15557654321".into(),
            to: DID.into(),
            dial: DialOutcome::NoAnswer,
            record: RecordScript {
                secs: 6,
                transcript: Some("Please call back".into()),
                ..RecordScript::default()
            },
            ..CallScript::default()
        },
    )
    .await
    .expect("call");
    assert!(o.recording_sid.is_some(), "{o:?}\n{}", sys.log("twiliod"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let vm_id = loop {
        let (_, list, _) = api.call(&admin, "GET", "/api/voicemails", None).await;
        if let Some(id) = list["items"][0]["id"].as_i64() {
            break id;
        }
        assert!(
            Instant::now() < deadline,
            "no voicemail\n{}",
            sys.log("twiliod")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Give sipd's 2 s count reading a round or two to see "1 new" before
    // it is played in the UI (the sipp scenario fails if it never did).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (s, v, _) = api
        .call(
            &admin,
            "PUT",
            &format!("/api/voicemails/{vm_id}/read"),
            Some(json!({"is_read": true})),
        )
        .await;
    assert!(s < 300, "{s} {v}");

    let out = tokio::time::timeout(Duration::from_secs(100), sipp.wait_with_output())
        .await
        .expect("sipp finished")
        .unwrap();
    let errors = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with("_errors.log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<String>();
    assert!(
        out.status.success(),
        "sipp: {}\n{errors}\n--- sipd\n{}",
        String::from_utf8_lossy(&out.stderr),
        sys.log("sipd")
    );
    // Deleting it in the UI: twiliod (which owns voicemails) removes the
    // row and the audio; it is gone from the list.
    let wavs = |dir: &std::path::Path| {
        std::fs::read_dir(dir.join("voicemails"))
            .map(|d| d.filter_map(Result::ok).count())
            .unwrap_or(0)
    };
    assert_eq!(wavs(&sys.data_dir), 1);
    let (s, v, _) = api
        .call(&admin, "DELETE", &format!("/api/voicemails/{vm_id}"), None)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(wavs(&sys.data_dir), 0);
    let (s, _, _) = api
        .call(&admin, "GET", &format!("/api/voicemails/{vm_id}"), None)
        .await;
    assert_eq!(s, 404);
    let (s, _, _) = api
        .call(&admin, "DELETE", &format!("/api/voicemails/{vm_id}"), None)
        .await;
    assert_eq!(s, 404);
    twilio.shutdown();
}
