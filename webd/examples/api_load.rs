//! Load generator for `scripts/bench/api.sh`: N concurrent clients with
//! keep-alive hit one endpoint at a time for a while and print p50/p95/p99
//! latencies. Usage:
//! `api_load <base-url> <cookie> <clients> <seconds> [<gosip.db>]`
//!
//! The mix (each client draws from its own seeded generator, so every run
//! asks the same things):
//! - GET /api/cdrs: a third of the requests a uniformly random page of the
//!   whole list (pages 1-4000, OFFSETs up to 79,980), a third the missed
//!   calls sorted by duration, a third inbound calls since a date (page 1);
//! - GET /api/messages: a uniformly random page of the 10,000 (1-500);
//! - POST /api/blocklist: a new pattern each time;
//! - with a database path: the /api/cdrs mix again while this process
//!   records calls in that file beside webd the way sipd does: an insert
//!   when a call starts, an update (disposition, duration) when it ends a
//!   second later; 1 call a second, or `BENCH_CALL_RATE`. Each write makes
//!   webd's cached totals and seek keys stale;
//! - GET /api/cdrs?cursor=...: clients that walk the whole list with the
//!   keyset cursor each answer returns (the UI's infinite scroll).

use std::time::{Duration, Instant};

/// xorshift64*: a few lines instead of a dependency, and reproducible.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Cdrs,
    Messages,
    Post,
    CdrsWhileInserting,
    CdrsCursor,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let base = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let cookie = args.get(2).cloned().unwrap_or_default();
    let clients: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(50);
    let secs: u64 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(10);
    let db = args.get(5).cloned();
    let rate: u64 = std::env::var("BENCH_CALL_RATE")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|r| *r > 0)
        .unwrap_or(1);
    let writes_name = format!(
        "GET /api/cdrs, same mix, while another process records {rate} call(s)/s (insert + update)"
    );
    let mut phases: Vec<(&str, Kind)> = vec![
        (
            "GET /api/cdrs (page of 20 from 100k: any page to 80k deep / missed by duration / inbound since June)",
            Kind::Cdrs,
        ),
        (
            "GET /api/messages (any page of 20 from 10k)",
            Kind::Messages,
        ),
        ("POST /api/blocklist", Kind::Post),
    ];
    if db.is_some() {
        phases.push((&writes_name, Kind::CdrsWhileInserting));
    }
    phases.push((
        "GET /api/cdrs?cursor= (each client scrolls the whole list with the keyset cursor)",
        Kind::CdrsCursor,
    ));
    for (name, kind) in phases {
        let stop = tokio_util::sync::CancellationToken::new();
        let writer = match (&db, kind) {
            (Some(path), Kind::CdrsWhileInserting) => {
                Some(tokio::spawn(record_calls(path.clone(), rate, stop.clone())))
            }
            _ => None,
        };
        let mut handles = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(secs);
        for c in 0..clients {
            let base = base.clone();
            let cookie = cookie.clone();
            handles.push(tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut rng = Rng::new(c as u64 + 1);
                let mut lat = Vec::new();
                let mut errors = 0u64;
                let mut i = 0u64;
                let mut cursor = String::new();
                while Instant::now() < deadline {
                    i += 1;
                    let t = Instant::now();
                    let r = match kind {
                        Kind::Post => {
                            http.post(format!("{base}/api/blocklist"))
                                .header("Cookie", &cookie)
                                .header("X-Requested-With", "bench")
                                .json(&serde_json::json!({
                                    "pattern": format!("+1{:03}{:07}", 200 + c, i % 10_000_000),
                                    "reason": "bench"
                                }))
                                .send()
                                .await
                        }
                        Kind::Messages => {
                            http.get(format!("{base}/api/messages?page={}", 1 + rng.below(500)))
                                .header("Cookie", &cookie)
                                .send()
                                .await
                        }
                        Kind::Cdrs | Kind::CdrsWhileInserting => {
                            let q = match i % 3 {
                                0 => format!("page={}", 1 + rng.below(4000)),
                                1 => "disposition=missed&sort=duration&order=asc".into(),
                                _ => "direction=inbound&from=2025-06-01T00:00:00Z".into(),
                            };
                            http.get(format!("{base}/api/cdrs?{q}"))
                                .header("Cookie", &cookie)
                                .send()
                                .await
                        }
                        Kind::CdrsCursor => {
                            http.get(format!("{base}/api/cdrs?cursor={cursor}"))
                                .header("Cookie", &cookie)
                                .send()
                                .await
                        }
                    };
                    match r {
                        Ok(r) if r.status().is_success() => {
                            let body = r.bytes().await.unwrap_or_default();
                            lat.push(t.elapsed());
                            if kind == Kind::CdrsCursor {
                                // The next page's cursor, or the top again at
                                // the end (found without parsing the whole
                                // body: the client's CPU is the server's too).
                                cursor = next_cursor(&body).unwrap_or_default();
                            }
                        }
                        _ => errors += 1,
                    }
                }
                (lat, errors)
            }));
        }
        let mut all = Vec::new();
        let mut errors = 0;
        for h in handles {
            let (l, e) = h.await?;
            all.extend(l);
            errors += e;
        }
        stop.cancel();
        let inserted = match writer {
            Some(w) => format!(", {} CDR writes meanwhile", w.await??),
            None => String::new(),
        };
        all.sort();
        let p = |q: f64| {
            all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
                .map(|d| format!("{:.1} ms", d.as_secs_f64() * 1000.0))
                .unwrap_or_else(|| "-".into())
        };
        println!(
            "{name}: {clients} clients, {} requests ({:.0}/s), {errors} errors{inserted}; p50 {} p95 {} p99 {}",
            all.len(),
            all.len() as f64 / secs as f64,
            p(0.50),
            p(0.95),
            p(0.99)
        );
    }
    Ok(())
}

/// `next_cursor` of a list answer (base64url: no escapes to undo).
fn next_cursor(body: &[u8]) -> Option<String> {
    let key = b"\"next_cursor\":\"";
    let at = body.windows(key.len()).rposition(|w| w == key)? + key.len();
    let len = body[at..].iter().position(|&b| b == b'"')?;
    String::from_utf8(body[at..at + len].to_vec()).ok()
}

/// Records `rate` calls a second in the database file until `stop`: each
/// tick starts a call (insert, in progress) and ends the one started a tick
/// before (update); returns the number of writes.
async fn record_calls(
    path: String,
    rate: u64,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<u64> {
    use std::str::FromStr;
    let opts = sqlx::sqlite::SqliteConnectOptions::from_str(&format!("sqlite://{path}"))?
        .busy_timeout(Duration::from_secs(10));
    let pool = sqlx::SqlitePool::connect_with(opts).await?;
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    let mut n = 0u64;
    let mut ringing: Option<i64> = None;
    while !stop.is_cancelled() {
        tick.tick().await;
        if let Some(id) = ringing.take() {
            sqlx::query(
                "UPDATE cdrs SET ended_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), \
                 disposition = 'answered', duration = 1 WHERE id = ?",
            )
            .bind(id)
            .execute(&pool)
            .await?;
            n += 1;
        }
        let id = sqlx::query(
            "INSERT INTO cdrs (direction, from_number, to_number, started_at, disposition, user_id) \
             VALUES ('inbound', '+15550009999', '+15551230000', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), \
             'in_progress', 1)",
        )
        .execute(&pool)
        .await?
        .last_insert_rowid();
        ringing = Some(id);
        n += 1;
    }
    pool.close().await;
    Ok(n)
}
