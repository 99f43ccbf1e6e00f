#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Provisioning files against strangers: only the phone with that MAC and
//! family gets its file, and an address guessing MACs is cut off.

use axum::body::Body;
use axum::http::Request;
use serde_json::json;

mod common;

async fn admin(t: &common::Webd) -> String {
    let r = t
        .send(
            "POST",
            "/api/setup",
            "",
            Some(json!({"setup_token": t.setup_token(),
                "admin": {"email": "admin@example.org", "password": "correct horse battery"}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.cookie()
}

async fn fetch(t: &common::Webd, file: &str, ua: &str) -> (u16, String) {
    let r = t
        .raw(
            Request::get(format!("/provision/{file}"))
                .header("User-Agent", ua)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    (r.status.as_u16(), r.text())
}

#[tokio::test]
async fn only_that_phone_gets_its_file_and_mac_guessing_is_cut_off() {
    let t = common::start_with(&[]).await;
    let a = admin(&t).await;
    let r = t
        .send(
            "POST",
            "/api/devices",
            &a,
            Some(json!({"name": "Kitchen", "username": "kitchen1", "device_type": "grandstream"})),
        )
        .await;
    let id = r.json()["id"].as_i64().unwrap();
    let put = |body: serde_json::Value| {
        let t = &t;
        let a = a.clone();
        async move {
            t.send(
                "PUT",
                &format!("/api/devices/{id}/provisioning"),
                &a,
                Some(body),
            )
            .await
        }
    };
    // Bad input is named.
    let r = put(json!({"mac": "not a mac", "family": "polycom"})).await;
    assert_eq!(r.status, 422);
    let r = put(json!({"mac": "80-5E-C0-12-34-56", "family": "yealink"})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["file"], "805ec0123456.cfg");
    // Someone else cannot see or change it.
    let r = t
        .send("GET", &format!("/api/devices/{id}/provisioning"), "", None)
        .await;
    assert_eq!(r.status, 401);

    let yealink = "Yealink SIP-T46S 66.86.0.15 80:5e:c0:12:34:56";
    // The Grandstream path for that MAC, another MAC, another phone's UA.
    assert_eq!(fetch(&t, "cfg805ec0123456.xml", yealink).await.0, 404);
    assert_eq!(fetch(&t, "805ec0123457.cfg", yealink).await.0, 404);
    assert_eq!(fetch(&t, "805ec0123456.cfg", "Mozilla/5.0").await.0, 404);
    let (s, cfg) = fetch(&t, "805ec0123456.cfg", yealink).await;
    assert_eq!(s, 200);
    assert!(cfg.contains("account.1.user_name = kitchen1"), "{cfg}");
    assert!(cfg.contains("account.1.password = "), "{cfg}");
    // The Message key dials the voicemail access code.
    assert!(cfg.contains("voice_mail.number.1 = *97"), "{cfg}");

    // An address that keeps guessing is refused even the right file.
    for i in 0..webd::accounts::PROVISION_MISSES {
        let (s, _) = fetch(&t, &format!("805ec0{:06x}.cfg", 0x200000 + i), yealink).await;
        assert_eq!(s, 404);
    }
    assert_eq!(fetch(&t, "805ec0123456.cfg", yealink).await.0, 404);

    // Stopped by the admin.
    let r = t
        .send(
            "DELETE",
            &format!("/api/devices/{id}/provisioning"),
            &a,
            None,
        )
        .await;
    assert_eq!(r.status, 204);
}

#[tokio::test]
async fn a_phone_set_to_tls_is_sent_the_tls_port() {
    let t = common::start_with(&[]).await;
    let a = admin(&t).await;
    let r = t
        .send(
            "POST",
            "/api/devices",
            &a,
            Some(
                json!({"name": "Desk", "username": "desk9", "device_type": "grandstream",
                        "transport": "tls", "srtp": "required"}),
            ),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_i64().unwrap();
    let r = t
        .send(
            "PUT",
            &format!("/api/devices/{id}/provisioning"),
            &a,
            Some(json!({"mac": "C0:74:AD:12:34:57", "family": "grandstream"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (s, xml) = fetch(
        &t,
        "cfgc074ad123457.xml",
        "Grandstream Model HW GXP2170 SW 1.0.11.3 DevId c074ad123457",
    )
    .await;
    assert_eq!(s, 200, "{xml}");
    // sipd is down here: the default SIP-over-TLS port.
    assert!(xml.contains(":5061</P47>"), "{xml}");
}
