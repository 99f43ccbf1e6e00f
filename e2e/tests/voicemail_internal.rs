//! Voicemail between phones, through the five real daemons, with two
//! devices and a user made through the API and Debian baresip phones:
//! - an internal call nobody answers leaves a voicemail: a phone calls an
//!   extension whose phone is not registered; sipd answers the caller,
//!   mediad reads the greeting (espeak-ng) and plays the tone, then records
//!   the caller's 440 Hz tone; twiliod stores the message, which the
//!   callee's owner finds through the API with the tone in its WAV, and the
//!   CDR says voicemail;
//! - the callee's own phone then dials *97, hears the message (its 440 Hz
//!   tone) and presses 7: the message is gone from the API.
//!
//! Needs `cargo build --bins` first (the harness runs target/debug/*).

use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e::audio::{Wav, sine, tones};
use e2e::baresip::Baresip;
use e2e::{Api, System};
use serde_json::{Value, json};
use testkit::eventually_some;

const MAIN: &str = "+15551230000";

fn tone(dir: &Path) -> PathBuf {
    let p = dir.join("tone.wav");
    std::fs::write(&p, Wav::encode(8000, &[sine(8000, 440.0, 60.0, 0.5)])).unwrap();
    p
}

/// A device made on the devices screen; (device, SIP password).
async fn device(api: &Api, admin: &str, name: &str, ext: &str, owner: i64) -> (Value, String) {
    let d = api
        .ok(
            admin,
            201,
            "POST",
            "/api/devices",
            Some(json!({"name": name, "username": name, "extension": ext, "user_id": owner})),
        )
        .await;
    let pw = d["password"].as_str().unwrap().to_owned();
    (d, pw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_internal_call_leaves_a_voicemail_with_the_callers_audio() {
    let sys = System::start_with(&[("GOSIP_DEVICE_RELOAD_SECS", "1")])
        .await
        .expect("system");
    let api = Api::new(&sys);
    let admin = api.setup(&sys, MAIN).await;
    let me = api.ok(&admin, 200, "GET", "/api/auth/me", None).await;
    let admin_id = me["id"].as_i64().unwrap();
    let bob_id = api.new_user(&admin, "bob@example.org", "user").await;
    api.ok(
        &admin,
        200,
        "PUT",
        &format!("/api/users/{bob_id}"),
        Some(json!({"name": "Bob"})),
    )
    .await;
    let (front, front_pw) = device(&api, &admin, "front", "201", admin_id).await;
    // Bob's desk phone exists but is not plugged in yet.
    let (bobdesk, bob_pw) = device(&api, &admin, "bobdesk", "202", bob_id).await;

    let root = tempfile::tempdir().unwrap();
    let sip = sys.sip_addr();
    let account = format!(
        "<sip:front@{sip};transport=udp>;auth_pass={front_pw};regint=300;audio_codecs=PCMU"
    );
    let mut phone = Baresip::spawn(root.path(), "front", &account, &tone(root.path()), 90);
    phone.connect().await;
    let path = format!("/api/devices/{}", front["id"]);
    eventually_some(
        Duration::from_secs(20),
        "the front phone registers",
        async || {
            let d = api.ok(&admin, 200, "GET", &path, None).await;
            (d["registered"] == true).then_some(())
        },
    )
    .await;

    phone
        .command("dial", &format!("sip:202@{sip}"))
        .await
        .expect("dial");
    phone
        .event("CALL_ESTABLISHED", Duration::from_secs(45))
        .await
        .expect("sipd answers for Bob's voicemail");
    // The greeting and the tone take a few seconds; then the caller talks.
    tokio::time::sleep(Duration::from_secs(10)).await;
    phone.command("hangup", "").await.expect("hang up");
    phone
        .event("CALL_CLOSED", Duration::from_secs(10))
        .await
        .expect("call closed");

    let bob = api.login("bob@example.org").await;
    let vm = eventually_some(Duration::from_secs(20), "Bob's voicemail", async || {
        let list = api.ok(&bob, 200, "GET", "/api/voicemails", None).await;
        list["items"].as_array()?.first().cloned()
    })
    .await;
    assert_eq!(vm["is_read"], false, "{vm}");
    assert!(vm["duration"].as_i64().unwrap() >= 3, "{vm}");
    let audio = reqwest::Client::new()
        .get(format!(
            "{}/api/voicemails/{}/audio",
            sys.base_url(),
            vm["id"]
        ))
        .header("Cookie", &bob)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let wav = Wav::parse(&audio).expect("the voicemail is a WAV");
    tones(&wav.samples[0], wav.rate, 440.0, 1000.0)
        .check(3.0)
        .expect("the message holds the caller's tone");

    // What the caller heard: the greeting, then the 1 kHz record tone.
    let heard = Wav::read(&phone.dump(true).expect("baresip's dump")).unwrap();
    let beep = tones(&heard.samples[0], heard.rate, 1000.0, 440.0);
    assert!(beep.tone_seconds() >= 0.3, "no record tone heard: {beep:?}");
    assert!(
        beep.voiced > beep.tone + 10,
        "no greeting before the tone: {beep:?}"
    );

    let cdrs = api.ok(&admin, 200, "GET", "/api/cdrs", None).await;
    let cdr = cdrs["items"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["to_number"] == "202"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(cdr["disposition"], "voicemail", "{cdrs}");
    phone.quit().await;

    // Bob plugs his phone in and dials *97: he hears the message, then
    // deletes it with 7.
    let silence = root.path().join("silence.wav");
    std::fs::write(&silence, Wav::encode(8000, &[vec![0.0; 8000 * 60]])).unwrap();
    let account = format!(
        "<sip:bobdesk@{sip};transport=udp>;auth_pass={bob_pw};regint=300;audio_codecs=PCMU"
    );
    let mut desk = Baresip::spawn(root.path(), "bobdesk", &account, &silence, 90);
    desk.connect().await;
    let path = format!("/api/devices/{}", bobdesk["id"]);
    eventually_some(
        Duration::from_secs(20),
        "Bob's phone registers",
        async || {
            let d = api.ok(&admin, 200, "GET", &path, None).await;
            (d["registered"] == true).then_some(())
        },
    )
    .await;
    desk.command("dial", &format!("sip:*97@{sip}"))
        .await
        .expect("dial *97");
    desk.event("CALL_ESTABLISHED", Duration::from_secs(20))
        .await
        .expect("sipd answers *97");
    // How many messages, who left it and when, then its audio.
    let seconds = 10 + vm["duration"].as_u64().unwrap();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    desk.command("sndcode", "7").await.expect("press 7");
    eventually_some(
        Duration::from_secs(20),
        "the message deleted by 7",
        async || {
            let list = api.ok(&bob, 200, "GET", "/api/voicemails", None).await;
            list["items"].as_array()?.is_empty().then_some(())
        },
    )
    .await;
    desk.command("hangup", "").await.expect("hang up");
    desk.event("CALL_CLOSED", Duration::from_secs(10))
        .await
        .expect("call closed");
    let heard = Wav::read(&desk.dump(true).expect("baresip's dump")).unwrap();
    let message = tones(&heard.samples[0], heard.rate, 440.0, 1000.0);
    assert!(
        message.tone_seconds() >= 2.0,
        "Bob never heard the message's tone: {message:?}"
    );
    desk.quit().await;
}
