//! The whole system with the Twilio stand-in: webhooks enter through webd's
//! public port (which forwards `/api/webhooks/*` to twiliod), are checked
//! against the public URL, and an unanswered call ends as a voicemail whose
//! notification notifyd takes. Needs `cargo build --bins` first.

use std::time::{Duration, Instant};

use e2e::System;
use e2e::standin::{CallScript, DialOutcome, Event, Faults, RecordScript, Standin};

const DID: &str = "+15550001111";

#[tokio::test(flavor = "multi_thread")]
async fn an_inbound_call_through_webd_is_decided_by_twiliod_and_leaves_a_voicemail() {
    let sys = System::start().await.expect("system");
    let s = Standin::start().await.expect("stand-in");
    let public = sys.base_url();
    let pool = proto::db::open(&sys.data_dir).await.expect("db");
    // Set up as the admin does: the wizard (the admin owns the first
    // number), then Twilio's credentials on the settings screen.
    let api = e2e::Api::new(&sys);
    let admin = api.setup(&sys, DID).await;
    api.connect_twilio(&admin, &s, serde_json::json!({"system.public_url": public}))
        .await;
    let owner = api.ok(&admin, 200, "GET", "/api/auth/me", None).await["id"]
        .as_i64()
        .expect("admin id");
    s.add_number_for(DID, &public);
    // Give the rules cache its reload.
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let o = e2e::standin::scenario::run(
        &s,
        &CallScript {
            from: "+15557654321".into(),
            to: DID.into(),
            dial: DialOutcome::NoAnswer,
            record: RecordScript {
                secs: 9,
                transcript: Some("It's me, call back".into()),
                ..RecordScript::default()
            },
            ..CallScript::default()
        },
    )
    .await
    .expect("call");
    assert!(
        o.has(|e| matches!(e, Event::Dial { noun, .. } if noun == "Sip")),
        "{o:?}\n{}",
        sys.log("twiliod")
    );
    let sid = o.recording_sid.clone().expect("recorded");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let row: Option<(Option<String>, Option<String>, i64)> = sqlx::query_as(
            "SELECT audio_url, transcript, user_id FROM voicemails WHERE recording_sid = ?",
        )
        .bind(&sid)
        .fetch_optional(&pool)
        .await
        .expect("query");
        if let Some((Some(audio), Some(t), user)) = row {
            assert_eq!(t, "It's me, call back");
            assert_eq!(user, owner);
            assert!(sys.data_dir.join(audio).is_file());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no voicemail\n{}",
            sys.log("twiliod")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // notifyd is up: the hand-off job completes.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st: Option<String> =
            sqlx::query_scalar("SELECT status FROM jobs WHERE idempotency_key = ?")
                .bind(format!("notify:voicemail:{sid}"))
                .fetch_optional(&pool)
                .await
                .expect("query");
        if st.as_deref() == Some("done") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "notify job {st:?}\n{}",
            sys.log("twiliod")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A forged webhook through webd is refused and logged.
    s.faults(Faults {
        bad_signature: true,
        ..Faults::default()
    });
    let o = e2e::standin::scenario::run(
        &s,
        &CallScript {
            from: "+15557654321".into(),
            to: DID.into(),
            ..CallScript::default()
        },
    )
    .await
    .expect("call");
    assert!(
        o.has(|e| matches!(e, Event::Webhook { status: 403, .. })),
        "{o:?}"
    );
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM security_events WHERE kind = 'webhook_signature' AND ip_address = '127.0.0.1'",
    )
    .fetch_one(&pool)
    .await
    .expect("count");
    assert!(n >= 1, "security event with the caller's address");
}
