//! Load generator for `scripts/bench/api.sh`: N concurrent clients with
//! keep-alive hit one GET and one POST endpoint for a while and print
//! p50/p95/p99 latencies. Usage:
//! `api_load <base-url> <cookie> <clients> <seconds>`

use std::time::{Duration, Instant};

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
    for (name, post) in [
        (
            "GET /api/cdrs (page of 20 from 100k, filtered + sorted)",
            false,
        ),
        ("GET /api/messages (page of 20 from 10k)", false),
        ("POST /api/blocklist", true),
    ] {
        let mut handles = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(secs);
        for c in 0..clients {
            let base = base.clone();
            let cookie = cookie.clone();
            let msgs = name.contains("messages");
            handles.push(tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut lat = Vec::new();
                let mut errors = 0u64;
                let mut i = 0u64;
                while Instant::now() < deadline {
                    i += 1;
                    let t = Instant::now();
                    let r = if post {
                        http.post(format!("{base}/api/blocklist"))
                            .header("Cookie", &cookie)
                            .header("X-Requested-With", "bench")
                            .json(&serde_json::json!({
                                "pattern": format!("+1{:03}{:07}", 200 + c, i % 10_000_000),
                                "reason": "bench"
                            }))
                            .send()
                            .await
                    } else if msgs {
                        http.get(format!("{base}/api/messages?page={}", 1 + i % 400))
                            .header("Cookie", &cookie)
                            .send()
                            .await
                    } else {
                        let q = match i % 3 {
                            0 => format!("page={}", 1 + i % 4000),
                            1 => "disposition=missed&sort=duration&order=asc".into(),
                            _ => "direction=inbound&from=2025-06-01T00:00:00Z".into(),
                        };
                        http.get(format!("{base}/api/cdrs?{q}"))
                            .header("Cookie", &cookie)
                            .send()
                            .await
                    };
                    match r {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            lat.push(t.elapsed());
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
        all.sort();
        let p = |q: f64| {
            all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
                .map(|d| format!("{:.1} ms", d.as_secs_f64() * 1000.0))
                .unwrap_or_else(|| "-".into())
        };
        println!(
            "{name}: {clients} clients, {} requests ({:.0}/s), {errors} errors; p50 {} p95 {} p99 {}",
            all.len(),
            all.len() as f64 / secs as f64,
            p(0.50),
            p(0.95),
            p(0.99)
        );
    }
    Ok(())
}
