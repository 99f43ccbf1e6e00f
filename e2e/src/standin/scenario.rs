//! Scripted calls: the stand-in plays Twilio's part of an inbound call. It
//! POSTs the signed voice webhook, interprets the TwiML twiliod answers
//! (the CONTRACT.md §3 subset), follows `action` URLs, makes recordings and
//! sends the recording and transcription callbacks in the scripted order,
//! then the final status callback.
//!
//! What the far side does is scripted: whether `<Dial>` is answered, how
//! long the caller speaks into `<Record>`, what the transcription says.

use serde::{Deserialize, Serialize};

use super::{Recording, Standin, Transcription, new_sid, rfc2822_now};

/// What happens to a `<Dial>`.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum DialOutcome {
    /// Answered, talked `secs`.
    Answered {
        secs: u32,
    },
    /// Rang for the whole timeout.
    #[default]
    NoAnswer,
    Busy,
    Failed,
    /// Really call the `<Sip>` URI (sipd): INVITE, digest, RTP for
    /// `talk_secs` when answered, BYE. The SIP answer decides the status.
    Sip {
        talk_secs: u32,
    },
}

/// What happens at a `<Record>`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct RecordScript {
    /// Seconds the caller speaks (capped by `maxLength`); 0 = hangs up silent.
    pub secs: u32,
    /// Transcript text; `None` = transcription fails.
    pub transcript: Option<String>,
    /// Send the transcription callback before the recording status callback.
    pub transcription_first: bool,
    /// Send every recording/transcription callback twice.
    pub duplicate_callbacks: bool,
}

/// One scripted inbound call.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct CallScript {
    pub from: String,
    /// Must be a number on the account with a voice URL.
    pub to: String,
    /// Extra webhook params: `AddOns` (JSON string), `StirVerstat`, `CallerName` ...
    pub params: Vec<(String, String)>,
    pub dial: DialOutcome,
    pub record: RecordScript,
    /// What the caller presses at each `<Gather>`, in order; "" (or no
    /// entry left) = nothing, the gather times out.
    pub keys: Vec<String>,
}

/// Something that happened on the call.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum Event {
    Webhook {
        url: String,
        status: u16,
    },
    Reject {
        reason: String,
    },
    Say {
        text: String,
    },
    Play {
        url: String,
    },
    Pause,
    Dial {
        target: String,
        noun: String,
        timeout: u32,
        action: Option<String>,
        username: Option<String>,
        password: Option<String>,
        caller_id: Option<String>,
    },
    Record {
        max_length: u32,
        timeout: u32,
        transcribe: bool,
        recording_sid: Option<String>,
        secs: u32,
    },
    Hangup,
    Redirect {
        url: String,
    },
    /// A `<Gather>`: its attributes and what the caller pressed (None =
    /// timed out, the next verb runs).
    Gather {
        action: String,
        num_digits: u32,
        timeout: u32,
        digits: Option<String>,
    },
    /// Twilio error (11200 webhook failed, 12100 TwiML parse failure).
    Error {
        code: u32,
    },
}

/// How the call went.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CallOutcome {
    pub call_sid: String,
    pub events: Vec<Event>,
    /// Every TwiML document twiliod returned, in order.
    pub documents: Vec<String>,
    /// Final CallStatus.
    pub status: String,
    pub duration: u32,
    pub recording_sid: Option<String>,
    /// SIP legs placed for `<Dial><Sip>` with [`DialOutcome::Sip`].
    #[serde(default)]
    pub sip: Vec<super::sip::SipResult>,
}

impl CallOutcome {
    /// The first `<Dial>` event, if any.
    pub fn dial(&self) -> Option<&Event> {
        self.events.iter().find(|e| matches!(e, Event::Dial { .. }))
    }

    /// True when any verb of the given kind ran.
    pub fn has(&self, pred: impl Fn(&Event) -> bool) -> bool {
        self.events.iter().any(pred)
    }
}

/// Plays `script`; errors only when the stand-in itself cannot (unknown
/// number, twiliod unreachable).
pub async fn run(s: &Standin, script: &CallScript) -> anyhow::Result<CallOutcome> {
    let number = s
        .number(&script.to)
        .ok_or_else(|| anyhow::anyhow!("{} is not a number on the account", script.to))?;
    let voice_url = number
        .voice_url
        .clone()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| anyhow::anyhow!("{} has no voice URL", script.to))?;
    let call_sid = new_sid("CA");
    let now = rfc2822_now();
    s.world().calls.push(super::Call {
        sid: call_sid.clone(),
        from: script.from.clone(),
        to: script.to.clone(),
        status: "ringing".into(),
        direction: "inbound".into(),
        duration: None,
        phone_number_sid: Some(number.sid.clone()),
        date_created: now.clone(),
        date_updated: now.clone(),
        start_time: Some(now),
        end_time: None,
    });
    let base = base_params(s, script, &call_sid);
    let mut out = CallOutcome {
        call_sid: call_sid.clone(),
        events: vec![],
        documents: vec![],
        status: "completed".into(),
        duration: 0,
        recording_sid: None,
        sip: vec![],
    };
    let mut answered = false;
    let mut keys = script.keys.iter();
    let mut next: Option<(String, Vec<(String, String)>)> =
        Some((voice_url, with(&base, &[("CallStatus", "ringing")])));
    let mut hops = 0;
    'docs: while let Some((url, params)) = next.take() {
        hops += 1;
        if hops > 20 {
            out.events.push(Event::Error { code: 11200 });
            out.status = "failed".into();
            break;
        }
        let (status, body) = s.post_webhook(&url, &params).await?;
        out.events.push(Event::Webhook {
            url: url.clone(),
            status,
        });
        if !(200..300).contains(&status) {
            out.events.push(Event::Error { code: 11200 });
            out.status = "failed".into();
            break;
        }
        out.documents.push(body.clone());
        let Ok(doc) = roxmltree::Document::parse(&body) else {
            out.events.push(Event::Error { code: 12100 });
            out.status = "failed".into();
            break;
        };
        let root = doc.root_element();
        if root.tag_name().name() != "Response" {
            out.events.push(Event::Error { code: 12100 });
            out.status = "failed".into();
            break;
        }
        let progress = if answered { "in-progress" } else { "ringing" };
        for verb in root.children().filter(|n| n.is_element()) {
            let attr = |k: &str| verb.attribute(k).map(str::to_owned);
            match verb.tag_name().name() {
                "Reject" => {
                    let reason = attr("reason").unwrap_or_else(|| "rejected".into());
                    out.status = if reason == "busy" {
                        "busy"
                    } else {
                        "no-answer"
                    }
                    .into();
                    out.events.push(Event::Reject { reason });
                    break 'docs;
                }
                "Say" => {
                    answered = true;
                    out.events.push(Event::Say {
                        text: verb.text().unwrap_or("").trim().to_owned(),
                    });
                }
                "Play" => {
                    answered = true;
                    out.events.push(Event::Play {
                        url: verb.text().unwrap_or("").trim().to_owned(),
                    });
                }
                "Pause" => {
                    answered = true;
                    out.events.push(Event::Pause);
                }
                "Hangup" => {
                    out.events.push(Event::Hangup);
                    break 'docs;
                }
                "Redirect" => {
                    let target = resolve(&url, verb.text().unwrap_or("").trim());
                    out.events.push(Event::Redirect {
                        url: target.clone(),
                    });
                    next = Some((target, with(&base, &[("CallStatus", progress)])));
                    continue 'docs;
                }
                "Gather" => {
                    answered = true;
                    // The nested prompts play first (Say, Play, Pause only).
                    for inner in verb.children().filter(|n| n.is_element()) {
                        let text = inner.text().unwrap_or("").trim().to_owned();
                        match inner.tag_name().name() {
                            "Say" => out.events.push(Event::Say { text }),
                            "Play" => out.events.push(Event::Play { url: text }),
                            "Pause" => out.events.push(Event::Pause),
                            _ => {
                                out.events.push(Event::Error { code: 12100 });
                                out.status = "failed".into();
                                break 'docs;
                            }
                        }
                    }
                    // Twilio's defaults: the document's own URL, 5 s.
                    let action = resolve(&url, &attr("action").unwrap_or_else(|| url.clone()));
                    let num_digits = attr("numDigits").and_then(|t| t.parse().ok()).unwrap_or(0);
                    let timeout = attr("timeout").and_then(|t| t.parse().ok()).unwrap_or(5);
                    let digits = keys.next().filter(|k| !k.is_empty()).cloned();
                    out.events.push(Event::Gather {
                        action: action.clone(),
                        num_digits,
                        timeout,
                        digits: digits.clone(),
                    });
                    match digits {
                        Some(d) => {
                            next = Some((
                                action,
                                with(&base, &[("CallStatus", "in-progress"), ("Digits", &d)]),
                            ));
                            continue 'docs;
                        }
                        // No key: Twilio goes on with the next verb.
                        None => out.duration += timeout,
                    }
                }
                "Dial" => {
                    answered = true;
                    let noun = verb.children().find(|n| n.is_element());
                    let (noun_name, target, username, password) = match noun {
                        Some(n) => (
                            n.tag_name().name().to_owned(),
                            n.text().unwrap_or("").trim().to_owned(),
                            n.attribute("username").map(str::to_owned),
                            n.attribute("password").map(str::to_owned),
                        ),
                        None => (
                            "Number".into(),
                            verb.text().unwrap_or("").trim().to_owned(),
                            None,
                            None,
                        ),
                    };
                    if !matches!(noun_name.as_str(), "Number" | "Sip" | "Client") {
                        out.events.push(Event::Error { code: 12100 });
                        out.status = "failed".into();
                        break 'docs;
                    }
                    let timeout = attr("timeout").and_then(|t| t.parse().ok()).unwrap_or(30);
                    let action = attr("action").map(|a| resolve(&url, &a));
                    let (target_uri, sip_user, sip_pass) =
                        (target.clone(), username.clone(), password.clone());
                    out.events.push(Event::Dial {
                        target,
                        noun: noun_name.clone(),
                        timeout,
                        action: action.clone(),
                        username,
                        password,
                        caller_id: attr("callerId"),
                    });
                    let mut sip_call_id = None;
                    let (dial_status, sip_code, secs) = match script.dial {
                        DialOutcome::Answered { secs } => ("completed", "200".to_owned(), secs),
                        DialOutcome::NoAnswer => ("no-answer", "480".to_owned(), 0),
                        DialOutcome::Busy => ("busy", "486".to_owned(), 0),
                        DialOutcome::Failed => ("failed", "503".to_owned(), 0),
                        DialOutcome::Sip { talk_secs } if noun_name == "Sip" => {
                            let r = super::sip::dial(&super::sip::SipDial {
                                uri: target_uri.clone(),
                                username: sip_user.clone(),
                                password: sip_pass.clone(),
                                from: script.from.clone(),
                                call_sid: call_sid.clone(),
                                account_sid: s.account_sid.clone(),
                                timeout: std::time::Duration::from_secs(u64::from(timeout)),
                                talk: std::time::Duration::from_secs(u64::from(talk_secs)),
                            })
                            .await?;
                            out.sip.push(r.clone());
                            sip_call_id = Some(r.call_id.clone());
                            let status = match r.code {
                                200..=299 => "completed",
                                486 | 600 => "busy",
                                408 | 480 | 487 => "no-answer",
                                _ => "failed",
                            };
                            let secs = if status == "completed" { talk_secs } else { 0 };
                            (status, r.code.to_string(), secs)
                        }
                        DialOutcome::Sip { .. } => ("no-answer", "480".to_owned(), 0),
                    };
                    let sip_code = sip_code.as_str();
                    out.duration += secs + if secs == 0 { timeout } else { 0 };
                    if let Some(action) = action {
                        let dial_sid = new_sid("CA");
                        let dur = secs.to_string();
                        let mut p = with(
                            &base,
                            &[
                                ("CallStatus", "in-progress"),
                                ("DialCallStatus", dial_status),
                                ("DialCallSid", &dial_sid),
                                ("DialCallDuration", &dur),
                                ("DialBridged", if secs > 0 { "true" } else { "false" }),
                            ],
                        );
                        if noun_name == "Sip" {
                            p.push(("DialSipResponseCode".into(), sip_code.into()));
                            p.push((
                                "DialSipCallId".into(),
                                sip_call_id
                                    .clone()
                                    .unwrap_or_else(|| format!("{dial_sid}@standin")),
                            ));
                        }
                        next = Some((action, p));
                        continue 'docs;
                    }
                }
                "Record" => {
                    answered = true;
                    let max_length = attr("maxLength")
                        .and_then(|t| t.parse().ok())
                        .unwrap_or(3600);
                    let timeout = attr("timeout").and_then(|t| t.parse().ok()).unwrap_or(5);
                    let transcribe = attr("transcribe").as_deref() == Some("true");
                    let secs = script.record.secs.min(max_length);
                    out.duration += secs;
                    if secs == 0 {
                        // Empty recording: no action request, next verb runs.
                        out.events.push(Event::Record {
                            max_length,
                            timeout,
                            transcribe,
                            recording_sid: None,
                            secs,
                        });
                        continue;
                    }
                    let rec_sid = new_sid("RE");
                    out.recording_sid = Some(rec_sid.clone());
                    out.events.push(Event::Record {
                        max_length,
                        timeout,
                        transcribe,
                        recording_sid: Some(rec_sid.clone()),
                        secs,
                    });
                    record(
                        s,
                        &script.record,
                        RecordCtx {
                            base: &base,
                            doc_url: &url,
                            call_sid: &call_sid,
                            rec_sid: &rec_sid,
                            secs,
                            action: attr("action"),
                            status_cb: attr("recordingStatusCallback"),
                            transcribe,
                            transcribe_cb: attr("transcribeCallback"),
                        },
                    )
                    .await?;
                    // The caller hung up after the message.
                    break 'docs;
                }
                _ => {
                    out.events.push(Event::Error { code: 12100 });
                    out.status = "failed".into();
                    break 'docs;
                }
            }
        }
    }
    finish(s, &number, &base, &mut out).await?;
    Ok(out)
}

struct RecordCtx<'a> {
    base: &'a [(String, String)],
    doc_url: &'a str,
    call_sid: &'a str,
    rec_sid: &'a str,
    secs: u32,
    action: Option<String>,
    status_cb: Option<String>,
    transcribe: bool,
    transcribe_cb: Option<String>,
}

async fn record(s: &Standin, script: &RecordScript, c: RecordCtx<'_>) -> anyhow::Result<()> {
    s.world().recordings.push(Recording {
        sid: c.rec_sid.to_owned(),
        call_sid: c.call_sid.to_owned(),
        duration: c.secs,
        status: "completed".into(),
        date_created: rfc2822_now(),
        deleted: false,
    });
    let rec_url = format!("{}/Recordings/{}", s.account_url(), c.rec_sid);
    let dur = c.secs.to_string();
    // <Record action> defaults to the current document's URL.
    let action = resolve(c.doc_url, c.action.as_deref().unwrap_or(c.doc_url));
    let p = with(
        c.base,
        &[
            ("CallStatus", "completed"),
            ("RecordingUrl", &rec_url),
            ("RecordingSid", c.rec_sid),
            ("RecordingDuration", &dur),
            ("Digits", "hangup"),
        ],
    );
    s.post_webhook(&action, &p).await?;

    let mut callbacks: Vec<(String, Vec<(String, String)>)> = Vec::new();
    if let Some(cb) = &c.status_cb {
        let p = vec![
            ("AccountSid".to_string(), s.account_sid.clone()),
            ("CallSid".into(), c.call_sid.into()),
            ("RecordingSid".into(), c.rec_sid.into()),
            ("RecordingUrl".into(), rec_url.clone()),
            ("RecordingStatus".into(), "completed".into()),
            ("RecordingDuration".into(), dur.clone()),
            ("RecordingChannels".into(), "1".into()),
            ("RecordingStartTime".into(), rfc2822_now()),
            ("RecordingSource".into(), "RecordVerb".into()),
            ("RecordingTrack".into(), "both".into()),
        ];
        callbacks.push((resolve(c.doc_url, cb), p));
    }
    if c.transcribe
        && let Some(cb) = &c.transcribe_cb
    {
        // Twilio transcribes at most 120 s (CONTRACT.md §2.6).
        let ok = c.secs <= 120 && script.transcript.is_some();
        let tr_sid = new_sid("TR");
        let text = if ok { script.transcript.clone() } else { None };
        s.world().transcriptions.push(Transcription {
            sid: tr_sid.clone(),
            recording_sid: c.rec_sid.into(),
            status: if ok { "completed" } else { "failed" }.into(),
            text: text.clone(),
            duration: c.secs,
            date_created: rfc2822_now(),
        });
        let mut p = with(
            c.base,
            &[
                ("TranscriptionSid", &tr_sid),
                (
                    "TranscriptionStatus",
                    if ok { "completed" } else { "failed" },
                ),
                (
                    "TranscriptionUrl",
                    &format!("{}/Transcriptions/{tr_sid}", s.account_url()),
                ),
                ("RecordingSid", c.rec_sid),
                ("RecordingUrl", &rec_url),
            ],
        );
        p.push(("TranscriptionText".into(), text.unwrap_or_default()));
        let entry = (resolve(c.doc_url, cb), p);
        if script.transcription_first {
            callbacks.insert(0, entry);
        } else {
            callbacks.push(entry);
        }
    }
    for (url, p) in &callbacks {
        s.post_webhook(url, p).await?;
        if script.duplicate_callbacks {
            s.post_webhook(url, p).await?;
        }
    }
    Ok(())
}

async fn finish(
    s: &Standin,
    number: &super::Number,
    base: &[(String, String)],
    out: &mut CallOutcome,
) -> anyhow::Result<()> {
    let now = rfc2822_now();
    if let Some(c) = s.world().calls.iter_mut().find(|c| c.sid == out.call_sid) {
        c.status = out.status.clone();
        c.duration = Some(out.duration);
        c.end_time = Some(now.clone());
        c.date_updated = now.clone();
    }
    if let Some(cb) = number.status_callback.clone().filter(|u| !u.is_empty()) {
        let dur = out.duration.to_string();
        let p = with(
            base,
            &[
                ("CallStatus", &out.status),
                ("CallDuration", &dur),
                ("Timestamp", &now),
                ("CallbackSource", "call-progress-events"),
                ("SequenceNumber", "0"),
            ],
        );
        s.post_webhook(&cb, &p).await?;
    }
    Ok(())
}

fn base_params(s: &Standin, script: &CallScript, call_sid: &str) -> Vec<(String, String)> {
    let mut p: Vec<(String, String)> = [
        ("CallSid", call_sid),
        ("AccountSid", &s.account_sid),
        ("From", &script.from),
        ("To", &script.to),
        ("Caller", &script.from),
        ("Called", &script.to),
        ("ApiVersion", "2010-04-01"),
        ("Direction", "inbound"),
        ("FromCity", ""),
        ("FromState", ""),
        ("FromZip", ""),
        ("FromCountry", "US"),
        ("ToCity", ""),
        ("ToState", ""),
        ("ToZip", ""),
        ("ToCountry", "US"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    p.extend(script.params.iter().cloned());
    p
}

/// `base` with `extra` set (replacing same-named params).
fn with(base: &[(String, String)], extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut p: Vec<(String, String)> = base
        .iter()
        .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
        .cloned()
        .collect();
    p.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    p
}

/// Resolves a TwiML URL against the document URL (string surgery: the
/// host's case must survive, it is part of the signed URL).
pub fn resolve(doc_url: &str, target: &str) -> String {
    if target.starts_with("http://") || target.starts_with("https://") {
        return target.to_owned();
    }
    let Some((scheme, rest)) = doc_url.split_once("://") else {
        return target.to_owned();
    };
    let end = rest.find('/').unwrap_or(rest.len());
    let origin = format!("{scheme}://{}", &rest[..end]);
    if target.starts_with('/') {
        format!("{origin}{target}")
    } else {
        let path = &rest[end..];
        let path = path.split('?').next().unwrap_or(path);
        let dir = &path[..path.rfind('/').map(|i| i + 1).unwrap_or(0)];
        format!("{origin}{dir}{target}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_action_urls_resolve_against_the_document() {
        let doc = "https://PBX.test/api/webhooks/voice/incoming?x=1";
        assert_eq!(
            resolve(doc, "/api/webhooks/voice/dial-result"),
            "https://PBX.test/api/webhooks/voice/dial-result"
        );
        assert_eq!(
            resolve(doc, "vm-done"),
            "https://PBX.test/api/webhooks/voice/vm-done"
        );
        assert_eq!(resolve(doc, "http://other/x"), "http://other/x");
    }
}
