//! "Set up Twilio for me" through the five real daemons and the Twilio
//! stand-in, as the admin does it (the API the wizard and the System screen
//! call): the Elastic SIP Trunk "GoSIP" is made with a credential list
//! holding GoSIP's own digest user, which sipd then uses: a baresip phone's
//! call to an outside number is accepted by the stand-in's termination side
//! with exactly those credentials (the trunk's fixed ones are wrong on
//! purpose). A second run keeps what is right and adds the origination URI
//! once a public address is known.
//!
//! Needs `cargo build --bins` first (the harness runs target/debug/*).

use std::time::{Duration, Instant};

use e2e::System;
use e2e::standin::Standin;
use e2e::standin::trunk::Trunk;
use serde_json::json;

const MAIN: &str = "+15551230000";
const HANDSET: &str = "+15557770001";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn set_up_twilio_makes_the_trunk_and_its_credentials_and_outbound_calls_use_them() {
    let twilio = Standin::start().await.expect("stand-in");
    // The termination side knows no usable fixed user: only credentials
    // made through the REST API get a call through.
    let trunk = Trunk::start(twilio.clone(), "nobody-fixed", "Not-the-one-0")
        .await
        .expect("trunk");
    let sys = System::start_with(&[("GOSIP_DEVICE_RELOAD_SECS", "1")])
        .await
        .expect("system");
    let api = e2e::Api::new(&sys);
    let base = sys.base_url();
    let admin = api.setup(&sys, MAIN).await;
    let public = base.clone();
    // The termination address is set to the stand-in's trunk on loopback
    // (a real one would be the trunk's pstn.twilio.com name, which a test
    // must not resolve); no public address yet.
    api.connect_twilio(
        &admin,
        &twilio,
        json!({"system.public_url": public, "twilio.termination_uri": trunk.addr.to_string()}),
    )
    .await;
    // The number exists at Twilio but points elsewhere, and the wizard
    // stored it without its Twilio SID: the set-up finds it by number.
    let sid = twilio.add_number_for(MAIN, "http://127.0.0.1:9");

    // First run: everything is made.
    let (s, r, _) = api
        .call(&admin, "POST", "/api/system/twilio/setup", None)
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["ok"], true, "{r}");
    let done: Vec<String> = serde_json::from_value(r["done"].clone()).unwrap();
    let said = |needle: &str| done.iter().any(|d| d.contains(needle));
    assert!(said("Created the SIP trunk \"GoSIP\""), "{done:#?}");
    assert!(said("Created the credential list \"GoSIP\""), "{done:#?}");
    assert!(said("Kept the termination address you set"), "{done:#?}");
    assert!(said("Skipped the origination URI"), "{done:#?}");
    assert!(
        said(&format!("{MAIN}: calls and texts now come to {public}")),
        "{done:#?}"
    );
    let (_, dids, _) = api.call(&admin, "GET", "/api/dids", None).await;
    assert_eq!(dids["items"][0]["twilio_sid"], sid.as_str(), "{dids}");
    let (user, pass, domain) = {
        let w = twilio.world();
        let t = &w.trunking.trunks[0];
        assert!(t.domain_name.starts_with("gosip-") && t.domain_name.ends_with(".pstn.twilio.com"));
        assert_eq!(
            t.credential_lists.len(),
            1,
            "the list is bound to the trunk"
        );
        let list = &w.trunking.credential_lists[0];
        assert_eq!(list.sid, t.credential_lists[0]);
        assert_eq!(list.credentials.len(), 1);
        let n = w.numbers.iter().find(|n| n.phone_number == MAIN).unwrap();
        assert_eq!(
            n.voice_url.as_deref(),
            Some(format!("{public}/api/webhooks/voice/incoming").as_str())
        );
        (
            list.credentials[0].username.clone(),
            list.credentials[0].password.clone(),
            t.domain_name.clone(),
        )
    };
    // webd stored the new credentials (the API shows the user, never the
    // password); the secret in config is the one at Twilio.
    let (_, cfg, _) = api.call(&admin, "GET", "/api/system/config", None).await;
    assert_eq!(
        cfg["values"]["twilio.trunk_username"],
        user.as_str(),
        "{cfg}"
    );
    assert_ne!(cfg["values"]["twilio.trunk_password"], pass.as_str());

    // A phone's call to an outside number goes through with them.
    let root = tempfile::tempdir().unwrap();
    let mut phone = api
        .udp_phone(&admin, &sys, root.path(), ("desk", "201"), 440.0)
        .await;
    let sip = sys.sip_addr();
    phone
        .command("dial", &format!("sip:{HANDSET}@{sip}"))
        .await
        .expect("dial");
    let deadline = Instant::now() + Duration::from_secs(20);
    let answered = loop {
        if let Some(c) = trunk
            .calls()
            .into_iter()
            .find(|c| c.to.contains(&HANDSET[1..]) && c.code != 407)
        {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "the trunk never got the call\n--- sipd\n{}",
            sys.log("sipd")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        answered.code, 200,
        "accepted with GoSIP's new credentials: {answered:?}"
    );
    let _ = phone.command("hangup", "").await;
    phone.quit().await;

    // Second run, now with a public address: nothing is made twice, the
    // credentials are kept, the origination URI is added.
    let (s, v, _) = api
        .call(
            &admin,
            "PUT",
            "/api/system/config",
            Some(json!({"values": {"sip.public_address": "203.0.113.7"}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, r, _) = api
        .call(&admin, "POST", "/api/system/twilio/setup", None)
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["ok"], true, "{r}");
    let done: Vec<String> = serde_json::from_value(r["done"].clone()).unwrap();
    let said = |needle: &str| done.iter().any(|d| d.contains(needle));
    assert!(
        said(&format!("Found the SIP trunk \"GoSIP\" ({domain})")),
        "{done:#?}"
    );
    assert!(
        said(&format!("already knows GoSIP's user \"{user}\"")),
        "{done:#?}"
    );
    assert!(said("origination URI to sip:203.0.113.7:"), "{done:#?}");
    {
        let w = twilio.world();
        assert_eq!(w.trunking.trunks.len(), 1);
        assert_eq!(w.trunking.credential_lists.len(), 1);
        assert_eq!(w.trunking.credential_lists[0].credentials.len(), 1);
        assert_eq!(w.trunking.credential_lists[0].credentials[0].password, pass);
        assert_eq!(w.trunking.trunks[0].origination_urls.len(), 1);
    }

    // Wrong Twilio credentials: a plain answer, nothing changed.
    let (s, _, _) = api
        .call(
            &admin,
            "PUT",
            "/api/system/config",
            Some(json!({"values": {"twilio.auth_token": "wrong-token-0123456789abcdef0123"}})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, r, _) = api
        .call(&admin, "POST", "/api/system/twilio/setup", None)
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["ok"], false, "{r}");
    assert!(r["error"].as_str().unwrap().contains("20003"), "{r}");
    twilio.shutdown();
}
