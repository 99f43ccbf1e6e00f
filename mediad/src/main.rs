//! The mediad binary: [`proto::daemon::main`] runs [`mediad::Daemon`].

#[tokio::main]
async fn main() -> std::process::ExitCode {
    proto::daemon::main::<mediad::Daemon>().await
}
