#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The outbound dial plan against a running sipd, with sipp phones and sipp
//! as Twilio's termination trunk: emergency calls go out as dialled past
//! every policy, and the toll-fraud defences (NANP members abroad, premium
//! ranges, per-device limits) refuse an attacker's calls and tell the admins.

mod common;

use std::path::Path;

use common::sipp::{alice_with_did, finished, scenario, sipp, trunk_settings, trunk_uas_on};
use common::{Phone, REALM, Resp, Sipd, digest_response};

/// trunk.xml expecting `ruri_user` in the Request-URI instead of
/// +15551234567 (the DID checks stay), written into `dir`.
fn trunk_expecting(dir: &Path, ruri_user: &str) -> String {
    let xml = std::fs::read_to_string(scenario("trunk.xml")).unwrap();
    let want = r"^INVITE sip:\+15551234567@";
    assert!(xml.contains(want));
    let xml = xml.replace(want, &format!(r"^INVITE sip:{ruri_user}@"));
    let path = dir.join(format!("trunk_{}.xml", ruri_user.replace('\\', "")));
    std::fs::write(&path, xml).unwrap();
    path.to_str().unwrap().to_string()
}

/// alice's phone dials `dialed`, answering sipd's 407; the final answer.
async fn dial(s: &Sipd, p: &Phone, dialed: &str, n: u32) -> Resp {
    let invite = |extra: &str, cseq: u32| {
        format!(
            "INVITE sip:{dialed}@{srv} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKd{n}x{cseq};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:alice@{REALM}>;tag=d{n}\r\nTo: <sip:{dialed}@{REALM}>\r\n\
             Call-ID: dial-{n}@test\r\nCSeq: {cseq} INVITE\r\nContact: <sip:alice@{local}>\r\n{extra}\
             Content-Length: 0\r\n\r\n",
            srv = s.sip,
            local = p.local,
        )
    };
    let ch = p.request(&invite("", 1)).await;
    assert_eq!(ch.code(), 407, "{}", ch.0);
    let header = ch.header("proxy-authenticate").unwrap();
    let nonce = header
        .split("nonce=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let auth = digest_response(
        "alice",
        "pw-alice-2026",
        nonce,
        "INVITE",
        &format!("sip:{dialed}@{}", s.sip),
        "MD5",
        1,
    );
    p.request(&invite(&format!("Proxy-Authorization: {auth}\r\n"), 2))
        .await
}

/// alice calls `dialed` with sipp (caller.xml): it must pass.
async fn sipp_call(s: &Sipd, dir: &Path, dialed: &str) {
    let caller = sipp(
        s,
        dir,
        "caller.xml",
        &format!("alice;[authentication username=alice password=pw-alice-2026];{dialed}"),
    )
    .spawn()
    .unwrap();
    finished("caller", caller, dir).await;
}

fn warning(r: &Resp) -> String {
    r.header("warning").unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emergency_call_reaches_the_trunk_as_dialled_past_dnd_the_hourly_limit_and_an_extension_911()
 {
    let dir = tempfile::tempdir().unwrap();
    let port = testkit::ports::udp();
    let trunk = trunk_uas_on(dir.path(), "trunk.xml", port);
    let mut settings = trunk_settings(port).await;
    settings.push(("calls.max_per_hour_per_device", "1".into()));
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let s = Sipd::start_with_mediad(&settings).await;
    alice_with_did(&s).await;
    // alice's owner is on DND, and an unregistered device has extension 911.
    let user = s
        .web
        .api
        .new_user(&s.web.admin, "alice@example.org", "user")
        .await;
    s.web.api.set_dnd(&s.web.admin, user, true).await;
    s.web
        .edit_device("alice", serde_json::json!({ "user_id": user }))
        .await;
    s.add_devices(&[("bob", "pw-bob-2026-x", "911")]).await;

    // The hour's one outside call.
    sipp_call(&s, dir.path(), "555-123-4567").await;
    finished("trunk", trunk, dir.path()).await;

    // The attack: one more, as a fraudster with alice's password would.
    let p = Phone::udp(&s, "alice").await;
    let r = dial(&s, &p, "555-123-4567", 1).await;
    assert_eq!(r.code(), 403, "{}", r.0);
    assert!(
        warning(&r).contains("limit of 1 outside calls per hour reached"),
        "{}",
        r.0
    );
    s.eventually("a security event, an alert and its notice", || async {
        let ev: Vec<(String, String, String)> = s.security_events().await;
        let alerts: Vec<(String, String)> = sqlx::query_as("SELECT source, kind FROM alerts")
            .fetch_all(&s.pool)
            .await
            .unwrap();
        let notices: Vec<(i64, String)> = sqlx::query_as(
            "SELECT json_extract(payload, '$.user_id'), json_extract(payload, '$.payload.kind') \
             FROM jobs WHERE queue = 'sipd' AND kind = 'admin_alert'",
        )
        .fetch_all(&s.pool)
        .await
        .unwrap();
        ev.iter()
            .any(|(k, ip, u)| k == "call_limit_hourly" && ip == "127.0.0.1" && u == "alice")
            && alerts == [("sipd".to_string(), "call_limit_hourly".to_string())]
            && notices == [(0, "call_limit_hourly".to_string())]
    })
    .await;

    // 911 goes out all the same, as dialled, with alice's DID.
    let trunk = trunk_uas_on(dir.path(), &trunk_expecting(dir.path(), "911"), port);
    sipp_call(&s, dir.path(), "911").await;
    finished("trunk (911)", trunk, dir.path()).await;
    s.eventually("the emergency call's cdr and alert", || async {
        let cdr: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT from_number, to_number, disposition FROM cdrs WHERE to_number = '911'",
        )
        .fetch_all(&s.pool)
        .await
        .unwrap();
        let alerts: Vec<(String,)> =
            sqlx::query_as("SELECT kind FROM alerts WHERE kind = 'emergency_call'")
                .fetch_all(&s.pool)
                .await
                .unwrap();
        cdr == [(
            "+15550001111".to_string(),
            "911".to_string(),
            "answered".to_string(),
        )] && alerts.len() == 1
    })
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caribbean_number_is_refused_as_international_until_allowed_and_premium_stays_refused() {
    let dir = tempfile::tempdir().unwrap();
    let port = testkit::ports::udp();
    let settings = trunk_settings(port).await;
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let s = Sipd::start_with_mediad(&settings).await;
    alice_with_did(&s).await;
    let p = Phone::udp(&s, "alice").await;

    // Jamaica is +1 876: a "domestic-looking" number that bills as abroad.
    for (n, dialed) in ["876-555-1234", "+18765551234", "1-809-555-1234"]
        .into_iter()
        .enumerate()
    {
        let r = dial(&s, &p, dialed, n as u32).await;
        assert_eq!(r.code(), 403, "{dialed}: {}", r.0);
        assert!(
            warning(&r).contains("international calls are not allowed"),
            "{}",
            r.0
        );
    }
    let r = dial(&s, &p, "1-900-555-1234", 10).await;
    assert_eq!(r.code(), 403, "{}", r.0);
    assert!(warning(&r).contains("premium-rate"), "{}", r.0);

    proto::settings::store(&s.pool, "calls.allow_international", "true")
        .await
        .unwrap();
    // sipd reads the change within its settings poll; a premium number
    // abroad is still refused, now for being premium.
    let mut n = 20;
    s.eventually("the new settings in use", || {
        n += 1;
        let (s, p) = (&s, &p);
        async move {
            let r = dial(s, p, "+449098765432", n).await;
            r.code() == 403 && warning(&r).contains("premium-rate")
        }
    })
    .await;

    let trunk = trunk_uas_on(
        dir.path(),
        &trunk_expecting(dir.path(), r"\+18765551234"),
        port,
    );
    sipp_call(&s, dir.path(), "876-555-1234").await;
    finished("trunk", trunk, dir.path()).await;
    s.stop().await;
}
