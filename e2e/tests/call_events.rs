//! Call events reach webhook consumers through the five real daemons: two
//! registered sipp phones call each other through sipd, sipd hands
//! `call_started` / `call_ended` / `missed_call` to notifyd over gRPC, and
//! notifyd POSTs them, signed, to a webhook endpoint that is a tiny HTTP
//! server in this test. Also: notifyd down during a call (sipd keeps the
//! events and delivers them once it is back), and inbound Twilio calls
//! nobody answered, where twiliod decides between a missed call and a
//! voicemail (one notice per call).
//!
//! Needs `cargo build --bins` first (the harness runs target/debug/*).

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::System;
use e2e::standin::{CallScript, DialOutcome, RecordScript, Standin};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use sqlx::SqlitePool;

/// Each phone's password is its user name and this.
const PASSWORD_TAIL: &str = "-secret-pass";
const SECRET: &str = "whsec-call-events";

/// The INVITE (twice: plain, then with the 407's digest) every caller
/// scenario starts with. Injection fields: user;[authentication ...];dialed
const CALLER_INVITE: &str = r#"
  <send retrans="500">
    <![CDATA[
      INVITE sip:[field2]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      Max-Forwards: 70
      From: "Alice" <sip:[field0]@[remote_ip]>;tag=[call_number]
      To: <sip:[field2]@[remote_ip]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:[field0]@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=alice 1 1 IN IP4 [local_ip]
      s=-
      c=IN IP4 [local_ip]
      t=0 0
      m=audio [auto_media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000

    ]]>
  </send>
  <recv response="407" auth="true"/>
  <send>
    <![CDATA[
      ACK sip:[field2]@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      From: "Alice" <sip:[field0]@[remote_ip]>;tag=[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Content-Length: 0

    ]]>
  </send>
  <send retrans="500">
    <![CDATA[
      INVITE sip:[field2]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      Max-Forwards: 70
      From: "Alice" <sip:[field0]@[remote_ip]>;tag=[call_number]
      To: <sip:[field2]@[remote_ip]>
      Call-ID: [call_id]
      CSeq: 2 INVITE
      Contact: <sip:[field0]@[local_ip]:[local_port]>
      [field1]
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=alice 1 1 IN IP4 [local_ip]
      s=-
      c=IN IP4 [local_ip]
      t=0 0
      m=audio [auto_media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
"#;

/// Alice's side of an answered call: ACK the 200, then the callee hangs up
/// (BYE from sipd), answered with 200.
fn caller_answered_xml() -> String {
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="caller whose call the callee ends">
{CALLER_INVITE}
  <recv response="200" rrs="true"/>
  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      Max-Forwards: 70
      From: "Alice" <sip:[field0]@[remote_ip]>;tag=[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 2 ACK
      Content-Length: 0

    ]]>
  </send>
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
</scenario>
"#
    )
}

/// Alice's side of a call nobody answers: sipd gives up after the ring
/// timeout with 480, which she ACKs.
fn caller_unanswered_xml() -> String {
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="caller nobody answers">
{CALLER_INVITE}
  <recv response="480"/>
  <send>
    <![CDATA[
      ACK sip:[field2]@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      From: "Alice" <sip:[field0]@[remote_ip]>;tag=[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 2 ACK
      Content-Length: 0

    ]]>
  </send>
</scenario>
"#
    )
}

/// Bob's phone: rings, answers, talks a moment, then hangs up itself
/// (BYE with the dialog's tags swapped, to sipd's Contact).
const CALLEE_HANGS_UP_XML: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="phone that answers and hangs up">
  <recv request="INVITE" rrs="true"/>
  <send>
    <![CDATA[
      SIP/2.0 180 Ringing
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]bob[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:bob@[local_ip]:[local_port]>
      Content-Length: 0

    ]]>
  </send>
  <send retrans="500">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]bob[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:bob@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=bob 1 1 IN IP4 [local_ip]
      s=-
      c=IN IP4 [local_ip]
      t=0 0
      m=audio [auto_media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000

    ]]>
  </send>
  <recv request="ACK">
    <action>
      <ereg regexp=".*" search_in="hdr" header="From:" check_it="true" assign_to="peer"/>
      <ereg regexp=".*" search_in="hdr" header="To:" check_it="true" assign_to="me"/>
    </action>
  </recv>
  <pause milliseconds="1500"/>
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      Max-Forwards: 70
      From: [$me]
      To: [$peer]
      Call-ID: [call_id]
      CSeq: 1 BYE
      Contact: <sip:bob@[local_ip]:[local_port]>
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
</scenario>
"#;

/// Bob's phone rings but nobody picks up: sipd CANCELs at the ring
/// timeout; 200 for the CANCEL, 487 for the INVITE, then sipd's ACK.
const CALLEE_RINGS_XML: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="phone that rings unanswered">
  <recv request="INVITE">
    <action>
      <ereg regexp="([0-9]+) INVITE" search_in="hdr" header="CSeq:" check_it="true" assign_to="cseq,n"/>
    </action>
  </recv>
  <send>
    <![CDATA[
      SIP/2.0 180 Ringing
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]bob[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:bob@[local_ip]:[local_port]>
      Content-Length: 0

    ]]>
  </send>
  <recv request="CANCEL"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]bob[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <send>
    <![CDATA[
      SIP/2.0 487 Request Terminated
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]bob[call_number]
      [last_Call-ID:]
      CSeq: [$n] INVITE
      Content-Length: 0

    ]]>
  </send>
  <recv request="ACK"/>
  <Reference variables="cseq"/>
</scenario>
"#;

/// One POST the webhook endpoint received.
#[derive(Debug, Clone)]
struct Delivery {
    signature: String,
    event_header: String,
    body: Vec<u8>,
    json: Value,
}

impl Delivery {
    fn event(&self) -> &str {
        self.json["event"].as_str().unwrap_or_default()
    }

    /// `X-GoSIP-Signature` is HMAC-SHA256 over the exact bytes received.
    fn signed_with(&self, secret: &str) -> bool {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(&self.body);
        let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        self.signature == want
    }
}

/// The webhook consumer: an HTTP server on 127.0.0.1 that keeps every POST.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Delivery>>>,
}

impl Receiver {
    /// The admin adds this receiver as a webhook endpoint (all events,
    /// signed with [`SECRET`]).
    async fn subscribe(&self, api: &e2e::Api, admin: &str) {
        api.ok(
            admin,
            201,
            "POST",
            "/api/webhook-endpoints",
            Some(json!({"url": self.url, "secret": SECRET, "events": []})),
        )
        .await;
    }

    async fn start() -> Receiver {
        use axum::body::Bytes;
        use axum::http::HeaderMap;
        let got: Arc<Mutex<Vec<Delivery>>> = Arc::default();
        let store = got.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |h: HeaderMap, body: Bytes| {
                let store = store.clone();
                async move {
                    let header = |k: &str| {
                        h.get(k)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned()
                    };
                    store.lock().unwrap().push(Delivery {
                        signature: header("x-gosip-signature"),
                        event_header: header("x-gosip-event"),
                        json: serde_json::from_slice(&body).unwrap_or(Value::Null),
                        body: body.to_vec(),
                    });
                    "ok"
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await });
        Receiver { url, got }
    }

    fn all(&self) -> Vec<Delivery> {
        self.got.lock().unwrap().clone()
    }

    /// Deliveries of `event` whose data matches `pred`.
    fn find(&self, event: &str, pred: impl Fn(&Value) -> bool) -> Vec<Delivery> {
        self.all()
            .into_iter()
            .filter(|d| d.event() == event && pred(&d.json["data"]))
            .collect()
    }

    /// Waits for the first delivery of `event` whose data matches `pred`.
    async fn wait(
        &self,
        event: &str,
        within: Duration,
        logs: impl Fn() -> String,
        pred: impl Fn(&Value) -> bool,
    ) -> Delivery {
        let deadline = Instant::now() + within;
        loop {
            if let Some(d) = self.find(event, &pred).into_iter().next() {
                return d;
            }
            assert!(
                Instant::now() < deadline,
                "no {event} delivery; got {:?}\n{}",
                self.all().iter().map(|d| &d.json).collect::<Vec<_>>(),
                logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// sipp with the options every run here shares, in `dir`.
fn sipp(dir: &std::path::Path) -> tokio::process::Command {
    let mut c = tokio::process::Command::new("sipp");
    c.args(["-i", "127.0.0.1", "-m", "1", "-timeout", "30s"])
        .args(["-timeout_error", "-trace_err", "-nostdin"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

/// Two users, each with a device; alice calls from sipp on `alice_port`,
/// bob's phone is a sipp UAS on `bob_port`; both registered.
struct Office {
    sys: System,
    pool: SqlitePool,
    hook: Receiver,
    dir: tempfile::TempDir,
    alice_user: i64,
    bob_user: i64,
    alice_port: u16,
    bob_port: u16,
}

impl Office {
    async fn start() -> Office {
        let hook = Receiver::start().await;
        let sys = System::start().await.expect("system");
        let pool = proto::db::open(&sys.data_dir).await.expect("db");
        // Set up as the admin does: the wizard, the settings screen (the
        // receiver listens on loopback, which notifyd only reaches when the
        // admin allows it), two users with a desk phone each, the webhook.
        let api = e2e::Api::new(&sys);
        let admin = api.setup(&sys, "+15550009999").await;
        api.settings(
            &admin,
            json!({
                // The unanswered call gives up after 5 s (the least allowed) instead of 30,
                // and is a missed call, not a voicemail.
                "calls.ring_timeout": "5",
                "voicemail.internal_calls": "false",
                "notify.webhook_retry_delays": "0,1,2",
                (proto::ssrf::ALLOW_KEY): "127.0.0.1",
            }),
        )
        .await;
        let mut users = Vec::new();
        for (email, username, ext, name) in [
            ("alice@pbx.test", "alice", "201", "Alice desk"),
            ("bob@pbx.test", "bob", "202", "Bob desk"),
        ] {
            let user = api.new_user(&admin, email, "user").await;
            api.ok(
                &admin,
                201,
                "POST",
                "/api/devices",
                Some(json!({"name": name, "username": username,
                            "password": format!("{username}{PASSWORD_TAIL}"),
                            "extension": ext, "user_id": user})),
            )
            .await;
            users.push(user);
        }
        hook.subscribe(&api, &admin).await;
        let o = Office {
            sys,
            pool,
            hook,
            dir: tempfile::tempdir().expect("tmp"),
            alice_user: users[0],
            bob_user: users[1],
            alice_port: testkit::ports::udp(),
            bob_port: testkit::ports::udp(),
        };
        for f in [
            "caller_answered",
            "caller_unanswered",
            "callee_hangs_up",
            "callee_rings",
        ] {
            let xml = match f {
                "caller_answered" => caller_answered_xml(),
                "caller_unanswered" => caller_unanswered_xml(),
                "callee_hangs_up" => CALLEE_HANGS_UP_XML.to_owned(),
                _ => CALLEE_RINGS_XML.to_owned(),
            };
            std::fs::write(o.dir.path().join(format!("{f}.xml")), xml).expect("xml");
        }
        std::fs::copy(
            e2e::sipp_scenario("register_contact.xml"),
            o.dir.path().join("register.xml"),
        )
        .expect("xml");
        o.register("alice", o.alice_port).await;
        o.register("bob", o.bob_port).await;
        o
    }

    async fn register(&self, user: &str, port: u16) {
        let csv = self.dir.path().join(format!("register_{user}.csv"));
        std::fs::write(
            &csv,
            format!(
                "SEQUENTIAL\n{user};[authentication username={user} password={user}{PASSWORD_TAIL}];{port}\n"
            ),
        )
        .expect("csv");
        let out = sipp(self.dir.path())
            .arg(self.sys.sip_addr().to_string())
            .args(["-sf", "register.xml", "-inf"])
            .arg(&csv)
            .args(["-p", "0", "-mp", "0"])
            .output()
            .await
            .expect("sipp register");
        assert!(
            out.status.success(),
            "register {user}: {}\n{}",
            testkit::sipp_errors(self.dir.path()),
            self.logs()
        );
    }

    /// Bob's phone running `scenario` (a sipp UAS on his registered port).
    fn bob(&self, scenario: &str) -> tokio::process::Child {
        sipp(self.dir.path())
            .args(["-sf", &format!("{scenario}.xml"), "-p"])
            .arg(self.bob_port.to_string())
            .args(["-mp", &testkit::ports::udp().to_string()])
            .spawn()
            .expect("sipp bob")
    }

    /// Alice dials bob's extension with `scenario`; both phones must finish
    /// it cleanly. Returns the call's SIP Call-ID (from its CDR).
    async fn call(&self, caller: &str, callee: &str) -> String {
        let bob = self.bob(callee);
        let csv = self.dir.path().join("alice.csv");
        std::fs::write(
            &csv,
            format!("SEQUENTIAL\nalice;[authentication username=alice password=alice{PASSWORD_TAIL}];202\n"),
        )
        .expect("csv");
        let before: Vec<String> = self.call_ids().await;
        let alice = sipp(self.dir.path())
            .arg(self.sys.sip_addr().to_string())
            .args(["-sf", &format!("{caller}.xml"), "-inf"])
            .arg(&csv)
            .args(["-p", &self.alice_port.to_string(), "-mp", "0"])
            .output()
            .await
            .expect("sipp alice");
        assert!(
            alice.status.success(),
            "alice ({caller}): {}\n{}",
            testkit::sipp_errors(self.dir.path()),
            self.logs()
        );
        let bob = tokio::time::timeout(Duration::from_secs(30), bob.wait_with_output())
            .await
            .expect("bob's phone finished")
            .expect("bob");
        assert!(
            bob.status.success(),
            "bob ({callee}): {}\n{}",
            testkit::sipp_errors(self.dir.path()),
            self.logs()
        );
        let after = self.call_ids().await;
        let new: Vec<String> = after.into_iter().filter(|c| !before.contains(c)).collect();
        assert_eq!(new.len(), 1, "one call, one CDR: {new:?}");
        new[0].clone()
    }

    async fn call_ids(&self) -> Vec<String> {
        sqlx::query_scalar("SELECT sip_call_id FROM cdrs WHERE sip_call_id IS NOT NULL")
            .fetch_all(&self.pool)
            .await
            .expect("cdrs")
    }

    fn logs(&self) -> String {
        format!(
            "--- sipd\n{}\n--- notifyd\n{}",
            self.sys.log("sipd"),
            self.sys.log("notifyd")
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_calls_reach_a_webhook_as_signed_call_started_call_ended_and_missed_call_events() {
    let mut o = Office::start().await;
    let logs = || o.logs();

    // 1. Alice calls bob, bob answers and hangs up 1.5 s later.
    let call = o.call("caller_answered", "callee_hangs_up").await;
    let of_call = |d: &Value| d["call_id"] == call.as_str();
    let started = o
        .hook
        .wait("call_started", Duration::from_secs(15), logs, of_call)
        .await;
    let ended = o
        .hook
        .wait("call_ended", Duration::from_secs(15), logs, of_call)
        .await;
    for d in [&started, &ended] {
        assert!(d.signed_with(SECRET), "bad signature on {}", d.json);
        assert_eq!(d.event_header, d.event());
        // The callee's owner is who the events are for.
        assert_eq!(d.json["user_id"], o.bob_user, "{}", d.json);
        let data = &d.json["data"];
        assert_eq!(data["direction"], "internal");
        assert_eq!(data["from"], "201");
        assert_eq!(data["caller_name"], "Alice desk");
        assert_eq!(data["to"], "202");
        assert_eq!(data["callee_name"], "Bob desk");
        assert_eq!(data["call_sid"], Value::Null);
        assert!(
            data["started_at"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z'))
        );
        assert!(data["answered_at"].as_str().is_some(), "{data}");
    }
    let data = &ended.json["data"];
    assert_eq!(data["disposition"], "answered");
    assert_eq!(data["reason"], "callee hung up");
    assert!(data["duration"].as_u64().is_some_and(|s| s >= 1), "{data}");
    let (cdr_device, cdr_duration): (Option<i64>, i64) =
        sqlx::query_as("SELECT device_id, duration FROM cdrs WHERE sip_call_id = ?")
            .bind(&call)
            .fetch_one(&o.pool)
            .await
            .unwrap();
    assert_eq!(data["device_id"].as_i64(), cdr_device, "the CDR's device");
    assert_eq!(data["duration"].as_i64(), Some(cdr_duration));

    // 2. Alice calls again, bob's phone rings until sipd gives up: one
    //    missed_call, for bob's user.
    let missed = o.call("caller_unanswered", "callee_rings").await;
    let of_missed = |d: &Value| d["call_id"] == missed.as_str();
    let m = o
        .hook
        .wait("missed_call", Duration::from_secs(15), logs, of_missed)
        .await;
    assert!(m.signed_with(SECRET));
    assert_eq!(m.json["user_id"], o.bob_user);
    assert_eq!(m.json["data"]["from"], "201");
    assert_eq!(m.json["data"]["caller_name"], "Alice desk");
    assert_eq!(m.json["data"]["disposition"], "missed");
    assert_eq!(m.json["data"]["reason"], "no answer");
    let e = o
        .hook
        .wait("call_ended", Duration::from_secs(15), logs, of_missed)
        .await;
    assert_eq!(e.json["data"]["disposition"], "missed");
    assert_eq!(e.json["data"]["duration"], 0);
    assert!(
        o.hook.find("call_started", of_missed).is_empty(),
        "never answered, never started"
    );

    // 3. notifyd is down while a call is made: sipd keeps the events and
    //    hands them over once notifyd is back.
    o.sys.stop("notifyd").expect("stop notifyd");
    let offline = o.call("caller_answered", "callee_hangs_up").await;
    let of_offline = |d: &Value| d["call_id"] == offline.as_str();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(o.hook.find("call_started", of_offline).is_empty());
    o.sys.spawn("notifyd").expect("restart notifyd");
    let logs = || o.logs();
    let s = o
        .hook
        .wait("call_started", Duration::from_secs(40), logs, of_offline)
        .await;
    let e = o
        .hook
        .wait("call_ended", Duration::from_secs(40), logs, of_offline)
        .await;
    assert_eq!(s.json["user_id"], o.bob_user);
    assert_eq!(e.json["data"]["disposition"], "answered");
    assert!(
        o.sys
            .log("sipd")
            .contains("cannot hand call notices to notifyd; retrying"),
        "{}",
        o.sys.log("sipd")
    );

    // Exactly one of each per call, and nothing for alice's own user: no
    // missed call for an answered call, none twice.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let all = o.hook.all();
    for (call, kinds) in [
        (&call, ["call_ended", "call_started"]),
        (&missed, ["call_ended", "missed_call"]),
        (&offline, ["call_ended", "call_started"]),
    ] {
        let mut got: Vec<&str> = all
            .iter()
            .filter(|d| d.json["data"]["call_id"] == call.as_str())
            .map(Delivery::event)
            .collect();
        got.sort_unstable();
        assert_eq!(got, kinds, "events of {call} (sorted)");
    }
    assert!(
        all.iter().all(|d| d.json["user_id"] != o.alice_user),
        "the caller's user gets nothing"
    );
}

/// Inbound Twilio calls that rang and were not answered: twiliod waits for
/// the end of the whole call, then says missed call when no voicemail was
/// left, and nothing but the voicemail when one was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_twilio_call_is_one_missed_call_or_one_voicemail_never_both() {
    const DID: &str = "+15550004444";
    let hook = Receiver::start().await;
    let twilio = Standin::start().await.expect("stand-in");
    let sys = System::start_with(&[("GOSIP_TWILIOD_RETRY_BASE_MS", "100")])
        .await
        .expect("system");
    let public = sys.base_url();
    // Set up as the admin does: the wizard, Twilio on the settings screen,
    // a user who owns the number, the webhook receiver.
    let api = e2e::Api::new(&sys);
    let admin = api.setup(&sys, DID).await;
    api.connect_twilio(
        &admin,
        &twilio,
        json!({"system.public_url": public,
               "notify.webhook_retry_delays": "0,1,2",
               (proto::ssrf::ALLOW_KEY): "127.0.0.1"}),
    )
    .await;
    let owner = api.new_user(&admin, "owner@pbx.test", "user").await;
    let pn = twilio.add_number_for(DID, &public);
    api.edit_number(
        &admin,
        DID,
        json!({"name": "Sales", "owner_user_id": owner}),
    )
    .await;
    hook.subscribe(&api, &admin).await;
    // twiliod's rules cache polls the database every 250 ms.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let logs = || {
        format!(
            "--- twiliod\n{}\n--- notifyd\n{}",
            sys.log("twiliod"),
            sys.log("notifyd")
        )
    };
    let call = |from: &str, secs: u32| CallScript {
        from: from.into(),
        to: DID.into(),
        dial: DialOutcome::NoAnswer,
        record: RecordScript {
            secs,
            transcript: Some("Please call me back.".into()),
            ..RecordScript::default()
        },
        ..CallScript::default()
    };

    // Rang, nobody answered, the caller hung up at the greeting.
    let hung_up = e2e::standin::scenario::run(&twilio, &call("+15557651001", 0))
        .await
        .expect("call");
    let sid = hung_up.call_sid.clone();
    let m = hook
        .wait("missed_call", Duration::from_secs(30), logs, |d| {
            d["call_sid"] == sid.as_str()
        })
        .await;
    assert!(m.signed_with(SECRET));
    assert_eq!(m.json["user_id"], owner, "the DID owner");
    let d = &m.json["data"];
    assert_eq!(d["from"], "+15557651001");
    assert_eq!(d["to"], DID);
    assert_eq!(d["did_name"], "Sales");
    assert_eq!(d["direction"], "inbound");
    assert_eq!(d["disposition"], "missed");
    let e = hook
        .wait("call_ended", Duration::from_secs(10), logs, |d| {
            d["call_sid"] == sid.as_str()
        })
        .await;
    assert_eq!(e.json["data"]["disposition"], "missed");

    // Rang, nobody answered, the caller left a message: the voicemail is
    // the one notice; the call ends as a voicemail, not a missed call.
    let left = e2e::standin::scenario::run(&twilio, &call("+15557651002", 6))
        .await
        .expect("call");
    let sid = left.call_sid.clone();
    hook.wait("voicemail", Duration::from_secs(30), logs, |d| {
        d["from"] == "+15557651002"
    })
    .await;
    let e = hook
        .wait("call_ended", Duration::from_secs(30), logs, |d| {
            d["call_sid"] == sid.as_str()
        })
        .await;
    assert_eq!(e.json["data"]["disposition"], "voicemail");
    assert!(
        hook.find("missed_call", |d| d["from"] == "+15557651002")
            .is_empty(),
        "a voicemail is not also a missed call"
    );
    // Twilio repeats status callbacks: still one of each.
    let status = twilio
        .world()
        .numbers
        .iter()
        .find(|n| n.sid == pn)
        .and_then(|n| n.status_callback.clone())
        .unwrap();
    let (st, _) = twilio
        .post_webhook(
            &status,
            &[
                ("CallSid".into(), hung_up.call_sid.clone()),
                ("AccountSid".into(), twilio.account_sid.clone()),
                ("From".into(), "+15557651001".into()),
                ("To".into(), DID.into()),
                ("CallStatus".into(), "completed".into()),
                ("CallDuration".into(), "0".into()),
                ("Direction".into(), "inbound".into()),
            ],
        )
        .await
        .unwrap();
    assert_eq!(st, 200);
    tokio::time::sleep(Duration::from_secs(7)).await;
    let sid = hung_up.call_sid.as_str();
    assert_eq!(
        hook.find("missed_call", |d| d["call_sid"] == sid).len(),
        1,
        "one missed call per call"
    );
    assert_eq!(hook.find("call_ended", |d| d["call_sid"] == sid).len(), 1);
}
