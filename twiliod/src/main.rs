//! The twiliod binary: [`proto::daemon::main`] runs [`twiliod::Daemon`].

#[tokio::main]
async fn main() -> std::process::ExitCode {
    proto::daemon::main::<twiliod::Daemon>().await
}
