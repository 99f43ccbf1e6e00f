//! The twiliod binary: flags and env, tracing, bind, run, exit code.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cfg = twiliod::Config::parse();
    if cfg.common.health {
        return proto::daemon::probe(&cfg.grpc).await;
    }
    proto::daemon::init_tracing(&cfg.common.log_format);
    let shutdown = proto::daemon::shutdown_on_signals();
    let result = async {
        let listeners = twiliod::Listeners::bind(&cfg).await?;
        twiliod::run(cfg, listeners, shutdown).await
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "twiliod stopped with an error");
            ExitCode::FAILURE
        }
    }
}
