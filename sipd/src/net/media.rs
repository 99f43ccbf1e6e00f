//! sipd's side of mediad: port pairs per call, release with stats into the
//! CDR, prompts and voicemail recording (handed to twiliod, which stores
//! voicemails), and mediad's event stream (`rtp_timeout` and
//! `record_limit` end the call).

use std::time::Duration;

use proto::grpc::{AuthChannel, Secret};
use sqlx::SqlitePool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use proto::pb::mediad::mediad_client::MediadClient;
use proto::pb::mediad::{
    AllocateRequest, Codec, EventsRequest, Leg, LegStats, MediaEventKind, PlayItem, PlayRequest,
    RecordRequest, ReleaseRequest, UpdateLegRequest, play_item,
};
use proto::pb::twiliod::twiliod_client::TwiliodClient;
use proto::pb::twiliod::{DeleteVoicemailRequest, Readable, SetReadRequest, StoreVoicemailRequest};

use super::Command;
use crate::sip::core::{Prompt, Voicemail};

/// How often a voicemail is offered to twiliod while it is unreachable
/// (waits doubling from 1 s to a minute: about 10 minutes in all); the WAV
/// stays in the data dir either way.
const STORE_ATTEMPTS: u32 = 14;

/// A lazily connected mediad client.
#[derive(Clone)]
pub struct Media {
    client: MediadClient<AuthChannel>,
    twiliod: TwiliodClient<AuthChannel>,
    pool: SqlitePool,
    /// UpdateLeg requests, sent one after the other so that mediad sees
    /// them in the order the calls produced them.
    updates: mpsc::UnboundedSender<UpdateLegRequest>,
}

impl Media {
    pub fn new(
        addr: &str,
        twiliod_addr: &str,
        pool: SqlitePool,
        secret: &Secret,
    ) -> anyhow::Result<Self> {
        let client = MediadClient::new(proto::grpc::channel(addr, secret)?);
        let twiliod = TwiliodClient::new(proto::grpc::channel(twiliod_addr, secret)?);
        let (updates, mut rx) = mpsc::unbounded_channel::<UpdateLegRequest>();
        let mut c = client.clone();
        tokio::spawn(async move {
            while let Some(req) = rx.recv().await {
                let (call_id, leg) = (req.call_id.clone(), req.leg());
                if let Err(e) = c.update_leg(req).await {
                    tracing::warn!(call_id = %call_id, leg = ?leg, error = %e, "mediad update_leg failed");
                }
            }
        });
        Ok(Self {
            client,
            twiliod,
            pool,
            updates,
        })
    }

    /// Tells mediad about one leg (address/codecs, answered, hold and hold
    /// music).
    pub fn update_leg(
        &self,
        call_id: String,
        leg: Leg,
        media: Option<crate::sip::sdp::LegMedia>,
        established: Option<bool>,
        (hold, music): (Option<bool>, Option<bool>),
    ) {
        let media = media.unwrap_or_default();
        let _ = self.updates.send(UpdateLegRequest {
            call_id,
            leg: leg.into(),
            remote_rtp: media.rtp,
            remote_rtcp: media.rtcp,
            codecs: media
                .codecs
                .into_iter()
                .map(|(pt, name)| Codec { pt, name })
                .collect(),
            established,
            hold,
            music,
            signal_ip: media.signal_ip.map(|ip| ip.to_string()).unwrap_or_default(),
            crypto: None,
        });
    }

    /// Tells mediad a leg's SRTP keys (`None`: plain RTP), in order with
    /// the leg's other updates.
    pub fn set_crypto(&self, call_id: String, leg: Leg, keys: Option<&proto::sdes::LegKeys>) {
        let _ = self.updates.send(UpdateLegRequest {
            call_id,
            leg: leg.into(),
            crypto: Some(proto::sdes::to_pb(keys)),
            ..Default::default()
        });
    }

    /// Makes a leg a WebRTC leg (ICE-lite and DTLS-SRTP in mediad), in
    /// order with the leg's other updates.
    pub fn set_webrtc(&self, call_id: String, leg: Leg, webrtc: &proto::webrtc::WebrtcLeg) {
        let _ = self.updates.send(UpdateLegRequest {
            call_id,
            leg: leg.into(),
            crypto: Some(webrtc.to_pb()),
            ..Default::default()
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
                    let fingerprint = proto::webrtc::Fingerprint::parse(&r.dtls_fingerprint);
                    match (u16::try_from(r.port_a), u16::try_from(r.port_b)) {
                        (Ok(a), Ok(b)) => Some((a, b, fingerprint)),
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

    /// Releases the call's ports and stores the stats in its CDR. A
    /// voicemail call's recording is the message: it goes to twiliod, not
    /// into the CDR.
    pub fn release(&self, call_id: String, voicemail: Option<Voicemail>) {
        let mut client = self.client.clone();
        let pool = self.pool.clone();
        let twiliod = self.twiliod.clone();
        tokio::spawn(async move {
            let stats = match client
                .release(ReleaseRequest {
                    call_id: call_id.clone(),
                })
                .await
            {
                Ok(r) => r.into_inner().stats.unwrap_or_default(),
                Err(e) => {
                    tracing::warn!(call_id = %call_id, error = %e, "mediad release failed");
                    return;
                }
            };
            let json = serde_json::json!({
                "a": leg_json(stats.a.as_ref()),
                "b": leg_json(stats.b.as_ref()),
            });
            let recording = if voicemail.is_some() {
                ""
            } else {
                stats.recording_path.as_str()
            };
            if let Err(e) = super::store::write_media_stats(&pool, &call_id, &json, recording).await
            {
                tracing::warn!(call_id = %call_id, error = %e, "cannot store media stats");
            }
            if let Some(v) = voicemail {
                store_voicemail(twiliod, &pool, call_id, v, stats.recording_path).await;
            }
        });
    }

    /// A voicemail heard on the phone: twiliod, which owns voicemails,
    /// marks it read (the web UI and the message light follow).
    pub fn voicemail_heard(&self, id: i64) {
        let mut twiliod = self.twiliod.clone();
        tokio::spawn(async move {
            let req = SetReadRequest {
                item: Readable::Voicemail.into(),
                id,
                is_read: true,
            };
            if let Err(e) = twiliod.set_read(req).await {
                tracing::warn!(voicemail_id = id, error = %e, "cannot mark the voicemail heard");
            }
        });
    }

    /// A voicemail deleted on the phone: twiliod deletes it and its audio.
    pub fn voicemail_delete(&self, id: i64) {
        let mut twiliod = self.twiliod.clone();
        tokio::spawn(async move {
            if let Err(e) = twiliod
                .delete_voicemail(DeleteVoicemailRequest { id })
                .await
            {
                tracing::warn!(voicemail_id = id, error = %e, "cannot delete the voicemail");
            }
        });
    }

    /// Plays `prompts` to the caller, then records them for up to
    /// `record.0` seconds, ending after `record.1` seconds of silence
    /// (voicemail). Without the speech engine the caller hears the tone
    /// alone; when mediad cannot play at all the call ends. To leg B (an
    /// announcement in a relayed call) a failure is as if it had been
    /// heard: the call goes on.
    pub fn play(
        &self,
        call_id: String,
        leg: Leg,
        prompts: Vec<Prompt>,
        (record_secs, silence_secs): (Option<u32>, u32),
        tx: mpsc::Sender<Command>,
    ) {
        let mut client = self.client.clone();
        tokio::spawn(async move {
            let request = |prompts: &[Prompt]| PlayRequest {
                call_id: call_id.clone(),
                leg: leg.into(),
                items: prompts.iter().map(play_item_of).collect(),
                record_after: record_secs.is_some(),
                max_record_secs: record_secs.unwrap_or(0),
                silence_secs,
            };
            let mut result = client.play(request(&prompts)).await;
            if let Err(e) = &result
                && e.code() == tonic::Code::FailedPrecondition
            {
                tracing::warn!(call_id = %call_id, error = %e.message(), "no speech: the tone alone");
                let tones: Vec<Prompt> = prompts
                    .into_iter()
                    .filter(|p| !matches!(p, Prompt::Text(_)))
                    .collect();
                result = client.play(request(&tones)).await;
            }
            if let Err(e) = &result
                && leg == Leg::B
            {
                tracing::warn!(call_id = %call_id, error = %e, "mediad cannot play the announcement");
                let _ = tx.send(Command::PlayDone { call_id, leg }).await;
                return;
            }
            if let Err(e) = result {
                tracing::error!(call_id = %call_id, error = %e, "mediad cannot play: ending the call");
                let _ = tx
                    .send(Command::Hangup {
                        call_id,
                        why: "mediad cannot play".into(),
                        reply: None,
                    })
                    .await;
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
                        Ok(Some(ev)) if ev.kind() == MediaEventKind::RtpTimeout => {
                            tracing::info!(call_id = %ev.call_id, "no RTP: ending the call");
                            let _ = tx
                                .send(Command::Hangup {
                                    call_id: ev.call_id,
                                    why: "rtp timeout".into(),
                                    reply: None,
                                })
                                .await;
                        }
                        Ok(Some(ev)) if ev.kind() == MediaEventKind::RecordLimit => {
                            let why = if ev.detail == "silence" {
                                "the caller fell silent"
                            } else {
                                "longest message reached"
                            };
                            tracing::info!(call_id = %ev.call_id, why, "voicemail over: ending the call");
                            let _ = tx
                                .send(Command::Hangup {
                                    call_id: ev.call_id,
                                    why: why.into(),
                                    reply: None,
                                })
                                .await;
                        }
                        Ok(Some(ev)) if ev.kind() == MediaEventKind::PlayDone => {
                            let _ = tx
                                .send(Command::PlayDone {
                                    leg: ev.leg(),
                                    call_id: ev.call_id,
                                })
                                .await;
                        }
                        Ok(Some(ev)) if ev.kind() == MediaEventKind::Dtmf => {
                            let _ = tx
                                .send(Command::Dtmf {
                                    leg: ev.leg(),
                                    call_id: ev.call_id,
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

/// One prompt as mediad's Play takes it.
fn play_item_of(p: &Prompt) -> PlayItem {
    let what = match p {
        Prompt::Text(t) => play_item::What::Text(t.clone()),
        Prompt::Beep => play_item::What::Beep(true),
        Prompt::File(f) => play_item::What::File(f.clone()),
    };
    PlayItem { what: Some(what) }
}

/// Hands a voicemail mediad recorded at `wav_path` to twiliod, which stores
/// it for the mailbox's owner (and drops one under the shortest length),
/// retrying while twiliod is unreachable.
async fn store_voicemail(
    mut twiliod: TwiliodClient<AuthChannel>,
    pool: &SqlitePool,
    call_id: String,
    v: Voicemail,
    wav_path: String,
) {
    if wav_path.is_empty() {
        tracing::info!(call_id = %call_id, "voicemail call ended before recording began");
        if let Err(e) = super::store::voicemail_not_kept(pool, &call_id).await {
            tracing::warn!(call_id = %call_id, error = %e, "cannot update the CDR");
        }
        return;
    }
    let request = StoreVoicemailRequest {
        call_id: call_id.clone(),
        user_id: v.user_id.0,
        from_number: v.from_number,
        from_name: v.from_name,
        wav_path,
    };
    let mut wait = Duration::from_secs(1);
    for _ in 0..STORE_ATTEMPTS {
        match twiliod.store_voicemail(request.clone()).await {
            Ok(r) => {
                let r = r.into_inner();
                if r.stored {
                    tracing::info!(call_id = %call_id, voicemail_id = r.voicemail_id, "voicemail stored");
                } else {
                    tracing::info!(call_id = %call_id, why = %r.why_not, "voicemail not kept");
                    if let Err(e) = super::store::voicemail_not_kept(pool, &call_id).await {
                        tracing::warn!(call_id = %call_id, error = %e, "cannot update the CDR");
                    }
                }
                return;
            }
            Err(e)
                if matches!(
                    e.code(),
                    tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
                ) =>
            {
                tracing::warn!(call_id = %call_id, error = %e.message(), ?wait, "twiliod unreachable: voicemail offered again later");
            }
            Err(e) => {
                tracing::error!(call_id = %call_id, error = %e, "twiliod refused the voicemail");
                return;
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(60));
    }
    tracing::error!(call_id = %call_id, path = %request.wav_path, "twiliod stayed unreachable: the voicemail stays in the data dir");
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
