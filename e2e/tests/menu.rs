//! The auto-attendant through the whole system: a two-level menu made with
//! `POST /api/routes` as the admin makes it in the rules editor, walked by
//! the Twilio stand-in with keys (`<Gather>` answers posted to webd's public
//! port), ending in a forward, an announcement or voicemail, each CDR
//! naming the keys; "Test a call" walks the same menus with given digits;
//! menus the API must refuse. Needs `cargo build --bins` first.

use std::time::{Duration, Instant};

use e2e::System;
use e2e::standin::{CallOutcome, CallScript, DialOutcome, Event, RecordScript, Standin};
use serde_json::{Value, json};

const DID: &str = "+15551230000";
const CALLER: &str = "+15557654321";

fn menu_rule(did_id: i64) -> Value {
    json!({"did_id": did_id, "priority": 0, "name": "Main menu",
    "condition_type": "default", "condition_data": {},
    "action_type": "menu", "action_data": {
        "greeting": "Thanks for calling. For sales press 1. For support press 2.",
        "timeout": 3,
        "options": {
            "1": {"action_type": "announcement",
                  "action_data": {"text": "Sales is closed today."}},
            "2": {"action_type": "menu", "action_data": {
                "greeting": "For billing press 1. To reach the engineer on call press 2.",
                "options": {
                    "1": {"action_type": "voicemail",
                          "action_data": {"greeting": "Leave a billing message."}},
                    "2": {"action_type": "forward",
                          "action_data": {"number": "(555) 000-9999"}}
                }}}
        }}})
}

/// The system set up as the admin does (wizard, Twilio connected, our
/// number at the stand-in): (system, stand-in, API, admin's session).
async fn office() -> (System, Standin, e2e::Api, String) {
    let sys = System::start().await.expect("system");
    let s = Standin::start().await.expect("stand-in");
    let public = sys.base_url();
    let api = e2e::Api::new(&sys);
    let admin = api.setup(&sys, DID).await;
    api.connect_twilio(&admin, &s, json!({"system.public_url": public}))
        .await;
    s.add_number_for(DID, &public);
    (sys, s, api, admin)
}

fn gathers(o: &CallOutcome) -> Vec<Option<String>> {
    o.events
        .iter()
        .filter_map(|e| match e {
            Event::Gather {
                digits,
                num_digits,
                action,
                ..
            } => {
                assert_eq!(*num_digits, 1, "{o:?}");
                assert!(
                    action.contains("/api/webhooks/voice/menu?route="),
                    "{action}"
                );
                Some(digits.clone())
            }
            _ => None,
        })
        .collect()
}

fn said(o: &CallOutcome, text: &str) -> usize {
    o.events
        .iter()
        .filter(|e| matches!(e, Event::Say { text: t } if t.contains(text)))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_level_menu_walked_with_keys_ends_where_the_keys_say_and_the_cdr_names_them() {
    let (sys, s, api, admin) = office().await;
    let did_id = api.number_id(&admin, DID).await;
    let route = api
        .ok(&admin, 201, "POST", "/api/routes", Some(menu_rule(did_id)))
        .await;
    let route_id = route["id"].as_i64().expect("id");
    // The number typed as a person types it is stored in E.164.
    assert_eq!(
        route["action_data"]["options"]["2"]["action_data"]["options"]["2"]["action_data"]["number"],
        "+15550009999",
        "{route}"
    );
    // twiliod's rules cache polls every 250 ms.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let call = |keys: &[&str], dial: DialOutcome, record: RecordScript| CallScript {
        from: CALLER.into(),
        to: DID.into(),
        dial,
        record,
        keys: keys.iter().map(|k| (*k).to_owned()).collect(),
        ..CallScript::default()
    };
    let logs = || sys.log("twiliod");

    // 2 then 2: the engineer's cell, answered.
    let o = e2e::standin::scenario::run(
        &s,
        &call(
            &["2", "2"],
            DialOutcome::Answered { secs: 4 },
            RecordScript::default(),
        ),
    )
    .await
    .expect("call");
    assert_eq!(
        gathers(&o),
        [Some("2".into()), Some("2".into())],
        "{o:?}\n{}",
        logs()
    );
    assert_eq!(said(&o, "For sales press 1"), 1);
    assert_eq!(said(&o, "To reach the engineer"), 1);
    let Some(Event::Dial { noun, target, .. }) = o.dial() else {
        panic!("no dial: {o:?}\n{}", logs());
    };
    assert_eq!((noun.as_str(), target.as_str()), ("Number", "+15550009999"));
    let forwarded = o.call_sid.clone();

    // 9 (no such key), silence, then 1: "not a valid choice", the menu
    // twice more, then the announcement.
    let o = e2e::standin::scenario::run(
        &s,
        &call(
            &["9", "", "1"],
            DialOutcome::NoAnswer,
            RecordScript::default(),
        ),
    )
    .await
    .expect("call");
    assert_eq!(
        gathers(&o),
        [Some("9".into()), None, Some("1".into())],
        "{o:?}"
    );
    assert_eq!(said(&o, "not a valid choice"), 1, "{o:?}");
    assert_eq!(said(&o, "For sales press 1"), 3, "{o:?}");
    assert_eq!(said(&o, "Sales is closed today."), 1, "{o:?}");
    assert!(o.has(|e| *e == Event::Hangup));
    let announced = o.call_sid.clone();

    // Nothing at all: the menu three times, then voicemail (the menu's
    // no_input default), recorded for the number's owner.
    let o = e2e::standin::scenario::run(
        &s,
        &call(
            &[],
            DialOutcome::NoAnswer,
            RecordScript {
                secs: 5,
                transcript: Some("call me".into()),
                ..RecordScript::default()
            },
        ),
    )
    .await
    .expect("call");
    assert_eq!(gathers(&o), [None, None, None], "{o:?}");
    assert!(o.recording_sid.is_some(), "{o:?}\n{}", logs());
    let silent = o.call_sid.clone();

    // The call history names the keys of each call.
    let want = [
        (
            forwarded,
            "answered",
            format!("route:{route_id}:Main menu > 2 > 2"),
        ),
        (
            announced,
            "answered",
            format!("route:{route_id}:Main menu > 1"),
        ),
        (silent, "voicemail", format!("route:{route_id}:Main menu")),
    ];
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let cdrs = api
            .ok(&admin, 200, "GET", "/api/cdrs?per_page=50", None)
            .await;
        let got: Vec<(String, String, String)> = want
            .iter()
            .map(|(sid, _, _)| {
                cdrs["items"]
                    .as_array()
                    .and_then(|a| a.iter().find(|c| c["call_sid"] == sid.as_str()))
                    .map(|c| {
                        (
                            sid.clone(),
                            c["disposition"].as_str().unwrap_or_default().to_owned(),
                            c["rule_name"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .unwrap_or_default()
            })
            .collect();
        let expected: Vec<(String, String, String)> = want
            .iter()
            .map(|(a, b, c)| (a.clone(), (*b).to_owned(), c.clone()))
            .collect();
        if got == expected {
            break;
        }
        assert!(Instant::now() < deadline, "{got:?}\n{}", logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // "Test a call" walks the same menus with given digits, side-effect free.
    let r = api
        .ok(
            &admin,
            200,
            "POST",
            "/api/routes/test",
            Some(json!({"did": DID, "from_number": CALLER, "digits": "22"})),
        )
        .await;
    assert_eq!(r["action"], "forward", "{r}");
    assert_eq!(r["rule"], format!("route:{route_id}:Main menu > 2 > 2"));
    assert_eq!(r["menu_twiml"].as_array().map(Vec::len), Some(2), "{r}");
    assert!(
        r["menu_twiml"][0]
            .as_str()
            .unwrap_or_default()
            .contains("For sales press 1")
    );
    assert!(
        r["menu_twiml"][1]
            .as_str()
            .unwrap_or_default()
            .contains("engineer")
    );
    assert!(
        r["twiml"]
            .as_str()
            .unwrap_or_default()
            .contains("<Number>+15550009999</Number>")
    );
    let r = api
        .ok(
            &admin,
            200,
            "POST",
            "/api/routes/test",
            Some(json!({"did": DID, "from_number": CALLER})),
        )
        .await;
    assert_eq!(r["action"], "menu", "{r}");
    assert!(
        r["twiml"].as_str().unwrap_or_default().contains("<Gather"),
        "{r}"
    );
    let (st, v, _) = api
        .call(
            &admin,
            "POST",
            "/api/routes/test",
            Some(json!({"did": DID, "digits": "2222"})),
        )
        .await;
    assert_eq!(
        (st, v["error"]["details"][0]["field"].as_str()),
        (422, Some("digits")),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn menus_that_ring_a_missing_phone_nest_too_deep_or_reject_are_refused_with_the_field() {
    let sys = System::start().await.expect("system");
    let api = e2e::Api::new(&sys);
    let admin = api.setup(&sys, DID).await;
    let refused = |action_data: Value| {
        let api = &api;
        let admin = &admin;
        async move {
            let (st, v, _) = api
                .call(
                    admin,
                    "POST",
                    "/api/routes",
                    Some(json!({"name": "Menu", "priority": 1,
                        "condition_type": "default", "condition_data": {},
                        "action_type": "menu", "action_data": action_data})),
                )
                .await;
            assert_eq!(st, 422, "{v}");
            v["error"]["details"]
                .as_array()
                .map(|d| {
                    d.iter()
                        .filter_map(|e| e["field"].as_str().map(str::to_owned))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        }
    };
    // A phone that does not exist (one that did and was deleted alike).
    let dev = api
        .ok(
            &admin,
            201,
            "POST",
            "/api/devices",
            Some(json!({"name": "Lobby"})),
        )
        .await["id"]
        .as_i64()
        .expect("device");
    api.ok(&admin, 200, "DELETE", &format!("/api/devices/{dev}"), None)
        .await;
    let f = refused(json!({"greeting": "Press 1", "options": {
        "1": {"action_type": "ring", "action_data": {"device_ids": [dev]}}}}))
    .await;
    assert_eq!(f, ["action_data.options.1.action_data.device_ids"]);
    // Four levels.
    let leaf = json!({"action_type": "voicemail", "action_data": {}});
    let mut m = json!({"greeting": "level 4", "options": {"1": leaf}});
    for level in (1..=3).rev() {
        m = json!({"greeting": format!("level {level}"),
                   "options": {"1": {"action_type": "menu", "action_data": m}}});
    }
    let f = refused(m).await;
    assert_eq!(
        f,
        ["action_data.options.1.action_data.options.1.action_data.options.1.action_data.options"]
    );
    // A reject after the menu answered, a key that is not a digit, no
    // greeting.
    let f = refused(json!({"greeting": " ", "options": {
        "1": {"action_type": "reject", "action_data": {}},
        "x": {"action_type": "voicemail", "action_data": {}}}}))
    .await;
    assert_eq!(
        f,
        [
            "action_data.greeting",
            "action_data.options.1.action_type",
            "action_data.options.x"
        ]
    );
}

/// A minimal 8 kHz mono WAV of `n` silent samples.
fn wav(n: u32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + n * 2).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&8000u32.to_le_bytes());
    b.extend_from_slice(&16000u32.to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&(n * 2).to_le_bytes());
    b.resize(b.len() + n as usize * 2, 0);
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_recording_is_the_menus_greeting_and_twilio_can_fetch_it() {
    let (sys, s, api, admin) = office().await;
    let public = sys.base_url();
    let did_id = api.number_id(&admin, DID).await;
    let upload = |bytes: Vec<u8>, mime: &'static str| {
        let admin = admin.clone();
        let base = public.clone();
        async move {
            let form = reqwest::multipart::Form::new().part(
                "file",
                reqwest::multipart::Part::bytes(bytes)
                    .file_name("greeting.wav")
                    .mime_str(mime)
                    .expect("mime"),
            );
            let res = reqwest::Client::new()
                .post(format!("{base}/api/prompts"))
                .header("X-Requested-With", "gosip")
                .header("Cookie", admin)
                .multipart(form)
                .send()
                .await
                .expect("upload");
            let st = res.status().as_u16();
            (st, res.json::<Value>().await.unwrap_or_default())
        }
    };
    // Not multipart at all, or a broken multipart body: the API's JSON
    // error, naming the field.
    for ct in ["application/json", "multipart/form-data; boundary="] {
        let res = reqwest::Client::new()
            .post(format!("{public}/api/prompts"))
            .header("X-Requested-With", "gosip")
            .header("Cookie", &admin)
            .header("Content-Type", ct)
            .body("{}")
            .send()
            .await
            .expect("upload");
        assert_eq!(res.status().as_u16(), 422, "{ct}");
        let v: Value = res.json().await.expect("json error");
        assert_eq!(v["error"]["details"][0]["field"], "file", "{ct}: {v}");
    }
    // Not a recording, whatever it is called.
    let (st, v) = upload(b"#!/bin/sh\necho hi".to_vec(), "audio/wav").await;
    assert_eq!(
        (st, v["error"]["details"][0]["field"].as_str()),
        (422, Some("file")),
        "{v}"
    );
    let recording = wav(8000);
    let (st, v) = upload(recording.clone(), "audio/wav").await;
    assert_eq!(st, 201, "{v}");
    let audio = v["audio"].as_str().expect("audio").to_owned();
    let name = v["name"].as_str().expect("name").to_owned();
    assert_eq!(audio, format!("prompt:{name}"));
    // A made-up prompt name is refused with the field.
    let (st, v, _) = api
        .call(
            &admin,
            "POST",
            "/api/routes",
            Some(json!({"did_id": did_id, "priority": 0, "name": "Menu",
                "condition_type": "default", "condition_data": {},
                "action_type": "menu", "action_data": {"greeting": "x", "audio": "prompt:../../gosip.db",
                    "options": {"1": {"action_type": "voicemail", "action_data": {}}}}})),
        )
        .await;
    assert_eq!(
        (st, v["error"]["details"][0]["field"].as_str()),
        (422, Some("action_data.audio")),
        "{v}"
    );
    api.ok(
        &admin,
        201,
        "POST",
        "/api/routes",
        Some(json!({"did_id": did_id, "priority": 0, "name": "Recorded menu",
            "condition_type": "default", "condition_data": {},
            "action_type": "menu", "action_data": {"greeting": "For sales press 1.", "audio": audio,
                "options": {"1": {"action_type": "announcement", "action_data": {"text": "Closed."}}}}})),
    )
    .await;
    let o = e2e::standin::scenario::run(
        &s,
        &CallScript {
            from: CALLER.into(),
            to: DID.into(),
            keys: vec!["1".into()],
            ..CallScript::default()
        },
    )
    .await
    .expect("call");
    let played = o
        .events
        .iter()
        .find_map(|e| match e {
            Event::Play { url } => Some(url.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("nothing played: {o:?}\n{}", sys.log("twiliod")));
    assert_eq!(played, format!("{public}/api/webhooks/voice/prompt/{name}"));
    assert_eq!(
        said(&o, "For sales press 1."),
        0,
        "the recording replaces the text"
    );
    assert_eq!(said(&o, "Closed."), 1, "{o:?}");
    // Twilio fetches it through webd's public port, unsigned, as for <Play>.
    let res = reqwest::get(&played).await.expect("fetch");
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.headers()["content-type"], "audio/x-wav");
    assert_eq!(res.bytes().await.expect("bytes").to_vec(), recording);
    for other in [
        "00000000000000000000000000000000.wav",
        "..%2F..%2Fgosip.db",
        "x.wav",
    ] {
        let r = reqwest::get(format!("{public}/api/webhooks/voice/prompt/{other}"))
            .await
            .expect("fetch");
        assert_eq!(r.status().as_u16(), 404, "{other}");
    }
}
