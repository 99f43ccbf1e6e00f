//! sipd's database side: devices read from `devices`, bindings kept in
//! `registrations` (so they survive a restart), security events written to
//! `security_events` and admin alerts written to `alerts`, with one
//! structured log line each.

use proto::types::{DeviceId, UserId};
use std::net::SocketAddr;

use sqlx::{Row, SqlitePool};

use crate::sip::core::{Cdr, Event};
use crate::sip::registrar::{Binding, Change, Device};
use crate::sip::{Peer, Transport};

/// Every device, as the core needs it.
pub async fn load_devices(pool: &SqlitePool) -> Result<Vec<Device>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT d.id, d.username, d.password_hash, d.ha1_sha256, d.realm, d.extension, d.recording_enabled, d.mwi_unsolicited, d.busy_in_call, d.srtp, d.transport, \
         COALESCE(c.number, (SELECT number FROM dids ORDER BY id LIMIT 1)) AS caller_id, \
         u.id AS owner_id, COALESCE(u.name, '') AS owner_name \
         FROM devices d LEFT JOIN dids c ON c.id = d.caller_id_did_id \
         LEFT JOIN users u ON u.id = d.user_id ORDER BY d.id",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Device {
            id: r.get("id"),
            username: r.get("username"),
            ha1_md5: r.get::<String, _>("password_hash").to_ascii_lowercase(),
            ha1_sha256: r.get::<String, _>("ha1_sha256").to_ascii_lowercase(),
            realm: r.get("realm"),
            extension: r.get("extension"),
            recording: r
                .get::<Option<bool>, _>("recording_enabled")
                .unwrap_or(false),
            caller_id: r.get("caller_id"),
            mwi_unsolicited: r.get::<Option<bool>, _>("mwi_unsolicited").unwrap_or(false),
            busy_in_call: r.get::<Option<bool>, _>("busy_in_call").unwrap_or(false),
            srtp: r
                .get::<Option<String>, _>("srtp")
                .and_then(|s| crate::sip::sdes::Policy::parse(&s))
                .unwrap_or_default(),
            tls_only: r.get::<Option<String>, _>("transport").as_deref() == Some("tls"),
            mailbox: r.get::<Option<UserId>, _>("owner_id").map(|user_id| {
                crate::sip::registrar::Mailbox {
                    user_id,
                    name: r.get("owner_name"),
                }
            }),
        })
        .collect())
}

/// The devices whose owner has Do Not Disturb on.
/// (new, old) voicemails of each device's owner, by device id; devices
/// whose owner has none are absent.
pub async fn voicemail_counts(
    pool: &SqlitePool,
) -> Result<std::collections::HashMap<DeviceId, (u32, u32)>, sqlx::Error> {
    let rows: Vec<(DeviceId, i64, i64)> = sqlx::query_as(
        "SELECT d.id, SUM(CASE WHEN v.is_read THEN 0 ELSE 1 END),                 SUM(CASE WHEN v.is_read THEN 1 ELSE 0 END)          FROM devices d JOIN voicemails v ON v.user_id = d.user_id          GROUP BY d.id",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(d, new, old)| (d, (new.max(0) as u32, old.max(0) as u32)))
        .collect())
}

pub async fn load_dnd(pool: &SqlitePool) -> Result<Vec<DeviceId>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT d.id FROM devices d JOIN users u ON u.id = d.user_id WHERE u.dnd ORDER BY d.id",
    )
    .fetch_all(pool)
    .await
}

/// Deletes expired rows and returns the live bindings.
pub async fn load_bindings(pool: &SqlitePool, now_ms: u64) -> Result<Vec<Binding>, sqlx::Error> {
    let now = fmt_ms(now_ms);
    sqlx::query("DELETE FROM registrations WHERE expires_at <= ?")
        .bind(&now)
        .execute(pool)
        .await?;
    let rows = sqlx::query(
        "SELECT device_id, contact, expires_at, user_agent, ip_address, transport, call_id, cseq, online, last_seen, \
         local_address FROM registrations",
    )
    .fetch_all(pool)
    .await?;
    let mut out = Vec::new();
    for r in rows {
        let addr: String = r.get("ip_address");
        let Ok(addr) = addr.parse::<SocketAddr>() else {
            continue;
        };
        let transport =
            Transport::parse(&r.get::<String, _>("transport")).unwrap_or(Transport::Udp);
        let expires_at = parse_ms(&r.get::<String, _>("expires_at"));
        let last_seen = r
            .get::<Option<String>, _>("last_seen")
            .map_or(now_ms, |s| parse_ms(&s));
        out.push(Binding {
            device_id: r.get("device_id"),
            contact: r.get("contact"),
            source: Peer {
                transport,
                addr,
                conn: 0,
                local: r
                    .get::<Option<String>, _>("local_address")
                    .and_then(|a| a.parse().ok())
                    .or_else(|| super::route_local(addr)),
            },
            user_agent: r.get("user_agent"),
            call_id: r.get("call_id"),
            cseq: u32::try_from(r.get::<i64, _>("cseq")).unwrap_or(0),
            expires_at,
            online: r.get("online"),
            last_seen,
            missed: 0,
        });
    }
    Ok(out)
}

/// Events waiting for the database writer, in order, except that a
/// binding refreshed again before the write is kept once, with its latest
/// state, where its first refresh stood: under a flood of 1,000 phones
/// that is at most 1,000 rows per write however many REGISTERs came in.
/// A removal or an online change of the binding ends the run (a later
/// refresh is written after it).
#[derive(Default)]
pub struct Batch {
    events: Vec<Event>,
    /// Where each binding's pending upsert is in `events`, by device and
    /// contact (a device has at most [`MAX_BINDINGS`] contacts).
    ///
    /// [`MAX_BINDINGS`]: crate::sip::registrar::MAX_BINDINGS
    upserts: std::collections::HashMap<DeviceId, Vec<(String, usize)>>,
}

impl Batch {
    pub fn push(&mut self, e: Event) {
        let (device_id, contact) = match &e {
            Event::Binding(Change::Upsert(b) | Change::Online(b)) => (b.device_id, &b.contact),
            Event::Binding(Change::Remove { device_id, contact }) => (*device_id, contact),
            _ => {
                self.events.push(e);
                return;
            }
        };
        let runs = self.upserts.entry(device_id).or_default();
        let at = runs.iter().position(|(c, _)| c == contact);
        match (&e, at) {
            (Event::Binding(Change::Upsert(_)), Some(i)) => {
                self.events[runs[i].1] = e;
                return;
            }
            (Event::Binding(Change::Upsert(_)), None) => {
                runs.push((contact.clone(), self.events.len()));
            }
            (_, Some(i)) => {
                runs.swap_remove(i);
            }
            _ => {}
        }
        self.events.push(e);
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Writes the events and empties the batch (also when the write
    /// fails: the error is returned, the events are not retried).
    pub async fn write(&mut self, pool: &SqlitePool) -> Result<(), sqlx::Error> {
        let r = write_events(pool, &self.events).await;
        self.events.clear();
        // A flood's batch does not stay allocated.
        self.events.shrink_to(512);
        self.upserts.clear();
        self.upserts.shrink_to(64);
        r
    }
}

/// Writes a batch of core events: bindings in one transaction, security
/// events through `proto::db::security_event`, each with its log line.
async fn write_events(pool: &SqlitePool, events: &[Event]) -> Result<(), sqlx::Error> {
    for e in events {
        if let Event::Security {
            kind,
            ip,
            username,
            detail,
        } = e
        {
            tracing::warn!(
                event = *kind,
                src_ip = %ip,
                username = %username,
                detail = %detail,
                "security event"
            );
            proto::db::security_event(pool, "sipd", kind, &ip.to_string(), username, detail)
                .await?;
        }
        if let Event::Alert { kind, message } = e {
            tracing::error!(alert = *kind, message = %message, "admin alert");
            proto::db::alert(pool, "sipd", kind, message).await?;
        }
    }
    if events
        .iter()
        .all(|e| !matches!(e, Event::Binding(_) | Event::Cdr(_)))
    {
        return Ok(());
    }
    write_bindings(pool, events).await
}

async fn write_bindings(pool: &SqlitePool, events: &[Event]) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    // Registrations are written many at a time: one statement per run of
    // upserts (each a round trip to SQLite's thread) instead of one per
    // REGISTER ([`Batch`] already keeps one upsert per binding and run).
    let mut upserts: Vec<&Binding> = Vec::new();
    for e in events {
        if let Event::Binding(Change::Upsert(b)) = e {
            upserts.push(b);
            continue;
        }
        upsert_bindings(&mut tx, &mut upserts).await?;
        match e {
            Event::Binding(Change::Upsert(_)) => {}
            Event::Binding(Change::Remove { device_id, contact }) => {
                sqlx::query("DELETE FROM registrations WHERE device_id = ? AND contact = ?")
                    .bind(device_id)
                    .bind(contact)
                    .execute(&mut *tx)
                    .await?;
            }
            Event::Binding(Change::Online(b)) => {
                sqlx::query(
                    "UPDATE registrations SET online = ?, last_seen = ? WHERE device_id = ? AND contact = ?",
                )
                .bind(b.online)
                .bind(fmt_ms(b.last_seen))
                .bind(b.device_id)
                .bind(&b.contact)
                .execute(&mut *tx)
                .await?;
            }
            Event::Cdr(c) => write_cdr(&mut tx, c).await?,
            Event::Security { .. }
            | Event::Alert { .. }
            | Event::MediaAllocate { .. }
            | Event::MediaRelease { .. }
            | Event::MediaPlay { .. }
            | Event::MailboxList { .. }
            | Event::VoicemailRead { .. }
            | Event::VoicemailDelete { .. }
            | Event::MediaUpdate { .. }
            | Event::MediaCrypto { .. }
            | Event::MediaWebrtc { .. }
            | Event::MediaRecord { .. } => {}
        }
    }
    upsert_bindings(&mut tx, &mut upserts).await?;
    tx.commit().await
}

/// Writes a run of binding upserts (and empties it), up to 500 rows per
/// statement.
async fn upsert_bindings(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    upserts: &mut Vec<&Binding>,
) -> Result<(), sqlx::Error> {
    for chunk in upserts.chunks(500) {
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO registrations (device_id, contact, expires_at, user_agent, ip_address, transport, call_id, cseq, online, last_seen, local_address) ",
        );
        q.push_values(chunk, |mut row, b| {
            row.push_bind(b.device_id)
                .push_bind(&b.contact)
                .push_bind(fmt_ms(b.expires_at))
                .push_bind(&b.user_agent)
                .push_bind(b.source.addr.to_string())
                .push_bind(b.source.transport.as_str())
                .push_bind(&b.call_id)
                .push_bind(i64::from(b.cseq))
                .push_bind(true)
                .push_bind(fmt_ms(b.last_seen))
                .push_bind(b.source.local.map(|ip| ip.to_string()));
        });
        q.push(
            " ON CONFLICT(device_id, contact) DO UPDATE SET expires_at = excluded.expires_at, \
             user_agent = excluded.user_agent, ip_address = excluded.ip_address, transport = excluded.transport, \
             call_id = excluded.call_id, cseq = excluded.cseq, online = TRUE, last_seen = excluded.last_seen, \
             local_address = excluded.local_address",
        );
        // Not kept prepared: each batch size is another statement, and a
        // 500-row one is a large program to cache per connection.
        q.build().persistent(false).execute(&mut **tx).await?;
    }
    upserts.clear();
    Ok(())
}

async fn write_cdr(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    c: &Cdr,
) -> Result<(), sqlx::Error> {
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
            // twiliod may have written the row of a trunk call first. The
            // call's number is the DID dialled (inbound) or sent as caller
            // ID (outbound); internal calls have none.
            let did = match *direction {
                "inbound" => Some(to),
                "outbound" => Some(from),
                _ => None,
            };
            sqlx::query(
                "INSERT INTO cdrs (call_sid, sip_call_id, direction, from_number, to_number, did_id, device_id, user_id, started_at, disposition) \
                 VALUES (?, ?, ?, ?, ?, (SELECT id FROM dids WHERE number = ?), ?, (SELECT user_id FROM devices WHERE id = ?), ?, 'in_progress') \
                 ON CONFLICT(call_sid) DO UPDATE SET sip_call_id = excluded.sip_call_id, \
                 did_id = COALESCE(cdrs.did_id, excluded.did_id), \
                 device_id = excluded.device_id, user_id = COALESCE(cdrs.user_id, excluded.user_id)",
            )
            .bind(call_sid)
            .bind(call_id)
            .bind(direction)
            .bind(from)
            .bind(to)
            .bind(did)
            .bind(device_id)
            .bind(device_id)
            .bind(fmt_ms(*started_at))
            .execute(&mut **tx)
            .await?;
        }
        Cdr::Answered {
            call_id,
            at,
            device_id,
        } => {
            // Of the devices rung, the one that answered (and its user, when
            // it has one) owns the call.
            sqlx::query(
                "UPDATE cdrs SET answered_at = ?1, device_id = COALESCE(?2, device_id), \
                 user_id = COALESCE((SELECT user_id FROM devices WHERE id = ?2), user_id) \
                 WHERE sip_call_id = ?3 AND ended_at IS NULL",
            )
            .bind(fmt_ms(*at))
            .bind(device_id)
            .bind(call_id)
            .execute(&mut **tx)
            .await?;
        }
        Cdr::End {
            call_id,
            at,
            disposition,
            duration_s,
            reason,
            encrypted,
        } => {
            sqlx::query(
                "UPDATE cdrs SET ended_at = ?, disposition = ?, duration = ?, reason = ?, encrypted = ? \
                 WHERE sip_call_id = ? AND ended_at IS NULL",
            )
            .bind(fmt_ms(*at))
            .bind(disposition)
            .bind(i64::try_from(*duration_s).unwrap_or(i64::MAX))
            .bind(reason)
            .bind(encrypted)
            .bind(call_id)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

/// Links the call's recording (a path relative to the data dir) from its CDR.
pub async fn write_recording_url(
    pool: &SqlitePool,
    call_id: &str,
    path: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE cdrs SET recording_url = ? WHERE sip_call_id = ?")
        .bind(path)
        .bind(call_id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Stores mediad's per-leg stats and the recording path of a finished call.
pub async fn write_media_stats(
    pool: &SqlitePool,
    call_id: &str,
    stats: &serde_json::Value,
    recording: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE cdrs SET media_stats = ?, recording_url = COALESCE(NULLIF(?, ''), recording_url) WHERE sip_call_id = ?",
    )
    .bind(stats.to_string())
    .bind(recording)
    .bind(call_id)
    .execute(pool)
    .await?;
    Ok(())
}

/// `user_id`'s voicemails with audio, newest first, their times said in
/// the time zone `tz` (an IANA name; UTC when unknown).
pub async fn mailbox(
    pool: &SqlitePool,
    user_id: UserId,
    tz: &str,
) -> Result<Vec<crate::sip::core::StoredMessage>, sqlx::Error> {
    let rows: Vec<(i64, String, String, String, bool)> = sqlx::query_as(
        "SELECT id, from_number, audio_url, created_at, is_read FROM voicemails \
         WHERE user_id = ? AND audio_url IS NOT NULL AND audio_url != '' \
         ORDER BY created_at DESC, id DESC",
    )
    .bind(user_id)
    .fetch_all(pool)
    .await?;
    let tz: chrono_tz::Tz = tz.parse().unwrap_or(chrono_tz::UTC);
    Ok(rows
        .into_iter()
        .map(
            |(id, from, audio, at, is_read)| crate::sip::core::StoredMessage {
                id,
                from,
                received: proto::time::parse(&at)
                    .map(|t| {
                        t.with_timezone(&tz)
                            .format("%A, %B %-d at %-I:%M %p")
                            .to_string()
                    })
                    .unwrap_or_default(),
                audio,
                is_read,
            },
        )
        .collect())
}

/// CDRs whose recording file is gone (mediad's retention sweep deleted
/// it): the link is cleared, so the player offers no missing file, and the
/// call says when it expired. Returns how many were cleared.
pub async fn forget_missing_recordings(
    pool: &SqlitePool,
    data_dir: &std::path::Path,
) -> Result<u64, sqlx::Error> {
    let linked: Vec<(i64, String)> = sqlx::query_as(
        "SELECT id, recording_url FROM cdrs WHERE recording_url IS NOT NULL AND recording_url != ''",
    )
    .fetch_all(pool)
    .await?;
    let now = proto::time::now();
    let mut cleared = 0;
    for (id, rel) in linked {
        // A link is a path relative to the data dir; one that leaves it is
        // not ours to look at and is left alone.
        let inside = std::path::Path::new(&rel)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !inside || data_dir.join(&rel).exists() {
            continue;
        }
        cleared += sqlx::query(
            "UPDATE cdrs SET recording_url = NULL, recording_expired_at = ? WHERE id = ? AND recording_url = ?",
        )
        .bind(&now)
        .bind(id)
        .bind(&rel)
        .execute(pool)
        .await?
        .rows_affected();
    }
    Ok(cleared)
}

/// A voicemail call whose message was not kept (shorter than the
/// shortest message) was, for the record, a missed call.
pub async fn voicemail_not_kept(pool: &SqlitePool, call_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE cdrs SET disposition = 'missed' WHERE sip_call_id = ? AND disposition = 'voicemail'",
    )
    .bind(call_id)
    .execute(pool)
    .await?;
    Ok(())
}

pub fn fmt_ms(ms: u64) -> String {
    let t = chrono::DateTime::from_timestamp_millis(i64::try_from(ms).unwrap_or(i64::MAX))
        .unwrap_or_default();
    proto::time::fmt(t)
}

pub fn parse_ms(s: &str) -> u64 {
    proto::time::parse(s)
        .map(|t| u64::try_from(t.timestamp_millis()).unwrap_or(0))
        .unwrap_or(0)
}

/// Replaces the addresses sipd uses (scope, address, source), shown in the
/// system status and read by twiliod for its `<Sip>` URIs.
pub async fn write_addresses(
    pool: &SqlitePool,
    rows: &[(String, String, &'static str)],
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM sip_addresses")
        .execute(&mut *tx)
        .await?;
    for (scope, address, source) in rows {
        sqlx::query("INSERT INTO sip_addresses (scope, address, source) VALUES (?, ?, ?)")
            .bind(scope)
            .bind(address)
            .bind(source)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(device_id: DeviceId, contact: &str, cseq: u32, online: bool) -> Binding {
        Binding {
            device_id,
            contact: contact.into(),
            source: Peer {
                transport: Transport::Udp,
                addr: "127.0.0.1:5070".parse().unwrap(),
                conn: 0,
                local: None,
            },
            user_agent: "ua".into(),
            call_id: "c".into(),
            cseq,
            expires_at: 4_000_000_000_000,
            online,
            last_seen: 1,
            missed: 0,
        }
    }

    /// (contact, cseq, online) of every stored binding.
    async fn rows(pool: &SqlitePool) -> Vec<(String, i64, bool)> {
        sqlx::query_as("SELECT contact, cseq, online FROM registrations ORDER BY contact")
            .fetch_all(pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_batch_writes_a_binding_refreshed_many_times_once_and_keeps_removals_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let pool = proto::db::open(dir.path()).await.unwrap();
        let device: DeviceId = sqlx::query_scalar(
            "INSERT INTO devices (username, password_hash) VALUES ('201', 'x') RETURNING id",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        let up = |c, n, on| Event::Binding(Change::Upsert(binding(device, c, n, on)));
        let online = |c, n, on| Event::Binding(Change::Online(binding(device, c, n, on)));
        let remove = |c: &str| {
            Event::Binding(Change::Remove {
                device_id: device,
                contact: c.into(),
            })
        };
        let mut batch = Batch::default();
        // 1,000 refreshes of two bindings: two rows, the last state of each.
        for n in 1..=500 {
            batch.push(up("sip:a", n, true));
            batch.push(up("sip:b", n, true));
        }
        assert_eq!(batch.len(), 2);
        // Removed then registered again: present, in that order.
        batch.push(remove("sip:a"));
        batch.push(up("sip:a", 501, true));
        // Registered, then removed: gone.
        batch.push(up("sip:c", 1, true));
        batch.push(remove("sip:c"));
        // Refreshed, marked offline, refreshed again: online.
        batch.push(online("sip:b", 500, false));
        batch.push(up("sip:b", 501, true));
        assert_eq!(batch.len(), 8);
        batch.write(&pool).await.unwrap();
        assert!(batch.is_empty());
        assert_eq!(
            rows(&pool).await,
            vec![("sip:a".into(), 501, true), ("sip:b".into(), 501, true)]
        );
        // A refresh after an offline mark stays behind it.
        batch.push(up("sip:b", 502, true));
        batch.push(online("sip:b", 502, false));
        batch.push(up("sip:a", 502, true));
        batch.push(up("sip:a", 503, true));
        assert_eq!(batch.len(), 3);
        batch.write(&pool).await.unwrap();
        assert_eq!(
            rows(&pool).await,
            vec![("sip:a".into(), 503, true), ("sip:b".into(), 502, false)]
        );
    }

    #[tokio::test]
    async fn a_call_whose_recording_was_deleted_keeps_no_link_but_says_it_expired() {
        let dir = tempfile::tempdir().unwrap();
        let pool = proto::db::open(dir.path()).await.unwrap();
        let kept = "recordings/2026/01/01/kept.wav";
        std::fs::create_dir_all(dir.path().join("recordings/2026/01/01")).unwrap();
        std::fs::write(dir.path().join(kept), b"RIFF").unwrap();
        for rel in [kept, "recordings/2020/01/01/gone.wav", "../elsewhere.wav"] {
            sqlx::query(
                "INSERT INTO cdrs (direction, from_number, to_number, started_at, disposition, \
                 recording_url) VALUES ('internal', '201', '202', ?1, 'answered', ?2)",
            )
            .bind(proto::time::now())
            .bind(rel)
            .execute(&pool)
            .await
            .unwrap();
        }
        assert_eq!(
            forget_missing_recordings(&pool, dir.path()).await.unwrap(),
            1
        );
        let rows: Vec<(Option<String>, Option<String>)> =
            sqlx::query_as("SELECT recording_url, recording_expired_at FROM cdrs ORDER BY id")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(rows[0], (Some(kept.to_owned()), None));
        assert_eq!(rows[1].0, None, "the deleted recording's link is gone");
        assert!(rows[1].1.is_some(), "and the call says when it expired");
        assert_eq!(
            rows[2].0.as_deref(),
            Some("../elsewhere.wav"),
            "not ours to judge"
        );
        assert_eq!(
            forget_missing_recordings(&pool, dir.path()).await.unwrap(),
            0
        );
    }
}
