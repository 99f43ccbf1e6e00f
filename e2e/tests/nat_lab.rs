//! GoSIP on real network shapes, inside this machine (e2e::netlab): a home
//! LAN behind a NAT router, a VPS on a public address, Compose-style
//! published ports. The daemons run as `make run` starts them (SIP on
//! 0.0.0.0, no address setting) in their own namespace; the phones are
//! baresip on other hosts; the Twilio stand-in is "on the internet" and,
//! like Twilio, sends RTP to the address its SDP names without latching.
//! Every call is proven by tones both ways (each phone, and the stand-in,
//! hears the other party's frequency, see e2e::audio) and by its CDR, read
//! through the API. A voicemail left from behind the NAT is proven by the
//! record tone the phone hears and by the phone's tone in the message,
//! fetched through the API. Devices, the DID and settings are made through webd's
//! API from a LAN host, as the UI does.
//!
//! Needs root (network namespaces), iproute2, nftables, curl and baresip
//! (scripts/install-deps.sh) and `cargo build --bins`. Without namespace
//! rights the tests fail saying so; they never skip.
//!
//! Addresses: 198.51.100.1 is Twilio (REST :4011, trunk :5060),
//! 203.0.113.0/24 the internet between Twilio and a home router,
//! 192.0.2.0/24 a VPS network, 198.18.0.0/24 a home LAN, 198.18.100.0/24 a
//! Compose bridge network.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use e2e::System;
use e2e::audio::{Wav, sine, tones, ulaw_to_f32};
use e2e::baresip::{Baresip, Host};
use e2e::netlab::{Forward, Lab, Ns, NsRuntime};
use e2e::standin::media::TONE_HZ as PSTN_HZ;
use e2e::standin::trunk::Trunk;
use e2e::standin::{CallScript, DialOutcome, Standin};
use serde_json::{Value, json};

const ALICE_HZ: f64 = 440.0;
const BOB_HZ: f64 = 1000.0;
const TALK: Duration = Duration::from_secs(4);
/// Tone each side must show, well under TALK so a slow start does not fail.
const MIN_TONE_SECS: f64 = 2.0;
const DID: &str = "+15550001111";
const CALLER: &str = "+15557654321";
const TRUNK_USER: &str = "gosip-trunk";
const TRUNK_PASS: &str = "trunk-secret-0123";
const TWILIO: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const ROUTER_WAN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
const INET_GW: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const LAN_GW: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const LAN_SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const ALICE_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
const BOB_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 11);
const VPS: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);

/// The scenarios share CPU-sensitive audio checks: one at a time.
/// (A tokio mutex: a panicking scenario does not poison it for the next.)
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// GoSIP at home: router with port forwarding (5060, 8080, the RTP range)
/// to the PBX on the LAN, two phones on the LAN, Twilio on the internet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_home_behind_a_port_forwarding_router_internal_inbound_and_outbound_calls_have_audio_both_ways()
 {
    let _one = SERIAL.lock().await;
    let lab = Lab::new("home").expect("NAT lab");
    let net = internet(&lab);
    let (rt, lan) = home_router(&lab, &net);
    rt.nat(
        "wan",
        &[
            Forward::new("udp", "5060", LAN_SERVER),
            Forward::new("tcp", "{ 5060, 8080 }", LAN_SERVER),
            Forward::new("udp", "10000-10999", LAN_SERVER),
        ],
    )
    .expect("router nat");
    let pbx = lan_host(&lab, &rt, lan, "pbx", LAN_SERVER);
    let alice_ns = lan_host(&lab, &rt, lan, "alice", ALICE_IP);
    let bob_ns = lan_host(&lab, &rt, lan, "bob", BOB_IP);

    let sys = System::start_in(&pbx, &[]).await.expect("GoSIP in the lab");
    let server = LAN_SERVER.to_string();
    let api = Api::setup(&sys, &alice_ns, &format!("http://{server}:8080")).await;
    let public = format!("http://{ROUTER_WAN}:8080");
    let twilio = Twilio::start(&net, &public).await;
    api.config(json!({
        "twilio.api_base": twilio.api_base(),
        "twilio.account_sid": e2e::standin::ACCOUNT_SID,
        "twilio.auth_token": e2e::standin::AUTH_TOKEN,
        "twilio.trunk_username": TRUNK_USER,
        "twilio.trunk_password": TRUNK_PASS,
        "twilio.termination_uri": format!("{TWILIO}:5060"),
        "system.public_url": public,
    }))
    .await;

    let root = tempfile::tempdir().expect("tmp");
    let mut alice = Phone::start(
        &api,
        &alice_ns,
        ALICE_IP,
        "alice",
        "201",
        ALICE_HZ,
        &server,
        root.path(),
    )
    .await;
    let mut bob = Phone::start(
        &api,
        &bob_ns,
        BOB_IP,
        "bob",
        "202",
        BOB_HZ,
        &server,
        root.path(),
    )
    .await;
    // bob belongs to someone else, so a call to the DID rings alice only.
    api.give_device_to_new_user(bob.device, "bob@home.test")
        .await;
    alice.registered(&api).await;
    bob.registered(&api).await;

    let mut failures = Vec::new();

    if let Err(e) = internal_call(&api, &mut alice, &mut bob, &server).await {
        failures.push(format!("internal call alice -> bob: {e}"));
    }
    if let Err(e) = inbound_call(&api, &twilio, &mut alice).await {
        failures.push(format!("inbound Twilio call to alice: {e}"));
    }
    if let Err(e) = outbound_call(&api, &twilio, &mut alice, &server).await {
        failures.push(format!("outbound trunk call from alice: {e}"));
    }
    alice.quit().await;
    bob.quit().await;
    assert!(
        failures.is_empty(),
        "GoSIP at home behind a forwarding router:\n- {}\n{}",
        failures.join("\n- "),
        daemon_logs(&sys)
    );
}

/// GoSIP on a VPS with a public address; the phone at home behind a NAT
/// router with no port forwarding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_vps_a_phone_behind_home_nat_registers_is_called_and_calls_out_with_audio_both_ways() {
    let _one = SERIAL.lock().await;
    let lab = Lab::new("vps").expect("NAT lab");
    let net = internet(&lab);
    let vps = lab.ns("pbx").expect("ns");
    lab.link(
        &net,
        "vps",
        "192.0.2.1/24",
        &vps,
        "eth0",
        &format!("{VPS}/24"),
    )
    .expect("link");
    vps.default_route(Ipv4Addr::new(192, 0, 2, 1))
        .expect("route");
    let (rt, lan) = home_router(&lab, &net);
    rt.nat("wan", &[]).expect("router nat");
    let alice_ns = lan_host(&lab, &rt, lan, "alice", ALICE_IP);

    let sys = System::start_in(&vps, &[]).await.expect("GoSIP in the lab");
    let server = VPS.to_string();
    let public = format!("http://{server}:8080");
    // The admin uses the UI over the internet from home.
    let api = Api::setup(&sys, &alice_ns, &public).await;
    let twilio = Twilio::start(&net, &public).await;
    api.config(json!({
        "twilio.api_base": twilio.api_base(),
        "twilio.account_sid": e2e::standin::ACCOUNT_SID,
        "twilio.auth_token": e2e::standin::AUTH_TOKEN,
        "twilio.trunk_username": TRUNK_USER,
        "twilio.trunk_password": TRUNK_PASS,
        "twilio.termination_uri": format!("{TWILIO}:5060"),
        "system.public_url": public,
    }))
    .await;

    let root = tempfile::tempdir().expect("tmp");
    let mut alice = Phone::start(
        &api,
        &alice_ns,
        ALICE_IP,
        "alice",
        "201",
        ALICE_HZ,
        &server,
        root.path(),
    )
    .await;
    alice.registered(&api).await;

    let mut failures = Vec::new();
    if let Err(e) = inbound_call(&api, &twilio, &mut alice).await {
        failures.push(format!("inbound Twilio call to the phone behind NAT: {e}"));
    }
    if let Err(e) = outbound_call(&api, &twilio, &mut alice, &server).await {
        failures.push(format!(
            "outbound trunk call from the phone behind NAT: {e}"
        ));
    }
    if let Err(e) = voicemail_call(&api, &mut alice, &server).await {
        failures.push(format!("voicemail left by the phone behind NAT: {e}"));
    }
    alice.quit().await;
    assert!(
        failures.is_empty(),
        "GoSIP on a VPS, phone behind home NAT:\n- {}\n{}",
        failures.join("\n- "),
        daemon_logs(&sys)
    );
}

/// The daemons in their own namespace on a bridge network behind ports
/// published by the host (what Compose's default network does: DNAT of
/// 5060, 8080 and 10000-10199 from the host's LAN address, masquerade out),
/// configured only through settings the UI offers: the host's LAN address
/// as `sip.local_address`, since the daemons cannot see it themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_compose_style_published_ports_two_lan_phones_talk_with_only_ui_settings() {
    let _one = SERIAL.lock().await;
    let lab = Lab::new("compose").expect("NAT lab");
    // The LAN switch, with the docker host and two phones on it.
    let sw = lab.ns("lan").expect("ns");
    sw.bridge("lan", "").expect("bridge");
    let host = lab.ns("dockerhost").expect("ns");
    lab.plug(&sw, "lan", "p-host", &host, &format!("{LAN_SERVER}/24"))
        .expect("plug");
    let alice_ns = lab.ns("alice").expect("ns");
    lab.plug(&sw, "lan", "p-alice", &alice_ns, &format!("{ALICE_IP}/24"))
        .expect("plug");
    let bob_ns = lab.ns("bob").expect("ns");
    lab.plug(&sw, "lan", "p-bob", &bob_ns, &format!("{BOB_IP}/24"))
        .expect("plug");
    // The bridge network and the container the daemons run in.
    let app = lab.ns("app").expect("ns");
    lab.link(
        &host,
        "br-app",
        "198.18.100.1/24",
        &app,
        "eth0",
        "198.18.100.2/24",
    )
    .expect("link");
    app.default_route(Ipv4Addr::new(198, 18, 100, 1))
        .expect("route");
    host.forward().expect("forward");
    let to = Ipv4Addr::new(198, 18, 100, 2);
    host.nat(
        "eth0",
        &[
            Forward::new("udp", "5060", to),
            Forward::new("tcp", "{ 5060, 8080 }", to),
            Forward::new("udp", "10000-10199", to),
        ],
    )
    .expect("published ports");

    let sys = System::start_in(
        &app,
        &[("GOSIP_RTP_PORTS", "10000-10199"), ("GOSIP_CONTAINER", "1")],
    )
    .await
    .expect("GoSIP in the lab");
    let server = LAN_SERVER.to_string();
    let api = Api::setup(&sys, &alice_ns, &format!("http://{server}:8080")).await;
    api.config(json!({ "sip.local_address": server })).await;

    let root = tempfile::tempdir().expect("tmp");
    let mut alice = Phone::start(
        &api,
        &alice_ns,
        ALICE_IP,
        "alice",
        "201",
        ALICE_HZ,
        &server,
        root.path(),
    )
    .await;
    let mut bob = Phone::start(
        &api,
        &bob_ns,
        BOB_IP,
        "bob",
        "202",
        BOB_HZ,
        &server,
        root.path(),
    )
    .await;
    alice.registered(&api).await;
    bob.registered(&api).await;
    let r = internal_call(&api, &mut alice, &mut bob, &server).await;
    alice.quit().await;
    bob.quit().await;
    if let Err(e) = r {
        panic!(
            "Compose-style published ports, internal call alice -> bob: {e}\n{}",
            daemon_logs(&sys)
        );
    }
}

// ---------------------------------------------------------------- calls

/// alice dials bob's extension; both hear each other's tone; the CDR says
/// internal and answered.
async fn internal_call(
    api: &Api,
    alice: &mut Phone,
    bob: &mut Phone,
    server: &str,
) -> Result<(), String> {
    alice.clear_dumps();
    bob.clear_dumps();
    let calls_before = api.cdr_count().await;
    alice.dial(&format!("sip:{}@{server}", bob.ext)).await?;
    bob.established().await?;
    alice.established().await?;
    tokio::time::sleep(TALK).await;
    alice.hangup().await?;
    bob.closed().await?;
    let mut problems = Vec::new();
    if let Err(e) = alice.heard(BOB_HZ, ALICE_HZ) {
        problems.push(format!("alice did not hear bob: {e}"));
    }
    if let Err(e) = bob.heard(ALICE_HZ, BOB_HZ) {
        problems.push(format!("bob did not hear alice: {e}"));
    }
    if let Err(e) = api
        .answered_cdr(calls_before, "internal", &alice.ext, &bob.ext)
        .await
    {
        problems.push(e);
    }
    done(problems)
}

/// The phone behind NAT calls an extension whose phone is not plugged in:
/// sipd answers for the owner's voicemail, the greeting and the tone reach
/// the phone through the NAT (mediad latches to where its RTP comes from),
/// and the message, fetched through the API, holds the phone's tone.
async fn voicemail_call(api: &Api, alice: &mut Phone, server: &str) -> Result<(), String> {
    let d = api
        .call(
            "POST",
            "/api/devices",
            Some(json!({"name": "carol", "username": "carol", "extension": "203"})),
        )
        .await;
    let device = d["id"].as_i64().ok_or("no device id")?;
    api.give_device_to_new_user(device, "carol@home.test").await;
    alice.clear_dumps();
    alice.dial(&format!("sip:203@{server}")).await?;
    alice.established().await?;
    // The greeting and the tone, then the phone's tone is the message.
    tokio::time::sleep(Duration::from_secs(11)).await;
    alice.hangup().await?;
    let mut problems = Vec::new();
    let heard = alice
        .b
        .dump(true)
        .ok_or("nothing was played out (no *-dec.wav)")?;
    let heard = Wav::read(&heard)?;
    let beep = tones(&heard.samples[0], heard.rate, 1000.0, ALICE_HZ);
    if beep.tone_seconds() < 0.3 {
        problems.push(format!("the record tone never reached the phone: {beep:?}"));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let vm = loop {
        let list = api.call("GET", "/api/voicemails", None).await;
        if let Some(vm) = list["items"].as_array().and_then(|a| a.first()).cloned() {
            break vm;
        }
        if Instant::now() > deadline {
            return Err(format!("no voicemail stored: {list}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let audio = api
        .bytes(&format!("/api/voicemails/{}/audio", vm["id"]))
        .await;
    match Wav::parse(&audio) {
        Ok(wav) => {
            if let Err(e) = tones(&wav.samples[0], wav.rate, ALICE_HZ, 1000.0).check(MIN_TONE_SECS)
            {
                problems.push(format!("the message is not the phone's tone: {e}"));
            }
        }
        Err(e) => problems.push(format!("the voicemail's audio: {e}")),
    }
    done(problems)
}

/// A PSTN caller rings the DID: the stand-in posts the voice webhook to the
/// public URL, follows the `<Dial><Sip>` it gets back, alice answers.
async fn inbound_call(api: &Api, twilio: &Twilio, alice: &mut Phone) -> Result<(), String> {
    alice.clear_dumps();
    let calls_before = api.cdr_count().await;
    let s = twilio.standin.clone();
    let talk_secs = TALK.as_secs() as u32;
    let o = twilio
        .rt
        .spawn(async move {
            e2e::standin::scenario::run(
                &s,
                &CallScript {
                    from: CALLER.into(),
                    to: DID.into(),
                    dial: DialOutcome::Sip { talk_secs },
                    ..CallScript::default()
                },
            )
            .await
            .map_err(|e| format!("the stand-in could not play the call: {e:#}"))
        })
        .await
        .map_err(|e| e.to_string())??;
    let Some(leg) = o.sip.first().cloned() else {
        return Err(format!(
            "twiliod's TwiML placed no <Sip> leg: {:?}",
            o.documents
        ));
    };
    if leg.code != 200 {
        return Err(format!(
            "the <Sip> INVITE ended with {} (TwiML {:?})",
            leg.code, o.documents
        ));
    }
    alice.closed().await?;
    let mut problems = Vec::new();
    if let Err(e) = alice.heard(PSTN_HZ, ALICE_HZ) {
        problems.push(format!("alice did not hear the caller: {e}"));
    }
    let r = tones(&ulaw_to_f32(&leg.heard), 8000, ALICE_HZ, PSTN_HZ);
    if let Err(e) = r.check(MIN_TONE_SECS) {
        problems.push(format!(
            "the caller (Twilio, sending to the SDP address) did not hear alice: {e}; {} RTP packets in",
            leg.rtp_received
        ));
    }
    if r.check(MIN_TONE_SECS).is_err() || alice.heard(PSTN_HZ, ALICE_HZ).is_err() {
        problems.push(format!(
            "Twilio sent its RTP to {:?} (GoSIP's SDP answer)",
            leg.rtp_to
        ));
    }
    if let Err(e) = api.answered_cdr(calls_before, "inbound", CALLER, DID).await {
        problems.push(e);
    }
    done(problems)
}

/// alice dials a PSTN number: sipd places it on the termination trunk.
async fn outbound_call(
    api: &Api,
    twilio: &Twilio,
    alice: &mut Phone,
    server: &str,
) -> Result<(), String> {
    alice.clear_dumps();
    let calls_before = api.cdr_count().await;
    let trunk_before = twilio.trunk.calls().len();
    alice.dial(&format!("sip:{CALLER}@{server}")).await?;
    alice.established().await?;
    tokio::time::sleep(TALK).await;
    alice.hangup().await?;
    let mut problems = Vec::new();
    if let Err(e) = alice.heard(PSTN_HZ, ALICE_HZ) {
        problems.push(format!("alice did not hear the called party: {e}"));
    }
    // The trunk's RTP task records what it heard when the BYE ends it.
    let deadline = Instant::now() + Duration::from_secs(5);
    let call = loop {
        let c = twilio.trunk.calls().into_iter().nth(trunk_before);
        if let Some(c) = &c
            && c.ended
            && (c.rtp_packets > 0 || Instant::now() > deadline)
        {
            break c.clone();
        }
        if Instant::now() > deadline {
            return Err(format!("the trunk saw no finished call: {c:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    if call.code != 200 || call.from != DID {
        problems.push(format!("trunk call: {call:?}"));
    }
    let r = tones(&ulaw_to_f32(&call.heard), 8000, ALICE_HZ, PSTN_HZ);
    if let Err(e) = r.check(MIN_TONE_SECS) {
        problems.push(format!(
            "the called party (Twilio, sending to the SDP address) did not hear alice: {e}; {} RTP packets in",
            call.rtp_packets
        ));
    }
    if !problems.is_empty() {
        problems.push(format!(
            "the trunk sent its RTP to {:?} (GoSIP's SDP offer)",
            call.rtp_to
        ));
    }
    if let Err(e) = api
        .answered_cdr(calls_before, "outbound", DID, CALLER)
        .await
    {
        problems.push(e);
    }
    done(problems)
}

fn done(problems: Vec<String>) -> Result<(), String> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

// ---------------------------------------------------------------- topology

/// The internet: a router namespace that holds Twilio's address.
fn internet(lab: &Lab) -> Ns {
    let net = lab.ns("net").expect("ns");
    net.ip(&["addr", "add", &format!("{TWILIO}/32"), "dev", "lo"])
        .expect("twilio address");
    net.forward().expect("forward");
    net
}

/// A home router: WAN on the internet (203.0.113.2), a LAN bridge
/// (198.18.0.1/24). Returns the router and the bridge's name.
fn home_router(lab: &Lab, net: &Ns) -> (Ns, &'static str) {
    let rt = lab.ns("router").expect("ns");
    lab.link(
        net,
        "home",
        &format!("{INET_GW}/24"),
        &rt,
        "wan",
        &format!("{ROUTER_WAN}/24"),
    )
    .expect("wan link");
    rt.default_route(INET_GW).expect("route");
    rt.bridge("lan", &format!("{LAN_GW}/24")).expect("bridge");
    rt.forward().expect("forward");
    (rt, "lan")
}

/// A host on the router's LAN.
fn lan_host(lab: &Lab, rt: &Ns, bridge: &str, name: &str, ip: Ipv4Addr) -> Ns {
    let h = lab.ns(name).expect("ns");
    lab.plug(rt, bridge, &format!("p-{name}"), &h, &format!("{ip}/24"))
        .expect("plug");
    h.default_route(LAN_GW).expect("route");
    h
}

fn daemon_logs(sys: &System) -> String {
    e2e::DAEMONS
        .iter()
        .map(|d| {
            let log = sys.log(d);
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            format!("--- {d} (last lines)\n{}\n", tail.join("\n"))
        })
        .collect()
}

// ---------------------------------------------------------------- Twilio

/// The stand-in (REST, webhooks, `<Dial><Sip>`) and its termination trunk,
/// on Twilio's address in the internet namespace.
struct Twilio {
    rt: NsRuntime,
    standin: Standin,
    trunk: Trunk,
}

impl Twilio {
    async fn start(net: &Ns, public: &str) -> Twilio {
        let rt = net.runtime().expect("runtime in the internet");
        let public = public.to_owned();
        let (standin, trunk) = rt
            .spawn(async move {
                let s = Standin::start_on(
                    &format!("{TWILIO}:4011"),
                    e2e::standin::ACCOUNT_SID,
                    e2e::standin::AUTH_TOKEN,
                )
                .await
                .expect("stand-in");
                s.add_number_for(DID, &public);
                let t = Trunk::start_on(
                    SocketAddr::from((TWILIO, 5060)),
                    s.clone(),
                    TRUNK_USER,
                    TRUNK_PASS,
                )
                .await
                .expect("trunk");
                (s, t)
            })
            .await
            .expect("stand-in start");
        Twilio { rt, standin, trunk }
    }

    fn api_base(&self) -> String {
        self.standin.base_url.clone()
    }
}

// ---------------------------------------------------------------- API

/// webd's REST API as the admin's browser on a LAN host uses it.
struct Api {
    rt: NsRuntime,
    base: String,
    cookie: String,
    http: reqwest::Client,
}

impl Api {
    /// Runs the setup wizard (admin and the DID) from `ns`, with the setup
    /// token webd wrote to its data dir (what the admin reads off the log).
    async fn setup(sys: &System, ns: &Ns, base: &str) -> Api {
        let token = std::fs::read_to_string(sys.data_dir.join("setup-token")).unwrap_or_default();
        let rt = ns.runtime().expect("runtime on the LAN host");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .no_proxy()
            .build()
            .expect("client");
        let mut api = Api {
            rt,
            base: base.to_owned(),
            cookie: String::new(),
            http,
        };
        let (status, v, cookie) = api
            .request(
                "POST",
                "/api/setup",
                Some(json!({"admin": {"email": "admin@home.test", "password": "correct horse battery"},
                            "did": {"number": DID, "name": "Main"},
                            "setup_token": token.trim()})),
            )
            .await;
        assert_eq!(status, 200, "setup wizard: {v}");
        api.cookie = cookie;
        api
    }

    async fn request(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value, String) {
        let mut r = self
            .http
            .request(
                method.parse().expect("method"),
                format!("{}{path}", self.base),
            )
            .header("X-Requested-With", "gosip");
        if !self.cookie.is_empty() {
            r = r.header("Cookie", &self.cookie);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let what = format!("{method} {path}");
        self.rt
            .spawn(async move {
                let res = r.send().await.unwrap_or_else(|e| panic!("{what}: {e}"));
                let status = res.status().as_u16();
                let cookie = res
                    .headers()
                    .get("set-cookie")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.split(';').next())
                    .unwrap_or("")
                    .to_owned();
                (status, res.json().await.unwrap_or(Value::Null), cookie)
            })
            .await
            .expect("api task")
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v, _) = self.request(method, path, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {v}"
        );
        v
    }

    /// The body of a GET as bytes (audio).
    async fn bytes(&self, path: &str) -> Vec<u8> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("Cookie", &self.cookie);
        let what = path.to_owned();
        self.rt
            .spawn(async move {
                let res = r.send().await.unwrap_or_else(|e| panic!("{what}: {e}"));
                res.bytes().await.map(|b| b.to_vec()).unwrap_or_default()
            })
            .await
            .expect("api task")
    }

    /// Settings, as the System settings page saves them.
    async fn config(&self, values: Value) {
        self.call("PUT", "/api/system/config", Some(values)).await;
    }

    async fn give_device_to_new_user(&self, device: i64, email: &str) {
        let u = self
            .call(
                "POST",
                "/api/users",
                Some(json!({"email": email, "role": "user", "password": "user password 12"})),
            )
            .await;
        self.call(
            "PUT",
            &format!("/api/devices/{device}"),
            Some(json!({"user_id": u["id"]})),
        )
        .await;
    }

    async fn cdrs(&self) -> Vec<Value> {
        let v = self.call("GET", "/api/cdrs?per_page=100", None).await;
        v["items"].as_array().cloned().unwrap_or_default()
    }

    async fn cdr_count(&self) -> usize {
        self.cdrs().await.len()
    }

    /// Waits for a new CDR (beyond the first `before`) of `direction` from
    /// `from` to `to` that is answered.
    async fn answered_cdr(
        &self,
        before: usize,
        direction: &str,
        from: &str,
        to: &str,
    ) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let rows = self.cdrs().await;
            let new = rows.len().saturating_sub(before);
            let hit = rows.iter().take(new).find(|c| {
                c["direction"] == direction && c["from_number"] == from && c["to_number"] == to
            });
            if let Some(c) = hit
                && c["disposition"] == "answered"
                && c["ended_at"].is_string()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no answered {direction} CDR {from} -> {to}; new rows: {:?}",
                    &rows[..new]
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

// ---------------------------------------------------------------- phones

/// A baresip phone on a LAN host, its device made through the API.
struct Phone {
    b: Baresip,
    device: i64,
    ext: String,
}

impl Phone {
    #[allow(clippy::too_many_arguments)]
    async fn start(
        api: &Api,
        ns: &Ns,
        ip: Ipv4Addr,
        name: &str,
        ext: &str,
        hz: f64,
        server: &str,
        root: &Path,
    ) -> Phone {
        let d = api
            .call(
                "POST",
                "/api/devices",
                Some(json!({"name": name, "username": name, "extension": ext,
                            "caller_id_did_id": api.did_id().await})),
            )
            .await;
        let password = d["password"].as_str().expect("the new device's password");
        let account = format!(
            "<sip:{name}@{server};transport=udp>;auth_pass={password};regint=300;audio_codecs=PCMU;answermode=auto"
        );
        let host = Host::netns(&ns.name, IpAddr::V4(ip));
        let mut b = Baresip::spawn_on(host, root, name, &account, &tone_file(root, hz), 180);
        let ns2 = ns.clone();
        b.connect_with(
            move |a| match ns2.enter(move || std::net::TcpStream::connect(a)) {
                Ok(r) => r,
                Err(e) => Err(std::io::Error::other(e.to_string())),
            },
        )
        .await;
        Phone {
            b,
            device: d["id"].as_i64().expect("device id"),
            ext: ext.to_owned(),
        }
    }

    async fn registered(&self, api: &Api) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let d = api
                .call("GET", &format!("/api/devices/{}", self.device), None)
                .await;
            if d["registered"] == true {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} never registered: {d}\n{}",
                self.b.name,
                self.b.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn dial(&mut self, uri: &str) -> Result<(), String> {
        self.b.command("dial", uri).await.map(drop)
    }

    async fn hangup(&mut self) -> Result<(), String> {
        self.b.command("hangup", "").await?;
        self.closed().await
    }

    async fn established(&mut self) -> Result<(), String> {
        self.b
            .event("CALL_ESTABLISHED", Duration::from_secs(20))
            .await
            .map(drop)
    }

    async fn closed(&mut self) -> Result<(), String> {
        self.b
            .event("CALL_CLOSED", Duration::from_secs(20))
            .await
            .map(drop)
    }

    /// Whether this phone played `want` (and never `other`, its own).
    fn heard(&self, want: f64, other: f64) -> Result<(), String> {
        let path = self
            .b
            .dump(true)
            .ok_or("nothing was played out (no *-dec.wav)")?;
        let wav = Wav::read(&path)?;
        let r = tones(&wav.samples[0], wav.rate, want, other);
        r.check(MIN_TONE_SECS)
    }

    fn clear_dumps(&self) {
        for e in std::fs::read_dir(self.b.dir.join("dump"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::remove_file(e.path());
        }
    }

    async fn quit(self) {
        self.b.quit().await;
    }
}

impl Api {
    async fn did_id(&self) -> Value {
        let v = self.call("GET", "/api/dids", None).await;
        v["items"]
            .as_array()
            .and_then(|a| a.iter().find(|d| d["number"] == DID))
            .map(|d| d["id"].clone())
            .unwrap_or(Value::Null)
    }
}

/// A mono 8 kHz tone file that outlasts every call (baresip 1.0's aufile
/// stops at the end of its file).
fn tone_file(dir: &Path, hz: f64) -> PathBuf {
    let p = dir.join(format!("tone_{hz}.wav"));
    std::fs::write(&p, Wav::encode(8000, &[sine(8000, hz, 120.0, 0.5)])).expect("tone file");
    p
}
