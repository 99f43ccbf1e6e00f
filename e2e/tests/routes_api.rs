//! Routing rules made the way a user makes them (as an admin, through
//! webd's `POST /api/routes`) do what they say when Twilio's signed
//! incoming-call webhook arrives at webd's public port: every kind of
//! condition and action, checked in the TwiML twiliod answers. "Test a
//! call" (`POST /api/routes/test`) answers through the same decision path.
//! Needs `cargo build --bins` first.

use std::time::Duration;

use e2e::System;
use e2e::standin::{CallOutcome, CallScript, DialOutcome, Event, Standin};
use serde_json::{Value, json};

const DID: &str = "+15551230000";

/// The admin's session on webd's API.
struct Api {
    api: e2e::Api,
    cookie: String,
}

impl Api {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let (s, v, _) = self.api.call(&self.cookie, method, path, body).await;
        (s, v)
    }

    async fn ok(&self, method: &str, path: &str, body: Value) -> Value {
        let (s, v) = self.call(method, path, Some(body.clone())).await;
        assert!((200..300).contains(&s), "{method} {path} {body}: {s} {v}");
        v
    }

    /// Settings changed on the settings screen (webd reloads the daemons).
    async fn settings(&self, values: Value) {
        self.ok("PUT", "/api/system/config", json!({ "values": values }))
            .await;
    }

    /// One rule, as the rule builder sends it.
    async fn rule(
        &self,
        name: &str,
        priority: i64,
        cond: (&str, Value),
        act: (&str, Value),
    ) -> i64 {
        self.ok(
            "POST",
            "/api/routes",
            json!({"name": name, "priority": priority, "did_id": null, "enabled": true,
                   "condition_type": cond.0, "condition_data": cond.1,
                   "action_type": act.0, "action_data": act.1}),
        )
        .await["id"]
            .as_i64()
            .unwrap()
    }
}

/// The setup wizard as an operator runs it; returns the admin's session.
async fn setup(sys: &System) -> Api {
    let api = e2e::Api::new(sys);
    let cookie = api.setup(sys, DID).await;
    Api { api, cookie }
}

fn from(n: &str) -> CallScript {
    CallScript {
        from: n.into(),
        to: DID.into(),
        ..CallScript::default()
    }
}

/// `(noun, target, timeout)` of the first `<Dial>`.
fn dialed(o: &CallOutcome) -> Option<(String, String, u32)> {
    o.events.iter().find_map(|e| match e {
        Event::Dial {
            target,
            noun,
            timeout,
            ..
        } => Some((noun.clone(), target.clone(), *timeout)),
        _ => None,
    })
}

/// The `X-GoSIP-Devices` sipd is told to ring.
fn devices(o: &CallOutcome) -> String {
    let (noun, target, _) = dialed(o).unwrap_or_else(|| panic!("no dial: {o:?}"));
    assert_eq!(noun, "Sip", "{target}");
    target
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("X-GoSIP-Devices="))
        .unwrap_or_else(|| panic!("no devices header in {target}"))
        .to_owned()
}

fn said(o: &CallOutcome, text: &str) -> bool {
    o.has(|e| matches!(e, Event::Say { text: t } if t == text))
}

fn rejected(o: &CallOutcome) -> Option<String> {
    o.events.iter().find_map(|e| match e {
        Event::Reject { reason } => Some(reason.clone()),
        _ => None,
    })
}

fn recorded(o: &CallOutcome) -> bool {
    o.has(|e| matches!(e, Event::Record { .. }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_rule_made_through_the_api_decides_the_call_as_it_says() {
    let sys = System::start().await.expect("system");
    let s = Standin::start().await.expect("stand-in");
    let public = sys.base_url();
    let api = setup(&sys).await;
    // Twilio credentials and the public URL webhooks are signed for.
    api.api
        .connect_twilio(
            &api.cookie,
            &s,
            json!({"system.public_url": public, "sip.public_address": "127.0.0.1"}),
        )
        .await;
    s.add_number_for(DID, &public);

    // The admin owns the number: their desk phone is "the owner's devices";
    // the lobby phone is the receptionist's.
    let me = api.call("GET", "/api/auth/me", None).await.1;
    let admin_id = me["id"].as_i64().or(me["user"]["id"].as_i64()).expect("me");
    let desk = api
        .ok(
            "POST",
            "/api/devices",
            json!({"name": "Desk", "user_id": admin_id}),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let reception = api
        .ok(
            "POST",
            "/api/users",
            json!({"email": "reception@example.org", "role": "user", "password": "user password 1"}),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let lobby = api
        .ok(
            "POST",
            "/api/devices",
            json!({"name": "Lobby", "user_id": reception}),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    assert_ne!(desk, lobby);
    for (list, number) in [("vip", "+15552000001"), ("known", "+15552000002")] {
        api.ok(
            "POST",
            "/api/caller-lists",
            json!({"list": list, "number": number, "name": list}),
        )
        .await;
    }

    let num = |n: &str| ("callerid", json!({"match": "numbers", "numbers": [n]}));
    api.rule(
        "Lobby",
        1,
        num("+15551000001"),
        ("ring", json!({"device_ids": [lobby], "timeout": 20})),
    )
    .await;
    api.rule(
        "Cell",
        2,
        num("+15551000002"),
        ("forward", json!({"number": "+15559990000"})),
    )
    .await;
    api.rule(
        "VM",
        3,
        num("+15551000003"),
        ("voicemail", json!({"greeting": "Leave it here"})),
    )
    .await;
    api.rule(
        "Moved",
        4,
        num("+15551000004"),
        ("announcement", json!({"text": "We moved"})),
    )
    .await;
    api.rule(
        "Busy",
        5,
        num("+15551000005"),
        ("reject", json!({"reason": "busy"})),
    )
    .await;
    api.rule(
        "No",
        6,
        num("+15551000006"),
        ("reject", json!({"reason": "rejected"})),
    )
    .await;
    api.rule(
        "Premium",
        7,
        ("callerid", json!({"match": "prefix", "prefix": "+1900"})),
        ("ring", json!({"device_ids": [lobby], "owner": true})),
    )
    .await;
    api.rule(
        "VIP",
        8,
        ("callerid", json!({"match": "vip"})),
        ("forward", json!({"number": "+15559990001"})),
    )
    .await;
    api.rule(
        "Known",
        9,
        ("callerid", json!({"match": "known"})),
        ("voicemail", json!({})),
    )
    .await;
    api.rule(
        "Hidden",
        10,
        ("callerid", json!({"match": "anonymous"})),
        (
            "announcement",
            json!({"text": "Please call with your number shown"}),
        ),
    )
    .await;
    let strangers = api
        .rule(
            "Strangers",
            11,
            ("callerid", json!({"match": "unknown"})),
            ("ring", json!({"device_ids": [], "owner": true})),
        )
        .await;
    // twiliod's rules cache polls the database every 250 ms.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let call = |n: &'static str| {
        let s = &s;
        async move {
            e2e::standin::scenario::run(s, &from(n))
                .await
                .expect("scenario")
        }
    };

    // "Ring device 2" rings exactly that device, for as long as it says.
    let o = call("+15551000001").await;
    assert_eq!(devices(&o), lobby.to_string());
    assert_eq!(dialed(&o).unwrap().2, 20);
    let o = e2e::standin::scenario::run(
        &s,
        &CallScript {
            dial: DialOutcome::Answered { secs: 42 },
            ..from("+15551000002")
        },
    )
    .await
    .expect("scenario");
    let (noun, target, _) = dialed(&o).expect("forwards");
    assert_eq!((noun.as_str(), target.as_str()), ("Number", "+15559990000"));
    // The call history says which rule decided.
    let cdr = |sid: String| {
        let api = &api;
        async move {
            let (st, list) = api.call("GET", "/api/cdrs?per_page=100", None).await;
            assert_eq!(st, 200, "{list}");
            let c = list["items"]
                .as_array()
                .and_then(|a| a.iter().find(|c| c["call_sid"] == sid.as_str()))
                .cloned()
                .unwrap_or_else(|| panic!("no CDR for {sid}: {list}"));
            (
                c["disposition"].as_str().unwrap_or_default().to_owned(),
                c["rule_name"].as_str().unwrap_or_default().to_owned(),
            )
        }
    };
    let (disposition, rule) = cdr(o.call_sid.clone()).await;
    assert_eq!(disposition, "answered");
    assert!(rule.ends_with(":Cell"), "{rule}");
    let o = call("+15551000003").await;
    assert!(said(&o, "Leave it here") && recorded(&o), "{o:?}");
    assert!(dialed(&o).is_none());
    let o = call("+15551000004").await;
    assert!(
        said(&o, "We moved") && o.has(|e| *e == Event::Hangup),
        "{o:?}"
    );
    let o = call("+15551000005").await;
    assert_eq!(rejected(&o).as_deref(), Some("busy"));
    assert_eq!(cdr(o.call_sid.clone()).await.0, "rejected");
    assert_eq!(
        rejected(&call("+15551000006").await).as_deref(),
        Some("rejected")
    );
    assert_eq!(
        devices(&call("+19005550100").await),
        format!("{lobby},{desk}")
    );
    let (noun, target, _) = dialed(&call("+15552000001").await).expect("VIP forwards");
    assert_eq!((noun.as_str(), target.as_str()), ("Number", "+15559990001"));
    let o = call("+15552000002").await;
    assert!(recorded(&o) && dialed(&o).is_none(), "{o:?}");
    let o = call("anonymous").await;
    assert!(said(&o, "Please call with your number shown"), "{o:?}");
    assert_eq!(devices(&call("+15553000001").await), desk.to_string());

    // Time rules and the default rule, for callers no earlier rule takes.
    api.ok(
        "PUT",
        &format!("/api/routes/{strangers}"),
        json!({"enabled": false}),
    )
    .await;
    let today = chrono::Utc::now().date_naive();
    let days: Vec<String> = [-1, 0, 1]
        .iter()
        .map(|d| (today + chrono::Duration::days(*d)).to_string())
        .collect();
    let holiday = api
        .rule(
            "Holiday",
            20,
            ("time", json!({"when": "holidays", "holidays": days})),
            ("announcement", json!({"text": "Closed today"})),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(said(&call("+15553000001").await, "Closed today"));
    api.ok(
        "PUT",
        &format!("/api/routes/{holiday}"),
        json!({"enabled": false}),
    )
    .await;
    api.rule(
        "Weekend",
        21,
        ("time", json!({"when": "weekends"})),
        ("voicemail", json!({"greeting": "Weekend"})),
    )
    .await;
    api.rule(
        "Office",
        22,
        ("time", json!({"when": "business_hours"})),
        ("ring", json!({"device_ids": [lobby]})),
    )
    .await;
    api.rule(
        "Night",
        23,
        ("time", json!({"when": "custom", "days": ["mon", "tue", "wed", "thu", "fri"], "start": "22:00", "end": "06:00"})),
        ("reject", json!({"reason": "busy"})),
    )
    .await;
    api.rule(
        "Evening",
        24,
        ("time", json!({"when": "after_hours"})),
        ("voicemail", json!({"greeting": "Evening"})),
    )
    .await;
    api.rule(
        "Catch-all",
        25,
        ("default", json!({})),
        ("announcement", json!({"text": "Never"})),
    )
    .await;
    // The clock is chosen through "test a call": UTC, business hours 9-17 Mon-Fri.
    let test = |at: &'static str, caller: &'static str| {
        let api = &api;
        async move {
            api.ok(
                "POST",
                "/api/routes/test",
                json!({"did": DID, "from_number": caller, "at": at}),
            )
            .await
        }
    };
    let cases = [
        ("2026-11-28T12:00:00Z", "voicemail", ":Weekend", "Weekend"),
        (
            "2026-11-25T10:00:00Z",
            "ring",
            ":Office",
            "X-GoSIP-Devices=",
        ),
        (
            "2026-11-25T23:00:00Z",
            "reject",
            ":Night",
            "<Reject reason=\"busy\"",
        ),
        ("2026-11-25T19:00:00Z", "voicemail", ":Evening", "Evening"),
    ];
    for (at, action, rule, in_twiml) in cases {
        let r = test(at, "+15553000001").await;
        assert_eq!(r["action"], action, "{at}: {r}");
        assert!(r["rule"].as_str().unwrap().ends_with(rule), "{at}: {r}");
        assert!(r["twiml"].as_str().unwrap().contains(in_twiml), "{at}: {r}");
    }
    let office = test("2026-11-25T10:00:00Z", "+15553000001").await;
    assert!(
        office["twiml"]
            .as_str()
            .unwrap()
            .contains(&format!("X-GoSIP-Devices={lobby}&")),
        "{office}"
    );
    // "Test a call" and a real call give the same document for the same rule.
    let r = test("", "+15551000001").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let o = call("+15551000001").await;
    let strip_sid = |d: &str| {
        d.split("CallSid=")
            .enumerate()
            .map(|(i, p)| {
                if i == 0 {
                    p
                } else {
                    p.split_once('&').map_or("", |x| x.1)
                }
            })
            .collect::<String>()
    };
    assert_eq!(
        strip_sid(r["twiml"].as_str().unwrap()),
        strip_sid(&o.documents[0]),
        "test-a-call and the real call differ"
    );
    // The default rule catches what nothing else does: on a weekday in
    // business hours with "Office" off.
    let (_, rows) = api.call("GET", "/api/routes?per_page=100", None).await;
    let office_id = rows["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "Office")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    api.ok(
        "PUT",
        &format!("/api/routes/{office_id}"),
        json!({"enabled": false}),
    )
    .await;
    let r = test("2026-11-25T10:00:00Z", "+15553000001").await;
    assert!(r["rule"].as_str().unwrap().ends_with(":Catch-all"), "{r}");
    assert!(r["twiml"].as_str().unwrap().contains("Never"), "{r}");
    drop(s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_call_follows_local_business_hours_across_the_dst_change() {
    let sys = System::start().await.expect("system");
    let api = setup(&sys).await;
    api.settings(json!({"system.timezone": "America/New_York"}))
        .await;
    let pool = proto::db::open(&sys.data_dir).await.expect("db");
    api.rule(
        "Office",
        1,
        ("time", json!({"when": "business_hours"})),
        ("ring", json!({"device_ids": [], "owner": true})),
    )
    .await;
    api.rule(
        "Night",
        2,
        ("time", json!({"when": "after_hours"})),
        ("voicemail", json!({})),
    )
    .await;
    let at = |t: &'static str| {
        let api = &api;
        async move {
            api.ok(
                "POST",
                "/api/routes/test",
                json!({"did": DID, "from_number": "+15557654321", "at": t}),
            )
            .await
        }
    };
    // Friday before the change (EST, UTC-5): 08:30 closed, 09:00 open.
    let closed = at("2026-03-06T13:30:00Z").await;
    assert_eq!(closed["action"], "voicemail");
    assert!(
        closed["rule"].as_str().unwrap().ends_with(":Night"),
        "{closed}"
    );
    assert_eq!(at("2026-03-06T14:00:00Z").await["action"], "ring");
    // Monday after (EDT, UTC-4): 09:00 local is 13:00 UTC.
    assert_eq!(at("2026-03-09T13:00:00Z").await["action"], "ring");
    assert_eq!(at("2026-03-09T12:59:00Z").await["action"], "voicemail");
    let r = at("2026-03-09T15:00:00Z").await;
    assert!(
        r["twiml"]
            .as_str()
            .unwrap()
            .contains("<Dial timeout=\"30\""),
        "{r}"
    );
    // Side-effect free.
    let n: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM cdrs) + (SELECT count(*) FROM voice_calls)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(n, 0);
}
