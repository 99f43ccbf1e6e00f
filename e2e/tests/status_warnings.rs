//! The admin's system status says what stops calls although every daemon
//! is up: Twilio not connected after "Skip Twilio", and a number whose
//! emergency address is missing at Twilio (911 with it reaches no local
//! responders), until the admin adds one in Twilio. Set up as a user does:
//! the wizard and System settings through the API; the address through the
//! Twilio stand-in's REST API, as the Twilio console would.

use std::time::Duration;

use e2e::System;
use e2e::standin::Standin;
use serde_json::json;

const MAIN: &str = "+15551230000";

/// Polls the admin health until `ok` holds for its warnings (30 s at most).
async fn warnings_until(
    api: &e2e::Api,
    admin: &str,
    what: &str,
    ok: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let mut last = Vec::new();
    for _ in 0..300 {
        let (_, v, _) = api.call(admin, "GET", "/api/system/health", None).await;
        last = v["warnings"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|w| w.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if ok(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never: {what}; warnings were {last:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_status_warns_while_twilio_is_not_connected_and_while_a_number_has_no_emergency_address()
 {
    // twiliod lists the numbers at Twilio every second here (10 minutes by
    // default); a settings change lists them at once either way.
    let sys = System::start_with(&[("GOSIP_TWILIOD_WARNINGS_EVERY_SECS", "1")])
        .await
        .expect("start");
    let twilio = Standin::start().await.expect("stand-in");
    let api = e2e::Api::new(&sys);
    let token = std::fs::read_to_string(sys.data_dir.join("setup-token")).unwrap();
    // The wizard with "Skip Twilio".
    let (s, v, admin) = api
        .call(
            "",
            "POST",
            "/api/setup",
            Some(json!({"setup_token": token.trim(),
            "admin": {"email": "admin@example.org", "password": "correct horse battery"},
            "did": {"number": MAIN, "name": "Main"}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let w = warnings_until(&api, &admin, "Twilio not connected", |w| {
        w.iter().any(|w| w.starts_with("Twilio is not connected"))
    })
    .await;
    assert_eq!(w.len(), 1, "{w:?}");
    let (_, v, _) = api.call(&admin, "GET", "/api/system/health", None).await;
    assert_eq!(v["twilio_connected"], json!(false), "{v}");
    // Nobody else sees it: the public answer has no warnings.
    let (_, v, _) = api.call("", "GET", "/api/system/health", None).await;
    assert!(v.get("warnings").is_none(), "{v}");
    assert!(v.get("twilio_connected").is_none(), "{v}");

    // A mistyped Auth Token: Twilio refuses it, and the status says so.
    let pn = twilio.add_number_for(MAIN, &sys.base_url());
    let (s, v, _) = api
        .call(
            &admin,
            "PUT",
            "/api/system/config",
            Some(json!({"values": {
                "twilio.account_sid": twilio.account_sid,
                "twilio.auth_token": "not-the-token",
                "twilio.api_base": twilio.base_url,
            }})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let w = warnings_until(&api, &admin, "Twilio refusing the token", |w| {
        w.iter().any(|w| w.starts_with("Twilio refuses"))
    })
    .await;
    assert!(
        !w.iter().any(|w| w.starts_with("Twilio is not connected")),
        "{w:?}"
    );

    // Twilio connected; the number has no emergency address there yet.
    api.connect_twilio(&admin, &twilio, json!({})).await;
    let w = warnings_until(&api, &admin, "the number's missing address", |w| {
        w.iter()
            .any(|w| w.starts_with(MAIN) && w.contains("emergency address"))
    })
    .await;
    assert!(
        !w.iter()
            .any(|w| w.starts_with("Twilio is not connected") || w.starts_with("Twilio refuses")),
        "{w:?}"
    );

    let (_, v, _) = api.call(&admin, "GET", "/api/system/health", None).await;
    assert_eq!(v["twilio_connected"], json!(true), "{v}");

    // The admin adds the address at Twilio: the warning goes.
    let r = reqwest::Client::new()
        .post(format!(
            "{}/IncomingPhoneNumbers/{pn}.json",
            twilio.account_url()
        ))
        .basic_auth(&twilio.account_sid, Some(&twilio.auth_token))
        .form(&[("EmergencyAddressSid", "AD0123456789abcdef0123456789abcdef")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    warnings_until(&api, &admin, "no warnings", |w| w.is_empty()).await;
}
