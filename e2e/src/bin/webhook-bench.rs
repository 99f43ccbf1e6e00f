//! Webhook-to-TwiML latency of a real twiliod binary with 1,000 routes and
//! 10,000 blocklist entries (`scripts/bench/webhook.sh`). Prints numbers;
//! asserts nothing.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use proto::routing::{
    Action, CallerIdCondition, CallerMatch, Condition, Day, ForwardAction, RingAction,
    TimeCondition, TimeWhen,
};

/// The seeding transaction.
type Tx<'c> = sqlx::Transaction<'c, sqlx::Sqlite>;

#[derive(Debug, Parser)]
#[command(name = "webhook-bench")]
struct Args {
    /// Folder with the twiliod binary.
    #[arg(long, default_value = "target/release")]
    bin_dir: std::path::PathBuf,
    #[arg(long, default_value_t = 3000)]
    requests: usize,
    #[arg(long, default_value_t = 1000)]
    routes: usize,
    #[arg(long, default_value_t = 10_000)]
    blocklist: usize,
}

const PUBLIC: &str = "https://pbx.bench";
const TOKEN: &str = "bench-auth-token";
const DID: &str = "+15550001111";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("data");
    seed(&a, &data).await?;
    let (mut child, port) = start_twiliod(&a, &data).await?;
    let m = measure(&a, port).await?;
    let _ = child.kill();
    let _ = child.wait();
    report(&a, m);
    Ok(())
}

/// Fills a fresh database the way a busy install looks: settings, one DID
/// with `routes` rules ending in a ring-the-owner rule, `blocklist` entries.
async fn seed(a: &Args, data: &std::path::Path) -> anyhow::Result<()> {
    let pool = proto::db::open(data).await?;
    for (k, v) in [
        ("system.public_url", PUBLIC),
        ("twilio.auth_token", TOKEN),
        ("twilio.account_sid", e2e::standin::ACCOUNT_SID),
        ("twilio.api_base", "http://127.0.0.1:9"),
        ("system.timezone", "America/New_York"),
    ] {
        proto::settings::store(&pool, k, v).await?;
    }
    let owner: i64 = sqlx::query_scalar(
        "INSERT INTO users (email, password_hash, role) VALUES ('b@bench', 'x', 'user') RETURNING id",
    )
    .fetch_one(&pool)
    .await?;
    let did: i64 = sqlx::query_scalar(
        "INSERT INTO dids (number, name, owner_user_id) VALUES (?, 'Bench', ?) RETURNING id",
    )
    .bind(DID)
    .bind(owner)
    .fetch_one(&pool)
    .await?;
    let mut tx = pool.begin().await?;
    insert_blocklist(&mut tx, a.blocklist).await?;
    insert_routes(&mut tx, did, a.routes).await?;
    tx.commit().await?;
    drop(pool);
    Ok(())
}

/// `n` blocklist entries: 1% regex, 9% prefix, 90% exact; [`caller`]
/// picks some of the exact and prefix ones on purpose.
async fn insert_blocklist(tx: &mut Tx<'_>, n: usize) -> anyhow::Result<()> {
    for i in 0..n {
        let (p, t) = match i % 100 {
            0 => (format!(r"^\+44{:04}\d{{6}}$", i), "regex"),
            1..=9 => (format!("+1900{:06}", i), "prefix"),
            _ => (format!("+1800{:07}", i), "exact"),
        };
        sqlx::query("INSERT INTO blocklist (pattern, pattern_type) VALUES (?, ?)")
            .bind(p)
            .bind(t)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// `routes - 1` forwarding rules that never match the bench's callers, then
/// a default rule ringing the owner, so every call evaluates them all.
async fn insert_routes(tx: &mut Tx<'_>, did: i64, routes: usize) -> anyhow::Result<()> {
    let forward = Action::Forward(ForwardAction {
        number: "+15559990000".into(),
    })
    .to_parts();
    for i in 0..routes.saturating_sub(1) {
        let (ct, cd) = route_condition(i).to_parts();
        sqlx::query(
            "INSERT INTO routes (did_id, priority, name, condition_type, condition_data, action_type, action_data) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(did)
        .bind(i as i64)
        .bind(format!("rule {i}"))
        .bind(ct)
        .bind(cd.to_string())
        .bind(&forward.0)
        .bind(forward.1.to_string())
        .execute(&mut **tx)
        .await?;
    }
    let (at, ad) = Action::Ring(RingAction {
        device_ids: vec![],
        owner: true,
        timeout: None,
    })
    .to_parts();
    sqlx::query(
        "INSERT INTO routes (did_id, priority, name, condition_type, condition_data, action_type, action_data) \
         VALUES (?, 100000, 'last', 'default', '{}', ?, ?)",
    )
    .bind(did)
    .bind(at)
    .bind(ad.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The condition of rule `i`: caller numbers, a caller prefix, a past
/// holiday or a one-minute Sunday window, in turn.
fn route_condition(i: usize) -> Condition {
    // Built from the routing contract, so the rules are the shape twiliod
    // evaluates (a row in any other shape would never match and cost nothing).
    let caller = |matches, numbers: Vec<String>, prefix: Option<String>| {
        Condition::CallerId(CallerIdCondition {
            matches,
            numbers,
            prefix,
            negate: false,
        })
    };
    let time = |when, days: Vec<Day>, start: Option<&str>, end: Option<&str>, holidays| {
        Condition::Time(TimeCondition {
            when,
            days,
            start: start.map(str::to_owned),
            end: end.map(str::to_owned),
            hours: None,
            holidays,
        })
    };
    match i % 4 {
        0 => caller(
            CallerMatch::Numbers,
            vec![format!("+1777{:07}", i), format!("+1777{:07}", i + 1)],
            None,
        ),
        1 => caller(CallerMatch::Prefix, vec![], Some(format!("+1666{:04}", i))),
        2 => time(
            TimeWhen::Holidays,
            vec![],
            None,
            None,
            chrono::NaiveDate::from_ymd_opt(2001, 1, 1).map(|d| vec![d]),
        ),
        _ => time(
            TimeWhen::Custom,
            vec![Day::Sun],
            Some("03:00"),
            Some("03:01"),
            None,
        ),
    }
}

/// Starts twiliod on free ports over `data` and waits (up to 20 s) until
/// its HTTP port accepts; returns the process and that port.
async fn start_twiliod(a: &Args, data: &std::path::Path) -> anyhow::Result<(Child, u16)> {
    let port = testkit::ports::tcp();
    let grpc = testkit::ports::tcp();
    let child = Command::new(a.bin_dir.join("twiliod"))
        .env("GOSIP_DATA_DIR", data)
        .env("GOSIP_TWILIOD_HTTP", format!("127.0.0.1:{port}"))
        .env("GOSIP_TWILIOD_GRPC", format!("127.0.0.1:{grpc}"))
        .env("GOSIP_NOTIFYD_GRPC", "127.0.0.1:9")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "twiliod did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((child, port))
}

/// What the measured requests gave.
struct Measured {
    /// Latency of each measured request.
    lat: Vec<Duration>,
    /// Calls answered with `<Reject>` (blocklisted callers).
    blocked: usize,
    /// Calls that fell through every rule to ring the owner.
    rung: usize,
}

/// Sends 200 warm-up and then `requests` measured signed voice webhooks,
/// one at a time, and times each.
async fn measure(a: &Args, port: u16) -> anyhow::Result<Measured> {
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/api/webhooks/voice/incoming");
    let public = format!("{PUBLIC}/api/webhooks/voice/incoming");
    let mut m = Measured {
        lat: Vec::with_capacity(a.requests),
        blocked: 0,
        rung: 0,
    };
    for i in 0..(a.requests + 200) {
        let params = webhook_params(i, &caller(i, a.blocklist));
        let sig = e2e::standin::signature(TOKEN, &public, &params);
        let t0 = Instant::now();
        let r = client
            .post(&url)
            .header("X-Twilio-Signature", sig)
            .form(&params)
            .send()
            .await?;
        let status = r.status();
        let body = r.text().await?;
        let dt = t0.elapsed();
        anyhow::ensure!(status == 200, "HTTP {status}: {body}");
        if i >= 200 {
            m.lat.push(dt);
            if body.contains("<Reject") {
                m.blocked += 1;
            } else if body.contains("<Sip") {
                m.rung += 1;
            }
        }
    }
    Ok(m)
}

/// The caller of request `i`: every tenth an exact blocklist entry, every
/// tenth under a blocked prefix, the rest unknown numbers.
fn caller(i: usize, blocklist: usize) -> String {
    match i % 10 {
        0 => format!("+1800{:07}", (i * 7919) % blocklist.max(1) / 100 * 100 + 50),
        1 => format!("+1900{:06}{}", 1 + i % 9, i % 10),
        _ => format!("+1555{:07}", i),
    }
}

/// The form Twilio POSTs for inbound call `i` from `from` to the DID.
fn webhook_params(i: usize, from: &str) -> Vec<(String, String)> {
    let call_sid = format!("CA{:032x}", i as u128 + 1);
    [
        ("AccountSid", e2e::standin::ACCOUNT_SID),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", &call_sid),
        ("CallStatus", "ringing"),
        ("Direction", "inbound"),
        ("From", from),
        ("To", DID),
        ("Caller", from),
        ("Called", DID),
        ("StirVerstat", "TN-Validation-Passed-A"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Prints the latency percentiles on one line.
fn report(a: &Args, mut m: Measured) {
    let lat = &mut m.lat;
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "webhook -> TwiML latency, {} sequential signed requests, {} routes, {} blocklist entries \
         ({} rang after all routes, {} blocked): p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms  (target p99 < 5 ms)",
        lat.len(),
        a.routes,
        a.blocklist,
        m.rung,
        m.blocked,
        ms(pct(0.50)),
        ms(pct(0.90)),
        ms(pct(0.99)),
        ms(*lat.last().unwrap_or(&Duration::ZERO)),
    );
}
