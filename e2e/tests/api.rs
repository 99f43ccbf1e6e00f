//! The REST API against the five running daemons: setup wizard, roles,
//! a device created through the API registering at sipd with the generated
//! password (HA1 agreement between webd and sipd), live events, settings
//! pushed to the daemons, webhooks forwarded to twiliod, SMS handed to
//! twiliod, backup and restore while the daemons keep running.
//!
//! Needs `cargo build --bins` first (the harness runs target/debug/*).

use std::time::{Duration, Instant};

use e2e::System;
use md5::{Digest, Md5};
use serde_json::{Value, json};
use tokio::net::UdpSocket;

/// The wizard's first number.
const DID: &str = "+15551230000";

/// webd's API with this file's argument order (method, path, cookie).
/// `http` and `base` serve the requests that are not JSON (the event
/// stream, uploads, raw headers).
struct Api {
    inner: e2e::Api,
    data_dir: std::path::PathBuf,
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn new(sys: &System) -> Self {
        Self {
            inner: e2e::Api::new(sys),
            data_dir: sys.data_dir.clone(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            base: sys.base_url(),
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        cookie: &str,
        body: Option<Value>,
    ) -> (u16, Value, String) {
        self.inner.call(cookie, method, path, body).await
    }

    /// The wizard with the setup token webd wrote; the admin's session.
    async fn setup(&self) -> String {
        self.inner.setup_in(&self.data_dir, DID).await
    }
}

fn md5_hex(s: &str) -> String {
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn param(h: &str, name: &str) -> Option<String> {
    let i = h.find(&format!("{name}="))?;
    let rest = &h[i + name.len() + 1..];
    Some(if let Some(r) = rest.strip_prefix('"') {
        r[..r.find('"')?].to_owned()
    } else {
        rest.split([',', '\r', '\n']).next()?.trim().to_owned()
    })
}

/// REGISTERs `user`/`password` at sipd with RFC 2617 digest (qop=auth);
/// returns the final status line.
async fn sip_register(sip: std::net::SocketAddr, user: &str, password: &str) -> String {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = sock.local_addr().unwrap();
    let uri = format!("sip:{}:{}", sip.ip(), sip.port());
    let msg = |cseq: u32, auth: &str| {
        format!(
            "REGISTER {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-api-{cseq};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{user}@{ip}>;tag=t{cseq}x\r\nTo: <sip:{user}@{ip}>\r\n\
             Call-ID: api-e2e-{user}@{ip}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{user}@{me}>\r\n\
             Expires: 300\r\nUser-Agent: gosip-e2e\r\n{auth}Content-Length: 0\r\n\r\n",
            ip = sip.ip()
        )
    };
    let mut buf = vec![0u8; 4096];
    sock.send_to(msg(1, "").as_bytes(), sip).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(3), sock.recv(&mut buf))
        .await
        .expect("sipd answers REGISTER")
        .unwrap();
    let challenge = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(challenge.starts_with("SIP/2.0 401"), "{challenge}");
    let www = challenge
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("www-authenticate:"))
        .find(|l| !l.contains("SHA-256"))
        .expect("an MD5 challenge")
        .to_owned();
    let realm = param(&www, "realm").unwrap();
    let nonce = param(&www, "nonce").unwrap();
    let ha1 = md5_hex(&format!("{user}:{realm}:{password}"));
    let ha2 = md5_hex(&format!("REGISTER:{uri}"));
    let cnonce = "0a4f113b";
    let response = md5_hex(&format!("{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}"));
    let opaque = param(&www, "opaque")
        .map(|o| format!(", opaque=\"{o}\""))
        .unwrap_or_default();
    let auth = format!(
        "Authorization: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{response}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"{cnonce}\"{opaque}\r\n"
    );
    sock.send_to(msg(2, &auth).as_bytes(), sip).await.unwrap();
    loop {
        let n = tokio::time::timeout(Duration::from_secs(3), sock.recv(&mut buf))
            .await
            .expect("sipd answers the authenticated REGISTER")
            .unwrap();
        let r = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !r.starts_with("SIP/2.0 1") {
            return r.lines().next().unwrap_or("").to_owned();
        }
    }
}

/// Reads SSE events from `/api/events` until `pred` matches one.
async fn wait_event(
    res: &mut reqwest::Response,
    buf: &mut String,
    within: Duration,
    pred: impl Fn(&str, &Value) -> bool,
) -> Option<(String, Value)> {
    let deadline = Instant::now() + within;
    loop {
        while let Some(i) = buf.find("\n\n") {
            let block: String = buf.drain(..i + 2).collect();
            let mut name = "message".to_owned();
            let mut data = String::new();
            for l in block.lines() {
                if let Some(v) = l.strip_prefix("event:") {
                    name = v.trim().to_owned();
                } else if let Some(v) = l.strip_prefix("data:") {
                    data.push_str(v.trim());
                }
            }
            let v: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
            if pred(&name, &v) {
                return Some((name, v));
            }
        }
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, res.chunk()).await {
            Ok(Ok(Some(c))) => buf.push_str(&String::from_utf8_lossy(&c)),
            _ => return None,
        }
    }
}

#[tokio::test]
async fn a_device_made_through_the_api_registers_at_sipd_and_the_ui_sees_it_live() {
    let sys = System::start().await.unwrap();
    let api = Api::new(&sys);
    let admin = api.setup().await;
    // A user and their device.
    let (s, user, _) = api
        .call(
            "POST",
            "/api/users",
            &admin,
            Some(json!({"email": "u@example.org", "role": "user", "password": "user password 1"})),
        )
        .await;
    assert_eq!(s, 201, "{user}");
    let (s, dev, _) = api
        .call(
            "POST",
            "/api/devices",
            &admin,
            Some(json!({"name": "Desk", "username": "desk100", "extension": "100", "user_id": user["id"]})),
        )
        .await;
    assert_eq!(s, 201, "{dev}");
    let (_, _, ucookie) = api
        .call(
            "POST",
            "/api/auth/login",
            "",
            Some(json!({"email": "u@example.org", "password": "user password 1"})),
        )
        .await;
    // The user's live events, opened before the phone registers.
    let mut events = api
        .http
        .get(format!("{}/api/events", api.base))
        .header("Cookie", &ucookie)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    assert!(
        events.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut buf = String::new();
    let first = wait_event(&mut events, &mut buf, Duration::from_secs(5), |n, _| {
        n == "registration"
    })
    .await
    .expect("initial registration event");
    assert_eq!(first.1["devices"][0]["registered"], false);

    // A wrong password is refused, the generated one is accepted.
    let bad = sip_register(sys.sip_addr(), "desk100", "not-the-password").await;
    assert!(
        bad.starts_with("SIP/2.0 401") || bad.starts_with("SIP/2.0 403"),
        "{bad}"
    );
    // webd told sipd about the device before it answered the POST, so the
    // phone's very first REGISTER is accepted (sipd's own periodic re-read
    // of the table is 30 s away).
    let ok = sip_register(sys.sip_addr(), "desk100", dev["password"].as_str().unwrap()).await;
    assert_eq!(ok, "SIP/2.0 200 OK", "{}", sys.log("sipd"));

    let (_, ev) = wait_event(&mut events, &mut buf, Duration::from_secs(10), |n, v| {
        n == "registration" && v["devices"][0]["registered"] == true
    })
    .await
    .expect("a live registration event after REGISTER");
    assert_eq!(ev["devices"][0]["id"], dev["id"]);
    let (s, d, _) = api
        .call(
            "GET",
            &format!("/api/devices/{}", dev["id"]),
            &ucookie,
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(d["registered"], true);
    assert_eq!(d["registrations"][0]["user_agent"], "gosip-e2e");
    assert!(d.get("password").is_none());

    // A voicemail left for the user through Twilio shows up as an event too:
    // Twilio connected, the number given to the user, a call nobody takes.
    let twilio = e2e::standin::Standin::start().await.unwrap();
    api.inner
        .connect_twilio(
            &admin,
            &twilio,
            json!({"system.public_url": sys.base_url()}),
        )
        .await;
    twilio.add_number_for(DID, &sys.base_url());
    let (_, dids, _) = api.call("GET", "/api/dids", &admin, None).await;
    let (s, v, _) = api
        .call(
            "PUT",
            &format!("/api/dids/{}", dids["items"][0]["id"]),
            &admin,
            Some(json!({"owner_user_id": user["id"]})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    // twiliod's rules cache sees the new owner.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    e2e::standin::scenario::run(
        &twilio,
        &e2e::standin::CallScript {
            from: "+15550001111".into(),
            to: DID.into(),
            dial: e2e::standin::DialOutcome::NoAnswer,
            record: e2e::standin::RecordScript {
                secs: 7,
                ..e2e::standin::RecordScript::default()
            },
            ..e2e::standin::CallScript::default()
        },
    )
    .await
    .unwrap();
    let (_, vm) = wait_event(&mut events, &mut buf, Duration::from_secs(15), |n, v| {
        n == "voicemail" && v["unread"] == 1
    })
    .await
    .expect("a voicemail event");
    assert!(vm["latest_id"].as_i64().unwrap() > 0);
    let (s, dash, _) = api.call("GET", "/api/dashboard", &ucookie, None).await;
    assert_eq!(s, 200);
    assert_eq!(dash["unread_voicemails"], 1);
    assert_eq!(dash["devices_registered"], 1);

    // Active calls come from sipd's gRPC ListCalls: empty while nobody is
    // calling, or the standard 503 while sipd does not serve it.
    let (s, calls, _) = api.call("GET", "/api/calls", &admin, None).await;
    assert!(
        (s == 200 && calls == json!([]))
            || (s == 503 && calls["error"]["code"] == "SERVICE_UNAVAILABLE"),
        "{s} {calls}"
    );
}

#[tokio::test]
async fn settings_reach_the_daemons_and_webhooks_and_sms_go_through_twiliod() {
    let sys = System::start().await.unwrap();
    let api = Api::new(&sys);
    let admin = api.setup().await;
    let public = "https://pbx.example.org";
    let token = "0123456789abcdef0123456789abcdef";
    let (s, v, _) = api
        .call(
            "PUT",
            "/api/system/config",
            &admin,
            Some(
                json!({"values": {"system.public_url": public, "twilio.auth_token": token,
                                    "twilio.account_sid": format!("AC{}", "1".repeat(32)),
                                    // Credentials make twiliod list the numbers at
                                    // Twilio: a closed local port, never the internet.
                                    "twilio.api_base": format!("http://127.0.0.1:{}", testkit::ports::tcp())}}),
            ),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["values"]["twilio.auth_token"], "********");
    // Cookies are Secure from now on.
    let res = api
        .http
        .post(format!("{}/api/auth/login", api.base))
        .header("X-Requested-With", "gosip")
        .json(&json!({"email": "admin@example.org", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert!(
        res.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Secure")
    );

    // A webhook signed for the public URL reaches twiliod through webd;
    // twiliod got the new token by Reload, so the signature checks out.
    let path = "/api/webhooks/voice/incoming";
    let params: Vec<(String, String)> = [
        ("CallSid", format!("CA{}", "2".repeat(32))),
        ("AccountSid", format!("AC{}", "1".repeat(32))),
        ("From", "+15550002222".into()),
        ("To", "+15551230000".into()),
        ("CallStatus", "ringing".into()),
        ("Direction", "inbound".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let sig = e2e::standin::signature(token, &format!("{public}{path}"), &params);
    let deadline = Instant::now() + Duration::from_secs(8);
    let (status, body) = loop {
        let res = api
            .http
            .post(format!("{}{path}", api.base))
            .header("X-Twilio-Signature", &sig)
            .form(&params)
            .send()
            .await
            .unwrap();
        let st = res.status().as_u16();
        let body = res.text().await.unwrap();
        if st == 200 || Instant::now() > deadline {
            break (st, body);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<Response"), "{body}");
    // A forged one is refused by twiliod (403), not by webd.
    let res = api
        .http
        .post(format!("{}{path}", api.base))
        .header("X-Twilio-Signature", "forged=")
        .form(&params)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 403);

    // An SMS from the UI is queued by twiliod and readable right away.
    let (s, m, _) = api
        .call(
            "POST",
            "/api/messages",
            &admin,
            Some(json!({"to": "+15550003333", "body": "hello"})),
        )
        .await;
    assert_eq!(s, 201, "{m}");
    assert_eq!(m["direction"], "outbound");
    assert_eq!(m["from_number"], "+15551230000");
    let (_, list, _) = api
        .call("GET", "/api/messages?peer=%2B15550003333", &admin, None)
        .await;
    assert_eq!(list["total"], 1);
}

#[tokio::test]
async fn restore_while_the_daemons_run_keeps_them_healthy() {
    let sys = System::start().await.unwrap();
    let api = Api::new(&sys);
    let admin = api.setup().await;
    api.call(
        "POST",
        "/api/blocklist",
        &admin,
        Some(json!({"pattern": "+15550001111"})),
    )
    .await;
    let archive = api
        .http
        .post(format!("{}/api/system/backup", api.base))
        .header("X-Requested-With", "gosip")
        .header("Cookie", &admin)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(sys.data_dir.join("backups").read_dir().unwrap().count() >= 1);
    api.call(
        "POST",
        "/api/blocklist",
        &admin,
        Some(json!({"pattern": "+15550002222"})),
    )
    .await;
    let res = api
        .http
        .post(format!("{}/api/system/restore", api.base))
        .header("X-Requested-With", "gosip")
        .header("Cookie", &admin)
        .header("Content-Type", "application/x-tar")
        .body(archive)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    sys.wait_healthy(Duration::from_secs(10)).await.unwrap();
    let (_, _, admin) = api
        .call(
            "POST",
            "/api/auth/login",
            "",
            Some(json!({"email": "admin@example.org", "password": "correct horse battery"})),
        )
        .await;
    let (_, bl, _) = api.call("GET", "/api/blocklist", &admin, None).await;
    assert_eq!(bl["total"], 1);
    // The other daemons read the restored file (health asks each one to
    // query the database).
    let h = sys.wait_healthy(Duration::from_secs(10)).await.unwrap();
    assert_eq!(h["database"]["status"], "ok");
}

/// Debian's caddy on loopback with its internal CA in front of webd, as in
/// docs/Caddyfile: Secure cookies, a webhook signed for the public https URL
/// accepted by twiliod through the proxy, and client addresses taken from
/// X-Forwarded-For only when the peer is `system.trusted_proxy`.
#[tokio::test]
async fn behind_caddy_cookies_are_secure_webhooks_verify_and_only_the_trusted_proxy_is_believed() {
    let sys = System::start().await.unwrap();
    let api = Api::new(&sys);
    let admin = api.setup().await;
    let tmp = tempfile::tempdir().unwrap();
    let https_port = testkit::ports::tcp();
    let http_port = testkit::ports::tcp();
    let caddyfile = format!(
        "{{\n\tadmin off\n\tskip_install_trust\n\tauto_https disable_redirects\n\thttp_port {http_port}\n\
         \thttps_port {https_port}\n\tstorage file_system {store}\n}}\n\
         https://pbx.test:{https_port} {{\n\tbind 127.0.0.1\n\ttls internal\n\
         \treverse_proxy 127.0.0.1:{webd} {{\n\t\tflush_interval -1\n\t}}\n}}\n",
        store = tmp.path().join("caddy").display(),
        webd = sys.ports.http,
    );
    let cfg = tmp.path().join("Caddyfile");
    std::fs::write(&cfg, caddyfile).unwrap();
    let mut caddy = std::process::Command::new("caddy")
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&cfg)
        .env("HOME", tmp.path())
        .env("XDG_DATA_HOME", tmp.path())
        .env("XDG_CONFIG_HOME", tmp.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(tmp.path().join("caddy.log")).unwrap())
        .spawn()
        .expect("caddy is installed (scripts/install-deps.sh)");
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(&mut caddy);
    let root = tmp.path().join("caddy/pki/authorities/local/root.crt");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(root.exists() && std::net::TcpStream::connect(("127.0.0.1", https_port)).is_ok()) {
        assert!(
            Instant::now() < deadline,
            "caddy did not start: {}",
            std::fs::read_to_string(tmp.path().join("caddy.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let public = format!("https://pbx.test:{https_port}");
    let token = "fedcba9876543210fedcba9876543210";
    let (s, v, _) = api
        .call(
            "PUT",
            "/api/system/config",
            &admin,
            Some(
                json!({"values": {"system.public_url": public, "twilio.auth_token": token,
                                    "twilio.account_sid": format!("AC{}", "3".repeat(32)),
                                    // Credentials make twiliod list the numbers at
                                    // Twilio: a closed local port, never the internet.
                                    "twilio.api_base": format!("http://127.0.0.1:{}", testkit::ports::tcp())}}),
            ),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    // A client on another loopback address, trusting Caddy's CA.
    let client_ip: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&root).unwrap()).unwrap();
    let https = reqwest::Client::builder()
        .add_root_certificate(ca)
        .resolve("pbx.test", ([127, 0, 0, 1], https_port).into())
        .local_address(client_ip)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let login = |pw: &'static str| {
        https
            .post(format!("{public}/api/auth/login"))
            .header("X-Requested-With", "gosip")
            .header("X-Forwarded-For", "198.51.100.7")
            .json(&json!({"email": "admin@example.org", "password": pw}))
            .send()
    };
    let ok = login("correct horse battery").await.unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    let c = ok.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        c.contains("Secure") && c.contains("HttpOnly") && c.contains("SameSite=Strict"),
        "{c}"
    );

    // Not trusted yet: the failed login is logged with Caddy's address.
    assert_eq!(
        login("wrong password 1").await.unwrap().status().as_u16(),
        401
    );
    let last_ip = |admin: String| {
        let api = &api;
        async move {
            let (_, v, _) = api
                .call(
                    "GET",
                    "/api/security-events?kind=web_login_failed",
                    &admin,
                    None,
                )
                .await;
            v["items"][0]["ip_address"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        }
    };
    assert_eq!(last_ip(admin.clone()).await, "127.0.0.1");
    // Trusted: Caddy's X-Forwarded-For (the real client, never the spoofed
    // value the client sent to Caddy) is believed.
    api.call(
        "PUT",
        "/api/system/config",
        &admin,
        Some(json!({"values": {"system.trusted_proxy": "127.0.0.1"}})),
    )
    .await;
    assert_eq!(
        login("wrong password 2").await.unwrap().status().as_u16(),
        401
    );
    assert_eq!(last_ip(admin.clone()).await, "127.0.0.2");
    // Straight to webd (not through the proxy) a forged header is ignored.
    let direct = reqwest::Client::builder()
        .local_address(client_ip)
        .build()
        .unwrap();
    let r = direct
        .post(format!("{}/api/auth/login", api.base))
        .header("X-Requested-With", "gosip")
        .header("X-Forwarded-For", "198.51.100.8")
        .json(&json!({"email": "admin@example.org", "password": "wrong password 3"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(last_ip(admin.clone()).await, "127.0.0.2");

    // A webhook signed for the public https URL, sent through Caddy.
    let path = "/api/webhooks/voice/incoming";
    let params: Vec<(String, String)> = [
        ("CallSid", format!("CA{}", "4".repeat(32))),
        ("AccountSid", format!("AC{}", "3".repeat(32))),
        ("From", "+15550004444".into()),
        ("To", "+15551230000".into()),
        ("CallStatus", "ringing".into()),
        ("Direction", "inbound".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let sig = e2e::standin::signature(token, &format!("{public}{path}"), &params);
    let r = https
        .post(format!("{public}{path}"))
        .header("X-Twilio-Signature", sig)
        .form(&params)
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    let body = r.text().await.unwrap();
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("<Response"), "{body}");
}

/// The text of `<P{n}>` in a Grandstream provisioning file.
fn p_value(xml: &str, n: u32) -> String {
    let open = format!("<P{n}>");
    let close = format!("</P{n}>");
    let start = xml
        .find(&open)
        .map(|i| i + open.len())
        .expect("P-value present");
    let end = xml[start..].find(&close).expect("closed") + start;
    xml[start..end].to_owned()
}

#[tokio::test]
async fn a_desk_phone_set_up_by_mac_fetches_its_file_registers_with_it_and_then_the_file_is_gone() {
    let sys = System::start().await.unwrap();
    let api = Api::new(&sys);
    let admin = api.setup().await;
    let (s, dev, _) = api
        .call(
            "POST",
            "/api/devices",
            &admin,
            Some(
                json!({"name": "Front desk", "username": "desk200", "extension": "200",
                        "device_type": "grandstream"}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{dev}");
    let id = dev["id"].as_i64().unwrap();
    let (s, p, _) = api
        .call(
            "PUT",
            &format!("/api/devices/{id}/provisioning"),
            &admin,
            Some(json!({"mac": "C0:74:AD:12:34:56", "family": "grandstream"})),
        )
        .await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["file"], "cfgc074ad123456.xml");
    assert!(
        p["server_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!(":{}/provision", sys.ports.http)),
        "{p}"
    );

    let phone_ua = "Grandstream Model HW GXP2170 SW 1.0.11.3 DevId c074ad123456";
    let fetch = |ua: &'static str| {
        let url = format!("{}/provision/cfgc074ad123456.xml", sys.base_url());
        async move {
            let r = reqwest::Client::new()
                .get(url)
                .header("User-Agent", ua)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    // Not that phone: nothing, and nothing that says the file exists.
    assert_eq!(fetch("curl/8.5.0").await.0, 404);
    assert_eq!(
        fetch("Grandstream Model HW GXP2170 SW 1.0.11.3 DevId c074ad654321")
            .await
            .0,
        404
    );
    let (s, xml) = fetch(phone_ua).await;
    assert_eq!(s, 200, "{xml}");
    assert!(xml.contains("<mac>c074ad123456</mac>"), "{xml}");
    assert_eq!(p_value(&xml, 271), "1");
    assert_eq!(p_value(&xml, 35), "desk200");
    assert_eq!(p_value(&xml, 36), "desk200");
    assert_eq!(p_value(&xml, 270), "200");
    assert!(
        p_value(&xml, 47).ends_with(&format!(":{}", sys.ports.sip)),
        "{xml}"
    );
    assert_eq!(
        (p_value(&xml, 57), p_value(&xml, 58)),
        ("0".into(), "8".into())
    );
    let password = p_value(&xml, 34);

    // The phone's new password is the one that works now.
    let old = sip_register(sys.sip_addr(), "desk200", dev["password"].as_str().unwrap()).await;
    assert!(
        old.starts_with("SIP/2.0 401") || old.starts_with("SIP/2.0 403"),
        "{old}"
    );
    let ok = sip_register(sys.sip_addr(), "desk200", &password).await;
    assert_eq!(ok, "SIP/2.0 200 OK", "{}", sys.log("sipd"));

    // Registered: the file (and its clear password) is gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if fetch(phone_ua).await.0 == 404 {
            break;
        }
        assert!(Instant::now() < deadline, "the file is still served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, p, _) = api
        .call(
            "GET",
            &format!("/api/devices/{id}/provisioning"),
            &admin,
            None,
        )
        .await;
    assert_eq!(p["done"], true, "{p}");
    assert!(p["fetched_at"].is_string(), "{p}");
}
