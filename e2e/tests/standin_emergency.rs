//! The stand-in models a number's emergency address as Twilio does:
//! `EmergencyAddressSid` on the IncomingPhoneNumber update sets it (then
//! `emergency_status` is Active and the address registered), an empty value
//! removes it, and a SID that names no address is refused.

use e2e::standin::Standin;
use serde_json::Value;

async fn update(s: &Standin, pn: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!(
            "{}/IncomingPhoneNumbers/{pn}.json",
            s.account_url()
        ))
        .basic_auth(&s.account_sid, Some(&s.auth_token))
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn emergency(v: &Value) -> (Value, Value, Value) {
    (
        v["emergency_status"].clone(),
        v["emergency_address_sid"].clone(),
        v["emergency_address_status"].clone(),
    )
}

#[tokio::test]
async fn a_numbers_emergency_address_is_set_refused_when_malformed_and_removed() {
    let s = Standin::start().await.unwrap();
    let pn = s.add_number("+15550001111", None);
    let address = "AD0123456789abcdef0123456789abcdef";
    let (code, v) = update(&s, &pn, &[("FriendlyName", "Office")]).await;
    assert_eq!(code, 200);
    assert_eq!(
        emergency(&v),
        ("Inactive".into(), Value::Null, "unregistered".into())
    );

    let (code, v) = update(&s, &pn, &[("EmergencyAddressSid", address)]).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        emergency(&v),
        ("Active".into(), address.into(), "registered".into())
    );
    assert_eq!(
        s.number("+15550001111")
            .unwrap()
            .emergency_address_sid
            .as_deref(),
        Some(address)
    );

    let (code, v) = update(&s, &pn, &[("EmergencyAddressSid", "AD123")]).await;
    assert_eq!((code, v["code"].as_i64()), (404, Some(20404)), "{v}");
    assert_eq!(
        s.number("+15550001111")
            .unwrap()
            .emergency_address_sid
            .as_deref(),
        Some(address)
    );

    let (code, v) = update(&s, &pn, &[("EmergencyAddressSid", "")]).await;
    assert_eq!(code, 200);
    assert_eq!(
        emergency(&v),
        ("Inactive".into(), Value::Null, "unregistered".into())
    );
}
