//! The webd binary: flags and env, tracing, bind, run, exit code.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cfg = webd::Config::parse();
    if cfg.common.health {
        return probe(cfg.http_port).await;
    }
    proto::daemon::init_tracing(&cfg.common.log_format);
    let shutdown = proto::daemon::shutdown_on_signals();
    let result = async {
        let listeners = webd::Listeners::bind(&cfg).await?;
        webd::run(cfg, listeners, shutdown).await
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "webd stopped with an error");
            ExitCode::FAILURE
        }
    }
}

/// `--health`: webd answers its own health endpoint on this machine.
async fn probe(port: u16) -> ExitCode {
    let url = format!("http://127.0.0.1:{port}/api/system/health");
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(3))
        .build();
    match client.map(|c| c.get(&url)) {
        Ok(req) => match req.send().await {
            Ok(r) if r.status().is_success() => {
                println!("webd ok");
                ExitCode::SUCCESS
            }
            Ok(r) => {
                println!("webd answered {}", r.status());
                ExitCode::FAILURE
            }
            Err(e) => {
                println!("no answer from {url}: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            println!("cannot build an HTTP client: {e}");
            ExitCode::FAILURE
        }
    }
}
