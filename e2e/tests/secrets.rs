//! "Test a call" shows the TwiML a call would get, with the SIP trunk's
//! password masked, while the TwiML Twilio gets for the real call carries
//! it; no daemon writes that password (or the auth token) to its log.

use e2e::System;
use serde_json::json;

const MAIN: &str = "+15551230000";
const TRUNK_PASSWORD: &str = "Trunk-Secret-7f3a9c";
const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const AUTH_TOKEN: &str = "auth-token-5b1e0d2c";
const PUBLIC: &str = "https://pbx.test";

#[tokio::test(flavor = "multi_thread")]
async fn test_a_call_masks_the_trunk_password_and_no_log_holds_it() {
    let sys = System::start_with(&[("RUST_LOG", "debug")])
        .await
        .expect("start");
    let api = e2e::Api::new(&sys);
    let token = std::fs::read_to_string(sys.data_dir.join("setup-token")).unwrap();
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
    let (s, v, _) = api
        .call(
            &admin,
            "PUT",
            "/api/system/config",
            Some(json!({"values": {
                "twilio.trunk_username": "trunkuser",
                "twilio.trunk_password": TRUNK_PASSWORD,
                "twilio.account_sid": ACCOUNT_SID,
                "twilio.auth_token": AUTH_TOKEN,
                // Twilio's REST API is nobody here: nothing leaves the host.
                "twilio.api_base": format!("http://127.0.0.1:{}", testkit::ports::tcp()),
                "system.public_url": PUBLIC,
            }})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, dev, _) = api
        .call(
            &admin,
            "POST",
            "/api/devices",
            Some(json!({"name": "Desk", "username": "desk100", "extension": "100"})),
        )
        .await;
    assert_eq!(s, 201, "{dev}");
    let (s, r, _) = api
        .call(
            &admin,
            "POST",
            "/api/routes",
            Some(json!({"did_id": 1, "name": "Desk phone", "priority": 1,
            "condition_type": "default", "condition_data": {},
            "action_type": "ring", "action_data": {"device_ids": [dev["id"]]}})),
        )
        .await;
    assert_eq!(s, 201, "{r}");

    let (s, v, _) = api
        .call(
            &admin,
            "POST",
            "/api/routes/test",
            Some(json!({"did": MAIN, "from_number": "+15557654321"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let twiml = v["twiml"].as_str().unwrap_or_default();
    // The call would ring the desk phone through the trunk credentials.
    assert!(
        twiml.contains("<Sip") && twiml.contains("trunkuser"),
        "{twiml}"
    );
    assert!(!v.to_string().contains(TRUNK_PASSWORD), "{v}");
    assert!(twiml.contains("********"), "{twiml}");

    // The call itself, as Twilio places it: a signed webhook through webd's
    // public port. Twilio needs the password to reach our trunk, so the
    // real TwiML carries it.
    let path = "/api/webhooks/voice/incoming";
    let params: Vec<(String, String)> = [
        ("CallSid", "CA0123456789abcdef0123456789abcdef"),
        ("AccountSid", ACCOUNT_SID),
        ("From", "+15557654321"),
        ("To", MAIN),
        ("CallStatus", "ringing"),
        ("Direction", "inbound"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let sig = e2e::standin::signature(AUTH_TOKEN, &format!("{PUBLIC}{path}"), &params);
    let r = reqwest::Client::new()
        .post(format!("{}{path}", sys.base_url()))
        .header("X-Twilio-Signature", sig)
        .form(&params)
        .send()
        .await
        .expect("webhook");
    assert_eq!(r.status().as_u16(), 200);
    let real = r.text().await.unwrap_or_default();
    assert!(
        real.contains(&format!(
            "username=\"trunkuser\" password=\"{TRUNK_PASSWORD}\""
        )),
        "{real}"
    );

    // The settings API masks it too.
    let (_, cfg, _) = api.call(&admin, "GET", "/api/system/config", None).await;
    assert!(!cfg.to_string().contains(TRUNK_PASSWORD), "{cfg}");
    assert!(!cfg.to_string().contains(AUTH_TOKEN), "{cfg}");
    // No daemon wrote either secret to its log, at debug level, after
    // setting them, testing a call and answering one.
    let logs: Vec<_> = std::fs::read_dir(sys.data_dir.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    assert_eq!(logs.len(), e2e::DAEMONS.len(), "{logs:?}");
    for log in logs {
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(!text.is_empty(), "{} is empty", log.display());
        for secret in [TRUNK_PASSWORD, AUTH_TOKEN] {
            assert!(!text.contains(secret), "{} holds {secret}", log.display());
        }
    }
}
