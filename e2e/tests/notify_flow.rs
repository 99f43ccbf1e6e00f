//! Notifications end to end: the five real daemons, the Twilio stand-in and a
//! real SMTP server (aiosmtpd, `notifyd/tests/smtp_sink.py`). Twilio reaches
//! GoSIP through webd's public port; twiliod hands voicemails and forwarded
//! SMS to notifyd over gRPC; notifyd mails the DID owner. Each email is read
//! back from the SMTP server and parsed: transcript text, "transcript
//! unavailable", attachments compared byte for byte with the files twiliod
//! stored, and a voicemail that arrives while SMTP is down delivered once
//! after it comes back.
//!
//! Needs `cargo build --bins` first (the harness runs target/debug/*).

#[path = "support/smtp.rs"]
mod smtp;

use std::time::{Duration, Instant};

use e2e::System;
use e2e::standin::{CallOutcome, CallScript, DialOutcome, RecordScript, Standin};
use mail_parser::MimeHeaders;
use serde_json::json;
use smtp::{Smtp, parse, recipients};
use sqlx::SqlitePool;

const DID: &str = "+15550003333";
const OWNER: &str = "owner@pbx.test";
const FROM_ADDR: &str = "pbx@pbx.test";

struct Env {
    sys: System,
    twilio: Standin,
    pool: SqlitePool,
    smtp: Smtp,
    owner: i64,
    _mail: tempfile::TempDir,
}

impl Env {
    async fn start() -> Env {
        let mail = tempfile::tempdir().unwrap();
        let smtp = Smtp::start(testkit::ports::tcp(), mail.path()).await;
        let twilio = Standin::start().await.expect("stand-in");
        let sys = System::start_with(&[("GOSIP_TWILIOD_RETRY_BASE_MS", "100")])
            .await
            .expect("system");
        let pool = proto::db::open(&sys.data_dir).await.expect("db");
        let public = sys.base_url();
        let port = smtp.port.to_string();
        // Set up as the admin does: the wizard, Twilio and email on the
        // settings screen, the owner (an admin too) given the number with
        // texts emailed.
        let api = e2e::Api::new(&sys);
        let admin = api.setup(&sys, DID).await;
        api.connect_twilio(
            &admin,
            &twilio,
            json!({"system.public_url": public,
                   "email.transport": "smtp",
                   "email.from": FROM_ADDR,
                   "smtp.host": "127.0.0.1",
                   "smtp.port": port,
                   "smtp.security": "plain",
                   "notify.email_retry_delays": "0,2,4"}),
        )
        .await;
        let owner = api.new_user(&admin, OWNER, "admin").await;
        api.edit_number(
            &admin,
            DID,
            json!({"owner_user_id": owner, "sms_email_forward": true}),
        )
        .await;
        twilio.add_number_for(DID, &public);
        // twiliod's rules cache polls the database every 250 ms.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        Env {
            sys,
            twilio,
            pool,
            smtp,
            owner,
            _mail: mail,
        }
    }

    fn logs(&self) -> String {
        format!(
            "--- twiliod\n{}\n--- notifyd\n{}",
            self.sys.log("twiliod"),
            self.sys.log("notifyd")
        )
    }

    /// An unanswered call from `from` that records `secs` seconds.
    async fn voicemail(&self, from: &str, secs: u32, transcript: Option<&str>) -> String {
        let o: CallOutcome = e2e::standin::scenario::run(
            &self.twilio,
            &CallScript {
                from: from.into(),
                to: DID.into(),
                dial: DialOutcome::NoAnswer,
                record: RecordScript {
                    secs,
                    transcript: transcript.map(str::to_owned),
                    ..RecordScript::default()
                },
                ..CallScript::default()
            },
        )
        .await
        .expect("call");
        o.recording_sid
            .clone()
            .unwrap_or_else(|| panic!("no recording: {o:?}\n{}", self.logs()))
    }

    /// Waits for the first email whose subject names `needle`.
    async fn mail_about(&self, needle: &str, within: Duration) -> Vec<u8> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(m) = self.smtp.about(needle).into_iter().next() {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "no email about {needle}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The voicemail's stored WAV (path relative to the data dir) once
    /// twiliod has downloaded it.
    async fn stored_audio(&self, sid: &str) -> Vec<u8> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let audio: Option<Option<String>> =
                sqlx::query_scalar("SELECT audio_url FROM voicemails WHERE recording_sid = ?")
                    .bind(sid)
                    .fetch_optional(&self.pool)
                    .await
                    .unwrap();
            if let Some(Some(path)) = audio {
                assert_eq!(path, format!("voicemails/{sid}.wav"));
                return std::fs::read(self.sys.data_dir.join(path)).unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "voicemail {sid} not stored\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn email_deliveries(&self) -> Vec<(String, String, String)> {
        sqlx::query_as(
            "SELECT target, status, COALESCE(response, '') FROM deliveries \
             WHERE channel = 'email' AND job_id IS NOT NULL ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }
}

fn png(seed: u8) -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    v.extend((0..4000u32).map(|i| (i as u8).wrapping_mul(seed) ^ 0x5a));
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn voicemails_and_mms_reach_the_did_owner_by_email_with_their_files_even_after_an_smtp_outage()
 {
    let mut env = Env::start().await;

    // 1. No answer, a 12 s recording with a transcript: one email to the
    //    owner with the transcript in the body and the WAV attached.
    let caller = "+15557650001";
    let sid = env
        .voicemail(
            caller,
            12,
            Some("Hi, it's Dana, call me back about Friday."),
        )
        .await;
    let raw = env.mail_about(caller, Duration::from_secs(30)).await;
    let wav = env.stored_audio(&sid).await;
    assert_eq!(wav.len(), 44 + 12 * 16000, "a 12 s 8 kHz 16-bit WAV");
    let user: i64 = sqlx::query_scalar("SELECT user_id FROM voicemails WHERE recording_sid = ?")
        .bind(&sid)
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(user, env.owner);
    let m = parse(&raw);
    assert_eq!(recipients(&m), [OWNER]);
    assert_eq!(
        m.from().and_then(|f| f.first()).and_then(|a| a.address()),
        Some(FROM_ADDR)
    );
    // A Message-ID naming the delivery, the same on every retry.
    let id = m.message_id().unwrap_or_default();
    assert!(
        id.starts_with("gosip.") && id.ends_with("@pbx.test"),
        "Message-ID {id:?}"
    );
    let subject = m.subject().unwrap();
    assert!(
        subject.contains("voicemail") && subject.contains("0:12"),
        "{subject}"
    );
    let text = m.body_text(0).unwrap();
    assert!(
        text.contains("Hi, it's Dana, call me back about Friday."),
        "{text}"
    );
    assert!(
        m.body_html(0)
            .unwrap()
            .contains("call me back about Friday")
    );
    let atts: Vec<_> = m.attachments().collect();
    assert_eq!(atts.len(), 1, "{text}");
    assert_eq!(
        atts[0].attachment_name(),
        Some(format!("{sid}.wav").as_str())
    );
    assert_eq!(
        atts[0].content_type().map(|c| c.ctype()),
        Some("audio"),
        "WAV attached as audio/*"
    );
    assert!(
        atts[0].contents() == wav.as_slice(),
        "attachment bytes differ"
    );

    // 2. Transcription fails. twiliod holds the hand-off until the
    //    transcription callback settles the status (TranscriptionStatus
    //    failed -> transcript_status 'failed', transcript NULL), then hands
    //    notifyd `transcript: null`; the one email carries the audio and says
    //    the transcript is unavailable.
    let caller = "+15557650002";
    let sid = env.voicemail(caller, 7, None).await;
    let raw = env.mail_about(caller, Duration::from_secs(30)).await;
    let wav = env.stored_audio(&sid).await;
    let status: String =
        sqlx::query_scalar("SELECT transcript_status FROM voicemails WHERE recording_sid = ?")
            .bind(&sid)
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!(status, "failed", "Twilio's TranscriptionStatus=failed");
    let m = parse(&raw);
    assert_eq!(recipients(&m), [OWNER]);
    let text = m.body_text(0).unwrap();
    assert!(text.contains("(transcript unavailable)"), "{text}");
    let atts: Vec<_> = m.attachments().collect();
    assert_eq!(atts.len(), 1);
    assert!(
        atts[0].contents() == wav.as_slice(),
        "attachment bytes differ"
    );

    // 3. An MMS with one picture to the DID (email forwarding on): the text
    //    and the picture, byte-exact.
    let handset = "+15557650003";
    let picture = png(7);
    let (msid, st, answer) = env
        .twilio
        .send_sms(
            Some(&format!("{}/api/webhooks/sms/incoming", env.sys.base_url())),
            handset,
            DID,
            "Photo of the parcel at the door",
            vec![("image/png".into(), picture.clone())],
        )
        .await
        .unwrap();
    assert_eq!(st, 200, "{answer}");
    let raw = env.mail_about(handset, Duration::from_secs(30)).await;
    let stored: String =
        sqlx::query_scalar("SELECT media_urls FROM messages WHERE message_sid = ?")
            .bind(&msid)
            .fetch_one(&env.pool)
            .await
            .unwrap();
    let stored: serde_json::Value = serde_json::from_str(&stored).unwrap();
    let path = stored[0]["path"].as_str().unwrap().to_owned();
    assert_eq!(
        std::fs::read(env.sys.data_dir.join(&path)).unwrap(),
        picture
    );
    let m = parse(&raw);
    assert_eq!(recipients(&m), [OWNER]);
    assert!(
        m.body_text(0)
            .unwrap()
            .contains("Photo of the parcel at the door")
    );
    let atts: Vec<_> = m.attachments().collect();
    assert_eq!(atts.len(), 1);
    assert_eq!(
        atts[0].content_type().map(|c| (c.ctype(), c.subtype())),
        Some(("image", Some("png")))
    );
    assert!(
        atts[0].contents() == picture.as_slice(),
        "picture bytes differ"
    );

    // 4. SMTP down when a voicemail arrives: the first attempt fails and is
    //    recorded; the server comes back before the next try (2 s later) and
    //    the email is delivered exactly once.
    env.smtp.stop();
    let before = env.email_deliveries().await.len();
    let caller = "+15557650004";
    let sid = env
        .voicemail(caller, 5, Some("Sent while the mail server was down."))
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let d = env.email_deliveries().await;
        if d[before..].iter().any(|(_, s, _)| s == "failed") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no failed attempt: {d:?}\n{}",
            env.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(env.smtp.about(caller).is_empty(), "nothing sent while down");
    env.smtp.spawn().await;
    let raw = env.mail_about(caller, Duration::from_secs(30)).await;
    let wav = env.stored_audio(&sid).await;
    let m = parse(&raw);
    assert_eq!(recipients(&m), [OWNER]);
    assert!(
        m.body_text(0)
            .unwrap()
            .contains("Sent while the mail server was down.")
    );
    assert!(m.attachments().next().unwrap().contents() == wav.as_slice());
    // Past the last retry (4 s): still one email, one failure then one success.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(env.smtp.about(caller).len(), 1, "delivered once");
    // One failure (two if the restart outlasted the 2 s wait), then one success.
    let d = env.email_deliveries().await[before..].to_vec();
    let statuses: Vec<&str> = d.iter().map(|(_, s, _)| s.as_str()).collect();
    assert!(
        matches!(
            statuses.as_slice(),
            ["failed", "sent"] | ["failed", "failed", "sent"]
        ),
        "{d:?}\n{}",
        env.logs()
    );
    assert!(d.iter().all(|(t, _, _)| t == OWNER), "{d:?}");
    let failed = &env.email_deliveries().await[before].2;
    assert!(failed.contains("Connection refused"), "{failed}");
}
