//! Notification texts: email subject, plain-text and HTML bodies, and the
//! short form Gotify shows. Pure: an event and a time zone in, strings out.
//!
//! Event fields read from `Event::data` (all optional; missing ones are
//! left out rather than shown empty):
//! - voicemail: `from`, `caller_name`, `to`, `did_name`, `received_at`,
//!   `duration` (seconds), `transcript` (null/empty = unavailable)
//! - sms: `from`, `caller_name`, `to`, `did_name`, `received_at`, `body`
//! - missed_call, call_started, call_ended: `from`, `caller_name`, `to`,
//!   `did_name`, `direction`, `started_at`, `duration`, `disposition`, `reason`
//! - admin_alert: `alert` (`twilio_failing`, `disk_full`, `db_read_only`, or
//!   another code), `message`, `source`

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::Value;

use crate::event::{Event, Kind};

/// The rendered forms of one event.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
    /// One or two lines for a push notification.
    pub short: String,
    /// Gotify priority (0-10).
    pub priority: u8,
}

/// Shown when a voicemail has no transcript.
pub const TRANSCRIPT_UNAVAILABLE: &str = "(transcript unavailable)";

/// Renders `event`, showing times in `tz`.
pub fn render(event: &Event, tz: Tz) -> Rendered {
    let facts = Facts::of(event, tz);
    let mut parts = Parts::default();
    let head = match event.kind {
        Kind::Voicemail => voicemail(&facts, &mut parts),
        Kind::Sms => sms(&facts, &mut parts),
        Kind::MissedCall => missed_call(&facts, &mut parts),
        Kind::CallStarted | Kind::CallEnded => call_progress(&facts, &mut parts),
        Kind::AdminAlert => admin_alert(&facts, &mut parts),
    };
    if !facts.files.is_empty() {
        let label = if event.kind == Kind::Voicemail {
            "The recording is attached"
        } else {
            "Attached"
        };
        parts.sections.push(Section {
            title: "Attachments",
            body: format!("{label}: {}", facts.files.join(", ")),
            muted: true,
        });
    }
    Rendered {
        text: text_body(&head.heading, &parts.rows, &parts.sections),
        html: html_body(&head.heading, &parts.rows, &parts.sections),
        subject: head.subject,
        short: head.short,
        priority: head.priority,
    }
}

/// What every kind's renderer reads: the event's data and the values
/// derived from it once.
struct Facts<'a> {
    kind: Kind,
    data: &'a Value,
    tz: Tz,
    /// When the event was accepted; stands in for a missing or bad time.
    accepted: DateTime<Utc>,
    caller: String,
    /// The attachments' file names.
    files: Vec<String>,
}

impl<'a> Facts<'a> {
    /// Gathers the facts of `event`, shown in `tz`.
    fn of(event: &'a Event, tz: Tz) -> Self {
        let data = &event.data;
        Self {
            kind: event.kind,
            data,
            tz,
            accepted: proto::time::parse(&event.created_at).unwrap_or_else(Utc::now),
            caller: caller(data),
            files: event
                .attachments
                .iter()
                .map(|p| file_name(p).to_owned())
                .collect(),
        }
    }

    /// The time in data field `field`, in local time; the acceptance time
    /// when the field is missing, so a row never shows empty.
    fn when(&self, field: &str) -> String {
        let t = str_field(self.data, field)
            .and_then(proto::time::parse)
            .unwrap_or(self.accepted);
        local_time(t, self.tz)
    }

    /// A data field as an owned string, when present and not empty.
    fn owned(&self, field: &str) -> Option<String> {
        str_field(self.data, field).map(str::to_owned)
    }

    /// The `duration` field in seconds (0 when missing).
    fn secs(&self) -> u64 {
        self.data
            .get("duration")
            .and_then(Value::as_u64)
            .unwrap_or(0)
    }
}

/// The details table and the titled sections of a message body, filled in
/// by the kind's renderer and shared by the text and HTML forms.
#[derive(Default)]
struct Parts {
    rows: Vec<(&'static str, String)>,
    sections: Vec<Section>,
}

impl Parts {
    /// Adds the "From" and "To" rows every call and message starts with.
    fn push_parties(&mut self, f: &Facts<'_>) {
        self.rows.push(("From", f.caller.clone()));
        push_opt(&mut self.rows, "To", line_name(f.data));
    }
}

/// The parts of a rendered event that differ by kind besides the body.
struct Headline {
    subject: String,
    heading: String,
    short: String,
    priority: u8,
}

/// A voicemail: caller, length and transcript (or a note that there is
/// none, muted so it does not read like the caller's words).
fn voicemail(f: &Facts<'_>, parts: &mut Parts) -> Headline {
    let secs = f.secs();
    parts.push_parties(f);
    parts.rows.push(("Received", f.when("received_at")));
    parts.rows.push(("Duration", duration(secs)));
    let transcript = str_field(f.data, "transcript")
        .map(str::trim)
        .filter(|t| !t.is_empty());
    parts.sections.push(Section {
        title: "Transcript",
        body: transcript.unwrap_or(TRANSCRIPT_UNAVAILABLE).to_owned(),
        muted: transcript.is_none(),
    });
    let caller = &f.caller;
    let short = match transcript {
        Some(t) => format!("{} ({}): {}", caller, duration(secs), clip(t, 200)),
        None => format!(
            "{} ({}), {}",
            caller,
            duration(secs),
            TRANSCRIPT_UNAVAILABLE
        ),
    };
    Headline {
        subject: format!("New voicemail from {caller} ({})", duration(secs)),
        heading: "New voicemail".to_owned(),
        short,
        priority: 6,
    }
}

/// A text or picture message: its body, or the attachment count when it
/// has no text.
fn sms(f: &Facts<'_>, parts: &mut Parts) -> Headline {
    parts.push_parties(f);
    parts.rows.push(("Received", f.when("received_at")));
    let body = str_field(f.data, "body").unwrap_or("").to_owned();
    let kind = if f.files.is_empty() {
        "Text message"
    } else {
        "Picture message"
    };
    if !body.is_empty() {
        parts.sections.push(Section {
            title: "Message",
            body: body.clone(),
            muted: false,
        });
    }
    let short = if body.is_empty() {
        format!("{} attachment(s)", f.files.len())
    } else {
        clip(&body, 200)
    };
    Headline {
        subject: format!("{kind} from {}", f.caller),
        heading: format!("New {}", kind.to_lowercase()),
        short,
        priority: 5,
    }
}

/// A missed call: who, when and why it was not answered.
fn missed_call(f: &Facts<'_>, parts: &mut Parts) -> Headline {
    parts.push_parties(f);
    parts.rows.push(("When", f.when("started_at")));
    push_opt(&mut parts.rows, "Reason", f.owned("reason"));
    let caller = &f.caller;
    Headline {
        subject: format!("Missed call from {caller}"),
        heading: "Missed call".to_owned(),
        short: format!("Missed call from {caller} at {}", f.when("started_at")),
        priority: 5,
    }
}

/// A call starting or ending; an ended call also shows its length and
/// result. Low priority: these are for people who want every call.
fn call_progress(f: &Facts<'_>, parts: &mut Parts) -> Headline {
    let started = f.kind == Kind::CallStarted;
    parts.push_parties(f);
    push_opt(&mut parts.rows, "Direction", f.owned("direction"));
    parts.rows.push(("Started", f.when("started_at")));
    if !started {
        parts.rows.push(("Duration", duration(f.secs())));
        push_opt(&mut parts.rows, "Result", f.owned("disposition"));
    }
    let verb = if started { "started" } else { "ended" };
    let caller = &f.caller;
    Headline {
        subject: format!("Call {verb}: {caller}"),
        heading: format!("Call {verb}"),
        short: format!("Call {verb}: {caller}"),
        priority: 2,
    }
}

/// An admin alert: what happened and what to do about it, at high
/// priority so it is not missed.
fn admin_alert(f: &Facts<'_>, parts: &mut Parts) -> Headline {
    let code = str_field(f.data, "alert").unwrap_or("alert");
    let title = alert_title(code);
    let message = str_field(f.data, "message").unwrap_or(title).to_owned();
    push_opt(&mut parts.rows, "Source", f.owned("source"));
    parts.rows.push(("When", f.when("at")));
    parts.sections.push(Section {
        title: "What happened",
        body: message.clone(),
        muted: false,
    });
    parts.sections.push(Section {
        title: "What to do",
        body: alert_advice(code).to_owned(),
        muted: false,
    });
    Headline {
        subject: format!("[GoSIP alert] {title}"),
        heading: title.to_owned(),
        short: clip(&message, 300),
        priority: 8,
    }
}

/// The message `SendTest` delivers.
pub fn test_message(channel: &str) -> Rendered {
    let heading = "GoSIP test notification";
    let sections = [Section {
        title: "All good",
        body: format!(
            "This {channel} test was sent from your GoSIP system settings. \
             If you can read it, notifications reach you."
        ),
        muted: false,
    }];
    Rendered {
        subject: heading.to_owned(),
        text: text_body(heading, &[], &sections),
        html: html_body(heading, &[], &sections),
        short: format!("This {channel} test from GoSIP arrived."),
        priority: 5,
    }
}

/// A file's name without its folders, for attachment names.
pub fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The MIME type of an attachment, from its extension.
pub fn content_type(path: &str) -> &'static str {
    let ext = file_name(path)
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "wav" => "audio/wav",
        "mp3" => "audio/mpeg",
        "ogg" | "oga" | "opus" => "audio/ogg",
        "m4a" => "audio/mp4",
        "amr" => "audio/amr",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "bmp" => "image/bmp",
        "mp4" => "video/mp4",
        "3gp" => "video/3gpp",
        "mov" => "video/quicktime",
        "vcf" => "text/vcard",
        "txt" => "text/plain",
        "pdf" => "application/pdf",
        _ => "application/octet-stream",
    }
}

struct Section {
    title: &'static str,
    body: String,
    muted: bool,
}

fn str_field<'a>(d: &'a Value, k: &str) -> Option<&'a str> {
    d.get(k).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn push_opt(rows: &mut Vec<(&str, String)>, label: &'static str, v: Option<String>) {
    if let Some(v) = v {
        rows.push((label, v));
    }
}

/// "Alice Smith <+15551234567>", the number alone, or "Unknown caller".
fn caller(d: &Value) -> String {
    match (str_field(d, "caller_name"), str_field(d, "from")) {
        (Some(n), Some(f)) => format!("{n} ({f})"),
        (None, Some(f)) => f.to_owned(),
        (Some(n), None) => n.to_owned(),
        (None, None) => "Unknown caller".to_owned(),
    }
}

/// The number that was called, with its name when it has one.
fn line_name(d: &Value) -> Option<String> {
    match (str_field(d, "did_name"), str_field(d, "to")) {
        (Some(n), Some(t)) => Some(format!("{n} ({t})")),
        (None, Some(t)) => Some(t.to_owned()),
        (Some(n), None) => Some(n.to_owned()),
        (None, None) => None,
    }
}

fn local_time(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz)
        .format("%a %-d %b %Y, %H:%M:%S %Z")
        .to_string()
}

/// "0:42", "12:05", "1:02:03".
fn duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(max).collect();
        out.push('…');
        out
    }
}

fn alert_title(code: &str) -> &'static str {
    match code {
        "twilio_failing" => "Twilio is failing",
        "disk_full" => "Recording storage is full",
        "db_read_only" => "Database is read-only",
        _ => "System alert",
    }
}

fn alert_advice(code: &str) -> &'static str {
    match code {
        "twilio_failing" => {
            "GoSIP keeps queued calls and messages and retries with backoff. \
             Check the Twilio credentials in System Settings and Twilio's status page."
        }
        "disk_full" => {
            "Calls continue but are not recorded. Delete old recordings or \
             lower the retention period, then free space on the data volume."
        }
        "db_read_only" => {
            "The database failed its integrity check and GoSIP switched to \
             read-only mode. Restore the latest backup from System Settings."
        }
        _ => "Open the GoSIP dashboard for details.",
    }
}

fn text_body(heading: &str, rows: &[(&str, String)], sections: &[Section]) -> String {
    let mut out = format!("{heading}\n{}\n\n", "=".repeat(heading.chars().count()));
    let width = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0) + 1;
    for (label, value) in rows {
        out.push_str(&format!("{:<width$} {value}\n", format!("{label}:")));
    }
    for s in sections {
        out.push_str(&format!("\n{}:\n{}\n", s.title, s.body));
    }
    out.push_str("\n-- \nSent by GoSIP\n");
    out
}

fn html_body(heading: &str, rows: &[(&str, String)], sections: &[Section]) -> String {
    let mut out = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"></head>\n\
         <body style=\"margin:0;padding:24px;background:#f3f4f6;\
         font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;color:#111827\">\n\
         <div style=\"max-width:560px;margin:0 auto;background:#ffffff;border-radius:8px;\
         padding:24px;border:1px solid #e5e7eb\">\n",
    );
    out.push_str(&format!(
        "<h1 style=\"font-size:20px;margin:0 0 16px\">{}</h1>\n",
        esc(heading)
    ));
    if !rows.is_empty() {
        out.push_str("<table style=\"border-collapse:collapse;font-size:14px\">\n");
        for (label, value) in rows {
            out.push_str(&format!(
                "<tr><td style=\"padding:4px 16px 4px 0;color:#6b7280\">{}</td>\
                 <td style=\"padding:4px 0\">{}</td></tr>\n",
                esc(label),
                esc(value)
            ));
        }
        out.push_str("</table>\n");
    }
    for s in sections {
        let color = if s.muted { "#6b7280" } else { "#111827" };
        out.push_str(&format!(
            "<h2 style=\"font-size:15px;margin:20px 0 6px\">{}</h2>\n\
             <p style=\"margin:0;font-size:14px;line-height:1.5;color:{color};\
             white-space:pre-wrap\">{}</p>\n",
            esc(s.title),
            esc(&s.body)
        ));
    }
    out.push_str(
        "<p style=\"margin:24px 0 0;font-size:12px;color:#9ca3af\">Sent by GoSIP</p>\n\
         </div>\n</body></html>\n",
    );
    out
}

/// HTML-escapes text (event fields come from callers and SMS senders).
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(kind: Kind, data: Value, attachments: &[&str]) -> Event {
        Event {
            kind,
            user_id: Some(proto::types::UserId(1)),
            data,
            attachments: attachments.iter().map(|s| s.to_string()).collect(),
            created_at: "2025-01-15T14:30:00.000Z".into(),
        }
    }

    #[test]
    fn voicemail_shows_caller_time_duration_and_transcript() {
        let e = ev(
            Kind::Voicemail,
            json!({"from": "+15551234567", "caller_name": "Alice", "to": "+15557654321",
                   "did_name": "Office", "duration": 42, "transcript": "Call me back <soon>"}),
            &["voicemails/RE123.wav"],
        );
        let r = render(&e, chrono_tz::America::New_York);
        assert_eq!(r.subject, "New voicemail from Alice (+15551234567) (0:42)");
        assert!(
            r.text.contains("From:     Alice (+15551234567)"),
            "{}",
            r.text
        );
        assert!(r.text.contains("To:       Office (+15557654321)"));
        assert!(r.text.contains("Received: Wed 15 Jan 2025, 09:30:00 EST"));
        assert!(r.text.contains("Duration: 0:42"));
        assert!(r.text.contains("Transcript:\nCall me back <soon>"));
        assert!(r.text.contains("The recording is attached: RE123.wav"));
        assert!(r.html.contains("Call me back &lt;soon&gt;"));
        assert!(!r.html.contains("<soon>"));
    }

    #[test]
    fn voicemail_without_transcript_says_unavailable() {
        for t in [json!(null), json!(""), json!("   ")] {
            let e = ev(
                Kind::Voicemail,
                json!({"from": "+15551234567", "duration": 5, "transcript": t}),
                &[],
            );
            let r = render(&e, Tz::UTC);
            assert!(r.text.contains("Transcript:\n(transcript unavailable)"));
            assert!(r.html.contains("(transcript unavailable)"));
            assert!(r.short.contains("transcript unavailable"));
        }
    }

    #[test]
    fn received_at_field_wins_over_the_acceptance_time() {
        let e = ev(
            Kind::Voicemail,
            json!({"from": "+1555", "received_at": "2025-06-01T08:00:05Z"}),
            &[],
        );
        let r = render(&e, Tz::UTC);
        assert!(
            r.text.contains("Sun 1 Jun 2025, 08:00:05 UTC"),
            "{}",
            r.text
        );
    }

    #[test]
    fn sms_with_media_is_a_picture_message_listing_its_files() {
        let e = ev(
            Kind::Sms,
            json!({"from": "+15551234567", "to": "+15557654321", "body": "Look at this"}),
            &["media/MM1/0.jpg", "media/MM1/1.png"],
        );
        let r = render(&e, Tz::UTC);
        assert_eq!(r.subject, "Picture message from +15551234567");
        assert!(r.text.contains("Message:\nLook at this"));
        assert!(r.text.contains("Attached: 0.jpg, 1.png"));
        assert_eq!(r.short, "Look at this");
    }

    #[test]
    fn plain_sms_is_a_text_message() {
        let e = ev(Kind::Sms, json!({"from": "+1555", "body": "hi"}), &[]);
        assert_eq!(render(&e, Tz::UTC).subject, "Text message from +1555");
    }

    #[test]
    fn missed_call_without_caller_id_names_an_unknown_caller() {
        let e = ev(Kind::MissedCall, json!({"to": "+15557654321"}), &[]);
        let r = render(&e, Tz::UTC);
        assert_eq!(r.subject, "Missed call from Unknown caller");
        assert!(r.text.contains("To:   +15557654321"), "{}", r.text);
    }

    #[test]
    fn call_ended_shows_duration_and_result() {
        let e = ev(
            Kind::CallEnded,
            json!({"from": "+1555", "to": "+1666", "duration": 3725, "disposition": "answered"}),
            &[],
        );
        let r = render(&e, Tz::UTC);
        assert!(r.text.contains("1:02:05"));
        assert!(r.text.contains("answered"));
        assert_eq!(r.priority, 2);
    }

    #[test]
    fn admin_alerts_have_a_title_and_advice_per_code() {
        for (code, title) in [
            ("twilio_failing", "Twilio is failing"),
            ("disk_full", "Recording storage is full"),
            ("db_read_only", "Database is read-only"),
        ] {
            let e = ev(
                Kind::AdminAlert,
                json!({"alert": code, "message": "details here", "source": "twiliod"}),
                &[],
            );
            let r = render(&e, Tz::UTC);
            assert_eq!(r.subject, format!("[GoSIP alert] {title}"));
            assert!(r.text.contains("What happened:\ndetails here"));
            assert!(r.text.contains("What to do:"));
            assert_eq!(r.priority, 8);
        }
    }

    #[test]
    fn long_push_texts_are_clipped() {
        let e = ev(
            Kind::Sms,
            json!({"from": "+1", "body": "x".repeat(500)}),
            &[],
        );
        let r = render(&e, Tz::UTC);
        assert_eq!(r.short.chars().count(), 201);
    }

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(content_type("voicemails/a.WAV"), "audio/wav");
        assert_eq!(content_type("media/x.jpeg"), "image/jpeg");
        assert_eq!(content_type("media/noext"), "application/octet-stream");
    }
}
