//! Settings and fields do what their labels say, through the five real
//! daemons, the Twilio stand-in (REST, signed webhooks, termination trunk)
//! and baresip phones, everything set up through the REST API as the admin
//! and users would:
//! - a texter on two of our numbers has two threads; a reply leaves from
//!   the thread's number; an admin's API key texts from any number; a
//!   number with SMS off keeps no texts;
//! - a number with voice off rejects calls; an admin's API key places a
//!   click-to-call from a user's device; CDRs name their number and the
//!   device that answered; an internal call to a user on DND is refused.
//!
//! Needs `cargo build --bins` first (the harness runs target/debug/*).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use e2e::System;
use e2e::audio::{Wav, sine};
use e2e::baresip::Baresip;
use e2e::standin::trunk::Trunk;
use e2e::standin::{CallScript, DialOutcome, Event, Standin, scenario};
use serde_json::{Value, json};

const MAIN: &str = "+15551230000";
const SALES: &str = "+15551239999";
const HANDSET: &str = "+15557770001";
const TRUNK_USER: &str = "labels-trunk";
const TRUNK_PASS: &str = "labels-trunk-secret";

struct Env {
    sys: System,
    twilio: Standin,
    trunk: Trunk,
    http: reqwest::Client,
    admin: String,
    root: tempfile::TempDir,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.twilio.shutdown();
    }
}

impl Env {
    /// The system, set up through the API: the wizard (admin, MAIN),
    /// Twilio and trunk settings, SALES typed as a national number.
    async fn start() -> Env {
        let twilio = Standin::start().await.expect("stand-in");
        let trunk = Trunk::start(twilio.clone(), TRUNK_USER, TRUNK_PASS)
            .await
            .expect("trunk");
        // sipd reads devices (and their owners' DND) every second.
        let sys = System::start_with(&[("GOSIP_DEVICE_RELOAD_SECS", "1")])
            .await
            .expect("system");
        let mut env = Env {
            sys,
            twilio,
            trunk,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("client"),
            admin: String::new(),
            root: tempfile::tempdir().expect("tmp"),
        };
        let token = std::fs::read_to_string(env.sys.data_dir.join("setup-token")).unwrap();
        let (s, v, cookie) = env
            .request(
                "POST",
                "/api/setup",
                "",
                Some(json!({"setup_token": token.trim(),
                    "admin": {"email": "admin@example.org", "password": "correct horse battery"},
                    "did": {"number": MAIN, "name": "Main"}})),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        env.admin = cookie;
        let public = env.sys.base_url();
        env.ok(
            200,
            "PUT",
            "/api/system/config",
            json!({"values": {
                "twilio.account_sid": env.twilio.account_sid,
                "twilio.auth_token": env.twilio.auth_token,
                "twilio.api_base": env.twilio.base_url,
                "system.public_url": public,
                "sip.public_address": "127.0.0.1",
                "twilio.trunk_username": TRUNK_USER,
                "twilio.trunk_password": TRUNK_PASS,
                "twilio.termination_uri": env.trunk.addr.to_string(),
            }}),
        )
        .await;
        let sales = env
            .ok(
                201,
                "POST",
                "/api/dids",
                json!({"number": "(555) 123-9999", "name": "Sales"}),
            )
            .await;
        assert_eq!(sales["number"], SALES, "stored in E.164: {sales}");
        assert_eq!(sales["owner_user_id"], Value::Null);
        for n in [MAIN, SALES] {
            env.twilio.add_number_for(n, &public);
        }
        env
    }

    async fn request(
        &self,
        method: &str,
        path: &str,
        auth: &str,
        body: Option<Value>,
    ) -> (u16, Value, String) {
        let mut r = self
            .http
            .request(
                method.parse().unwrap(),
                format!("{}{path}", self.sys.base_url()),
            )
            .header("X-Requested-With", "gosip");
        if let Some(key) = auth.strip_prefix("Bearer ") {
            r = r.bearer_auth(key);
        } else if !auth.is_empty() {
            r = r.header("Cookie", auth);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let res = r.send().await.unwrap();
        let status = res.status().as_u16();
        let cookie = res
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .unwrap_or("")
            .to_owned();
        (status, res.json().await.unwrap_or(Value::Null), cookie)
    }

    /// As the admin; asserts `want`.
    async fn ok(&self, want: u16, method: &str, path: &str, body: Value) -> Value {
        self.ok_as(&self.admin, want, method, path, body).await
    }

    async fn ok_as(&self, auth: &str, want: u16, method: &str, path: &str, body: Value) -> Value {
        let body = (method != "GET").then_some(body);
        let (s, v, _) = self.request(method, path, auth, body).await;
        assert_eq!(s, want, "{method} {path}: {v}");
        v
    }

    async fn get(&self, path: &str) -> Value {
        self.ok(200, "GET", path, Value::Null).await
    }

    /// The admin's new API key, as `Bearer <key>`.
    async fn admin_key(&self) -> String {
        let k = self
            .ok(201, "POST", "/api/api-keys", json!({"name": "script"}))
            .await;
        format!("Bearer {}", k["key"].as_str().expect("key shown once"))
    }

    /// A user through the API; returns (id, session cookie).
    async fn user(&self, email: &str) -> (i64, String) {
        let u = self
            .ok(
                201,
                "POST",
                "/api/users",
                json!({"email": email, "role": "user", "password": "user password 1"}),
            )
            .await;
        let (s, v, cookie) = self
            .request(
                "POST",
                "/api/auth/login",
                "",
                Some(json!({"email": email, "password": "user password 1"})),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        (u["id"].as_i64().unwrap(), cookie)
    }

    /// A texter's message to one of our numbers, through the signed webhook.
    async fn text_in(&self, to: &str, body: &str) {
        let url = format!("{}/api/webhooks/sms/incoming", self.sys.base_url());
        let (_, status, answer) = self
            .twilio
            .send_sms(Some(&url), HANDSET, to, body, vec![])
            .await
            .expect("webhook");
        assert_eq!(status, 200, "{answer}");
    }

    /// Waits for what `f` looks for, up to 20 s of polling.
    async fn until<T>(&self, what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(v) = f().await {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{what}\n--- twiliod\n{}\n--- sipd\n{}",
                self.sys.log("twiliod"),
                self.sys.log("sipd")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the stand-in sent a text `body` to HANDSET; returns its
    /// sender.
    async fn sent_from(&self, body: &str) -> String {
        self.until(&format!("Twilio never sent {body:?}"), async || {
            self.twilio
                .sent_messages()
                .into_iter()
                .find(|m| m.to == HANDSET && m.body == body)
                .map(|m| m.from)
        })
        .await
    }

    /// A baresip phone for a device made through the API.
    async fn phone(&self, device: &Value, password: &str, answer: &str) -> Baresip {
        let name = device["username"].as_str().unwrap();
        let sip = self.sys.sip_addr();
        let account = format!(
            "<sip:{name}@{sip};transport=udp>;auth_pass={password};regint=300;audio_codecs=PCMU;answermode={answer}"
        );
        let mut b = Baresip::spawn(
            self.root.path(),
            name,
            &account,
            &tone(self.root.path()),
            120,
        );
        b.connect().await;
        let path = format!("/api/devices/{}", device["id"]);
        self.until(&format!("{name} never registered"), async || {
            (self.get(&path).await["registered"] == true).then_some(())
        })
        .await;
        b
    }

    async fn device(&self, name: &str, ext: &str, owner: i64) -> (Value, String) {
        let d = self
            .ok(
                201,
                "POST",
                "/api/devices",
                json!({"name": name, "username": name, "extension": ext, "user_id": owner}),
            )
            .await;
        let pw = d["password"].as_str().unwrap().to_owned();
        (d, pw)
    }

    /// The newest CDR (through the API) matching `f`, once it has ended.
    async fn cdr(&self, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        self.until(what, async || {
            let list = self.get("/api/cdrs?per_page=50").await;
            list["items"]
                .as_array()?
                .iter()
                .find(|c| f(c) && !c["ended_at"].is_null())
                .cloned()
        })
        .await
    }
}

fn tone(dir: &Path) -> PathBuf {
    let p = dir.join("tone.wav");
    if !p.exists() {
        std::fs::write(&p, Wav::encode(8000, &[sine(8000, 440.0, 120.0, 0.5)])).unwrap();
    }
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn texts_thread_per_number_reply_from_it_admin_keys_use_any_number_and_sms_off_keeps_none() {
    let env = Env::start().await;
    env.text_in(MAIN, "to main").await;
    env.text_in(SALES, "to sales").await;

    // Two threads with the same person, one per number of ours.
    let convs = env
        .until("two conversations", async || {
            let c = env.get("/api/messages/conversations").await;
            (c["total"] == 2).then_some(c)
        })
        .await;
    let mut ours: Vec<&str> = convs["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["peer"], HANDSET);
            c["our_number"].as_str().unwrap()
        })
        .collect();
    ours.sort();
    assert_eq!(ours, [MAIN, SALES]);
    let thread = env
        .get(&format!(
            "/api/messages?peer=%2B{}&our_number=%2B{}",
            &HANDSET[1..],
            &SALES[1..]
        ))
        .await;
    let bodies: Vec<&str> = thread["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["to sales"]);

    // The reply goes from the thread's number (the texter typed nationally).
    env.ok(
        201,
        "POST",
        "/api/messages",
        json!({"to": "555-777-0001", "from": SALES, "body": "sales here"}),
    )
    .await;
    assert_eq!(env.sent_from("sales here").await, SALES);

    // An admin's key may text from a number the admin does not own.
    let key = env.admin_key().await;
    let v = env
        .ok_as(
            &key,
            202,
            "POST",
            "/api/external/sms",
            json!({"to": HANDSET, "from": SALES, "body": "from a script"}),
        )
        .await;
    assert!(v["message_id"].as_i64().is_some(), "{v}");
    assert_eq!(env.sent_from("from a script").await, SALES);
    // A user's key still may not.
    let (_, user) = env.user("u@example.org").await;
    let k = env
        .ok_as(&user, 201, "POST", "/api/api-keys", json!({"name": "mine"}))
        .await;
    let user_key = format!("Bearer {}", k["key"].as_str().unwrap());
    env.ok_as(
        &user_key,
        422,
        "POST",
        "/api/external/sms",
        json!({"to": HANDSET, "from": SALES, "body": "not mine"}),
    )
    .await;

    // SMS off: a text to SALES is neither stored nor forwarded; MAIN still
    // takes them.
    let sales = env.get("/api/dids?per_page=10").await["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["number"] == SALES)
        .cloned()
        .unwrap();
    env.ok(
        200,
        "PUT",
        &format!("/api/dids/{}", sales["id"]),
        json!({"sms_enabled": false}),
    )
    .await;
    env.text_in(SALES, "while off").await;
    env.text_in(MAIN, "after it").await;
    let all = env
        .until("the text to MAIN is stored", async || {
            let m = env.get("/api/messages?direction=inbound&per_page=50").await;
            let has = m["items"]
                .as_array()?
                .iter()
                .any(|x| x["body"] == "after it");
            has.then_some(m)
        })
        .await;
    assert!(
        !all["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["body"] == "while off"),
        "{all}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_voice_off_rejects_admin_key_calls_cdrs_name_number_and_answerer_and_dnd_refuses() {
    let env = Env::start().await;
    let dids = env.get("/api/dids?per_page=10").await;
    let id_of = |n: &str| {
        dids["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["number"] == n)
            .map(|d| d["id"].as_i64().unwrap())
            .unwrap()
    };
    let (main_id, sales_id) = (id_of(MAIN), id_of(SALES));

    // Voice off: Twilio is told to reject, nobody rings.
    env.ok(
        200,
        "PUT",
        &format!("/api/dids/{sales_id}"),
        json!({"voice_enabled": false}),
    )
    .await;
    let o = scenario::run(
        &env.twilio,
        &CallScript {
            from: HANDSET.into(),
            to: SALES.into(),
            ..CallScript::default()
        },
    )
    .await
    .expect("call");
    assert!(
        o.events.iter().any(|e| matches!(e, Event::Reject { .. })),
        "{o:?}"
    );
    assert!(!o.events.iter().any(|e| matches!(e, Event::Dial { .. })));
    let c = env
        .cdr("the rejected call's CDR", |c| c["to_number"] == SALES)
        .await;
    assert_eq!(
        (&c["disposition"], &c["rule_name"], &c["did_id"]),
        (
            &json!("rejected"),
            &json!("voice_disabled"),
            &json!(sales_id)
        )
    );

    // A blocklist prefix typed without "+" blocks the callers it names
    // (they arrive in E.164), once twiliod has the new rules.
    let b = env
        .ok(
            201,
            "POST",
            "/api/blocklist",
            json!({"pattern": "1900", "pattern_type": "prefix"}),
        )
        .await;
    assert_eq!(b["pattern"], "+1900");
    let premium = CallScript {
        from: "+19005550100".into(),
        to: MAIN.into(),
        ..CallScript::default()
    };
    let sid = env
        .until("the 1900 caller is never blocked", async || {
            let o = scenario::run(&env.twilio, &premium).await.ok()?;
            let rejected = o.events.iter().any(|e| matches!(e, Event::Reject { .. }));
            rejected.then_some(o.call_sid)
        })
        .await;
    let c = env
        .cdr("the blocked call's CDR", |c| c["call_sid"] == sid.as_str())
        .await;
    assert_eq!(c["disposition"], "blocked", "{c}");

    // Two devices of one user; MAIN rings its owner's devices.
    let (uid, user) = env.user("u@example.org").await;
    env.ok(
        200,
        "PUT",
        &format!("/api/dids/{main_id}"),
        json!({"owner_user_id": uid}),
    )
    .await;
    let (desk, desk_pw) = env.device("desk", "201", uid).await;
    let (cell, cell_pw) = env.device("cell", "202", uid).await;
    let desk_phone = env.phone(&desk, &desk_pw, "manual").await;
    let mut cell_phone = env.phone(&cell, &cell_pw, "auto").await;

    // Forked inbound call: the phone that answers owns the CDR.
    let o = scenario::run(
        &env.twilio,
        &CallScript {
            from: HANDSET.into(),
            to: MAIN.into(),
            dial: DialOutcome::Sip { talk_secs: 1 },
            ..CallScript::default()
        },
    )
    .await
    .expect("call");
    assert!(
        o.events.iter().any(|e| matches!(e, Event::Dial { .. })),
        "{o:?}"
    );
    let c = env
        .cdr("the answered inbound CDR", |c| {
            c["to_number"] == MAIN && c["disposition"] == "answered"
        })
        .await;
    assert_eq!(c["device_id"], cell["id"], "{c}");
    assert_eq!(
        (&c["user_id"], &c["did_id"]),
        (&json!(uid), &json!(main_id))
    );
    // The stand-in hangs up after talking.
    let _ = cell_phone
        .event("CALL_CLOSED", Duration::from_secs(15))
        .await;

    // An admin's key places a click-to-call from the user's device.
    let key = env.admin_key().await;
    let v = env
        .ok_as(
            &key,
            202,
            "POST",
            "/api/external/call",
            json!({"to": "555-777-0001", "device_id": cell["id"]}),
        )
        .await;
    assert!(v["call_id"].as_str().is_some_and(|c| !c.is_empty()), "{v}");
    let call = env
        .until("the trunk never got the call", async || {
            env.trunk
                .calls()
                .into_iter()
                .find(|c| c.to.contains(&HANDSET[1..]) && c.code == 200)
        })
        .await;
    assert!(call.from.contains(&MAIN[1..]), "caller ID: {call:?}");
    let _ = cell_phone.command("hangup", "").await;
    let c = env
        .cdr("the click-to-call CDR", |c| {
            c["direction"] == "outbound" && c["to_number"] == HANDSET
        })
        .await;
    assert_eq!(
        (&c["did_id"], &c["device_id"]),
        (&json!(main_id), &cell["id"])
    );

    // DND: the other phone's internal call to the user is refused; off
    // again, it rings.
    let (admin_dev, admin_pw) = {
        let d = env
            .ok(
                201,
                "POST",
                "/api/devices",
                json!({"name": "front", "username": "front", "extension": "100"}),
            )
            .await;
        let pw = d["password"].as_str().unwrap().to_owned();
        (d, pw)
    };
    let mut front = env.phone(&admin_dev, &admin_pw, "manual").await;
    env.ok_as(&user, 200, "PUT", "/api/dnd", json!({"enabled": true}))
        .await;
    let sip = env.sys.sip_addr();
    env.until("the call to a user on DND is refused", async || {
        front
            .command("dial", &format!("sip:202@{sip}"))
            .await
            .ok()?;
        let closed = front
            .event("CALL_CLOSED", Duration::from_secs(10))
            .await
            .ok()?;
        closed.to_string().contains("480").then_some(())
    })
    .await;
    env.ok_as(&user, 200, "PUT", "/api/dnd", json!({"enabled": false}))
        .await;
    env.until("the call rings again without DND", async || {
        front
            .command("dial", &format!("sip:202@{sip}"))
            .await
            .ok()?;
        let est = front
            .event("CALL_ESTABLISHED", Duration::from_secs(10))
            .await;
        let _ = front.command("hangup", "").await;
        est.ok()
    })
    .await;
    // System-wide DND (the admin's switch): no phone rings for an internal
    // call either; off again, it rings.
    env.ok(200, "PUT", "/api/dnd", json!({"system": true}))
        .await;
    env.until(
        "an internal call under system-wide DND is refused",
        async || {
            front
                .command("dial", &format!("sip:202@{sip}"))
                .await
                .ok()?;
            let closed = front
                .event("CALL_CLOSED", Duration::from_secs(10))
                .await
                .ok()?;
            closed.to_string().contains("480").then_some(())
        },
    )
    .await;
    env.ok(200, "PUT", "/api/dnd", json!({"system": false}))
        .await;
    env.until("the call rings again without system DND", async || {
        front
            .command("dial", &format!("sip:202@{sip}"))
            .await
            .ok()?;
        let est = front
            .event("CALL_ESTABLISHED", Duration::from_secs(10))
            .await;
        let _ = front.command("hangup", "").await;
        est.ok()
    })
    .await;
    for b in [desk_phone, cell_phone, front] {
        b.quit().await;
    }
}
