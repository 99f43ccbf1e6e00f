//! The sipd binary: [`proto::daemon::main`] runs [`sipd::Daemon`].

#[tokio::main]
async fn main() -> std::process::ExitCode {
    proto::daemon::main::<sipd::Daemon>().await
}
