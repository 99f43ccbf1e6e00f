#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The first-run wizard's answers through POST /api/setup: where the PBX is
//! (time zone, country) and the first number as a person types it.

use serde_json::json;

mod common;

fn fields(r: &common::Res) -> Vec<String> {
    r.json()["error"]["details"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f["field"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn the_wizard_sets_the_time_zone_and_country_and_takes_the_first_number_nationally() {
    let t = common::start_with(&[]).await;
    let admin = json!({"email": "owner@example.org", "password": "correct horse battery"});
    // Wrong answers are named by their field and change nothing.
    let r = t
        .send(
            "POST",
            "/api/setup",
            "",
            Some(json!({"setup_token": t.setup_token(), "admin": admin,
                        "timezone": "Mars/Olympus_Mons", "country_code": "0044",
                        "did": {"number": "12", "name": "Main"}})),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    let mut f = fields(&r);
    f.sort();
    assert_eq!(f, ["country_code", "did.number", "timezone"]);
    assert_eq!(
        t.send("GET", "/api/setup", "", None).await.json()["needed"],
        true
    );

    // A London office: its number typed the way it is written there.
    let r = t
        .send(
            "POST",
            "/api/setup",
            "",
            Some(json!({"setup_token": t.setup_token(), "admin": admin,
                        "timezone": "Europe/London", "country_code": "44",
                        "did": {"number": "020 7946 0018", "name": "Main"}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let cookie = r.cookie();
    let cfg = t
        .send("GET", "/api/system/config", &cookie, None)
        .await
        .json();
    assert_eq!(cfg["values"]["system.timezone"], "Europe/London");
    assert_eq!(cfg["values"]["system.default_country"], "44");
    let dids = t.send("GET", "/api/dids", &cookie, None).await.json();
    let items = dids["items"]
        .as_array()
        .unwrap_or_else(|| dids.as_array().unwrap());
    assert_eq!(items[0]["number"], "+442079460018", "{dids}");
    // The UI learns the country from the login and from "me", to show
    // numbers the national way.
    assert_eq!(r.json()["country_code"], "44");
    let me = t.send("GET", "/api/auth/me", &cookie, None).await.json();
    assert_eq!(me["country_code"], "44", "{me}");
    assert_eq!(
        me["role"], "admin",
        "the user's own fields stay where they were"
    );
}

#[tokio::test]
async fn the_wizard_offers_sipds_addresses_with_the_token_and_stores_the_ones_typed() {
    let t = common::start_with(&[]).await;
    // Only a holder of the setup token learns the addresses.
    for body in [json!({}), json!({"setup_token": "wrong"})] {
        let r = t.send("POST", "/api/setup/network", "", Some(body)).await;
        assert_eq!(r.status, 403, "{}", r.text());
    }
    let r = t
        .send(
            "POST",
            "/api/setup/network",
            "",
            Some(json!({"setup_token": t.setup_token()})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let g = r.json();
    for k in ["lan_address", "public_address", "public_source"] {
        assert!(g[k].is_string(), "{k} in {g}");
    }
    let admin = json!({"email": "owner@example.org", "password": "correct horse battery"});
    // A LAN address that is not this machine's and a public address that is
    // no host name are refused beside their fields.
    let r = t
        .send(
            "POST",
            "/api/setup",
            "",
            Some(json!({"setup_token": t.setup_token(), "admin": admin,
                        "local_address": "198.51.100.77", "public_address": "not a host!"})),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    let mut f = fields(&r);
    f.sort();
    assert_eq!(f, ["local_address", "public_address"]);
    let r = t
        .send(
            "POST",
            "/api/setup",
            "",
            Some(json!({"setup_token": t.setup_token(), "admin": admin,
                        "local_address": "127.0.0.1", "public_address": "pbx.example.org"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let cookie = r.cookie();
    let cfg = t
        .send("GET", "/api/system/config", &cookie, None)
        .await
        .json();
    assert_eq!(cfg["values"]["sip.local_address"], "127.0.0.1");
    assert_eq!(cfg["values"]["sip.public_address"], "pbx.example.org");
    // Setup is over: the token no longer opens the addresses.
    let r = t
        .send(
            "POST",
            "/api/setup/network",
            "",
            Some(json!({"setup_token": t.setup_token()})),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text());
}
