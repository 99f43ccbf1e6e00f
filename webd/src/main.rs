//! The webd binary: [`proto::daemon::main`] runs [`webd::Daemon`].

#[tokio::main]
async fn main() -> std::process::ExitCode {
    proto::daemon::main::<webd::Daemon>().await
}
