//! twiliod's voice side against the Twilio stand-in: signed webhooks, every
//! rule type and action, blocking, spam and anonymous edges, DST through
//! the "test a call" RPC, voicemail end to end, REST faults and the wizard.
//!
//! twiliod, webd and sipd run in-process (`twiliod::run`, `webd::run`,
//! `sipd::run`: sipd writes the call records twiliod tells it of) on
//! loopback ports with a temp data dir; everything is set up through
//! webd's API (the wizard, settings, users, numbers, blocklist, VIP list),
//! as the admin does in the UI. The stand-in plays Twilio: it signs webhooks over the public
//! URL `https://pbx.test` and delivers them to twiliod's port, follows the
//! TwiML and serves recordings. notifyd is deliberately unreachable: its
//! hand-offs must queue, never fail a webhook.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use e2e::standin::{CallOutcome, CallScript, DialOutcome, Event, Faults, RecordScript, Standin};
use proto::pb::common::daemon_client::DaemonClient;
use proto::pb::twiliod::twiliod_client::TwiliodClient;
use proto::pb::twiliod::{CheckCredentialsRequest, ConfigureNumberRequest, ListNumbersRequest};
use sqlx::SqlitePool;
use tokio_util::sync::CancellationToken;

const DID: &str = "+15550001111";
const PUBLIC: &str = "https://pbx.test";

struct Env {
    s: Standin,
    _dir: tempfile::TempDir,
    data: PathBuf,
    pool: SqlitePool,
    http: u16,
    grpc: u16,
    owner: i64,
    did_id: i64,
    /// webd's API and the admin's session.
    api: e2e::Api,
    admin: String,
    stop: CancellationToken,
    /// sipd's own, to stop it alone; its gRPC port.
    sipd: std::sync::Mutex<CancellationToken>,
    sipd_grpc: u16,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Ok(t) = self.sipd.lock() {
            t.cancel();
        }
        self.s.shutdown();
    }
}

impl Env {
    async fn start() -> Env {
        Self::start_with(&[]).await
    }

    async fn start_with(settings: &[(&str, &str)]) -> Env {
        Self::start_full(settings, 5099).await
    }

    /// With sipd's SIP port (the `<Sip>` URI points at 127.0.0.1:`sip_port`).
    async fn start_full(settings: &[(&str, &str)], sip_port: u16) -> Env {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
        let s = Standin::start().await.expect("stand-in");
        let dir = tempfile::tempdir().expect("tmp");
        let data = dir.path().join("data");
        let pool = proto::db::open(&data).await.expect("db");
        let http = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let (hp, gp) = (
            http.local_addr().expect("addr").port(),
            grpc.local_addr().expect("addr").port(),
        );
        let sipd_grpc = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let sp = sipd_grpc.local_addr().expect("addr").port();
        let sipd = start_sipd(&data, sipd_grpc, gp).await;
        let cfg = twiliod::Config::parse_from([
            "twiliod",
            "--data-dir",
            data.to_str().expect("utf8"),
            "--notifyd-grpc",
            "127.0.0.1:9", // nobody listens: notifications must queue
            "--retry-base-ms",
            "50",
            "--sip-port",
            &sip_port.to_string(),
            "--sipd-grpc",
            &format!("127.0.0.1:{sp}"),
        ]);
        let stop = CancellationToken::new();
        let st = stop.clone();
        tokio::spawn(async move {
            if let Err(e) = twiliod::run(cfg, twiliod::Listeners { http, grpc }, st).await {
                eprintln!("twiliod stopped: {e:#}");
            }
        });
        s.route_public_to(PUBLIC, &format!("http://127.0.0.1:{hp}"));
        // webd in-process too, on the same data folder, reaching this
        // twiliod: everything below is set up through its API, as the
        // admin does in the UI.
        let web = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let wp = web.local_addr().expect("addr").port();
        let wcfg = webd::Config::parse_from([
            "webd",
            "--data-dir",
            data.to_str().expect("utf8"),
            "--web-dir",
            dir.path().to_str().expect("utf8"),
            "--twiliod-grpc",
            &format!("127.0.0.1:{gp}"),
            "--twiliod-http",
            &format!("127.0.0.1:{hp}"),
            "--sipd-grpc",
            "127.0.0.1:9",
            "--mediad-grpc",
            "127.0.0.1:9",
            "--notifyd-grpc",
            "127.0.0.1:9",
        ]);
        let st = stop.clone();
        tokio::spawn(async move {
            if let Err(e) = webd::run(wcfg, webd::Listeners { http: web }, st).await {
                eprintln!("webd stopped: {e:#}");
            }
        });
        let api = e2e::Api::at(format!("http://127.0.0.1:{wp}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !data.join("setup-token").is_file() {
            assert!(Instant::now() < deadline, "webd did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let admin = api.setup_in(&data, DID).await;
        let mut extra = serde_json::json!({
            "system.public_url": PUBLIC,
            "sip.public_address": "127.0.0.1",
            "twilio.trunk_username": "twilio-trunk",
            "twilio.trunk_password": "trunk-secret",
        });
        if let Some(o) = extra.as_object_mut() {
            for (k, v) in settings {
                o.insert((*k).to_owned(), (*v).into());
            }
        }
        api.connect_twilio(&admin, &s, extra).await;
        let owner = api.new_user(&admin, "owner@pbx.test", "user").await;
        let pn = s.add_number_for(DID, PUBLIC);
        let did_id = api
            .edit_number(
                &admin,
                DID,
                serde_json::json!({"twilio_sid": pn, "owner_user_id": owner}),
            )
            .await;
        let env = Env {
            s,
            _dir: dir,
            data,
            pool,
            http: hp,
            grpc: gp,
            owner,
            did_id,
            api,
            admin,
            stop,
            sipd: std::sync::Mutex::new(sipd),
            sipd_grpc: sp,
        };
        env.wait_up().await;
        // The rules cache sees the number's new owner.
        env.settle().await;
        env
    }

    async fn wait_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            // Up, and done with its start-up listing of our numbers at
            // Twilio (status warnings), so that listing neither takes a
            // test's faults nor shows up among a test's requests.
            if TiliodProbe::ok(self.grpc).await && self.s.listings() > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("twiliod did not start");
    }

    async fn grpc(&self) -> TwiliodClient<proto::grpc::AuthChannel> {
        TwiliodClient::new(e2e::grpc_channel(&self.data, self.grpc).await)
    }

    /// Changes a setting on the settings screen (webd stores it and
    /// reloads the daemons).
    async fn set(&self, k: &str, v: &str) {
        self.api
            .settings(&self.admin, serde_json::json!({ k: v }))
            .await;
        self.settle().await;
    }

    /// Adds a blocklist entry as the admin does; its id.
    async fn block(&self, pattern: &str, pattern_type: &str) -> i64 {
        self.api
            .ok(
                &self.admin,
                201,
                "POST",
                "/api/blocklist",
                Some(serde_json::json!({"pattern": pattern, "pattern_type": pattern_type})),
            )
            .await["id"]
            .as_i64()
            .expect("block id")
    }

    /// Puts `number` on the VIP list.
    async fn vip(&self, number: &str) {
        self.api
            .ok(
                &self.admin,
                201,
                "POST",
                "/api/caller-lists",
                Some(serde_json::json!({"list": "vip", "number": number})),
            )
            .await;
    }

    /// The number owner's do-not-disturb switch.
    async fn owner_dnd(&self, on: bool) {
        self.api.set_dnd(&self.admin, self.owner, on).await;
    }

    /// Waits for the rules cache to see database edits (it polls every
    /// 250 ms; generous for a loaded CI machine).
    async fn settle(&self) {
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }

    async fn call(&self, script: CallScript) -> CallOutcome {
        e2e::standin::scenario::run(&self.s, &script)
            .await
            .expect("scenario")
    }

    /// Stops sipd alone (it closes its gRPC port).
    async fn stop_sipd(&self) {
        self.sipd.lock().expect("sipd").cancel();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TiliodProbe::ok(self.sipd_grpc).await {
            assert!(Instant::now() < deadline, "sipd did not stop");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts sipd again on the same gRPC port.
    async fn start_sipd(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let grpc = loop {
            match tokio::net::TcpListener::bind(("127.0.0.1", self.sipd_grpc)).await {
                Ok(l) => break l,
                Err(e) => assert!(Instant::now() < deadline, "rebind sipd's gRPC port: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let token = start_sipd(&self.data, grpc, self.grpc).await;
        *self.sipd.lock().expect("sipd") = token;
    }

    async fn cdr(&self, call_sid: &str) -> Option<Cdr> {
        sqlx::query_as(
            "SELECT disposition, rule_name, reason, spam_score, stir_verstat, did_id, user_id, id \
             FROM cdrs WHERE call_sid = ?",
        )
        .bind(call_sid)
        .fetch_optional(&self.pool)
        .await
        .expect("cdr")
    }

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    async fn wait_count(&self, sql: &str, want: i64) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut got = -1;
        while Instant::now() < deadline {
            got = self.count(sql).await;
            if got == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{sql}: wanted {want}, got {got}");
    }
}

type Cdr = (
    String,
    Option<String>,
    Option<String>,
    Option<f64>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    i64,
);

struct TiliodProbe;

impl TiliodProbe {
    async fn ok(port: u16) -> bool {
        match DaemonClient::connect(format!("http://127.0.0.1:{port}")).await {
            Ok(mut c) => c.health(proto::pb::common::HealthRequest {}).await.is_ok(),
            Err(_) => false,
        }
    }
}

fn from(n: &str) -> CallScript {
    CallScript {
        from: n.into(),
        to: DID.into(),
        ..CallScript::default()
    }
}

fn rejected(o: &CallOutcome) -> Option<String> {
    o.events.iter().find_map(|e| match e {
        Event::Reject { reason } => Some(reason.clone()),
        _ => None,
    })
}

fn dialed(o: &CallOutcome) -> Option<(String, String, Option<String>)> {
    o.events.iter().find_map(|e| match e {
        Event::Dial {
            target,
            noun,
            username,
            ..
        } => Some((noun.clone(), target.clone(), username.clone())),
        _ => None,
    })
}

fn recorded(o: &CallOutcome) -> bool {
    o.has(|e| matches!(e, Event::Record { .. }))
}

fn first_status(o: &CallOutcome) -> u16 {
    o.events
        .iter()
        .find_map(|e| match e {
            Event::Webhook { status, .. } => Some(*status),
            _ => None,
        })
        .unwrap_or(0)
}

fn icehook(level: u32) -> (String, String) {
    (
        "AddOns".into(),
        serde_json::json!({"status":"successful","message":null,"code":null,"results":{
            "icehook_scout":{"request_sid":"XR1","status":"successful","message":null,"code":null,
                             "result":{"risk_rating":"likely","risk_level":level}}}})
        .to_string(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn signatures_are_checked_over_the_public_url_in_both_port_forms() {
    let env = Env::start().await;
    // Signed without the port (https://pbx.test/...).
    let o = env.call(from("+15557654321")).await;
    assert_eq!(first_status(&o), 200, "{o:?}");
    // Signed with the default port (https://pbx.test:443/...).
    env.s.faults(Faults {
        sign_with_port: true,
        ..Faults::default()
    });
    let o = env.call(from("+15557654321")).await;
    assert_eq!(first_status(&o), 200, "{o:?}");
    // A wrong key: 403, Twilio logs 11200 and the call fails.
    env.s.faults(Faults {
        bad_signature: true,
        ..Faults::default()
    });
    let o = env.call(from("+15557654321")).await;
    assert_eq!(first_status(&o), 403);
    assert!(o.has(|e| *e == Event::Error { code: 11200 }));
    env.s.faults(Faults::default());

    let client = reqwest::Client::new();
    let internal = format!("http://127.0.0.1:{}/api/webhooks/voice/incoming", env.http);
    let params = vec![
        (
            "CallSid".to_string(),
            "CA11111111111111111111111111111111".to_string(),
        ),
        ("From".to_string(), "+15557654321".to_string()),
        ("To".to_string(), DID.to_string()),
    ];
    // No signature at all.
    let r = client.post(&internal).form(&params).send().await.unwrap();
    assert_eq!(r.status(), 403);
    // Signed over the internal URL (what a naive check would use): rejected.
    let sig = e2e::standin::signature(&env.s.auth_token, &internal, &params);
    let r = client
        .post(&internal)
        .header("X-Twilio-Signature", sig)
        .form(&params)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Signed over the public URL: accepted.
    let public = format!("{PUBLIC}/api/webhooks/voice/incoming");
    let sig = e2e::standin::signature(&env.s.auth_token, &public, &params);
    let r = client
        .post(&internal)
        .header("X-Twilio-Signature", sig)
        .form(&params)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // JSON body: bodySHA256 in the URL, URL alone signed.
    let body = br#"{"CallSid":"CA1"}"#;
    let hash = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(body))
    };
    let path = format!("/api/webhooks/voice/status?bodySHA256={hash}");
    let sig = e2e::standin::signature(&env.s.auth_token, &format!("{PUBLIC}{path}"), &[]);
    let url = format!("http://127.0.0.1:{}{path}", env.http);
    let ok = client
        .post(&url)
        .header("X-Twilio-Signature", &sig)
        .header("Content-Type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let tampered = client
        .post(&url)
        .header("X-Twilio-Signature", &sig)
        .header("Content-Type", "application/json")
        .body(br#"{"CallSid":"CA2"}"#.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(tampered.status(), 403);
    // Every rejection is a security event (the bad-key call was rejected
    // twice: its voice webhook and its status callback).
    let n = env
        .count("SELECT IFNULL(SUM(count), 0) FROM security_events WHERE source = 'twiliod' AND kind = 'webhook_signature'")
        .await;
    assert_eq!(n, 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn blocklist_exact_prefix_and_regex_entries_reject_with_a_blocked_cdr() {
    let env = Env::start().await;
    let exact = env.block("+15557654321", "exact").await;
    let prefix = env.block("+1900", "prefix").await;
    let regex = env.block(r"^\+44\d{10}$", "regex").await;
    env.settle().await;
    for (caller, id) in [
        ("+15557654321", exact),
        ("+19005550000", prefix),
        ("+442079460958", regex),
    ] {
        let o = env.call(from(caller)).await;
        assert_eq!(rejected(&o).as_deref(), Some("rejected"), "{caller}: {o:?}");
        assert!(dialed(&o).is_none());
        let cdr = env.cdr(&o.call_sid).await.expect("cdr");
        assert_eq!(cdr.0, "blocked");
        assert_eq!(cdr.1, Some(format!("blocklist:{id}")));
        assert_eq!(cdr.5, Some(env.did_id));
        assert_eq!(cdr.6, Some(env.owner));
    }
    let o = env.call(from("+15557654322")).await;
    assert!(dialed(&o).is_some(), "a clean caller rings: {o:?}");
}

/// sipd owns the call records: a call blocked while sipd is away is
/// still refused at once, and its record reaches sipd when it is back,
/// with the changes in the order twiliod made them.
#[tokio::test(flavor = "multi_thread")]
async fn a_call_blocked_while_sipd_is_away_is_recorded_when_it_is_back() {
    let env = Env::start().await;
    let id = env.block("+15557654321", "exact").await;
    env.settle().await;
    env.stop_sipd().await;
    let o = env.call(from("+15557654321")).await;
    assert_eq!(rejected(&o).as_deref(), Some("rejected"), "{o:?}");
    // Twilio's status callback came too; both changes wait in the queue.
    env.wait_count(
        "SELECT count(*) FROM jobs WHERE kind = 'call_record' AND status = 'pending'",
        2,
    )
    .await;
    assert!(env.cdr(&o.call_sid).await.is_none());
    env.start_sipd().await;
    env.wait_count(
        "SELECT count(*) FROM jobs WHERE kind = 'call_record' AND status = 'done'",
        2,
    )
    .await;
    let cdr = env.cdr(&o.call_sid).await.expect("cdr");
    assert_eq!(cdr.0, "blocked");
    assert_eq!(cdr.1, Some(format!("blocklist:{id}")));
    assert_eq!((cdr.5, cdr.6), (Some(env.did_id), Some(env.owner)));
}

#[tokio::test(flavor = "multi_thread")]
async fn blocked_calls_get_the_sit_tone_or_a_silent_voicemail_when_configured() {
    let env = Env::start_with(&[("routing.block_action", "disconnected_tone")]).await;
    env.block("+15557654321", "exact").await;
    env.settle().await;
    let o = env.call(from("+15557654321")).await;
    let play = o.events.iter().find_map(|e| match e {
        Event::Play { url } => Some(url.clone()),
        _ => None,
    });
    assert_eq!(
        play.as_deref(),
        Some("https://pbx.test/api/webhooks/voice/sit.wav")
    );
    assert!(o.has(|e| matches!(e, Event::Say { text } if text.contains("not in service"))));
    assert!(o.has(|e| *e == Event::Hangup));
    assert_eq!(env.cdr(&o.call_sid).await.unwrap().0, "blocked");
    // Twilio fetches the tone unsigned.
    let r = reqwest::get(format!(
        "http://127.0.0.1:{}/api/webhooks/voice/sit.wav",
        env.http
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(&r.bytes().await.unwrap()[..4], b"RIFF");

    env.set("routing.block_action", "silent_voicemail").await;
    let o = env
        .call(CallScript {
            record: RecordScript {
                secs: 8,
                transcript: Some("buy now".into()),
                ..RecordScript::default()
            },
            ..from("+15557654321")
        })
        .await;
    assert!(dialed(&o).is_none(), "never rings: {o:?}");
    assert!(recorded(&o));
    let rec = o.recording_sid.clone().unwrap();
    env.wait_count(
        &format!("SELECT count(*) FROM voicemails WHERE recording_sid = '{rec}' AND audio_url IS NOT NULL AND transcript = 'buy now'"),
        1,
    )
    .await;
    assert_eq!(env.cdr(&o.call_sid).await.unwrap().0, "blocked");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        env.count("SELECT count(*) FROM jobs WHERE kind = 'notify' AND payload LIKE '%voicemail%'")
            .await,
        0,
        "a silent voicemail notifies nobody"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn anonymous_callers_in_every_form_are_rejected_only_when_enabled() {
    let env = Env::start().await;
    let o = env.call(from("anonymous")).await;
    assert!(dialed(&o).is_some(), "off by default");
    env.set("routing.reject_anonymous", "true").await;
    for caller in [
        "",
        "anonymous",
        "Anonymous",
        "Restricted",
        "Unavailable",
        "+266696687",
        "+17378742833",
        "unknown",
    ] {
        let o = env.call(from(caller)).await;
        assert_eq!(rejected(&o).as_deref(), Some("rejected"), "{caller:?}");
        let cdr = env.cdr(&o.call_sid).await.unwrap();
        assert_eq!(
            (cdr.0.as_str(), cdr.1.as_deref()),
            ("blocked", Some("anonymous"))
        );
    }
    assert!(dialed(&env.call(from("+15557654321")).await).is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn spam_score_0_70_rings_0_71_is_blocked_and_a_failed_add_on_never_blocks() {
    let env = Env::start().await;
    let call = |addons: (String, String)| CallScript {
        params: vec![
            addons,
            ("StirVerstat".into(), "TN-Validation-Passed-A".into()),
        ],
        ..from("+15557654321")
    };
    let o = env.call(call(icehook(70))).await;
    assert!(dialed(&o).is_some(), "0.70 is not above the threshold");
    let stored: Option<f64> =
        sqlx::query_scalar("SELECT spam_score FROM voice_calls WHERE call_sid = ?")
            .bind(&o.call_sid)
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!(stored, Some(0.7));

    let o = env.call(call(icehook(71))).await;
    assert_eq!(rejected(&o).as_deref(), Some("rejected"));
    let cdr = env.cdr(&o.call_sid).await.unwrap();
    assert_eq!(cdr.0, "blocked");
    assert_eq!(cdr.1.as_deref(), Some("spam"));
    assert_eq!(cdr.3, Some(0.71));
    assert_eq!(cdr.4.as_deref(), Some("TN-Validation-Passed-A"));
    assert!(cdr.2.unwrap().contains("0.71"));

    let failed = (
        "AddOns".to_string(),
        r#"{"status":"successful","message":null,"code":null,"results":{"nomorobo_spamscore":{"request_sid":"XR2","status":"failed","message":"Request timed out","code":61001,"result":{}}}}"#.to_string(),
    );
    let o = env.call(call(failed)).await;
    assert!(dialed(&o).is_some(), "a failed add-on never blocks");
    // The threshold is a setting.
    env.set("routing.spam_threshold", "0.5").await;
    let o = env.call(call(icehook(60))).await;
    assert!(rejected(&o).is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn dnd_sends_callers_to_voicemail_but_vip_callers_still_ring() {
    let env = Env::start().await;
    env.owner_dnd(true).await;
    env.settle().await;
    let o = env.call(from("+15557654321")).await;
    assert!(dialed(&o).is_none() && recorded(&o), "{o:?}");
    env.vip("+15557654321").await;
    env.settle().await;
    assert!(dialed(&env.call(from("+15557654321")).await).is_some());
    assert!(dialed(&env.call(from("+15557654322")).await).is_none());
    // System-wide DND too.
    env.owner_dnd(false).await;
    env.set("routing.dnd", "true").await;
    let o = env.call(from("+15557654322")).await;
    assert!(recorded(&o) && dialed(&o).is_none());
    let rule: String = sqlx::query_scalar("SELECT rule_name FROM voice_calls WHERE call_sid = ?")
        .bind(&o.call_sid)
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(rule, "dnd:system");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unanswered_call_leaves_a_voicemail_that_is_downloaded_transcribed_and_notified_once() {
    let env = Env::start().await;
    let o = env
        .call(CallScript {
            dial: DialOutcome::NoAnswer,
            record: RecordScript {
                secs: 12,
                transcript: Some("Hi, call me back about Friday.".into()),
                duplicate_callbacks: true,
                ..RecordScript::default()
            },
            ..from("+15557654321")
        })
        .await;
    assert!(dialed(&o).is_some());
    let rec = o.events.iter().find_map(|e| match e {
        Event::Record {
            max_length,
            timeout,
            transcribe,
            ..
        } => Some((*max_length, *timeout, *transcribe)),
        _ => None,
    });
    assert_eq!(rec, Some((180, 10, true)));
    let sid = o.recording_sid.clone().unwrap();
    env.wait_count(
        &format!("SELECT count(*) FROM voicemails WHERE recording_sid = '{sid}' AND audio_url IS NOT NULL AND transcript_status = 'completed'"),
        1,
    )
    .await;
    let (user, audio, transcript, duration, cdr_id): (i64, String, String, i64, i64) =
        sqlx::query_as(
            "SELECT user_id, audio_url, transcript, duration, cdr_id FROM voicemails WHERE recording_sid = ?",
        )
        .bind(&sid)
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(user, env.owner);
    assert_eq!(audio, format!("voicemails/{sid}.wav"));
    assert_eq!(transcript, "Hi, call me back about Friday.");
    assert_eq!(duration, 12);
    let wav = std::fs::read(env.data.join(&audio)).unwrap();
    assert_eq!(wav.len(), 44 + 12 * 16000);
    let cdr = env.cdr(&o.call_sid).await.unwrap();
    assert_eq!((cdr.0.as_str(), cdr.7), ("voicemail", cdr_id));
    // Twilio's copy is deleted after the download.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !env
        .s
        .requests()
        .iter()
        .any(|r| r.method == "DELETE" && r.path.contains(&sid))
    {
        assert!(Instant::now() < deadline, "recording not deleted at Twilio");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // One notification (notifyd is down, so it waits in the queue).
    env.wait_count(
        &format!("SELECT count(*) FROM jobs WHERE kind = 'notify' AND idempotency_key = 'notify:voicemail:{sid}'"),
        1,
    )
    .await;
    let payload: String = sqlx::query_scalar("SELECT payload FROM jobs WHERE idempotency_key = ?")
        .bind(format!("notify:voicemail:{sid}"))
        .fetch_one(&env.pool)
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&payload).unwrap();
    assert_eq!(v["kind"], "voicemail");
    assert_eq!(v["user_id"], env.owner);
    assert_eq!(v["attachments"][0], audio);
    assert_eq!(v["payload"]["transcript"], "Hi, call me back about Friday.");
    assert_eq!(env.count("SELECT count(*) FROM voicemails").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_voicemail_under_3_s_is_discarded_and_deleted_at_twilio() {
    let env = Env::start().await;
    let o = env
        .call(CallScript {
            record: RecordScript {
                secs: 2,
                transcript: Some("uh".into()),
                transcription_first: true,
                ..RecordScript::default()
            },
            ..from("+15557654321")
        })
        .await;
    let sid = o.recording_sid.clone().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !env
        .s
        .requests()
        .iter()
        .any(|r| r.method == "DELETE" && r.path.contains(&sid))
    {
        assert!(Instant::now() < deadline, "not deleted at Twilio");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(env.count("SELECT count(*) FROM voicemails").await, 0);
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM voice_recordings WHERE recording_sid = '{sid}' AND discarded"
        ))
        .await,
        1
    );
    assert!(!env.s.requests().iter().any(|r| r.path.ends_with(".wav")));
    assert_eq!(env.cdr(&o.call_sid).await.unwrap().0, "missed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_150_s_voicemail_with_failed_transcription_is_kept_with_the_transcript_unavailable() {
    let env = Env::start().await;
    let o = env
        .call(CallScript {
            record: RecordScript {
                secs: 150,
                transcript: None,
                transcription_first: true,
                ..RecordScript::default()
            },
            ..from("+15557654321")
        })
        .await;
    let sid = o.recording_sid.clone().unwrap();
    env.wait_count(
        &format!("SELECT count(*) FROM voicemails WHERE recording_sid = '{sid}' AND audio_url IS NOT NULL AND duration = 150 AND transcript_status = 'unavailable' AND transcript IS NULL"),
        1,
    )
    .await;
    let wav = std::fs::metadata(env.data.join(format!("voicemails/{sid}.wav"))).unwrap();
    assert_eq!(wav.len(), 44 + 150 * 16000);
    env.wait_count(
        &format!("SELECT count(*) FROM jobs WHERE idempotency_key = 'notify:voicemail:{sid}' AND payload LIKE '%\"transcript_status\":\"unavailable\"%'"),
        1,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn recording_downloads_ride_out_twilio_5xx_and_429_in_the_durable_queue() {
    let env = Env::start().await;
    env.s.faults(Faults {
        server_error: 4,
        ..Faults::default()
    });
    let o = env
        .call(CallScript {
            record: RecordScript {
                secs: 5,
                transcript: Some("hello".into()),
                ..RecordScript::default()
            },
            ..from("+15557654321")
        })
        .await;
    let sid = o.recording_sid.clone().unwrap();
    env.wait_count(
        &format!("SELECT count(*) FROM voicemails WHERE recording_sid = '{sid}' AND audio_url IS NOT NULL"),
        1,
    )
    .await;
    let attempts: i64 = sqlx::query_scalar("SELECT attempts FROM jobs WHERE idempotency_key = ?")
        .bind(format!("voicemail.download:{sid}"))
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert!(
        attempts >= 2,
        "the first attempt failed on 5xx, got {attempts}"
    );
    let rest: Vec<_> = env
        .s
        .requests()
        .into_iter()
        .filter(|r| r.path.contains(&sid))
        .collect();
    assert!(
        rest.iter().filter(|r| r.status == 503).count() >= 3,
        "{rest:?}"
    );

    // Let the queue finish (the recording's DELETE) so the next fault hits
    // only the request below.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !env
        .s
        .requests()
        .iter()
        .any(|r| r.method == "DELETE" && r.path.contains(&sid) && r.status == 204)
    {
        assert!(Instant::now() < deadline, "recording not deleted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // 429 with Retry-After: honoured, then it works.
    env.s.faults(Faults {
        rate_limit: 1,
        retry_after: Some(1),
        ..Faults::default()
    });
    let before = env.s.requests().len();
    let t0 = Instant::now();
    let mut g = env.grpc().await;
    let r = g
        .list_numbers(ListNumbersRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(r.error.is_empty(), "{}", r.error);
    let log = env.s.requests();
    let tries: Vec<u16> = log[before..]
        .iter()
        .filter(|r| r.path.ends_with("IncomingPhoneNumbers.json"))
        .map(|r| r.status)
        .collect();
    assert_eq!(tries, [429, 200]);
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "Retry-After honoured"
    );
    assert_eq!(r.numbers.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn three_consecutive_twilio_failures_alert_the_admin_once() {
    let env = Env::start().await;
    env.s.faults(Faults {
        server_error: 1000,
        server_status: Some(500),
        ..Faults::default()
    });
    let mut g = env.grpc().await;
    for i in 0..4 {
        let r = g
            .list_numbers(ListNumbersRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(r.error.contains("500"), "call {i}: {}", r.error);
        if i == 1 {
            assert_eq!(env.count("SELECT count(*) FROM alerts").await, 0);
        }
    }
    env.wait_count(
        "SELECT count(*) FROM alerts WHERE source = 'twiliod' AND kind = 'twilio_failing'",
        1,
    )
    .await;
    env.wait_count(
        "SELECT count(*) FROM jobs WHERE kind = 'notify' AND payload LIKE '%admin_alert%'",
        1,
    )
    .await;
    // Permanent errors are not retried: one request per call.
    env.s.faults(Faults::default());
    let before = env.s.requests().len();
    let r = g
        .configure_number(ConfigureNumberRequest {
            sid: "PN00000000000000000000000000000000".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!r.ok);
    assert_eq!(env.s.requests().len(), before + 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_wizard_checks_credentials_lists_numbers_and_points_them_at_the_public_url() {
    let env = Env::start().await;
    let mut g = env.grpc().await;
    let ok = g
        .check_credentials(CheckCredentialsRequest {
            account_sid: env.s.account_sid.clone(),
            auth_token: env.s.auth_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(ok.ok, "{}", ok.error);
    assert_eq!(ok.friendly_name, "GoSIP stand-in account");
    let bad = g
        .check_credentials(CheckCredentialsRequest {
            account_sid: env.s.account_sid.clone(),
            auth_token: "wrong".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!bad.ok);
    assert!(bad.error.contains("20003"), "{}", bad.error);

    let second = env.s.add_number("+15550002222", None);
    let list = g
        .list_numbers(ListNumbersRequest {})
        .await
        .unwrap()
        .into_inner();
    let numbers: Vec<&str> = list
        .numbers
        .iter()
        .map(|n| n.phone_number.as_str())
        .collect();
    assert_eq!(numbers, [DID, "+15550002222"]);
    let r = g
        .configure_number(ConfigureNumberRequest {
            sid: second.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.ok, "{}", r.error);
    let n = env.s.number("+15550002222").unwrap();
    assert_eq!(
        n.voice_url.as_deref(),
        Some("https://pbx.test/api/webhooks/voice/incoming")
    );
    assert_eq!(
        n.sms_url.as_deref(),
        Some("https://pbx.test/api/webhooks/sms/incoming")
    );
    assert_eq!(
        n.status_callback.as_deref(),
        Some("https://pbx.test/api/webhooks/voice/status")
    );
}

/// Runs sipd in-process on loopback with its gRPC on `grpc` (twiliod's
/// at `twiliod_grpc`); mediad and notifyd are nobody.
async fn start_sipd(
    data: &std::path::Path,
    grpc: tokio::net::TcpListener,
    twiliod_grpc: u16,
) -> CancellationToken {
    let (udp, tcp) = testkit::ports::sip_bound("127.0.0.1").await;
    let port = udp.local_addr().expect("addr").port();
    let tls = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let grpc_port = grpc.local_addr().expect("addr").port();
    let cfg = sipd::Config::parse_from([
        "sipd",
        "--data-dir",
        data.to_str().expect("utf8"),
        "--sip-bind",
        "127.0.0.1",
        "--sip-port",
        &port.to_string(),
        "--sips-port",
        &tls.local_addr().expect("addr").port().to_string(),
        "--grpc",
        &format!("127.0.0.1:{grpc_port}"),
        "--mediad-grpc",
        "127.0.0.1:9",
        "--notifyd-grpc",
        "127.0.0.1:9",
        "--twiliod-grpc",
        &format!("127.0.0.1:{twiliod_grpc}"),
    ]);
    let token = CancellationToken::new();
    let stop = token.clone();
    let ws = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind ws");
    let listeners = sipd::Listeners {
        udp,
        tcp,
        tls,
        ws,
        grpc,
    };
    tokio::spawn(async move {
        if let Err(e) = sipd::run(cfg, listeners, stop).await {
            eprintln!("sipd stopped: {e:#}");
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !TiliodProbe::ok(grpc_port).await {
        assert!(Instant::now() < deadline, "sipd did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    token
}

/// A one-call SIP UAS standing in for sipd: answers the INVITE with `code`
/// (200 with SDP, or a failure), 200s the BYE; returns the INVITE it got.
async fn sipd_stand_in(code: u16) -> (u16, tokio::task::JoinHandle<String>) {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = sock.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 65535];
        let mut invite = String::new();
        while let Ok(Ok((n, from))) =
            tokio::time::timeout(Duration::from_secs(10), sock.recv_from(&mut buf)).await
        {
            let m = String::from_utf8_lossy(&buf[..n]).to_string();
            let method = m.split(' ').next().unwrap_or("").to_owned();
            let head: String = m
                .split("\r\n\r\n")
                .next()
                .unwrap()
                .lines()
                .skip(1)
                .filter(|l| {
                    let k = l.split(':').next().unwrap_or("").to_ascii_lowercase();
                    matches!(k.as_str(), "via" | "from" | "call-id" | "cseq" | "to")
                })
                .map(|l| format!("{l}\r\n"))
                .collect();
            let resp = match (method.as_str(), code) {
                ("INVITE", 200) => {
                    invite = m.clone();
                    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n";
                    format!(
                        "SIP/2.0 200 OK\r\n{head}Contact: <sip:sipd@127.0.0.1:{port}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                        sdp.len()
                    )
                }
                ("INVITE", c) => {
                    invite = m.clone();
                    format!("SIP/2.0 {c} Busy Here\r\n{head}Content-Length: 0\r\n\r\n")
                }
                ("BYE", _) => format!("SIP/2.0 200 OK\r\n{head}Content-Length: 0\r\n\r\n"),
                ("ACK", c) if c != 200 => return invite,
                _ => continue,
            };
            sock.send_to(resp.as_bytes(), from).await.unwrap();
            if method == "BYE" {
                return invite;
            }
        }
        invite
    });
    (port, task)
}

#[tokio::test(flavor = "multi_thread")]
async fn ringing_really_invites_sipd_and_a_busy_answer_falls_back_to_voicemail() {
    // Answered: the INVITE carries the DID, the call SID and Twilio's headers.
    let (port, uas) = sipd_stand_in(200).await;
    let env = Env::start_full(&[], port).await;
    let o = env
        .call(CallScript {
            dial: DialOutcome::Sip { talk_secs: 1 },
            ..from("+15557654321")
        })
        .await;
    assert_eq!(o.sip.first().map(|r| r.code), Some(200), "{o:?}");
    assert!(o.has(|e| *e == Event::Hangup));
    let invite = uas.await.unwrap();
    assert!(
        invite.starts_with(&format!("INVITE sip:{DID}@127.0.0.1:{port} SIP/2.0")),
        "{invite}"
    );
    assert!(
        invite.contains(&format!("X-GoSIP-CallSid: {}", o.call_sid)),
        "{invite}"
    );
    assert!(invite.contains(&format!("X-Twilio-CallSid: {}", o.call_sid)));
    assert!(invite.contains("X-GoSIP-Rule: default"));
    drop(env);

    // Busy (486): the Dial action gets DialCallStatus=busy and answers voicemail.
    let (port, uas) = sipd_stand_in(486).await;
    let env = Env::start_full(&[], port).await;
    let o = env
        .call(CallScript {
            dial: DialOutcome::Sip { talk_secs: 1 },
            record: RecordScript {
                secs: 4,
                transcript: Some("busy line".into()),
                ..RecordScript::default()
            },
            ..from("+15557654321")
        })
        .await;
    assert_eq!(o.sip.first().map(|r| r.code), Some(486));
    assert!(recorded(&o), "{o:?}");
    assert!(!uas.await.unwrap().is_empty());
    assert_eq!(env.cdr(&o.call_sid).await.unwrap().0, "voicemail");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_incoming_webhook_gives_the_same_answer_and_one_cdr() {
    let env = Env::start().await;
    env.block("+15557654321", "exact").await;
    env.settle().await;
    let params: Vec<(String, String)> = [
        ("CallSid", "CA22222222222222222222222222222222"),
        ("AccountSid", e2e::standin::ACCOUNT_SID),
        ("From", "+15557654321"),
        ("To", DID),
        ("CallStatus", "ringing"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let url = format!("{PUBLIC}/api/webhooks/voice/incoming");
    let a = env.s.post_webhook(&url, &params).await.unwrap();
    let b = env.s.post_webhook(&url, &params).await.unwrap();
    assert_eq!(a.0, 200);
    assert_eq!(a, b);
    assert_eq!(
        env.count(
            "SELECT count(*) FROM cdrs WHERE call_sid = 'CA22222222222222222222222222222222'"
        )
        .await,
        1
    );
    assert_eq!(env.count("SELECT count(*) FROM voice_calls").await, 1);
}
