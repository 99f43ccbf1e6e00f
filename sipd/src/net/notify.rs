//! Call events for notifyd, built from the CDR changes the core emits:
//! `call_started` when a call is answered, `call_ended` when it ends, and
//! `missed_call` to the callee's owner when an internal call they were rung
//! for is not answered (disposition missed or busy; a 603 decline is the
//! callee's own choice, and a failed call never rang).
//!
//! Who an event is for: the callee device's owner (internal calls, and the
//! rung device of an inbound call), the caller device's owner for outbound
//! calls, and `None` (the admins; 0 on notifyd's wire) when the device has
//! no owner. Webhook endpoints are global in notifyd and get every event.
//!
//! Inbound trunk calls nobody answered are left to twiliod: Twilio then
//! plays the voicemail greeting, so only twiliod knows at the end whether
//! the caller left a voicemail (one voicemail notice) or not (one
//! missed_call); it sends the call_ended with that final disposition too.
//! Outbound calls nobody answered notify nobody of a missed call.
//!
//! Admin alerts the core raises (an emergency call, a device over its call
//! limits) take the same road as `admin_alert` notices for the admins.
//!
//! Delivery never holds up call handling: the core's events reach this
//! task over a channel, and notices notifyd has not acknowledged wait in a
//! bounded queue, retried in order with backoff (notifyd stores an event
//! durably before acknowledging it). The queue is kept in memory and as
//! sipd's queue of the `jobs` table (`proto::jobs`), so a sipd restart
//! during a notifyd outage loses nothing: the next start sends what is stored first. (A crash
//! between notifyd's acknowledgement and the row's delete sends that one
//! notice twice.) When the queue is full the oldest notice is dropped with
//! a warning; at shutdown what is left gets one short last try and stays
//! stored for the next start.

use proto::types::{DeviceId, UserId};
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use proto::grpc::{AuthChannel, Secret};
use serde_json::{Map, Value, json};
use sqlx::SqlitePool;
use tokio::sync::mpsc;
use tokio::time::Instant;

use proto::pb::notifyd::NotifyRequest;
use proto::pb::notifyd::notifyd_client::NotifydClient;

use super::store::fmt_ms;
use crate::sip::core::Cdr;

/// Notices kept while notifyd is unreachable.
pub const QUEUE_CAP: usize = 1000;
/// First retry delay; doubled per failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a stopping sipd still tries to hand over what is queued.
const DRAIN: Duration = Duration::from_secs(2);
/// Calls tracked at most; a call whose end never came is forgotten after a
/// day once there are this many.
const MAX_CALLS: usize = 10_000;

/// One event for notifyd's `Notify`.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// `call_started`, `call_ended`, `missed_call` or `admin_alert`.
    pub kind: &'static str,
    /// The user the event is for; `None`: the admins (0 on the wire and in
    /// the stored job).
    pub user_id: Option<UserId>,
    pub payload: Value,
}

/// A device as the notices name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub id: DeviceId,
    pub name: String,
    pub user_id: Option<UserId>,
}

/// A call from its `Cdr::Start` on, with what the database says about its
/// parties (read once, when it starts).
#[derive(Debug, Clone, PartialEq)]
pub struct Tracked {
    pub call_id: String,
    /// "internal", "inbound" or "outbound".
    pub direction: &'static str,
    pub from: String,
    pub to: String,
    pub call_sid: Option<String>,
    pub started_at: u64,
    pub answered_at: Option<u64>,
    /// The CDR's device: the caller's (internal, outbound) or the first
    /// rung device (inbound).
    pub device_id: DeviceId,
    pub device: Option<DeviceInfo>,
    /// Internal calls: the dialed device.
    pub callee: Option<DeviceInfo>,
    /// Inbound calls: the name of the dialed DID.
    pub did_name: Option<String>,
}

impl Tracked {
    /// The user the call's events are for.
    fn recipient(&self) -> Option<UserId> {
        match self.direction {
            "internal" => self.callee.as_ref().and_then(|d| d.user_id),
            _ => self.device.as_ref().and_then(|d| d.user_id),
        }
    }

    fn payload(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("call_id".into(), json!(self.call_id));
        m.insert("call_sid".into(), json!(self.call_sid));
        m.insert("direction".into(), json!(self.direction));
        m.insert("from".into(), json!(self.from));
        // The caller is one of our devices on internal and outbound calls.
        if self.direction != "inbound"
            && let Some(d) = self.device.as_ref().filter(|d| !d.name.is_empty())
        {
            m.insert("caller_name".into(), json!(d.name));
        }
        m.insert("to".into(), json!(self.to));
        if let Some(n) = &self.did_name {
            m.insert("did_name".into(), json!(n));
        }
        if self.device_id.0 > 0 {
            m.insert("device_id".into(), json!(self.device_id));
        }
        if let Some(d) = self.device.as_ref().filter(|d| !d.name.is_empty()) {
            m.insert("device_name".into(), json!(d.name));
        }
        if let Some(c) = &self.callee {
            m.insert("callee_device_id".into(), json!(c.id));
            if !c.name.is_empty() {
                m.insert("callee_name".into(), json!(c.name));
            }
        }
        m.insert("started_at".into(), json!(fmt_ms(self.started_at)));
        if let Some(a) = self.answered_at {
            m.insert("answered_at".into(), json!(fmt_ms(a)));
        }
        m
    }
}

/// The notice for an answered call.
pub fn started(t: &Tracked) -> Notice {
    Notice {
        kind: "call_started",
        user_id: t.recipient(),
        payload: Value::Object(t.payload()),
    }
}

/// The notices for a call that ended (see the module doc for the rules).
pub fn ended(
    t: &Tracked,
    at: u64,
    disposition: &str,
    duration_s: u64,
    reason: &str,
) -> Vec<Notice> {
    if t.direction == "inbound" && t.answered_at.is_none() {
        return Vec::new();
    }
    let mut p = t.payload();
    p.insert("ended_at".into(), json!(fmt_ms(at)));
    p.insert("duration".into(), json!(duration_s));
    p.insert("disposition".into(), json!(disposition));
    p.insert("reason".into(), json!(reason));
    let payload = Value::Object(p);
    let mut out = vec![Notice {
        kind: "call_ended",
        user_id: t.recipient(),
        payload: payload.clone(),
    }];
    if t.direction == "internal"
        && matches!(disposition, "missed" | "busy")
        && let Some(user) = t.recipient()
    {
        out.push(Notice {
            kind: "missed_call",
            user_id: Some(user),
            payload,
        });
    }
    out
}

/// The admins' notice of an alert `kind` (notifyd's alert code).
pub fn admin_alert(kind: &str, message: &str) -> Notice {
    Notice {
        kind: "admin_alert",
        user_id: None,
        payload: json!({"source": "sipd", "kind": kind, "message": message}),
    }
}

/// What the notifier task is handed.
enum Input {
    Cdr(Cdr),
    Alert(Notice),
}

/// The sending side: hand it every CDR change and admin alert.
pub struct Notifier {
    tx: mpsc::UnboundedSender<Input>,
    task: tokio::task::JoinHandle<()>,
}

impl Notifier {
    /// Starts the task that talks to notifyd at `addr` (`host:port`),
    /// every call carrying the daemons' shared `secret`.
    pub fn start(addr: &str, pool: SqlitePool, secret: &Secret) -> anyhow::Result<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        let client = NotifydClient::new(proto::grpc::channel(addr, secret)?);
        let task = tokio::spawn(run(rx, pool, client));
        Ok(Self { tx, task })
    }

    /// Never waits: the task does the rest.
    pub fn cdr(&self, c: &Cdr) {
        let _ = self.tx.send(Input::Cdr(c.clone()));
    }

    /// Never waits either.
    pub fn alert(&self, kind: &str, message: &str) {
        let _ = self.tx.send(Input::Alert(admin_alert(kind, message)));
    }

    /// Stops taking events and gives what is queued a last short try.
    pub async fn finish(self) {
        drop(self.tx);
        let _ = tokio::time::timeout(DRAIN + Duration::from_secs(1), self.task).await;
    }
}

/// A queued notice: its place in the queue, its job in sipd's queue
/// (`None` when the database refused it: then it lives in memory only).
#[derive(Debug, Clone, PartialEq)]
pub struct Queued {
    pub seq: u64,
    pub row: Option<i64>,
    pub notice: Notice,
}

/// Notices waiting for notifyd, oldest first.
#[derive(Debug, Default)]
pub struct Outbox {
    queue: VecDeque<Queued>,
    next_seq: u64,
    cap: usize,
}

impl Outbox {
    pub fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            ..Self::default()
        }
    }

    /// Queues `n` (stored as `row`); returns the oldest notice when it had
    /// to make room.
    pub fn push(&mut self, n: Notice, row: Option<i64>) -> Option<Queued> {
        let dropped = (self.queue.len() >= self.cap)
            .then(|| self.queue.pop_front())
            .flatten();
        self.queue.push_back(Queued {
            seq: self.next_seq,
            row,
            notice: n,
        });
        self.next_seq += 1;
        dropped
    }

    pub fn front(&self) -> Option<&Queued> {
        self.queue.front()
    }

    /// Removes the front notice if it is still `seq`.
    pub fn done(&mut self, seq: u64) {
        if self.queue.front().is_some_and(|q| q.seq == seq) {
            self.queue.pop_front();
        }
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// The wait before the next try after `failures` failures in a row.
pub fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    FIRST_BACKOFF.saturating_mul(1 << exp).min(MAX_BACKOFF)
}

/// Why a hand-over did not happen.
#[derive(Debug)]
enum SendError {
    /// notifyd is down or could not store it: keep and retry.
    Retry(String),
    /// notifyd refused the event itself: retrying cannot help.
    Refused(String),
}

async fn send(client: &mut NotifydClient<AuthChannel>, n: &Notice) -> Result<i64, SendError> {
    let req = NotifyRequest {
        kind: n.kind.to_string(),
        user_id: user_or_zero(n.user_id),
        payload_json: n.payload.to_string(),
        attachments: Vec::new(),
    };
    match client.notify(req).await {
        Ok(r) => Ok(r.into_inner().job_id),
        Err(s) if s.code() == tonic::Code::InvalidArgument => {
            Err(SendError::Refused(s.message().to_string()))
        }
        Err(s) => Err(SendError::Retry(format!("{:?}: {}", s.code(), s.message()))),
    }
}

fn call_id_of(n: &Notice) -> &str {
    n.payload["call_id"].as_str().unwrap_or_default()
}

/// A notice's user as notifyd's `Notify` and the stored job carry it: 0 for
/// the admins.
fn user_or_zero(u: Option<UserId>) -> i64 {
    u.map_or(0, |u| u.0)
}

/// sipd's queue in the durable `jobs` table (`proto::jobs`).
pub const QUEUE: &str = "sipd";

/// Stores `n` as a job of sipd's queue; its id, or `None` when the
/// database refused (the notice then waits in memory only).
async fn store(pool: &SqlitePool, n: &Notice) -> Option<i64> {
    let payload = json!({"user_id": user_or_zero(n.user_id), "payload": n.payload}).to_string();
    let job = proto::jobs::NewJob {
        queue: QUEUE,
        kind: n.kind,
        payload: &payload,
        delay: Duration::ZERO,
        max_attempts: 0,
        idempotency_key: None,
    };
    match proto::jobs::insert(pool, &job).await {
        Ok(id) => Some(id),
        Err(e) => {
            tracing::warn!(kind = n.kind, call_id = call_id_of(n), error = %e, "call notice not stored; kept in memory only");
            None
        }
    }
}

/// Settles a handed-over (or dropped) notice's job.
async fn unstore(pool: &SqlitePool, row: Option<i64>) {
    let Some(row) = row else { return };
    if let Err(e) = proto::jobs::settle(pool, row, &proto::jobs::Outcome::Done).await {
        tracing::warn!(row, error = %e, "cannot settle a sent call notice; it may be sent again");
    }
}

/// The notices an earlier run left, oldest first (and the settled ones of
/// more than a day ago are pruned).
async fn stored(pool: &SqlitePool) -> Vec<(i64, Notice)> {
    if let Err(e) = proto::jobs::prune(pool, QUEUE, Duration::from_secs(86_400)).await {
        tracing::warn!(error = %e, "cannot prune sent call notices");
    }
    let jobs = match proto::jobs::unsettled(pool, QUEUE).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read stored call notices");
            return Vec::new();
        }
    };
    jobs.into_iter()
        .filter_map(|job| {
            let kind = ["call_started", "call_ended", "missed_call", "admin_alert"]
                .into_iter()
                .find(|k| *k == job.kind)?;
            let v: Value = serde_json::from_str(&job.payload).ok()?;
            let payload = v.get("payload")?.clone();
            Some((
                job.id,
                Notice {
                    kind,
                    user_id: UserId::from_wire(v.get("user_id")?.as_i64()?),
                    payload,
                },
            ))
        })
        .collect()
}

async fn run(
    mut rx: mpsc::UnboundedReceiver<Input>,
    pool: SqlitePool,
    mut client: NotifydClient<AuthChannel>,
) {
    let mut calls: HashMap<String, Tracked> = HashMap::new();
    let mut out = Outbox::new(QUEUE_CAP);
    let earlier = stored(&pool).await;
    if !earlier.is_empty() {
        tracing::info!(
            count = earlier.len(),
            "call notices left by an earlier run go first"
        );
    }
    for (row, n) in earlier {
        if let Some(old) = out.push(n, Some(row)) {
            unstore(&pool, old.row).await;
        }
    }
    let mut failures = 0u32;
    let mut next_try = Instant::now();
    loop {
        tokio::select! {
            biased;
            ev = rx.recv() => {
                let notices = match ev {
                    None => break,
                    Some(Input::Cdr(c)) => track(&mut calls, &pool, c).await,
                    Some(Input::Alert(n)) => vec![n],
                };
                for n in notices {
                    let row = store(&pool, &n).await;
                    if let Some(old) = out.push(n, row) {
                        tracing::warn!(
                            kind = old.notice.kind, call_id = call_id_of(&old.notice), queued = out.len(),
                            "notifyd unreachable and the queue is full: oldest call notice dropped"
                        );
                        unstore(&pool, old.row).await;
                    }
                }
            }
            _ = tokio::time::sleep_until(next_try), if !out.is_empty() => {
                let Some(Queued { seq, row, notice: n }) = out.front().cloned() else { continue };
                match send(&mut client, &n).await {
                    Ok(job_id) => {
                        if failures > 0 {
                            tracing::info!(failures, "notifyd reachable again");
                        }
                        failures = 0;
                        tracing::debug!(kind = n.kind, call_id = call_id_of(&n), user_id = user_or_zero(n.user_id), job_id, "call notice handed to notifyd");
                        out.done(seq);
                        unstore(&pool, row).await;
                    }
                    Err(SendError::Refused(why)) => {
                        tracing::warn!(kind = n.kind, call_id = call_id_of(&n), error = %why, "notifyd refused a call notice: dropped");
                        out.done(seq);
                        unstore(&pool, row).await;
                    }
                    Err(SendError::Retry(why)) => {
                        failures += 1;
                        let wait = backoff(failures);
                        if failures == 1 {
                            tracing::warn!(error = %why, queued = out.len(), "cannot hand call notices to notifyd; retrying");
                        } else {
                            tracing::debug!(error = %why, failures, wait_ms = wait.as_millis() as u64, "notifyd still unreachable");
                        }
                        next_try = Instant::now() + wait;
                    }
                }
            }
        }
    }
    // Stopping: one short last try for what is queued.
    let deadline = Instant::now() + DRAIN;
    while let Some(Queued { seq, row, notice }) = out.front().cloned() {
        match tokio::time::timeout_at(deadline, send(&mut client, &notice)).await {
            Ok(Ok(_) | Err(SendError::Refused(_))) => {
                out.done(seq);
                unstore(&pool, row).await;
            }
            Ok(Err(SendError::Retry(_))) | Err(_) => break,
        }
    }
    if !out.is_empty() {
        tracing::warn!(
            kept = out.len(),
            "sipd stopping: call notices not handed to notifyd stay stored for the next start"
        );
    }
}

/// Follows one CDR change; returns the notices it makes.
async fn track(calls: &mut HashMap<String, Tracked>, pool: &SqlitePool, c: Cdr) -> Vec<Notice> {
    match c {
        Cdr::Start {
            call_id,
            direction,
            from,
            to,
            device_id,
            started_at,
            call_sid,
        } => {
            if calls.len() >= MAX_CALLS {
                let day = 24 * 3600 * 1000;
                calls.retain(|_, t| t.started_at + day > started_at);
            }
            let mut t = Tracked {
                call_id: call_id.clone(),
                direction,
                from,
                to,
                call_sid,
                started_at,
                answered_at: None,
                device_id,
                device: None,
                callee: None,
                did_name: None,
            };
            if let Err(e) = parties(pool, &mut t).await {
                tracing::warn!(call_id = %call_id, error = %e, "cannot read the call's devices for its notices");
            }
            calls.insert(call_id, t);
            Vec::new()
        }
        Cdr::Answered { call_id, at, .. } => match calls.get_mut(&call_id) {
            Some(t) => {
                t.answered_at = Some(at);
                vec![started(t)]
            }
            None => Vec::new(),
        },
        Cdr::End {
            call_id,
            at,
            disposition,
            duration_s,
            reason,
            ..
        } => match calls.remove(&call_id) {
            Some(t) => ended(&t, at, disposition, duration_s, &reason),
            None => Vec::new(),
        },
    }
}

/// Fills in the call's devices and DID name from the database.
async fn parties(pool: &SqlitePool, t: &mut Tracked) -> Result<(), sqlx::Error> {
    if t.device_id.0 > 0 {
        t.device = sqlx::query_as::<_, (DeviceId, String, Option<UserId>)>(
            "SELECT id, name, user_id FROM devices WHERE id = ?",
        )
        .bind(t.device_id)
        .fetch_optional(pool)
        .await?
        .map(|(id, name, user_id)| DeviceInfo { id, name, user_id });
    }
    match t.direction {
        // The core dials a username first, then an extension.
        "internal" => {
            t.callee = sqlx::query_as::<_, (DeviceId, String, Option<UserId>)>(
                "SELECT id, name, user_id FROM devices WHERE username = ?1 OR extension = ?1 \
                 ORDER BY username = ?1 DESC LIMIT 1",
            )
            .bind(&t.to)
            .fetch_optional(pool)
            .await?
            .map(|(id, name, user_id)| DeviceInfo { id, name, user_id });
        }
        "inbound" => {
            t.did_name = sqlx::query_scalar::<_, String>(
                "SELECT name FROM dids WHERE number = ? AND name != ''",
            )
            .bind(&t.to)
            .fetch_optional(pool)
            .await?;
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, Mutex};

    use proto::pb::notifyd::notifyd_server::{Notifyd, NotifydServer};
    use proto::pb::notifyd::{NotifyReply, SendTestReply, SendTestRequest};
    use tonic::{Request, Response, Status};

    use super::*;

    fn dev(id: i64, name: &str, user: Option<i64>) -> Option<DeviceInfo> {
        Some(DeviceInfo {
            id: DeviceId(id),
            name: name.into(),
            user_id: user.map(UserId),
        })
    }

    fn internal() -> Tracked {
        Tracked {
            call_id: "c1@phone".into(),
            direction: "internal",
            from: "201".into(),
            to: "202".into(),
            call_sid: None,
            started_at: 1_736_951_400_000,
            answered_at: None,
            device_id: DeviceId(1),
            device: dev(1, "Alice desk", Some(10)),
            callee: dev(2, "Bob desk", Some(20)),
            did_name: None,
        }
    }

    #[test]
    fn an_answered_internal_call_notifies_the_callees_owner_with_the_template_fields() {
        let mut t = internal();
        t.answered_at = Some(t.started_at + 2000);
        let n = started(&t);
        assert_eq!((n.kind, n.user_id), ("call_started", Some(UserId(20))));
        assert_eq!(n.payload["from"], "201");
        assert_eq!(n.payload["caller_name"], "Alice desk");
        assert_eq!(n.payload["to"], "202");
        assert_eq!(n.payload["direction"], "internal");
        assert_eq!(n.payload["started_at"], "2025-01-15T14:30:00.000Z");
        assert_eq!(n.payload["answered_at"], "2025-01-15T14:30:02.000Z");
        assert_eq!(n.payload["callee_device_id"], 2);
        assert_eq!(n.payload["call_sid"], Value::Null);
        let end = ended(&t, t.started_at + 65_000, "answered", 63, "callee hung up");
        assert_eq!(end.len(), 1, "answered: no missed call");
        assert_eq!(
            (end[0].kind, end[0].user_id),
            ("call_ended", Some(UserId(20)))
        );
        assert_eq!(end[0].payload["duration"], 63);
        assert_eq!(end[0].payload["disposition"], "answered");
        assert_eq!(end[0].payload["reason"], "callee hung up");
        assert_eq!(end[0].payload["ended_at"], "2025-01-15T14:31:05.000Z");
    }

    #[test]
    fn an_unanswered_internal_call_is_one_missed_call_for_the_callees_owner() {
        for disposition in ["missed", "busy"] {
            let n = ended(&internal(), 1_736_951_410_000, disposition, 0, "no answer");
            let kinds: Vec<_> = n.iter().map(|n| (n.kind, n.user_id)).collect();
            assert_eq!(
                kinds,
                [
                    ("call_ended", Some(UserId(20))),
                    ("missed_call", Some(UserId(20)))
                ]
            );
            assert_eq!(n[1].payload["disposition"], disposition);
        }
        // Declined by the callee, or never rung: not a missed call.
        for disposition in ["rejected", "failed"] {
            let n = ended(&internal(), 1_736_951_410_000, disposition, 0, "x");
            assert_eq!(n.len(), 1, "{disposition}");
        }
        // A device without an owner: nobody to tell of a missed call.
        let mut t = internal();
        t.callee = dev(2, "Lobby", None);
        let n = ended(&t, 1_736_951_410_000, "missed", 0, "no answer");
        assert_eq!(
            n.iter().map(|n| (n.kind, n.user_id)).collect::<Vec<_>>(),
            [("call_ended", None)]
        );
    }

    #[test]
    fn an_unanswered_inbound_call_is_left_to_twiliod_and_an_answered_one_is_not() {
        let mut t = internal();
        t.direction = "inbound";
        t.from = "+15557654321".into();
        t.to = "+15550001111".into();
        t.call_sid = Some("CA1".into());
        t.device = dev(2, "Bob desk", Some(20));
        t.callee = None;
        t.did_name = Some("Main".into());
        assert!(ended(&t, 1, "missed", 0, "caller cancelled").is_empty());
        t.answered_at = Some(t.started_at);
        let n = ended(&t, t.started_at + 5000, "answered", 5, "caller hung up");
        assert_eq!(n.len(), 1);
        assert_eq!((n[0].kind, n[0].user_id), ("call_ended", Some(UserId(20))));
        assert_eq!(n[0].payload["call_sid"], "CA1");
        assert_eq!(n[0].payload["did_name"], "Main");
        assert!(
            n[0].payload.get("caller_name").is_none(),
            "the device is not the caller"
        );
    }

    #[test]
    fn an_unanswered_outbound_call_is_no_missed_call() {
        let mut t = internal();
        t.direction = "outbound";
        t.callee = None;
        t.to = "+15551234567".into();
        let n = ended(&t, 1, "missed", 0, "no answer");
        assert_eq!(
            n.iter().map(|n| (n.kind, n.user_id)).collect::<Vec<_>>(),
            [("call_ended", Some(UserId(10)))],
            "the caller's own call"
        );
    }

    #[test]
    fn a_full_outbox_drops_the_oldest_notice() {
        let n = |i: i64| Notice {
            kind: "call_ended",
            user_id: Some(UserId(i)),
            payload: Value::Null,
        };
        let mut o = Outbox::new(2);
        assert_eq!(o.push(n(1), Some(11)), None);
        assert_eq!(o.push(n(2), None), None);
        let dropped = o.push(n(3), Some(13)).unwrap();
        assert_eq!((dropped.notice, dropped.row), (n(1), Some(11)));
        let seq = o.front().unwrap().seq;
        assert_eq!(o.front().unwrap().notice.user_id, Some(UserId(2)));
        o.done(seq + 1);
        assert_eq!(o.len(), 2, "only the front's own seq removes it");
        o.done(seq);
        assert_eq!(o.front().unwrap().notice.user_id, Some(UserId(3)));
        assert_eq!(o.front().unwrap().row, Some(13));
    }

    /// One event the stand-in received: its kind, user and payload.
    type Received = (String, Option<UserId>, Value);

    /// A notifyd that answers UNAVAILABLE `refuse` times, then stores.
    #[derive(Clone, Default)]
    struct FakeNotifyd {
        refuse: Arc<AtomicU32>,
        got: Arc<Mutex<Vec<Received>>>,
    }

    #[tonic::async_trait]
    impl Notifyd for FakeNotifyd {
        async fn notify(&self, r: Request<NotifyRequest>) -> Result<Response<NotifyReply>, Status> {
            if self
                .refuse
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(Status::unavailable("database is locked"));
            }
            let r = r.into_inner();
            let mut got = self.got.lock().unwrap();
            got.push((
                r.kind,
                UserId::from_wire(r.user_id),
                serde_json::from_str(&r.payload_json).unwrap(),
            ));
            Ok(Response::new(NotifyReply {
                job_id: got.len() as i64,
            }))
        }

        async fn send_test(
            &self,
            _r: Request<SendTestRequest>,
        ) -> Result<Response<SendTestReply>, Status> {
            Err(Status::unimplemented("not here"))
        }
    }

    /// The stand-in has no data dir: it and the notifier share this one.
    fn secret() -> Secret {
        Secret::from_hex(&"5a".repeat(32)).unwrap()
    }

    async fn serve(fake: FakeNotifyd, listener: tokio::net::TcpListener) {
        tonic::transport::Server::builder()
            .layer(proto::grpc::RequireSecret::new(secret()))
            .add_service(NotifydServer::new(fake))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap();
    }

    /// A database with alice (201) and bob (202), each owned by a user.
    async fn office() -> (tempfile::TempDir, SqlitePool, Option<UserId>) {
        let dir = tempfile::tempdir().unwrap();
        let pool = proto::db::open(dir.path()).await.unwrap();
        let mut bob_user = None;
        for (email, user, ext) in [("a@x.test", "alice", "201"), ("b@x.test", "bob", "202")] {
            let uid: UserId = sqlx::query_scalar(
                "INSERT INTO users (email, password_hash, role) VALUES (?, 'x', 'user') RETURNING id",
            )
            .bind(email)
            .fetch_one(&pool)
            .await
            .unwrap();
            sqlx::query(
                "INSERT INTO devices (user_id, name, username, password_hash, extension) VALUES (?, ?, ?, 'h', ?)",
            )
            .bind(uid)
            .bind(format!("{user} desk"))
            .bind(user)
            .bind(ext)
            .execute(&pool)
            .await
            .unwrap();
            bob_user = Some(uid);
        }
        (dir, pool, bob_user)
    }

    fn internal_call(n: u64, answered: bool) -> Vec<Cdr> {
        let id = format!("call-{n}");
        let t = 1_736_951_400_000 + n * 60_000;
        let mut v = vec![Cdr::Start {
            call_id: id.clone(),
            direction: "internal",
            from: "201".into(),
            to: "202".into(),
            device_id: DeviceId(1),
            started_at: t,
            call_sid: None,
        }];
        if answered {
            v.push(Cdr::Answered {
                call_id: id.clone(),
                at: t + 1000,
                device_id: None,
            });
        }
        v.push(Cdr::End {
            call_id: id,
            at: t + 9000,
            disposition: if answered { "answered" } else { "missed" },
            duration_s: if answered { 8 } else { 0 },
            reason: "caller hung up".into(),
            encrypted: false,
        });
        v
    }

    /// Kind, user and call of each received event.
    fn kinds(got: &[Received]) -> Vec<(&str, Option<UserId>, &str)> {
        got.iter()
            .map(|(k, u, p)| (k.as_str(), *u, p["call_id"].as_str().unwrap()))
            .collect()
    }

    async fn received(fake: &FakeNotifyd, n: usize) -> Vec<Received> {
        for _ in 0..200 {
            if fake.got.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        fake.got.lock().unwrap().clone()
    }

    #[tokio::test]
    async fn notices_survive_a_notifyd_that_refuses_and_arrive_in_order() {
        let (_dir, pool, bob) = office().await;
        let fake = FakeNotifyd::default();
        fake.refuse.store(2, Ordering::SeqCst);
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(serve(fake.clone(), l));
        let n = Notifier::start(&addr, pool, &secret()).unwrap();
        for c in internal_call(1, true)
            .iter()
            .chain(&internal_call(2, false))
        {
            n.cdr(c);
        }
        let got = received(&fake, 4).await;
        assert_eq!(
            kinds(&got),
            [
                ("call_started", bob, "call-1"),
                ("call_ended", bob, "call-1"),
                ("call_ended", bob, "call-2"),
                ("missed_call", bob, "call-2"),
            ]
        );
        assert_eq!(got[0].2["caller_name"], "alice desk", "read from devices");
        assert_eq!(got[0].2["callee_name"], "bob desk");
        assert_eq!(
            fake.refuse.load(Ordering::SeqCst),
            0,
            "both refusals retried"
        );
        n.finish().await;
    }

    #[tokio::test]
    async fn notices_wait_for_a_notifyd_that_is_not_running_yet() {
        let (_dir, pool, bob) = office().await;
        // An address nobody listens on until later.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let n = Notifier::start(&addr.to_string(), pool, &secret()).unwrap();
        for c in internal_call(3, false) {
            n.cdr(&c);
        }
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let fake = FakeNotifyd::default();
        let l = tokio::net::TcpListener::bind(addr).await.unwrap();
        tokio::spawn(serve(fake.clone(), l));
        let got = received(&fake, 2).await;
        let kinds: Vec<(&str, Option<UserId>)> =
            got.iter().map(|(k, u, _)| (k.as_str(), *u)).collect();
        assert_eq!(kinds, [("call_ended", bob), ("missed_call", bob)]);
        n.finish().await;
    }

    #[tokio::test]
    async fn notices_survive_a_sipd_restart_while_notifyd_is_down() {
        let (_dir, pool, bob) = office().await;
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        // The first sipd sees a call end while notifyd is down, then stops.
        let n = Notifier::start(&addr.to_string(), pool.clone(), &secret()).unwrap();
        for c in internal_call(4, false) {
            n.cdr(&c);
        }
        n.finish().await;
        let kept: Vec<String> = sqlx::query_scalar(
            "SELECT kind FROM jobs WHERE queue = 'sipd' AND status = 'pending' ORDER BY id",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(kept, ["call_ended", "missed_call"]);
        // notifyd comes back; the next sipd sends what the first one left,
        // before its own new call, and the table empties.
        let fake = FakeNotifyd::default();
        let l = tokio::net::TcpListener::bind(addr).await.unwrap();
        tokio::spawn(serve(fake.clone(), l));
        let n = Notifier::start(&addr.to_string(), pool.clone(), &secret()).unwrap();
        for c in internal_call(5, true) {
            n.cdr(&c);
        }
        let got = received(&fake, 4).await;
        assert_eq!(
            kinds(&got),
            [
                ("call_ended", bob, "call-4"),
                ("missed_call", bob, "call-4"),
                ("call_started", bob, "call-5"),
                ("call_ended", bob, "call-5"),
            ]
        );
        n.finish().await;
        let left: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM jobs WHERE queue = 'sipd' AND status = 'pending'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(left, 0);
    }

    #[tokio::test]
    async fn a_stored_notice_keeps_0_for_the_admins_and_reads_back_the_same() {
        let (_dir, pool, _bob) = office().await;
        let mut t = internal();
        t.answered_at = Some(t.started_at);
        let notices = [admin_alert("emergency_call", "911 from 201"), started(&t)];
        for n in &notices {
            assert!(store(&pool, n).await.is_some());
        }
        let users: Vec<i64> = sqlx::query_scalar(
            "SELECT json_extract(payload, '$.user_id') FROM jobs WHERE queue = 'sipd' ORDER BY id",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(users, [0, 20], "the stored shape jobs of earlier runs have");
        let back: Vec<Notice> = stored(&pool).await.into_iter().map(|(_, n)| n).collect();
        assert_eq!(back, notices);
        assert_eq!(back[0].user_id, None);
    }

    #[test]
    fn retries_back_off_from_half_a_second_to_thirty() {
        let waits: Vec<u128> = (1..=9).map(|f| backoff(f).as_millis()).collect();
        assert_eq!(
            waits,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }
}
