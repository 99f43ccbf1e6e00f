//! A full inbound call through all five real daemons (issue 5's last
//! proof): the Twilio stand-in fires the signed incoming-call webhook at
//! webd's public port, twiliod answers `<Dial><Sip>`, the stand-in's SIP
//! side INVITEs the real sipd with Twilio's X-headers and answers sipd's
//! digest challenge with the trunk credentials, sipd forks to the device a
//! real SIP client (sipp) registered, that phone answers and echoes the
//! audio through mediad, the stand-in hangs up and sends the status
//! callback, and the `cdrs` row tells the whole story.
//! Needs `cargo build --bins` first.

use std::process::Stdio;
use std::time::{Duration, Instant};

use e2e::System;
use e2e::standin::{CallScript, DialOutcome, Event, Standin};
use serde_json::json;

const DID: &str = "+15550001111";
const CALLER: &str = "+15557654321";
const PHONE_PASSWORD: &str = "desk-secret-pass";
const TALK_SECS: u32 = 3;

/// The phone: sipp in server mode answers one call with PCMU on `-mp`
/// (where `-rtp_echo` sends every RTP packet back), then takes the BYE. It
/// answers only when the caller's name shows the STIR/SHAKEN check mark.
const PHONE_XML: &str = r#"<?xml version="1.0" encoding="UTF-8" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="phone that answers and echoes">
  <recv request="INVITE">
    <action>
      <ereg regexp="m=audio [0-9]+ RTP/AVP 0" search_in="body" check_it="true" assign_to="m"/>
      <ereg regexp="^ *&quot;✓ \+15557654321&quot; &lt;sip:\+15557654321@" search_in="hdr" header="From:" check_it="true" assign_to="mark"/>
    </action>
  </recv>
  <send>
    <![CDATA[
      SIP/2.0 180 Ringing
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]phone[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:phone@[local_ip]:[local_port]>
      Content-Length: 0

    ]]>
  </send>
  <send retrans="500">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]phone[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:phone@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=phone 1 1 IN IP4 [local_ip]
      s=-
      c=IN IP4 [local_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000

    ]]>
  </send>
  <recv request="ACK"/>
  <recv request="BYE"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <Reference variables="m,mark"/>
</scenario>
"#;

type CdrRow = (
    String,
    String,
    String,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twilio_call_through_webd_twiliod_and_sipd_rings_a_real_phone_and_leaves_an_answered_cdr()
{
    let sys = System::start().await.expect("system");
    let s = Standin::start().await.expect("stand-in");
    let public = sys.base_url();
    let pool = proto::db::open(&sys.data_dir).await.expect("db");
    let sip_port = sys.ports.sip.to_string();
    // Set up as a user does: the wizard, Twilio and the trunk on the
    // settings screen, a user with a desk phone, the number given to them,
    // and the rule made in the rules editor.
    let api = e2e::Api::new(&sys);
    let admin = api.setup(&sys, DID).await;
    api.connect_twilio(
        &admin,
        &s,
        json!({"twilio.trunk_username": "twilio-trunk",
               "twilio.trunk_password": "trunk-secret",
               "system.public_url": public,
               "sip.public_address": "127.0.0.1"}),
    )
    .await;
    let owner = api.new_user(&admin, "desk@pbx.test", "user").await;
    let device = api
        .ok(
            &admin,
            201,
            "POST",
            "/api/devices",
            Some(
                json!({"name": "Desk phone", "username": "desk", "password": PHONE_PASSWORD,
                        "extension": "201", "device_type": "grandstream", "user_id": owner}),
            ),
        )
        .await["id"]
        .as_i64()
        .expect("device id");
    let pn = s.add_number_for(DID, &public);
    let did_id = api
        .edit_number(
            &admin,
            DID,
            json!({"twilio_sid": pn, "owner_user_id": owner}),
        )
        .await;
    // The rule as an admin makes it in the UI: ring the number owner's
    // devices, i.e. the phone.
    let route = api
        .ok(
            &admin,
            201,
            "POST",
            "/api/routes",
            Some(
                json!({"did_id": did_id, "priority": 0, "name": "Office phones",
               "condition_type": "default", "condition_data": {},
               "action_type": "ring", "action_data": {"device_ids": [], "owner": true}}),
            ),
        )
        .await["id"]
        .as_i64()
        .expect("route id");
    // webd pushed the device to sipd before it answered; twiliod's rules
    // cache polls the database every 250 ms.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // The phone: a sipp UAS that echoes RTP, registered by a second sipp.
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("phone.xml"), PHONE_XML).expect("xml");
    std::fs::copy(
        e2e::sipp_scenario("register_contact.xml"),
        dir.path().join("register.xml"),
    )
    .expect("xml");
    let phone_port = testkit::ports::udp();
    // sipp's echo binds the media port and the one two above it; keep
    // clear of mediad's range.
    let media_port = loop {
        let (lo, hi) = testkit::ports::rtp_range(4);
        if hi < sys.ports.rtp.0 || lo > sys.ports.rtp.1 {
            break lo;
        }
    };
    let phone = tokio::process::Command::new("sipp")
        .args(["-sf", "phone.xml", "-i", "127.0.0.1", "-p"])
        .arg(phone_port.to_string())
        .args(["-mp", &media_port.to_string(), "-rtp_echo"])
        .args([
            "-m",
            "1",
            "-timeout",
            "40s",
            "-timeout_error",
            "-trace_err",
            "-nostdin",
        ])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("sipp phone");
    std::fs::write(
        dir.path().join("register.csv"),
        format!(
            "SEQUENTIAL\ndesk;[authentication username=desk password={PHONE_PASSWORD}];{phone_port}\n"
        ),
    )
    .expect("csv");
    let reg = tokio::process::Command::new("sipp")
        .arg(format!("127.0.0.1:{sip_port}"))
        .args(["-sf", "register.xml", "-inf", "register.csv"])
        .args(["-m", "1", "-i", "127.0.0.1", "-p", "0", "-mp", "0"])
        .args([
            "-timeout",
            "10s",
            "-timeout_error",
            "-trace_err",
            "-nostdin",
        ])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .expect("sipp register");
    assert!(
        reg.status.success(),
        "register: {}\n{}",
        testkit::sipp_errors(dir.path()),
        sys.log("sipd")
    );
    // The devices screen shows the phone registered.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let d = api
            .ok(&admin, 200, "GET", &format!("/api/devices/{device}"), None)
            .await;
        if d["registered"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "phone never registered: {d}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The call: webhook -> TwiML -> INVITE (digest) -> phone -> RTP -> BYE
    // -> dial action -> status callback.
    let o = e2e::standin::scenario::run(
        &s,
        &CallScript {
            from: CALLER.into(),
            to: DID.into(),
            // A fully attested caller: twiliod marks it, sipd shows it.
            params: vec![("StirVerstat".into(), "TN-Validation-Passed-A".into())],
            dial: DialOutcome::Sip {
                talk_secs: TALK_SECS,
            },
            ..CallScript::default()
        },
    )
    .await
    .expect("call");
    let logs = || {
        format!(
            "--- twiliod\n{}\n--- sipd\n{}\n--- mediad\n{}\n--- webd\n{}",
            sys.log("twiliod"),
            sys.log("sipd"),
            sys.log("mediad"),
            sys.log("webd")
        )
    };
    let Some(Event::Dial {
        noun,
        target,
        username,
        password,
        ..
    }) = o.dial().cloned()
    else {
        panic!("no <Dial>: {o:?}\n{}", logs());
    };
    assert_eq!(noun, "Sip", "{o:?}");
    assert!(
        target.starts_with(&format!("sip:{DID}@127.0.0.1:{sip_port};transport=udp?")),
        "{target}"
    );
    assert!(
        target.contains(&format!("X-GoSIP-Devices={device}")),
        "{target}"
    );
    assert!(target.contains("X-GoSIP-Trust=verified"), "{target}");
    assert_eq!(username.as_deref(), Some("twilio-trunk"));
    assert_eq!(password.as_deref(), Some("trunk-secret"));
    let leg = o.sip.first().cloned().expect("a SIP leg");
    assert_eq!(leg.code, 200, "{o:?}\n{}", logs());
    // 20 ms packets for TALK_SECS both ways: the phone echoed what mediad
    // relayed, and mediad relayed the echo back.
    assert!(leg.rtp_sent >= 100, "{leg:?}");
    assert!(
        leg.rtp_received >= 50,
        "RTP never came back: {leg:?}\n{}",
        logs()
    );
    assert_eq!(o.status, "completed", "{o:?}");

    let phone = tokio::time::timeout(Duration::from_secs(20), phone.wait_with_output())
        .await
        .expect("phone finished")
        .expect("phone");
    assert!(
        phone.status.success(),
        "phone: {}\n{}",
        testkit::sipp_errors(dir.path()),
        logs()
    );

    // The CDR: sipd's row (device, SIP Call-ID, media stats) completed by
    // the status callback with the rule that decided.
    let deadline = Instant::now() + Duration::from_secs(15);
    let row = loop {
        let row: Option<CdrRow> = sqlx::query_as(
            "SELECT direction, disposition, from_number, device_id, user_id, sip_call_id, rule_name, \
                    answered_at, media_stats, duration \
             FROM cdrs WHERE call_sid = ?",
        )
        .bind(&o.call_sid)
        .fetch_optional(&pool)
        .await
        .expect("cdr");
        if let Some(r) = &row
            && r.1 == "answered"
            && r.6.is_some()
            && r.8.is_some()
        {
            break r.clone();
        }
        assert!(Instant::now() < deadline, "cdr {row:?}\n{}", logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (direction, disposition, from, dev, user, sip_call_id, rule, answered_at, stats, dur) = row;
    assert_eq!(direction, "inbound");
    assert_eq!(disposition, "answered");
    assert_eq!(from, CALLER);
    assert_eq!(dev, Some(device));
    assert_eq!(user, Some(owner));
    assert_eq!(sip_call_id.as_deref(), Some(leg.call_id.as_str()));
    assert_eq!(
        rule.as_deref(),
        Some(format!("route:{route}:Office phones").as_str())
    );
    assert!(answered_at.is_some());
    assert!(dur >= i64::from(TALK_SECS) - 1, "duration {dur}");
    let stats: serde_json::Value = serde_json::from_str(&stats.unwrap_or_default()).expect("json");
    // Leg a is the trunk (the stand-in), leg b the phone: mediad took RTP
    // from both and relayed RTP towards both.
    for leg in ["a", "b"] {
        for k in ["packets_in", "packets_out"] {
            assert!(
                stats[leg][k].as_u64().unwrap_or(0) >= 50,
                "media stats {leg}.{k}: {stats}"
            );
        }
    }
    assert_eq!(
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM cdrs")
            .fetch_one(&pool)
            .await
            .expect("count"),
        1,
        "one call, one CDR"
    );
}
