//! The sipd binary: flags and env, tracing, bind, run, exit code.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cfg = sipd::Config::parse();
    if cfg.common.health {
        return proto::daemon::probe(&cfg.grpc).await;
    }
    proto::daemon::init_tracing(&cfg.common.log_format);
    let shutdown = proto::daemon::shutdown_on_signals();
    let result = async {
        let listeners = sipd::Listeners::bind(&cfg).await?;
        sipd::run(cfg, listeners, shutdown).await
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "sipd stopped with an error");
            ExitCode::FAILURE
        }
    }
}
