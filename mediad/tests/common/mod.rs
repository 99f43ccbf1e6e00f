//! mediad in-process on 127.0.0.1 with a temp data dir, and a gRPC client
//! holding the shared secret, for the tests that drive it over gRPC.
#![allow(dead_code)]

use proto::grpc::AuthChannel;
use proto::pb::mediad::mediad_client::MediadClient;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

pub struct Mediad {
    pub client: MediadClient<AuthChannel>,
    pub dir: tempfile::TempDir,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Mediad {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (first, last) = testkit::ports::rtp_range(8);
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = grpc.local_addr().unwrap();
        let cfg = mediad::Config {
            common: proto::daemon::CommonArgs {
                data_dir: dir.path().to_owned(),
                log_format: "text".into(),
                health: false,
            },
            grpc: addr.to_string(),
            rtp_ports: format!("{first}-{last}"),
            rtp_bind: "127.0.0.1".into(),
            orphan_secs: 3600,
            media_threads: 2,
            notifyd_grpc: "127.0.0.1:9".into(),
        };
        let stop = CancellationToken::new();
        let task = tokio::spawn(mediad::run(cfg, mediad::Listeners { grpc }, stop.clone()));
        let ch = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        // mediad and this client share the data dir, hence the secret.
        let secret = proto::grpc::Secret::load_or_create(dir.path()).unwrap();
        let client = MediadClient::new(proto::grpc::authed(ch, &secret));
        Self {
            client,
            dir,
            stop,
            task,
        }
    }

    pub async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }
}
