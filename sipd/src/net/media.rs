//! sipd's side of mediad: port pairs per call, release with stats into the
//! CDR, and mediad's event stream (`rtp_timeout` ends the call).

use std::time::Duration;

use proto::grpc::{AuthChannel, Secret};
use sqlx::SqlitePool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use proto::pb::mediad::mediad_client::MediadClient;
use proto::pb::mediad::{
    AllocateRequest, Codec, EventsRequest, LegStats, RecordRequest, ReleaseRequest,
    UpdateLegRequest,
};

use super::Command;

/// A lazily connected mediad client.
#[derive(Clone)]
pub struct Media {
    client: MediadClient<AuthChannel>,
    pool: SqlitePool,
    /// UpdateLeg requests, sent one after the other so that mediad sees
    /// them in the order the calls produced them.
    updates: mpsc::UnboundedSender<UpdateLegRequest>,
}

impl Media {
    pub fn new(addr: &str, pool: SqlitePool, secret: &Secret) -> anyhow::Result<Self> {
        let client = MediadClient::new(proto::grpc::channel(addr, secret)?);
        let (updates, mut rx) = mpsc::unbounded_channel::<UpdateLegRequest>();
        let mut c = client.clone();
        tokio::spawn(async move {
            while let Some(req) = rx.recv().await {
                let (call_id, leg) = (req.call_id.clone(), req.leg.clone());
                if let Err(e) = c.update_leg(req).await {
                    tracing::warn!(call_id = %call_id, leg = %leg, error = %e, "mediad update_leg failed");
                }
            }
        });
        Ok(Self {
            client,
            pool,
            updates,
        })
    }

    /// Tells mediad about one leg (address/codecs, answered, hold).
    pub fn update_leg(
        &self,
        call_id: String,
        leg: &str,
        media: Option<crate::sip::sdp::LegMedia>,
        established: Option<bool>,
        hold: Option<bool>,
    ) {
        let media = media.unwrap_or_default();
        let _ = self.updates.send(UpdateLegRequest {
            call_id,
            leg: leg.to_string(),
            remote_rtp: media.rtp,
            remote_rtcp: media.rtcp,
            codecs: media
                .codecs
                .into_iter()
                .map(|(pt, name)| Codec { pt, name })
                .collect(),
            established,
            hold,
            signal_ip: media.signal_ip.map(|ip| ip.to_string()).unwrap_or_default(),
        });
    }

    /// Asks for a port pair; the answer goes back to the core task.
    pub fn allocate(&self, call_id: String, tx: mpsc::Sender<Command>) {
        let mut client = self.client.clone();
        tokio::spawn(async move {
            let ports = match client
                .allocate(AllocateRequest {
                    call_id: call_id.clone(),
                })
                .await
            {
                Ok(r) => {
                    let r = r.into_inner();
                    match (u16::try_from(r.port_a), u16::try_from(r.port_b)) {
                        (Ok(a), Ok(b)) => Some((a, b)),
                        _ => None,
                    }
                }
                Err(e) => {
                    tracing::error!(call_id = %call_id, error = %e, "mediad allocate failed");
                    None
                }
            };
            let _ = tx.send(Command::MediaReady { call_id, ports }).await;
        });
    }

    /// Starts or pauses the call's recording; the WAV's path goes into the
    /// CDR's recording_url.
    pub fn record(&self, call_id: String, enabled: bool) {
        let mut client = self.client.clone();
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let r = client
                .record(RecordRequest {
                    call_id: call_id.clone(),
                    enabled,
                })
                .await;
            match r.map(|r| r.into_inner()) {
                Ok(r) if r.ok => {
                    tracing::info!(call_id = %call_id, enabled, path = %r.path, "recording");
                    if !r.path.is_empty()
                        && let Err(e) =
                            super::store::write_recording_url(&pool, &call_id, &r.path).await
                    {
                        tracing::warn!(call_id = %call_id, error = %e, "cannot store recording url");
                    }
                }
                Ok(r) => {
                    tracing::warn!(call_id = %call_id, error = %r.error, "mediad refused to record")
                }
                Err(e) => tracing::warn!(call_id = %call_id, error = %e, "mediad record failed"),
            }
        });
    }

    /// Releases the call's ports and stores the stats in its CDR.
    pub fn release(&self, call_id: String) {
        let mut client = self.client.clone();
        let pool = self.pool.clone();
        tokio::spawn(async move {
            match client
                .release(ReleaseRequest {
                    call_id: call_id.clone(),
                })
                .await
            {
                Ok(r) => {
                    let stats = r.into_inner().stats.unwrap_or_default();
                    let json = serde_json::json!({
                        "a": leg_json(stats.a.as_ref()),
                        "b": leg_json(stats.b.as_ref()),
                    });
                    if let Err(e) = super::store::write_media_stats(
                        &pool,
                        &call_id,
                        &json,
                        &stats.recording_path,
                    )
                    .await
                    {
                        tracing::warn!(call_id = %call_id, error = %e, "cannot store media stats");
                    }
                }
                Err(e) => tracing::warn!(call_id = %call_id, error = %e, "mediad release failed"),
            }
        });
    }

    /// Follows mediad's events; `rtp_timeout` hangs the call up.
    pub async fn events(self, tx: mpsc::Sender<Command>, shutdown: CancellationToken) {
        loop {
            let mut client = self.client.clone();
            let stream = tokio::select! {
                _ = shutdown.cancelled() => return,
                s = client.events(EventsRequest {}) => s,
            };
            if let Ok(stream) = stream {
                let mut stream = stream.into_inner();
                loop {
                    let msg = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        m = stream.message() => m,
                    };
                    match msg {
                        Ok(Some(ev)) if ev.kind == "rtp_timeout" => {
                            tracing::info!(call_id = %ev.call_id, "no RTP: ending the call");
                            let _ = tx
                                .send(Command::Hangup {
                                    call_id: ev.call_id,
                                    why: "rtp timeout".into(),
                                    reply: None,
                                })
                                .await;
                        }
                        Ok(Some(ev)) if ev.kind == "dtmf" => {
                            let _ = tx
                                .send(Command::Dtmf {
                                    call_id: ev.call_id,
                                    leg: ev.leg,
                                    digit: ev.detail,
                                })
                                .await;
                        }
                        Ok(Some(_)) => {}
                        Ok(None) | Err(_) => break,
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    }
}

fn leg_json(l: Option<&LegStats>) -> serde_json::Value {
    let d = LegStats::default();
    let l = l.unwrap_or(&d);
    serde_json::json!({
        "packets_in": l.packets_in,
        "bytes_in": l.bytes_in,
        "packets_out": l.packets_out,
        "bytes_out": l.bytes_out,
        "lost": l.lost,
        "jitter_ms": l.jitter_ms,
        "latched_addr": l.latched_addr,
        "rtcp_in": l.rtcp_in,
        "rtcp_out": l.rtcp_out,
        "dropped": l.dropped,
        "dropped_foreign": l.dropped_foreign,
        "dropped_payload_type": l.dropped_payload_type,
    })
}
