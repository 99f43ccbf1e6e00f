#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Internal calls through the B2BUA with real SIP software: a sipp caller
//! (answering the 407) -> sipd -> a registered sipp phone that answers,
//! media ports from a real mediad, and the CDR row that results.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::Sipd;
use common::sipp::{
    alice_with_did, errors, finished, scenario, sipp, sipp_n, trunk_settings, trunk_uas,
    trunk_uas_with,
};

type CdrRow = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sipp_caller_reaches_a_registered_sipp_phone_by_extension() {
    call_through(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_calls_at_once_are_all_bridged() {
    call_through(5).await;
}

async fn call_through(n: u32) {
    let s = Sipd::start_with_mediad(&[]).await;
    s.add_devices(&[
        ("alice", "pw-alice-2026", "201"),
        ("bob", "pw-bob-2026-x", "202"),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let callee = answering_bob(&s, dir.path(), n).await;
    let caller = sipp_n(
        &s,
        dir.path(),
        "caller.xml",
        "alice;[authentication username=alice password=pw-alice-2026];202",
        n,
    )
    .output()
    .await
    .unwrap();
    assert!(caller.status.success(), "caller: {}", errors(dir.path()));
    let callee = tokio::time::timeout(Duration::from_secs(20), callee.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(callee.status.success(), "callee: {}", errors(dir.path()));
    s.eventually("every cdr closed with media stats", || async {
        let rows: Vec<CdrRow> = sqlx::query_as(
            "SELECT direction, from_number, to_number, answered_at, disposition, media_stats FROM cdrs",
        )
        .fetch_all(&s.pool)
        .await
        .unwrap();
        rows.len() == n as usize
            && rows.iter().all(|r| {
                matches!(r, (d, f, t, Some(_), Some(disp), Some(_)) if d == "internal" && f == "201" && t == "202" && disp == "answered")
            })
    })
    .await;
    s.stop().await;
}

/// A sipp phone registered as bob that answers `n` calls (callee.xml).
async fn answering_bob(s: &Sipd, dir: &std::path::Path, n: u32) -> tokio::process::Child {
    phone(s, dir, "callee.xml", n).await
}

/// A sipp phone registered as bob that plays `xml` for `n` calls.
async fn phone(s: &Sipd, dir: &std::path::Path, xml: &str, n: u32) -> tokio::process::Child {
    // The phone: sipp in server mode answers on `port`; a second sipp
    // registers that port as bob's contact.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let callee = tokio::process::Command::new("sipp")
        .args([
            "-sf",
            &scenario(xml),
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .args([
            "-m",
            &n.to_string(),
            "-timeout",
            "30s",
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
        .unwrap();
    let reg = sipp(
        s,
        dir,
        "register_contact.xml",
        &format!("bob;[authentication username=bob password=pw-bob-2026-x];{port}"),
    )
    .output()
    .await
    .unwrap();
    assert!(reg.status.success(), "register: {}", errors(dir));
    s.eventually("bob registered", || async {
        s.registrations().await.len() == 1
    })
    .await;
    callee
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answered_call_with_no_rtp_at_all_is_ended_by_the_rtp_timeout() {
    // mediad only arms the timeout for a silent call when sipd tells it
    // the call is established (UpdateLeg on the ACK). Ten seconds is the
    // shortest timeout the settings screen takes.
    let s = Sipd::start_with_mediad(&[("calls.rtp_timeout", "10")]).await;
    s.add_devices(&[
        ("alice", "pw-alice-2026", "201"),
        ("bob", "pw-bob-2026-x", "202"),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let callee = answering_bob(&s, dir.path(), 1).await;
    let caller = sipp(
        &s,
        dir.path(),
        "caller_silent.xml",
        "alice;[authentication username=alice password=pw-alice-2026];202",
    )
    .output()
    .await
    .unwrap();
    assert!(caller.status.success(), "caller: {}", errors(dir.path()));
    let callee = tokio::time::timeout(Duration::from_secs(20), callee.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(callee.status.success(), "callee: {}", errors(dir.path()));
    s.eventually(
        "the cdr says rtp timeout with the new leg stats",
        || async {
            let rows: Vec<(Option<String>, Option<String>, Option<String>)> =
                sqlx::query_as("SELECT disposition, reason, media_stats FROM cdrs")
                    .fetch_all(&s.pool)
                    .await
                    .unwrap();
            matches!(rows.as_slice(), [(Some(d), Some(why), Some(stats))]
            if d == "answered" && why == "rtp timeout"
            && stats.contains("\"dropped\"") && stats.contains("\"rtcp_in\""))
        },
    )
    .await;
    s.stop().await;
}

#[tokio::test]
async fn calling_an_unknown_extension_gets_404_and_an_unregistered_one_480() {
    // Without voicemail for calls between phones; with it the unregistered
    // phone's owner (the admin who made it) would take a message.
    let s = Sipd::start(&[("voicemail.internal_calls", "false")]).await;
    s.add_devices(&[
        ("carol", "pw-long-enough", "301"),
        ("dave", "pw-long-enough", "302"),
    ])
    .await;
    let p = common::Phone::udp(&s, "carol")
        .await
        .with_password("pw-long-enough");
    for (dialed, want) in [("399", 404), ("302", 480)] {
        let invite = |extra: &str, cseq: u32| {
            format!(
                "INVITE sip:{dialed}@{srv} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKc{dialed}{cseq}\r\nMax-Forwards: 70\r\n\
                 From: <sip:carol@{realm}>;tag=c1\r\nTo: <sip:{dialed}@{realm}>\r\nCall-ID: call-{dialed}\r\nCSeq: {cseq} INVITE\r\n\
                 Contact: <sip:carol@{local}>\r\n{extra}Content-Type: application/sdp\r\nContent-Length: 0\r\n\r\n",
                srv = s.sip,
                local = p.local,
                realm = common::REALM
            )
        };
        let ch = p.request(&invite("", 1)).await;
        assert_eq!(ch.code(), 407);
        let auth = p.authorization(&ch, "MD5", "INVITE", 1).replace(
            &format!("uri=\"sip:{}\"", s.sip),
            &format!("uri=\"sip:{dialed}@{}\"", s.sip),
        );
        let _ = auth;
        let nonce = ch.header("proxy-authenticate").unwrap();
        let nonce = nonce
            .split("nonce=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_string();
        let value = common::digest_response(
            "carol",
            "pw-long-enough",
            &nonce,
            "INVITE",
            &format!("sip:{dialed}@{}", s.sip),
            "MD5",
            1,
        );
        let r = p
            .request(&invite(&format!("Proxy-Authorization: {value}\r\n"), 2))
            .await;
        assert_eq!(r.code(), want, "{}", r.0);
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sipd_grpc_service_lists_a_ringing_call_and_hangs_it_up() {
    use proto::pb::sipd::sipd_client::SipdClient;
    use proto::pb::sipd::{HangupRequest, ListCallsRequest};
    let s = Sipd::start_with_mediad(&[]).await;
    s.add_devices(&[
        ("erin", "pw-long-enough", "401"),
        ("fred", "pw-long-enough", "402"),
    ])
    .await;
    let mut client = s.grpc_client().await;
    let calls = client
        .list_calls(ListCallsRequest {})
        .await
        .unwrap()
        .into_inner()
        .calls;
    assert!(calls.is_empty());
    // fred is "registered" at a socket that never answers: the call rings.
    let fred = common::Phone::udp(&s, "fred")
        .await
        .with_password("pw-long-enough");
    assert_eq!(
        fred.register(&format!("Contact: <{}>\r\n", fred.contact()))
            .await
            .code(),
        200
    );
    let erin = common::Phone::udp(&s, "erin")
        .await
        .with_password("pw-long-enough");
    let sdp = "v=0\r\no=e 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    let invite = |extra: &str, cseq: u32| {
        format!(
            "INVITE sip:402@{srv} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKg{cseq}\r\nMax-Forwards: 70\r\n\
             From: <sip:erin@{realm}>;tag=e1\r\nTo: <sip:402@{realm}>\r\nCall-ID: grpc-call\r\nCSeq: {cseq} INVITE\r\n\
             Contact: <sip:erin@{local}>\r\n{extra}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len(),
            srv = s.sip,
            local = erin.local,
            realm = common::REALM
        )
    };
    let ch = erin.request(&invite("", 1)).await;
    assert_eq!(ch.code(), 407);
    let nonce = ch.header("proxy-authenticate").unwrap();
    let nonce = nonce
        .split("nonce=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let value = common::digest_response(
        "erin",
        "pw-long-enough",
        &nonce,
        "INVITE",
        &format!("sip:402@{}", s.sip),
        "MD5",
        1,
    );
    erin.send(invite(&format!("Proxy-Authorization: {value}\r\n"), 2).as_bytes())
        .await;
    let mut listed = Vec::new();
    for _ in 0..50 {
        listed = client
            .list_calls(ListCallsRequest {})
            .await
            .unwrap()
            .into_inner()
            .calls;
        if !listed.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].call_id, "grpc-call");
    assert_eq!(
        (listed[0].from_number.as_str(), listed[0].to_number.as_str()),
        ("401", "402")
    );
    // Anyone who can reach the gRPC port but lacks the daemons' shared
    // secret cannot hang the call up (nor list it).
    let mut intruder = SipdClient::connect(format!("http://{}", s.grpc))
        .await
        .unwrap();
    let refused = intruder
        .hangup(HangupRequest {
            call_id: "grpc-call".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let refused = intruder.list_calls(ListCallsRequest {}).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    assert_eq!(
        client
            .list_calls(ListCallsRequest {})
            .await
            .unwrap()
            .into_inner()
            .calls
            .len(),
        1
    );
    let found = client
        .hangup(HangupRequest {
            call_id: "grpc-call".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .found;
    assert!(found);
    assert!(
        client
            .list_calls(ListCallsRequest {})
            .await
            .unwrap()
            .into_inner()
            .calls
            .is_empty()
    );
    s.eventually("cdr missed", || async {
        let d: Option<String> =
            sqlx::query_scalar("SELECT disposition FROM cdrs WHERE sip_call_id = 'grpc-call'")
                .fetch_optional(&s.pool)
                .await
                .unwrap();
        d.as_deref() == Some("missed")
    })
    .await;
    s.stop().await;
}

/// Calls bob from alice with `xml` and returns the recording the CDR links
/// to (path relative to the data dir) and the WAV's size.
async fn recorded_call(s: &Sipd, xml: &str) -> (String, u64) {
    let dir = tempfile::tempdir().unwrap();
    let callee = answering_bob(s, dir.path(), 1).await;
    let caller = sipp(
        s,
        dir.path(),
        xml,
        "alice;[authentication username=alice password=pw-alice-2026];202",
    )
    .output()
    .await
    .unwrap();
    assert!(caller.status.success(), "caller: {}", errors(dir.path()));
    let callee = tokio::time::timeout(Duration::from_secs(20), callee.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(callee.status.success(), "callee: {}", errors(dir.path()));
    let q = "SELECT recording_url FROM cdrs WHERE media_stats IS NOT NULL";
    s.eventually("the call's media stats are stored", || async {
        sqlx::query(q)
            .fetch_optional(&s.pool)
            .await
            .unwrap()
            .is_some()
    })
    .await;
    let (url,): (Option<String>,) = sqlx::query_as(q).fetch_one(&s.pool).await.unwrap();
    let url = url.expect("the cdr links a recording");
    let size = std::fs::metadata(s.dir.join(&url)).map_or(0, |m| m.len());
    (url, size)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_with_recording_enabled_gets_every_call_recorded_into_a_wav_linked_from_the_cdr() {
    let s = Sipd::start_with_mediad(&[]).await;
    s.add_devices(&[
        ("alice", "pw-alice-2026", "201"),
        ("bob", "pw-bob-2026-x", "202"),
    ])
    .await;
    s.web
        .edit_device("alice", serde_json::json!({"recording_enabled": true}))
        .await;
    let (url, size) = recorded_call(&s, "caller_audio.xml").await;
    assert!(
        url.starts_with("recordings/") && url.ends_with(".wav"),
        "{url}"
    );
    // The 44-byte header and the audio that flowed.
    assert!(size > 1000, "{url}: {size} bytes");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keying_star_one_during_a_call_starts_its_recording() {
    let s = Sipd::start_with_mediad(&[]).await;
    s.add_devices(&[
        ("alice", "pw-alice-2026", "201"),
        ("bob", "pw-bob-2026-x", "202"),
    ])
    .await;
    let (url, size) = recorded_call(&s, "caller_dtmf.xml").await;
    assert!(
        url.starts_with("recordings/") && url.ends_with(".wav"),
        "{url}"
    );
    assert!(size > 1000, "{url}: {size} bytes");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_dials_a_national_number_out_through_the_trunk_with_digest_and_its_did() {
    let dir = tempfile::tempdir().unwrap();
    let (tport, trunk) = trunk_uas(dir.path());
    let settings = trunk_settings(tport).await;
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let s = Sipd::start_with_mediad(&settings).await;
    s.add_devices(&[("alice", "pw-alice-2026", "201")]).await;
    s.web.add_did("+15550009999").await;
    let did = s.web.add_did("+15550001111").await;
    s.web
        .edit_device("alice", serde_json::json!({ "caller_id_did_id": did }))
        .await;
    let caller = sipp(
        &s,
        dir.path(),
        "caller.xml",
        "alice;[authentication username=alice password=pw-alice-2026];555-123-4567",
    )
    .output()
    .await
    .unwrap();
    assert!(caller.status.success(), "caller: {}", errors(dir.path()));
    let trunk = tokio::time::timeout(Duration::from_secs(20), trunk.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(trunk.status.success(), "trunk: {}", errors(dir.path()));
    s.eventually("an outbound cdr, answered", || async {
        let rows: Vec<CdrRow> = sqlx::query_as(
            "SELECT direction, from_number, to_number, answered_at, disposition, media_stats FROM cdrs",
        )
        .fetch_all(&s.pool)
        .await
        .unwrap();
        matches!(rows.as_slice(), [(d, f, t, Some(_), Some(disp), Some(_))]
            if d == "outbound" && f == "+15550001111" && t == "+15551234567" && disp == "answered")
    })
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn click_to_call_rings_the_phone_first_then_dials_the_number_through_the_trunk() {
    use proto::pb::sipd::{HangupRequest, OriginateRequest};
    let dir = tempfile::tempdir().unwrap();
    let (tport, trunk) = trunk_uas(dir.path());
    let settings = trunk_settings(tport).await;
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let s = Sipd::start_with_mediad(&settings).await;
    let bob_id = s.add_device("bob", "pw-bob-2026-x", "202").await;
    // No caller_id_did_id: the first DID is the caller ID.
    s.web.add_did("+15550001111").await;
    s.web.add_did("+15550009999").await;
    let phone = answering_bob(&s, dir.path(), 1).await;
    let mut client = s.grpc_client().await;
    let unknown = client
        .originate(OriginateRequest {
            call_id: String::new(),
            device_id: 999,
            to_number: "5551234567".into(),
        })
        .await;
    assert_eq!(unknown.unwrap_err().code(), tonic::Code::NotFound);
    let call_id = client
        .originate(OriginateRequest {
            call_id: String::new(),
            device_id: bob_id.0,
            to_number: "555-123-4567".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .call_id;
    s.eventually("the trunk answered", || async {
        let rows: Vec<CdrRow> = sqlx::query_as(
            "SELECT direction, from_number, to_number, answered_at, disposition, media_stats FROM cdrs",
        )
        .fetch_all(&s.pool)
        .await
        .unwrap();
        matches!(rows.as_slice(), [(d, f, t, Some(_), _, _)]
            if d == "outbound" && f == "+15550001111" && t == "+15551234567")
    })
    .await;
    let calls = client
        .list_calls(proto::pb::sipd::ListCallsRequest {})
        .await
        .unwrap()
        .into_inner()
        .calls;
    assert!(
        matches!(calls.as_slice(), [c] if c.call_id == call_id && c.direction == "outbound" && c.state == "up" && c.device_id == bob_id.0),
        "{calls:?}"
    );
    let found = client
        .hangup(HangupRequest { call_id })
        .await
        .unwrap()
        .into_inner()
        .found;
    assert!(found);
    for (name, child) in [("phone", phone), ("trunk", trunk)] {
        let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        assert!(out.status.success(), "{name}: {}", errors(dir.path()));
    }
    s.eventually("the cdr is closed as answered", || async {
        let d: Option<(String,)> =
            sqlx::query_as("SELECT disposition FROM cdrs WHERE media_stats IS NOT NULL")
                .fetch_optional(&s.pool)
                .await
                .unwrap();
        d.is_some_and(|(d,)| d == "answered")
    })
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_recording_over_grpc_records_a_call_in_progress() {
    use proto::pb::sipd::{ListCallsRequest, SetRecordingRequest};
    let s = Sipd::start_with_mediad(&[]).await;
    s.add_devices(&[
        ("alice", "pw-alice-2026", "201"),
        ("bob", "pw-bob-2026-x", "202"),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let callee = answering_bob(&s, dir.path(), 1).await;
    let caller = sipp(
        &s,
        dir.path(),
        "caller_audio.xml",
        "alice;[authentication username=alice password=pw-alice-2026];202",
    )
    .spawn()
    .unwrap();
    let mut client = s.grpc_client().await;
    let none = client
        .set_recording(SetRecordingRequest {
            call_id: "no-such-call".into(),
            enabled: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!none.found);
    let mut call_id = String::new();
    for _ in 0..100 {
        let calls = client
            .list_calls(ListCallsRequest {})
            .await
            .unwrap()
            .into_inner()
            .calls;
        if let [c] = calls.as_slice()
            && c.state == "up"
        {
            assert!(!c.recording);
            call_id = c.call_id.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!call_id.is_empty(), "the call never came up");
    let r = client
        .set_recording(SetRecordingRequest {
            call_id: call_id.clone(),
            enabled: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.found);
    let calls = client
        .list_calls(ListCallsRequest {})
        .await
        .unwrap()
        .into_inner()
        .calls;
    assert!(calls.iter().any(|c| c.call_id == call_id && c.recording));
    let caller = caller.wait_with_output().await.unwrap();
    assert!(caller.status.success(), "caller: {}", errors(dir.path()));
    let callee = tokio::time::timeout(Duration::from_secs(20), callee.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(callee.status.success(), "callee: {}", errors(dir.path()));
    let q = "SELECT recording_url FROM cdrs WHERE media_stats IS NOT NULL";
    s.eventually("the call's media stats are stored", || async {
        sqlx::query(q)
            .fetch_optional(&s.pool)
            .await
            .unwrap()
            .is_some()
    })
    .await;
    let (url,): (Option<String>,) = sqlx::query_as(q).fetch_one(&s.pool).await.unwrap();
    let url = url.expect("the cdr links a recording");
    assert!(
        url.starts_with("recordings/") && url.ends_with(".wav"),
        "{url}"
    );
    assert!(s.dir.join(&url).is_file(), "{url}");
    s.stop().await;
}

/// alice (201) calls bob (202), each a sipp phone playing its scenario,
/// both must pass; then the call's only CDR must read answered (and carry
/// mediad's stats when `stats`).
async fn two_phones(caller_xml: &str, callee_xml: &str, stats: bool) {
    let s = Sipd::start_with_mediad(&[]).await;
    s.add_devices(&[
        ("alice", "pw-alice-2026", "201"),
        ("bob", "pw-bob-2026-x", "202"),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let callee = phone(&s, dir.path(), callee_xml, 1).await;
    let caller = sipp(
        &s,
        dir.path(),
        caller_xml,
        "alice;[authentication username=alice password=pw-alice-2026];202",
    )
    .spawn()
    .unwrap();
    finished("caller", caller, dir.path()).await;
    finished("callee", callee, dir.path()).await;
    s.eventually("one answered cdr", || async {
        let rows: Vec<CdrRow> = sqlx::query_as(
            "SELECT direction, from_number, to_number, answered_at, disposition, media_stats FROM cdrs",
        )
        .fetch_all(&s.pool)
        .await
        .unwrap();
        matches!(rows.as_slice(), [(_, _, _, Some(_), Some(d), m)] if d == "answered" && (m.is_some() || !stats))
    })
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_unhold_and_info_go_through_to_the_other_phone_and_its_answers_come_back() {
    // bob checks the re-INVITEs carry a=sendonly / a=sendrecv on mediad's
    // address and the INFO its DTMF body; alice checks bob's a=recvonly /
    // a=sendrecv and bob's own INFO answer come back.
    two_phones("caller_midcall.xml", "callee_midcall.xml", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_route_on_both_legs_video_refused_and_a_cancelled_reinvite_gets_the_callees_487() {
    // Each phone puts itself in its Record-Route as a "proxy" (;proxy=a,
    // ;proxy=b) and checks sipd's in-dialog requests come with that Route;
    // alice gets her Record-Route back in the 200. She offers video too:
    // bob is offered audio only and alice's answer refuses the video with
    // port 0. Her hold re-INVITE is CANCELled: bob must get the CANCEL and
    // alice bob's 487. bob hangs up.
    two_phones("caller_rr_cancel.xml", "callee_rr_cancel.xml", false).await;
}

/// The media stats mediad stored for the only CDR, once stored.
async fn media_stats(s: &Sipd) -> serde_json::Value {
    let q = "SELECT media_stats FROM cdrs WHERE media_stats IS NOT NULL";
    s.eventually("the call's media stats are stored", || async {
        sqlx::query(q)
            .fetch_optional(&s.pool)
            .await
            .unwrap()
            .is_some()
    })
    .await;
    let (json,): (String,) = sqlx::query_as(q).fetch_one(&s.pool).await.unwrap();
    serde_json::from_str(&json).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trunks_early_media_reaches_the_caller_through_mediad_and_its_404_ends_the_call_failed()
{
    let dir = tempfile::tempdir().unwrap();
    let (tport, trunk) = trunk_uas_with(dir.path(), "trunk_announce.xml");
    let settings = trunk_settings(tport).await;
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let s = Sipd::start_with_mediad(&settings).await;
    alice_with_did(&s).await;
    // The caller checks the 183 has SDP on the relay, then gets the 404.
    let caller = sipp(
        &s,
        dir.path(),
        "caller_early.xml",
        "alice;[authentication username=alice password=pw-alice-2026];555-123-4567",
    )
    .spawn()
    .unwrap();
    finished("caller", caller, dir.path()).await;
    finished("trunk", trunk, dir.path()).await;
    let stats = media_stats(&s).await;
    // The announcement came in on the trunk's leg and went out to the
    // caller, all before any 200 (there was none).
    let n = |leg: &str, k: &str| stats[leg][k].as_u64().unwrap_or(0);
    assert!(n("b", "packets_in") > 10, "{stats}");
    assert!(n("a", "packets_out") > 10, "{stats}");
    let row: (Option<String>, Option<String>, Option<String>) =
        sqlx::query_as("SELECT disposition, answered_at, reason FROM cdrs")
            .fetch_one(&s.pool)
            .await
            .unwrap();
    assert_eq!(row.0.as_deref(), Some("failed"), "{row:?}");
    assert_eq!(row.1, None);
    assert!(
        row.2.as_deref().is_some_and(|r| r.contains("404")),
        "{row:?}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_offer_call_gets_its_offer_in_the_200_answers_in_the_ack_and_carries_rtp_both_ways()
{
    let s = Sipd::start_with_mediad(&[]).await;
    s.add_devices(&[
        ("alice", "pw-alice-2026", "201"),
        ("bob", "pw-bob-2026-x", "202"),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    // bob checks the INVITE has no SDP and the ACK brings the answer;
    // alice checks the 200 brings an offer on the relay. Both play audio.
    let callee = phone(&s, dir.path(), "callee_late.xml", 1).await;
    let caller = sipp(
        &s,
        dir.path(),
        "caller_late.xml",
        "alice;[authentication username=alice password=pw-alice-2026];202",
    )
    .spawn()
    .unwrap();
    finished("caller", caller, dir.path()).await;
    finished("callee", callee, dir.path()).await;
    let stats = media_stats(&s).await;
    let n = |leg: &str, k: &str| stats[leg][k].as_u64().unwrap_or(0);
    for leg in ["a", "b"] {
        assert!(n(leg, "packets_in") > 10, "{leg} sent nothing: {stats}");
        assert!(n(leg, "packets_out") > 10, "{leg} heard nothing: {stats}");
    }
    let d: (Option<String>,) = sqlx::query_as("SELECT disposition FROM cdrs")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(d.0.as_deref(), Some("answered"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_trunk_caller_rings_the_phone_with_a_check_mark_in_the_display_name() {
    let s = Sipd::start_with_mediad(&[
        ("twilio.trunk_username", "trunkuser"),
        ("twilio.trunk_password", "trunkpw"),
    ])
    .await;
    let bob = s.add_device("bob", "pw-bob-2026-x", "202").await;
    s.reload_devices().await;
    let dir = tempfile::tempdir().unwrap();
    // The phone refuses to answer unless the From reads
    // "✓ +15557654321" <sip:+15557654321@...>.
    let callee = phone(&s, dir.path(), "callee_trust.xml", 1).await;
    let trunk = sipp(
        &s,
        dir.path(),
        "trunk_caller.xml",
        &format!("trunkuser;[authentication username=trunkuser password=trunkpw];{bob};verified"),
    )
    .spawn()
    .unwrap();
    finished("trunk", trunk, dir.path()).await;
    finished("phone", callee, dir.path()).await;
    s.eventually("an answered inbound cdr", || async {
        let rows: Vec<CdrRow> = sqlx::query_as(
            "SELECT direction, from_number, to_number, answered_at, disposition, media_stats FROM cdrs",
        )
        .fetch_all(&s.pool)
        .await
        .unwrap();
        matches!(rows.as_slice(), [(d, f, _, Some(_), Some(disp), _)]
            if d == "inbound" && f == "+15557654321" && disp == "answered")
    })
    .await;
    s.stop().await;
}
