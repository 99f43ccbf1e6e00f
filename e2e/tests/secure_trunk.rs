//! Twilio's "secure trunking" through the five real daemons: the admin
//! writes a `sips:` termination URI in the settings, and a baresip phone's
//! call to an outside number goes to the stand-in's trunk over SIP over
//! TLS, whose certificate sipd checks (the stand-in's root is handed to
//! sipd with `GOSIP_TRUNK_CA_FILE`, as a private trunk's would be), with
//! SRTP media both ways. The stand-in counts only audio that authenticates
//! with the keys exchanged in the TLS-protected SDP, so the tone check
//! proves both the TLS signalling and the SRTP. A trunk whose certificate
//! does not chain to a trusted root never sees the call.
//!
//! Needs `cargo build --bins` first (the harness runs target/debug/*).

use std::time::{Duration, Instant};

use e2e::System;
use e2e::audio::{Wav, tones, ulaw_to_f32};
use e2e::standin::Standin;
use e2e::standin::media::TONE_HZ as PSTN_HZ;
use e2e::standin::tls::Identity;
use e2e::standin::trunk::{Trunk, TrunkCall};
use serde_json::json;

const MAIN: &str = "+15551230000";
const HANDSET: &str = "+15557770001";
const TRUNK_USER: &str = "secure-trunk";
const TRUNK_PASS: &str = "secure-trunk-secret";
const PHONE_HZ: f64 = 440.0;

/// The trunk's call to `HANDSET` once it has ended and the trunk's RTP
/// task has recorded what it heard (or 5 s after it ended).
async fn ended_call(trunk: &Trunk, sys: &System) -> TrunkCall {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut ended_at = None;
    loop {
        if let Some(c) = trunk
            .calls()
            .into_iter()
            .find(|c| c.to == HANDSET && c.ended)
        {
            let since = *ended_at.get_or_insert_with(Instant::now);
            if c.rtp_packets > 0 || since.elapsed() > Duration::from_secs(5) {
                return c;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the trunk never got the call\n--- sipd\n{}",
            sys.log("sipd")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_call_out_over_a_tls_trunk_is_srtp_both_ways_and_an_untrusted_trunk_never_gets_it() {
    let twilio = Standin::start().await.expect("stand-in");
    let twilio_id = Identity::new(&["localhost"]).expect("trunk certificate");
    let trunk = Trunk::start_tls(twilio.clone(), TRUNK_USER, TRUNK_PASS, &twilio_id)
        .await
        .expect("trunk");
    // The same name, from a root nobody trusts.
    let impostor_id = Identity::new(&["localhost"]).expect("impostor certificate");
    let impostor = Trunk::start_tls(twilio.clone(), TRUNK_USER, TRUNK_PASS, &impostor_id)
        .await
        .expect("impostor");
    let root = tempfile::tempdir().unwrap();
    let ca = root.path().join("trunk-root.pem");
    std::fs::write(&ca, &twilio_id.ca_pem).unwrap();
    let sys = System::start_with(&[("GOSIP_TRUNK_CA_FILE", ca.to_str().unwrap())])
        .await
        .expect("system");
    let api = e2e::Api::new(&sys);
    let admin = api.setup(&sys, MAIN).await;
    twilio.add_number_for(MAIN, &sys.base_url());
    // As Twilio's console names the trunk, with the port of the stand-in.
    api.connect_twilio(
        &admin,
        &twilio,
        json!({
            "twilio.trunk_username": TRUNK_USER,
            "twilio.trunk_password": TRUNK_PASS,
            "twilio.termination_uri": format!("sips:localhost:{}", trunk.addr.port()),
        }),
    )
    .await;

    let mut phone = api
        .udp_phone(&admin, &sys, root.path(), ("desk", "201"), PHONE_HZ)
        .await;
    let sip = sys.sip_addr();

    phone
        .command("dial", &format!("sip:{HANDSET}@{sip}"))
        .await
        .expect("dial");
    phone
        .event("CALL_ESTABLISHED", Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{e}\n--- sipd\n{}", sys.log("sipd")));
    tokio::time::sleep(Duration::from_secs(4)).await;
    phone.command("hangup", "").await.expect("hangup");
    phone
        .event("CALL_CLOSED", Duration::from_secs(10))
        .await
        .expect("hung up");
    let call = ended_call(&trunk, &sys).await;
    assert_eq!((call.code, call.srtp), (200, true), "{call:?}");
    let far = tones(&ulaw_to_f32(&call.heard), 8000, PHONE_HZ, PSTN_HZ);
    far.check(2.0).unwrap_or_else(|e| {
        panic!(
            "the far end heard the phone only through SRTP that authenticates: {e}; {} packets\n--- sipd\n{}",
            call.rtp_packets,
            sys.log("sipd")
        )
    });
    let heard = Wav::read(&phone.dump(true).expect("the phone played audio")).unwrap();
    tones(&heard.samples[0], heard.rate, PSTN_HZ, PHONE_HZ)
        .check(2.0)
        .unwrap_or_else(|e| panic!("the phone heard the far end (SRTP decrypted by GoSIP): {e}"));
    assert!(
        sys.log("sipd").contains("connected to the trunk over TLS"),
        "{}",
        sys.log("sipd")
    );

    // The termination address now leads to a trunk whose certificate no
    // trusted root signed: the TLS handshake fails and nothing reaches it.
    api.settings(
        &admin,
        json!({"twilio.termination_uri": format!("sips:localhost:{}", impostor.addr.port())}),
    )
    .await;
    phone
        .command("dial", &format!("sip:{HANDSET}@{sip}"))
        .await
        .expect("dial");
    let refused = format!("127.0.0.1:{}", impostor.addr.port());
    let deadline = Instant::now() + Duration::from_secs(15);
    let log = loop {
        let log = sys.log("sipd");
        if log
            .lines()
            .any(|l| l.contains(&refused) && l.contains("cannot connect to the trunk over TLS"))
        {
            break log;
        }
        assert!(
            Instant::now() < deadline,
            "sipd did not refuse the impostor's certificate\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        log.contains("UnknownIssuer"),
        "the certificate was refused for its issuer:\n{log}"
    );
    // The call fails as soon as the connection does, not 32 s later when
    // the INVITE's Timer B would fire.
    let closed = phone
        .event("CALL_CLOSED", Duration::from_secs(15))
        .await
        .unwrap_or_else(|e| panic!("the phone's call did not fail: {e}\n{log}"));
    assert!(
        closed.to_string().contains("503 Service Unavailable"),
        "the phone was told: {closed}"
    );
    assert!(
        impostor.calls().is_empty(),
        "an untrusted trunk got the call: {:?}",
        impostor.calls()
    );
    phone.quit().await;
    twilio.shutdown();
}
