//! The Twilio stand-in as a process, for `make demo` and manual poking.
//!
//! ```text
//! twilio-standin --listen 127.0.0.1:4011 --number +15550001111
//! twilio-standin --demo --gosip http://127.0.0.1:8080 --configure-db ./data \
//!                --number +15550001111
//! ```
//! Control it at run time: `POST /_control/faults {"rate_limit":3,"retry_after":2}`,
//! `POST /_control/call {"from":"+1555...","to":"+1555...","dial":{"outcome":"no_answer"},
//! "record":{"secs":12,"transcript":"hello"}}`, `GET /_control/requests`.

use std::time::Duration;

use clap::Parser;
use e2e::standin::{self, CallScript, DialOutcome, RecordScript, Standin};

#[derive(Debug, Parser)]
#[command(name = "twilio-standin", about = "Local Twilio stand-in for GoSIP")]
struct Args {
    /// Address of the REST API (`twilio.api_base`).
    #[arg(long, env = "GOSIP_STANDIN_LISTEN", default_value = "127.0.0.1:4011")]
    listen: String,
    #[arg(long, default_value = standin::ACCOUNT_SID)]
    account_sid: String,
    #[arg(long, default_value = standin::AUTH_TOKEN)]
    auth_token: String,
    /// Numbers on the account (repeatable).
    #[arg(long = "number", default_value = "+15550001111")]
    numbers: Vec<String>,
    /// GoSIP's public base URL (webhooks are signed for it and sent there).
    #[arg(
        long,
        env = "GOSIP_STANDIN_GOSIP",
        default_value = "http://127.0.0.1:8080"
    )]
    gosip: String,
    /// Write twilio.api_base/account/token and system.public_url into the
    /// GoSIP database in this data dir, and link the numbers as DIDs.
    #[arg(long)]
    configure_db: Option<std::path::PathBuf>,
    /// Play scripted calls against the running GoSIP every `--every` seconds.
    #[arg(long)]
    demo: bool,
    #[arg(long, default_value_t = 60)]
    every: u64,
    /// Also run the termination trunk (sipd's outbound calls) with these
    /// digest credentials: `user:password`.
    #[arg(long)]
    trunk: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    proto::daemon::init_tracing("text");
    let args = Args::parse();
    let s = Standin::start_on(&args.listen, &args.account_sid, &args.auth_token).await?;
    let gosip = args.gosip.trim_end_matches('/').to_owned();
    for n in &args.numbers {
        let sid = s.add_number(n, Some(&format!("{gosip}/api/webhooks/voice/incoming")));
        if let Some(w) = s.world().numbers.iter_mut().find(|x| x.sid == sid) {
            w.status_callback = Some(format!("{gosip}/api/webhooks/voice/status"));
            w.sms_url = Some(format!("{gosip}/api/webhooks/sms/incoming"));
        }
    }
    tracing::info!(api_base = %s.base_url, account = %s.account_sid, "twilio stand-in listening");
    let _trunk = match args.trunk.as_deref().and_then(|t| t.split_once(':')) {
        Some((user, pass)) => {
            let t = standin::trunk::Trunk::start(s.clone(), user, pass).await?;
            tracing::info!(addr = %t.addr, "termination trunk listening (UDP)");
            s.set_trunk(t.clone());
            Some(t)
        }
        None => None,
    };
    if let Some(dir) = &args.configure_db {
        configure(dir, &s, &gosip, &args.numbers).await?;
    }
    if args.demo {
        if args.configure_db.is_some() {
            // twiliod re-reads settings every 5 s: let it see the credentials.
            tokio::time::sleep(Duration::from_secs(6)).await;
        }
        let s2 = s.clone();
        let to = args.numbers.first().cloned().unwrap_or_default();
        let every = Duration::from_secs(args.every.max(5));
        let db = args.configure_db.clone();
        tokio::spawn(async move {
            loop {
                if let Some(dir) = &db {
                    give_demo_numbers_an_owner(dir).await;
                }
                for (name, script) in demo_calls(&to) {
                    match standin::scenario::run(&s2, &script).await {
                        Ok(o) => {
                            tracing::info!(scenario = name, status = %o.status, events = o.events.len(), "demo call done")
                        }
                        Err(e) => tracing::warn!(scenario = name, error = %e, "demo call failed"),
                    }
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
                let text = "Hi! Are we still on for Friday? Reply here or call me.";
                match s2
                    .send_sms(None, "+15557654321", &to, text, Vec::new())
                    .await
                {
                    Ok((sid, status, _)) => tracing::info!(%sid, status, "demo sms sent"),
                    Err(e) => tracing::warn!(error = %e, "demo sms failed"),
                }
                tokio::time::sleep(every).await;
            }
        });
    }
    tokio::signal::ctrl_c().await?;
    s.shutdown();
    Ok(())
}

/// Demo numbers without an owner go to the first admin (once the setup
/// wizard made one), so the demo's voicemails show up in their inbox.
async fn give_demo_numbers_an_owner(dir: &std::path::Path) {
    let Ok(pool) = proto::db::open(dir).await else {
        return;
    };
    let _ = sqlx::query(
        "UPDATE dids SET owner_user_id = (SELECT id FROM users WHERE role = 'admin' ORDER BY id LIMIT 1) \
         WHERE owner_user_id IS NULL AND name = 'Demo line'",
    )
    .execute(&pool)
    .await;
    pool.close().await;
}

/// The demo's calls: a voicemail with transcript, a spam call, an anonymous
/// call; each round ends with an inbound SMS.
fn demo_calls(to: &str) -> Vec<(&'static str, CallScript)> {
    let call = |from: &str| CallScript {
        from: from.into(),
        to: to.into(),
        ..CallScript::default()
    };
    vec![
        (
            "voicemail",
            CallScript {
                dial: DialOutcome::NoAnswer,
                record: RecordScript {
                    secs: 12,
                    transcript: Some("Hi, it's Alice. Call me back about Friday.".into()),
                    ..RecordScript::default()
                },
                ..call("+15557654321")
            },
        ),
        (
            "spam",
            CallScript {
                params: vec![(
                    "AddOns".into(),
                    r#"{"status":"successful","message":null,"code":null,"results":{"nomorobo_spamscore":{"request_sid":"XR0","status":"successful","message":null,"code":null,"result":{"status":"success","message":"success","score":1}}}}"#.into(),
                )],
                ..call("+15559990000")
            },
        ),
        ("anonymous", call("anonymous")),
    ]
}

async fn configure(
    dir: &std::path::Path,
    s: &Standin,
    gosip: &str,
    numbers: &[String],
) -> anyhow::Result<()> {
    let pool = proto::db::open(dir).await?;
    for (k, v) in [
        ("twilio.api_base", s.base_url.as_str()),
        ("twilio.account_sid", s.account_sid.as_str()),
        ("twilio.auth_token", s.auth_token.as_str()),
        ("system.public_url", gosip),
    ] {
        proto::settings::store(&pool, k, v).await?;
    }
    for n in numbers {
        let sid = s.number(n).map(|x| x.sid).unwrap_or_default();
        sqlx::query("INSERT INTO dids (number, twilio_sid, name) VALUES (?, ?, 'Demo line') ON CONFLICT(number) DO UPDATE SET twilio_sid = excluded.twilio_sid")
            .bind(n)
            .bind(sid)
            .execute(&pool)
            .await?;
    }
    tracing::info!(dir = %dir.display(), "GoSIP configured for the stand-in");
    Ok(())
}
