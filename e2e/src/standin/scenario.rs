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
    let call_sid = open_call(s, script, &number);
    let mut call = CallRun::new(s, script, call_sid);
    call.walk(voice_url).await?;
    finish(s, &number, &call.base, &mut call.out).await?;
    Ok(call.out)
}

/// Puts the ringing call on the account, as Twilio lists it while the
/// webhook runs; returns its new Call SID.
fn open_call(s: &Standin, script: &CallScript, number: &super::Number) -> String {
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
    call_sid
}

/// A webhook request still to send: its URL and form parameters.
type Request = (String, Vec<(String, String)>);

/// What a TwiML verb leaves the call to do next.
enum Flow {
    /// Go on with the document's next verb.
    Next,
    /// Leave this document for another webhook (Redirect, digits from a
    /// Gather, a Dial action).
    Fetch(Request),
    /// The call is over.
    End,
}

/// The call as the stand-in plays it: the script, what has happened so far
/// and what the caller has left to press, shared by every verb.
struct CallRun<'a> {
    s: &'a Standin,
    script: &'a CallScript,
    /// The parameters every webhook of this call carries.
    base: Vec<(String, String)>,
    /// Keys still to press at the coming `<Gather>`s.
    keys: std::slice::Iter<'a, String>,
    /// Whether a verb has picked up the call yet (ringing until then).
    answered: bool,
    out: CallOutcome,
}

impl<'a> CallRun<'a> {
    /// A call that has not fetched its first document yet.
    fn new(s: &'a Standin, script: &'a CallScript, call_sid: String) -> Self {
        let base = base_params(s, script, &call_sid);
        CallRun {
            s,
            script,
            base,
            keys: script.keys.iter(),
            answered: false,
            out: CallOutcome {
                call_sid,
                events: vec![],
                documents: vec![],
                status: "completed".into(),
                duration: 0,
                recording_sid: None,
                sip: vec![],
            },
        }
    }

    /// Records a Twilio error and fails the call.
    fn fail(&mut self, code: u32) {
        self.out.events.push(Event::Error { code });
        self.out.status = "failed".into();
    }

    /// `base` with `extra` set, for the next webhook.
    fn params(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        with(&self.base, extra)
    }

    /// Follows documents from the voice URL until the call ends; like
    /// Twilio it gives up (11200) after 20 documents, a redirect loop.
    async fn walk(&mut self, voice_url: String) -> anyhow::Result<()> {
        let mut next = Some((voice_url, self.params(&[("CallStatus", "ringing")])));
        let mut hops = 0;
        while let Some((url, params)) = next.take() {
            hops += 1;
            if hops > 20 {
                self.fail(11200);
                break;
            }
            let Some(body) = self.fetch(&url, &params).await? else {
                break;
            };
            next = self.play_document(&url, &body).await?;
        }
        Ok(())
    }

    /// POSTs one webhook and keeps the document; `None` (after an 11200)
    /// when twiliod answered with an error status.
    async fn fetch(
        &mut self,
        url: &str,
        params: &[(String, String)],
    ) -> anyhow::Result<Option<String>> {
        let (status, body) = self.s.post_webhook(url, params).await?;
        self.out.events.push(Event::Webhook {
            url: url.to_owned(),
            status,
        });
        if !(200..300).contains(&status) {
            self.fail(11200);
            return Ok(None);
        }
        self.out.documents.push(body.clone());
        Ok(Some(body))
    }

    /// Runs the verbs of one document in order; returns the webhook to
    /// fetch next, `None` when the call is over (or the document ran out).
    async fn play_document(&mut self, url: &str, body: &str) -> anyhow::Result<Option<Request>> {
        let Ok(doc) = roxmltree::Document::parse(body) else {
            self.fail(12100);
            return Ok(None);
        };
        let root = doc.root_element();
        if root.tag_name().name() != "Response" {
            self.fail(12100);
            return Ok(None);
        }
        // A Redirect reports the call as it was when the document came.
        let progress = if self.answered {
            "in-progress"
        } else {
            "ringing"
        };
        for verb in root.children().filter(|n| n.is_element()) {
            match self.verb(verb, url, progress).await? {
                Flow::Next => {}
                Flow::Fetch(next) => return Ok(Some(next)),
                Flow::End => return Ok(None),
            }
        }
        Ok(None)
    }

    /// Runs one verb of the document at `url`.
    async fn verb(
        &mut self,
        verb: roxmltree::Node<'_, '_>,
        url: &str,
        progress: &str,
    ) -> anyhow::Result<Flow> {
        let text = || verb.text().unwrap_or("").trim().to_owned();
        match verb.tag_name().name() {
            "Reject" => Ok(self.reject(verb)),
            "Say" => {
                self.answered = true;
                self.out.events.push(Event::Say { text: text() });
                Ok(Flow::Next)
            }
            "Play" => {
                self.answered = true;
                self.out.events.push(Event::Play { url: text() });
                Ok(Flow::Next)
            }
            "Pause" => {
                self.answered = true;
                self.out.events.push(Event::Pause);
                Ok(Flow::Next)
            }
            "Hangup" => {
                self.out.events.push(Event::Hangup);
                Ok(Flow::End)
            }
            "Redirect" => {
                let target = resolve(url, &text());
                self.out.events.push(Event::Redirect {
                    url: target.clone(),
                });
                Ok(Flow::Fetch((
                    target,
                    self.params(&[("CallStatus", progress)]),
                )))
            }
            "Gather" => Ok(self.gather(verb, url)),
            "Dial" => self.dial(verb, url).await,
            "Record" => self.record(verb, url).await,
            _ => {
                self.fail(12100);
                Ok(Flow::End)
            }
        }
    }

    /// `<Reject>`: the call ends busy or unanswered, as its reason says.
    fn reject(&mut self, verb: roxmltree::Node<'_, '_>) -> Flow {
        let reason = verb
            .attribute("reason")
            .map_or_else(|| "rejected".into(), str::to_owned);
        self.out.status = if reason == "busy" {
            "busy"
        } else {
            "no-answer"
        }
        .into();
        self.out.events.push(Event::Reject { reason });
        Flow::End
    }

    /// `<Gather>`: plays its prompts, then presses the script's next keys
    /// (fetching the action) or times out into the next verb.
    fn gather(&mut self, verb: roxmltree::Node<'_, '_>, url: &str) -> Flow {
        self.answered = true;
        // The nested prompts play first (Say, Play, Pause only).
        for inner in verb.children().filter(|n| n.is_element()) {
            let text = inner.text().unwrap_or("").trim().to_owned();
            match inner.tag_name().name() {
                "Say" => self.out.events.push(Event::Say { text }),
                "Play" => self.out.events.push(Event::Play { url: text }),
                "Pause" => self.out.events.push(Event::Pause),
                _ => {
                    self.fail(12100);
                    return Flow::End;
                }
            }
        }
        let attr = |k: &str| verb.attribute(k).map(str::to_owned);
        // Twilio's defaults: the document's own URL, 5 s.
        let action = resolve(url, &attr("action").unwrap_or_else(|| url.to_owned()));
        let num_digits = attr("numDigits").and_then(|t| t.parse().ok()).unwrap_or(0);
        let timeout = attr("timeout").and_then(|t| t.parse().ok()).unwrap_or(5);
        let digits = self.keys.next().filter(|k| !k.is_empty()).cloned();
        self.out.events.push(Event::Gather {
            action: action.clone(),
            num_digits,
            timeout,
            digits: digits.clone(),
        });
        match digits {
            Some(d) => Flow::Fetch((
                action,
                self.params(&[("CallStatus", "in-progress"), ("Digits", &d)]),
            )),
            // No key: Twilio goes on with the next verb.
            None => {
                self.out.duration += timeout;
                Flow::Next
            }
        }
    }

    /// `<Dial>`: the far side does what the script says (or really answers
    /// over SIP), then the action URL, if any, learns how it went.
    async fn dial(&mut self, verb: roxmltree::Node<'_, '_>, url: &str) -> anyhow::Result<Flow> {
        self.answered = true;
        let noun = DialNoun::of(verb);
        if !matches!(noun.name.as_str(), "Number" | "Sip" | "Client") {
            self.fail(12100);
            return Ok(Flow::End);
        }
        let attr = |k: &str| verb.attribute(k).map(str::to_owned);
        let timeout = attr("timeout").and_then(|t| t.parse().ok()).unwrap_or(30);
        let action = attr("action").map(|a| resolve(url, &a));
        self.out.events.push(Event::Dial {
            target: noun.target.clone(),
            noun: noun.name.clone(),
            timeout,
            action: action.clone(),
            username: noun.username.clone(),
            password: noun.password.clone(),
            caller_id: attr("callerId"),
        });
        let end = self.far_end(&noun, timeout).await?;
        self.out.duration += end.secs + if end.secs == 0 { timeout } else { 0 };
        Ok(match action {
            Some(action) => Flow::Fetch((action, self.dial_result_params(&noun, &end))),
            None => Flow::Next,
        })
    }

    /// How the dialled party answers: scripted, or (for `<Sip>` with
    /// [`DialOutcome::Sip`]) a real SIP call to the URI.
    async fn far_end(&mut self, noun: &DialNoun, timeout: u32) -> anyhow::Result<DialEnd> {
        let scripted = |status, code: &str, secs| DialEnd {
            status,
            sip_code: code.to_owned(),
            secs,
            sip_call_id: None,
        };
        Ok(match self.script.dial {
            DialOutcome::Answered { secs } => scripted("completed", "200", secs),
            DialOutcome::NoAnswer => scripted("no-answer", "480", 0),
            DialOutcome::Busy => scripted("busy", "486", 0),
            DialOutcome::Failed => scripted("failed", "503", 0),
            DialOutcome::Sip { talk_secs } if noun.name == "Sip" => {
                self.sip_leg(noun, timeout, talk_secs).await?
            }
            DialOutcome::Sip { .. } => scripted("no-answer", "480", 0),
        })
    }

    /// Places the `<Sip>` leg and maps its final SIP answer to the
    /// DialCallStatus Twilio reports.
    async fn sip_leg(
        &mut self,
        noun: &DialNoun,
        timeout: u32,
        talk_secs: u32,
    ) -> anyhow::Result<DialEnd> {
        let r = super::sip::dial(&super::sip::SipDial {
            uri: noun.target.clone(),
            username: noun.username.clone(),
            password: noun.password.clone(),
            from: self.script.from.clone(),
            call_sid: self.out.call_sid.clone(),
            account_sid: self.s.account_sid.clone(),
            timeout: std::time::Duration::from_secs(u64::from(timeout)),
            talk: std::time::Duration::from_secs(u64::from(talk_secs)),
        })
        .await?;
        self.out.sip.push(r.clone());
        let status = match r.code {
            200..=299 => "completed",
            486 | 600 => "busy",
            408 | 480 | 487 => "no-answer",
            _ => "failed",
        };
        let secs = if status == "completed" { talk_secs } else { 0 };
        Ok(DialEnd {
            status,
            sip_code: r.code.to_string(),
            secs,
            sip_call_id: Some(r.call_id),
        })
    }

    /// The `<Dial action>` request's parameters: the dialled leg's status,
    /// plus the SIP answer for `<Sip>`.
    fn dial_result_params(&self, noun: &DialNoun, end: &DialEnd) -> Vec<(String, String)> {
        let dial_sid = new_sid("CA");
        let dur = end.secs.to_string();
        let mut p = self.params(&[
            ("CallStatus", "in-progress"),
            ("DialCallStatus", end.status),
            ("DialCallSid", &dial_sid),
            ("DialCallDuration", &dur),
            ("DialBridged", if end.secs > 0 { "true" } else { "false" }),
        ]);
        if noun.name == "Sip" {
            p.push(("DialSipResponseCode".into(), end.sip_code.clone()));
            p.push((
                "DialSipCallId".into(),
                end.sip_call_id
                    .clone()
                    .unwrap_or_else(|| format!("{dial_sid}@standin")),
            ));
        }
        p
    }

    /// `<Record>`: the caller speaks for the scripted time (capped by
    /// `maxLength`) and hangs up, which ends the call; a silent caller
    /// makes no recording and the next verb runs.
    async fn record(&mut self, verb: roxmltree::Node<'_, '_>, url: &str) -> anyhow::Result<Flow> {
        self.answered = true;
        let attr = |k: &str| verb.attribute(k).map(str::to_owned);
        let max_length = attr("maxLength")
            .and_then(|t| t.parse().ok())
            .unwrap_or(3600);
        let timeout = attr("timeout").and_then(|t| t.parse().ok()).unwrap_or(5);
        let transcribe = attr("transcribe").as_deref() == Some("true");
        let secs = self.script.record.secs.min(max_length);
        self.out.duration += secs;
        let rec_sid = (secs > 0).then(|| new_sid("RE"));
        self.out.events.push(Event::Record {
            max_length,
            timeout,
            transcribe,
            recording_sid: rec_sid.clone(),
            secs,
        });
        // Empty recording: no action request, next verb runs.
        let Some(rec_sid) = rec_sid else {
            return Ok(Flow::Next);
        };
        self.out.recording_sid = Some(rec_sid.clone());
        record(
            self.s,
            &self.script.record,
            RecordCtx {
                base: &self.base,
                doc_url: url,
                call_sid: &self.out.call_sid,
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
        Ok(Flow::End)
    }
}

/// What a `<Dial>` calls: its noun (`<Number>` when the number is the
/// verb's own text) with the `<Sip>` credentials.
struct DialNoun {
    name: String,
    target: String,
    username: Option<String>,
    password: Option<String>,
}

impl DialNoun {
    /// Reads the first child element of `<Dial>`, or its bare text.
    fn of(verb: roxmltree::Node<'_, '_>) -> Self {
        match verb.children().find(|n| n.is_element()) {
            Some(n) => DialNoun {
                name: n.tag_name().name().to_owned(),
                target: n.text().unwrap_or("").trim().to_owned(),
                username: n.attribute("username").map(str::to_owned),
                password: n.attribute("password").map(str::to_owned),
            },
            None => DialNoun {
                name: "Number".into(),
                target: verb.text().unwrap_or("").trim().to_owned(),
                username: None,
                password: None,
            },
        }
    }
}

/// How the dialled leg ended, as the `<Dial action>` reports it.
struct DialEnd {
    /// DialCallStatus.
    status: &'static str,
    /// DialSipResponseCode (`<Sip>` only).
    sip_code: String,
    /// Seconds talked; 0 when never bridged.
    secs: u32,
    /// The real SIP leg's Call-ID, when one was placed.
    sip_call_id: Option<String>,
}

/// A `<Record>` that captured audio: where the call stands and the
/// verb's callback attributes.
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

/// Stores the recording and sends what Twilio sends after it: the action
/// request, then the recording status and transcription callbacks in the
/// scripted order (each twice when the script says so).
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
        let entry = transcription(s, script, &c, cb, &rec_url);
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

/// Stores the transcription of the recording and returns its callback
/// request (to `cb`); it fails, as Twilio's does, past 120 s or when the
/// script has no transcript.
fn transcription(
    s: &Standin,
    script: &RecordScript,
    c: &RecordCtx<'_>,
    cb: &str,
    rec_url: &str,
) -> Request {
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
            ("RecordingUrl", rec_url),
        ],
    );
    p.push(("TranscriptionText".into(), text.unwrap_or_default()));
    (resolve(c.doc_url, cb), p)
}

/// Closes the call on the account and sends the number's final status
/// callback.
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
