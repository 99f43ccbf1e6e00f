//! The stand-in must not drift from the real Twilio API: its Accounts,
//! Calls, Recordings, Transcriptions and IncomingPhoneNumbers JSON is checked
//! against the schemas of Twilio's OpenAPI spec (twilio/twilio-oai
//! `twilio_api_v2010.json`, extracted into `testdata/twilio-oai/schemas.json`
//! by `extract.py`): every field the schema names is present, no field the
//! schema lacks is added, types, nullability, enums and RFC 2822 dates match.
//! Errors use Twilio's error JSON (not part of the spec).

use e2e::standin::{Recording, Standin, Transcription, rfc2822_now};
use serde_json::{Map, Value};

fn schemas() -> Map<String, Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/twilio-oai/schemas.json"
    );
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("schemas")).expect("json");
    v["schemas"].as_object().expect("schemas object").clone()
}

/// Validates `v` against `schema`; pushes one line per problem.
fn check(schema: &Value, v: &Value, all: &Map<String, Value>, at: &str, errs: &mut Vec<String>) {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or(r);
        let target = all.get(name).unwrap_or_else(|| panic!("unknown $ref {r}"));
        return check(target, v, all, at, errs);
    }
    if v.is_null() {
        let nullable = schema.get("nullable").and_then(Value::as_bool) == Some(true);
        if !nullable && schema.get("type").is_some() {
            errs.push(format!("{at}: null but not nullable"));
        }
        return;
    }
    let ty = schema.get("type").and_then(Value::as_str);
    match ty {
        Some("string") => {
            let Some(s) = v.as_str() else {
                errs.push(format!("{at}: expected string, got {v}"));
                return;
            };
            if let Some(e) = schema.get("enum").and_then(Value::as_array)
                && !e.iter().any(|x| x == v)
            {
                errs.push(format!("{at}: {s:?} not one of {e:?}"));
            }
            if schema.get("format").and_then(Value::as_str) == Some("date-time-rfc-2822")
                && chrono::DateTime::parse_from_rfc2822(s).is_err()
            {
                errs.push(format!("{at}: {s:?} is not an RFC 2822 date"));
            }
        }
        Some("integer") if !v.is_i64() && !v.is_u64() => {
            errs.push(format!("{at}: expected integer, got {v}"))
        }
        Some("number") if !v.is_number() => errs.push(format!("{at}: expected number, got {v}")),
        Some("boolean") if !v.is_boolean() => errs.push(format!("{at}: expected boolean, got {v}")),
        Some("array") => match v.as_array() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    check(&schema["items"], item, all, &format!("{at}[{i}]"), errs);
                }
            }
            None => errs.push(format!("{at}: expected array")),
        },
        Some("object") => {
            let Some(obj) = v.as_object() else {
                errs.push(format!("{at}: expected object"));
                return;
            };
            // Maps without declared properties (uri-map, capabilities) are free-form.
            let Some(props) = schema.get("properties").and_then(Value::as_object) else {
                return;
            };
            for (k, sub) in props {
                match obj.get(k) {
                    Some(val) => check(sub, val, all, &format!("{at}.{k}"), errs),
                    None => errs.push(format!("{at}.{k}: missing (Twilio sends it)")),
                }
            }
            for k in obj.keys() {
                if !props.contains_key(k) {
                    errs.push(format!("{at}.{k}: not in Twilio's schema"));
                }
            }
        }
        _ => {}
    }
}

async fn fetch(
    s: &Standin,
    method: reqwest::Method,
    path: &str,
    form: &[(&str, &str)],
) -> (u16, Value) {
    let r = reqwest::Client::new()
        .request(method, format!("{}{path}", s.account_url()))
        .basic_auth(&s.account_sid, Some(&s.auth_token))
        .form(form)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn standin_rest_responses_match_twilios_openapi_schemas() {
    let all = schemas();
    let s = Standin::start().await.expect("stand-in");
    let pn = s.add_number(
        "+15550001111",
        Some("https://pbx.test/api/webhooks/voice/incoming"),
    );
    s.add_number("+15550002222", None);
    let now = rfc2822_now();
    s.world().recordings.push(Recording {
        sid: "RE0123456789abcdef0123456789abcdef".into(),
        call_sid: "CA0123456789abcdef0123456789abcdef".into(),
        duration: 12,
        status: "completed".into(),
        date_created: now.clone(),
        deleted: false,
    });
    s.world().transcriptions.push(Transcription {
        sid: "TR0123456789abcdef0123456789abcdef".into(),
        recording_sid: "RE0123456789abcdef0123456789abcdef".into(),
        status: "completed".into(),
        text: Some("hello".into()),
        duration: 12,
        date_created: now,
    });

    let mut errs = Vec::new();
    let expect = |name: &str, (status, v): (u16, Value), want: u16, errs: &mut Vec<String>| {
        assert_eq!(status, want, "{name}: {v}");
        let schema = serde_json::json!({"$ref": format!("#/components/schemas/{name}")});
        check(&schema, &v, &all, name, errs);
    };
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;
    let acct = reqwest::Client::new()
        .get(format!("{}.json", s.account_url()))
        .basic_auth(&s.account_sid, Some(&s.auth_token))
        .send()
        .await
        .unwrap();
    let acct_status = acct.status().as_u16();
    expect(
        "api.v2010.account",
        (acct_status, acct.json().await.unwrap()),
        200,
        &mut errs,
    );
    expect(
        "ListIncomingPhoneNumberResponse",
        fetch(
            &s,
            get.clone(),
            "/IncomingPhoneNumbers.json?PageSize=1",
            &[],
        )
        .await,
        200,
        &mut errs,
    );
    expect(
        "api.v2010.account.incoming_phone_number",
        fetch(
            &s,
            post.clone(),
            &format!("/IncomingPhoneNumbers/{pn}.json"),
            &[
                ("VoiceUrl", "https://pbx.test/x"),
                ("SmsUrl", "https://pbx.test/y"),
            ],
        )
        .await,
        200,
        &mut errs,
    );
    let created = fetch(
        &s,
        post.clone(),
        "/Calls.json",
        &[
            ("To", "+15557654321"),
            ("From", "+15550001111"),
            ("Url", "https://pbx.test/twiml"),
        ],
    )
    .await;
    let call_sid = created.1["sid"].as_str().unwrap_or_default().to_owned();
    expect("api.v2010.account.call", created, 201, &mut errs);
    expect(
        "api.v2010.account.call",
        fetch(&s, get.clone(), &format!("/Calls/{call_sid}.json"), &[]).await,
        200,
        &mut errs,
    );
    expect(
        "ListCallResponse",
        fetch(&s, get.clone(), "/Calls.json", &[]).await,
        200,
        &mut errs,
    );
    expect(
        "api.v2010.account.recording",
        fetch(
            &s,
            get.clone(),
            "/Recordings/RE0123456789abcdef0123456789abcdef.json",
            &[],
        )
        .await,
        200,
        &mut errs,
    );
    expect(
        "api.v2010.account.transcription",
        fetch(
            &s,
            get.clone(),
            "/Transcriptions/TR0123456789abcdef0123456789abcdef.json",
            &[],
        )
        .await,
        200,
        &mut errs,
    );
    assert!(errs.is_empty(), "schema violations:\n{}", errs.join("\n"));

    // Paging: PageSize=1 over two numbers.
    let (_, page) = fetch(
        &s,
        get.clone(),
        "/IncomingPhoneNumbers.json?PageSize=1",
        &[],
    )
    .await;
    assert_eq!(page["incoming_phone_numbers"].as_array().unwrap().len(), 1);
    assert!(
        page["next_page_uri"]
            .as_str()
            .unwrap()
            .ends_with("PageSize=1&Page=1")
    );

    // Twilio's error JSON: bad credentials, unknown resource, bad call.
    let r = reqwest::Client::new()
        .get(format!("{}/Calls.json", s.account_url()))
        .basic_auth(&s.account_sid, Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["code"], 20003);
    assert_eq!(e["status"], 401);
    assert_eq!(e["more_info"], "https://www.twilio.com/docs/errors/20003");
    let (st, e) = fetch(
        &s,
        get.clone(),
        "/Recordings/RE00000000000000000000000000000000.json",
        &[],
    )
    .await;
    assert_eq!((st, e["code"].as_i64()), (404, Some(20404)));
    let (st, e) = fetch(
        &s,
        post,
        "/Calls.json",
        &[
            ("To", "+15557654321"),
            ("From", "+15559999999"),
            ("Url", "x"),
        ],
    )
    .await;
    assert_eq!((st, e["code"].as_i64()), (400, Some(21210)));
    // Media: a real WAV of the recording's length, deleted recordings are gone.
    let r = reqwest::Client::new()
        .get(format!(
            "{}/Recordings/RE0123456789abcdef0123456789abcdef.wav",
            s.account_url()
        ))
        .basic_auth(&s.account_sid, Some(&s.auth_token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "audio/x-wav");
    assert_eq!(r.bytes().await.unwrap().len(), 44 + 12 * 16000);
    let (st, _) = fetch(
        &s,
        reqwest::Method::DELETE,
        "/Recordings/RE0123456789abcdef0123456789abcdef.json",
        &[],
    )
    .await;
    assert_eq!(st, 204);
    let (st, _) = fetch(
        &s,
        get,
        "/Recordings/RE0123456789abcdef0123456789abcdef.json",
        &[],
    )
    .await;
    assert_eq!(st, 404);
}

#[test]
fn the_checker_catches_drift() {
    let all = schemas();
    let schema = serde_json::json!({"$ref": "#/components/schemas/api.v2010.account.recording"});
    let mut errs = Vec::new();
    check(
        &schema,
        &serde_json::json!({"status": 123, "duration": 15, "extra": 1}),
        &all,
        "rec",
        &mut errs,
    );
    let text = errs.join("\n");
    assert!(text.contains("rec.status: expected string"), "{text}");
    assert!(text.contains("rec.duration: expected string"), "{text}");
    assert!(text.contains("rec.extra: not in Twilio's schema"), "{text}");
    assert!(text.contains("rec.sid: missing"), "{text}");
    let mut errs = Vec::new();
    check(
        &schema,
        &serde_json::json!({"status": "bogus"}),
        &all,
        "rec",
        &mut errs,
    );
    assert!(errs.iter().any(|e| e.contains("not one of")));
}
