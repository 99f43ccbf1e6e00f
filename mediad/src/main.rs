//! The mediad binary: flags and env, tracing, bind, run, exit code.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cfg = mediad::Config::parse();
    if cfg.common.health {
        return proto::daemon::probe(&cfg.grpc).await;
    }
    proto::daemon::init_tracing(&cfg.common.log_format);
    let shutdown = proto::daemon::shutdown_on_signals();
    let result = async {
        let listeners = mediad::Listeners::bind(&cfg).await?;
        mediad::run(cfg, listeners, shutdown).await
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "mediad stopped with an error");
            ExitCode::FAILURE
        }
    }
}
