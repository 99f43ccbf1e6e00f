//! The notifyd binary: [`proto::daemon::main`] runs [`notifyd::Daemon`].

#[tokio::main]
async fn main() -> std::process::ExitCode {
    proto::daemon::main::<notifyd::Daemon>().await
}
