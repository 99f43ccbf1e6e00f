//! The webd binary: flags and env, tracing, bind, run, exit code.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cfg = webd::Config::parse();
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
