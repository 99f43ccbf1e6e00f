//! TwiML for the rules engine's actions (CONTRACT.md §3), pure: a
//! [`Decision`](crate::rules::Decision) plus a [`Ctx`] become one XML document.
//!
//! Ringing devices is a `<Dial><Sip>` to sipd. The SIP URI sipd receives is
//!
//! ```text
//! sip:{DID E.164}@{sip.public_address}:{sip port};transport=udp
//!     ?X-GoSIP-CallSid={CallSid}&X-GoSIP-Devices={id,id|empty = DID owner's}&X-GoSIP-Rule={rule}
//!     [&X-GoSIP-Trust=verified|spam]
//! ```
//!
//! `X-GoSIP-Trust` ([`trust`]) makes sipd prefix the caller's display name
//! on the phones: a check mark for a caller STIR/SHAKEN fully attested, or
//! "SPAM?" for one whose spam score is high without reaching the block.
//!
//! with `username`/`password` = `twilio.trunk_username` / `trunk_password`
//! so Twilio answers sipd's digest challenge. Twilio also adds
//! `X-Twilio-CallSid` / `X-Twilio-AccountSid`. The `<Dial>` has
//! `timeout` = `calls.ring_timeout` (30) and `action` =
//! `/api/webhooks/voice/dial-result`, which answers voicemail TwiML when
//! nobody picked up.

use crate::rules::{Action, BlockAction, CallFacts, Decision};
use proto::types::{DeviceId, RouteId};

/// Everything the documents need besides the action.
#[derive(Debug, Clone, Default)]
pub struct Ctx {
    /// `system.public_url` without a trailing slash.
    pub public_url: String,
    /// Host:port Twilio sends SIP to (sipd).
    pub sip_host: String,
    pub sip_port: u16,
    pub trunk_username: String,
    pub trunk_password: String,
    pub call_sid: String,
    /// The DID called (E.164).
    pub did: String,
    pub ring_timeout: u32,
    pub vm_max_length: u32,
    pub vm_silence_timeout: u32,
    /// Text-to-speech greeting.
    pub greeting_text: String,
    /// URL of an uploaded greeting; wins over the text.
    pub greeting_url: Option<String>,
    /// The caller's trust mark for the phones (ringing only).
    pub trust: Option<Trust>,
}

/// What the phones show about the caller (`X-GoSIP-Trust`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// STIR/SHAKEN full attestation (`TN-Validation-Passed-A`): the
    /// originating carrier vouches for the caller's right to the number.
    Verified,
    /// A spam score at or above [`SPAM_MARK_SCORE`] (or the blocking
    /// threshold, when that is lower) that did not block the call.
    Spam,
}

impl Trust {
    pub fn as_str(self) -> &'static str {
        match self {
            Trust::Verified => "verified",
            Trust::Spam => "spam",
        }
    }
}

/// The lowest spam score that marks a ringing call "SPAM?". Scores above
/// `routing.spam_threshold` never ring (the rules block them), so the mark
/// covers the band below the block: with the default threshold 0.7, scores
/// 0.5 to 0.7 (an ekata reputation level 3, an icehook risk of 50+). When
/// the admin sets the threshold below 0.5, the threshold itself marks.
pub const SPAM_MARK_SCORE: f64 = 0.5;

/// The trust mark of a call: spam wins over a verified number (SHAKEN
/// says who is calling, not that the call is wanted); partial attestation
/// (B, C), a failed check or no PASSporT give none.
pub fn trust(f: &CallFacts, spam_threshold: f64) -> Option<Trust> {
    if f.spam_score
        .is_some_and(|s| s >= SPAM_MARK_SCORE.min(spam_threshold))
    {
        return Some(Trust::Spam);
    }
    (f.stir_verstat.as_deref().map(str::trim) == Some("TN-Validation-Passed-A"))
        .then_some(Trust::Verified)
}

/// Paths twiliod serves for Twilio (all under `/api/webhooks/`).
pub mod paths {
    pub const INCOMING: &str = "/api/webhooks/voice/incoming";
    pub const STATUS: &str = "/api/webhooks/voice/status";
    pub const DIAL_RESULT: &str = "/api/webhooks/voice/dial-result";
    pub const VM_DONE: &str = "/api/webhooks/voice/vm-done";
    pub const RECORDING: &str = "/api/webhooks/recording";
    pub const TRANSCRIPTION: &str = "/api/webhooks/transcription";
    /// A menu's `<Gather>` answer: `?route={id}&path={keys}&tries={n}`.
    pub const MENU: &str = "/api/webhooks/voice/menu";
    /// The "number disconnected" SIT tone (unsigned GET).
    pub const SIT_TONE: &str = "/api/webhooks/voice/sit.wav";
    /// An uploaded prompt: `{PROMPT}/{name}` (unsigned GET, like the
    /// greeting: Twilio fetches `<Play>` URLs without a signature).
    pub const PROMPT: &str = "/api/webhooks/voice/prompt";
    /// A DID's uploaded greeting: `{GREETING}/{did_id}` (unsigned GET).
    pub const GREETING: &str = "/api/webhooks/voice/greeting";
}

/// The announcement after the SIT tone.
pub const DISCONNECTED_TEXT: &str = "We're sorry. The number you have reached is not in service. Please check the number and try again.";

/// The document for a decision.
pub fn for_decision(d: &Decision, c: &Ctx) -> String {
    match &d.action {
        Action::Ring {
            devices, timeout, ..
        } => ring(c, devices, timeout.unwrap_or(c.ring_timeout), &d.rule),
        Action::Forward { number } => forward(c, number),
        Action::Voicemail { greeting } => voicemail(c, greeting.as_deref(), false),
        Action::Announcement { text, audio } => announcement(c, text, audio.as_deref()),
        Action::Reject { busy } => reject(*busy),
        Action::Menu(m) => menu(c, m, d.route_id.unwrap_or(RouteId(0)), "", 0, None),
        Action::Block {
            how: BlockAction::Reject,
        } => reject(false),
        Action::Block {
            how: BlockAction::DisconnectedTone,
        } => disconnected(c),
        Action::Block {
            how: BlockAction::SilentVoicemail,
        } => voicemail(c, None, true),
    }
}

/// `<Dial><Sip>` to sipd.
pub fn ring(c: &Ctx, devices: &[DeviceId], timeout: u32, rule: &str) -> String {
    let devs: Vec<String> = devices.iter().map(DeviceId::to_string).collect();
    let mut uri = format!(
        "sip:{}@{}:{};transport=udp?X-GoSIP-CallSid={}&X-GoSIP-Devices={}&X-GoSIP-Rule={}",
        c.did,
        c.sip_host,
        c.sip_port,
        uri_escape(&c.call_sid),
        devs.join(","),
        uri_escape(rule),
    );
    if let Some(t) = c.trust {
        uri.push_str("&X-GoSIP-Trust=");
        uri.push_str(t.as_str());
    }
    let mut sip = String::from("<Sip");
    if !c.trunk_username.is_empty() {
        sip.push_str(&format!(
            " username=\"{}\" password=\"{}\"",
            esc(&c.trunk_username),
            esc(&c.trunk_password)
        ));
    }
    sip.push_str(&format!(">{}</Sip>", esc(&uri)));
    doc(&format!(
        "<Dial timeout=\"{}\" action=\"{}\" method=\"POST\">{sip}</Dial>",
        timeout,
        esc(&url(c, paths::DIAL_RESULT))
    ))
}

/// `<Dial><Number>` to an external number; the Dial action reports the end.
pub fn forward(c: &Ctx, number: &str) -> String {
    doc(&format!(
        "<Dial timeout=\"{}\" action=\"{}\" method=\"POST\"><Number>{}</Number></Dial>",
        c.ring_timeout,
        esc(&format!("{}?forward=1", url(c, paths::DIAL_RESULT))),
        esc(number)
    ))
}

/// Greeting then `<Record>`; `silent` marks the recording so the owner is
/// not notified (blocked callers sent to voicemail silently).
pub fn voicemail(c: &Ctx, greeting: Option<&str>, silent: bool) -> String {
    let q = if silent { "?silent=1" } else { "" };
    let greet = match (greeting, &c.greeting_url) {
        (Some(text), _) => say(text),
        (None, Some(u)) => format!("<Play>{}</Play>", esc(u)),
        (None, None) => say(&c.greeting_text),
    };
    doc(&format!(
        "{greet}<Record maxLength=\"{}\" timeout=\"{}\" playBeep=\"true\" trim=\"trim-silence\" \
         action=\"{}\" method=\"POST\" recordingStatusCallback=\"{}\" \
         recordingStatusCallbackEvent=\"completed\" transcribe=\"true\" transcribeCallback=\"{}\"/><Hangup/>",
        c.vm_max_length,
        c.vm_silence_timeout,
        esc(&format!("{}{q}", url(c, paths::VM_DONE))),
        esc(&format!("{}{q}", url(c, paths::RECORDING))),
        esc(&format!("{}{q}", url(c, paths::TRANSCRIPTION))),
    ))
}

/// A menu `path` keys deep in route `route`'s: `notice` (e.g. "not a valid
/// choice") said first, then the greeting inside a one-key `<Gather>`.
/// Twilio posts the key to the menu path; with no key it goes on to the
/// `<Redirect>`, which posts the same URL without `Digits`.
pub fn menu(
    c: &Ctx,
    m: &proto::routing::MenuAction,
    route: RouteId,
    path: &str,
    tries: u32,
    notice: Option<&str>,
) -> String {
    let next = esc(&format!(
        "{}?route={route}&path={path}&tries={tries}",
        url(c, paths::MENU)
    ));
    let greet = match &m.audio {
        Some(u) => format!("<Play>{}</Play>", esc(&audio_url(c, u))),
        None => say(&m.greeting),
    };
    doc(&format!(
        "{}<Gather input=\"dtmf\" numDigits=\"1\" timeout=\"{}\" action=\"{next}\" method=\"POST\">{greet}</Gather>\
         <Redirect method=\"POST\">{next}</Redirect>",
        notice.map(say).unwrap_or_default(),
        m.wait_secs(),
    ))
}

/// Say (or play) then hang up.
pub fn announcement(c: &Ctx, text: &str, audio: Option<&str>) -> String {
    let body = match audio {
        Some(u) => format!("<Play>{}</Play>", esc(&audio_url(c, u))),
        None => say(text),
    };
    doc(&format!("{body}<Hangup/>"))
}

/// `<Reject>`: busy signal or plain rejection. Never answered, not billed.
pub fn reject(busy: bool) -> String {
    doc(if busy {
        "<Reject reason=\"busy\"/>"
    } else {
        "<Reject reason=\"rejected\"/>"
    })
}

/// The SIT tone, the "not in service" message, hang up.
pub fn disconnected(c: &Ctx) -> String {
    doc(&format!(
        "<Play>{}</Play>{}<Hangup/>",
        esc(&url(c, paths::SIT_TONE)),
        say(DISCONNECTED_TEXT)
    ))
}

/// `<Hangup/>`.
pub fn hangup() -> String {
    doc("<Hangup/>")
}

/// An empty `<Response/>` (status callbacks, SMS without reply).
pub fn empty() -> String {
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>".to_owned()
}

/// XML-escapes text and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The SIT tone "number disconnected" (ITU-T E.180 / Telcordia: 913.8,
/// 1370.6, 1776.7 Hz for 274, 274, 380 ms) as an 8 kHz 16-bit mono WAV.
pub fn sit_tone_wav() -> Vec<u8> {
    let rate = 8000u32;
    let mut samples: Vec<i16> = Vec::new();
    for (hz, ms) in [(913.8f32, 274u32), (1370.6, 274), (1776.7, 380)] {
        let n = rate * ms / 1000;
        samples.extend((0..n).map(|i| {
            let t = i as f32 / rate as f32;
            ((t * hz * std::f32::consts::TAU).sin() * 12000.0) as i16
        }));
    }
    let data_len = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

fn say(text: &str) -> String {
    format!(
        "<Say voice=\"alice\" language=\"en-US\">{}</Say>",
        esc(text)
    )
}

/// Where Twilio fetches a route's recording: an uploaded prompt from
/// twiliod's public path, any other URL as it is.
fn audio_url(c: &Ctx, audio: &str) -> String {
    match proto::routing::prompt_name(audio) {
        Some(name) => format!("{}{}/{name}", c.public_url, paths::PROMPT),
        None => audio.to_owned(),
    }
}

fn url(c: &Ctx, path: &str) -> String {
    format!("{}{path}", c.public_url)
}

fn doc(body: &str) -> String {
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response>{body}</Response>")
}

/// Percent-escapes what may not appear raw in a SIP URI header value.
fn uri_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()[]/:+$".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Stage;

    fn ctx() -> Ctx {
        Ctx {
            public_url: "https://pbx.example.com".into(),
            sip_host: "203.0.113.5".into(),
            sip_port: 5060,
            trunk_username: "twilio".into(),
            trunk_password: "p&ss".into(),
            call_sid: "CA0123".into(),
            did: "+15550001111".into(),
            ring_timeout: 30,
            vm_max_length: 180,
            vm_silence_timeout: 10,
            greeting_text: "Please leave a message.".into(),
            greeting_url: None,
            trust: None,
        }
    }

    fn decision(action: Action) -> Decision {
        Decision {
            action,
            stage: Stage::Route,
            rule: "route:1:Office <hours>".into(),
            reason: String::new(),
            route_id: Some(RouteId(1)),
        }
    }

    #[test]
    fn ringing_dials_sipd_with_trunk_credentials_devices_and_call_sid() {
        let x = for_decision(
            &decision(Action::Ring {
                devices: vec![DeviceId(3), DeviceId(4)],
                owner: false,
                timeout: None,
            }),
            &ctx(),
        );
        assert!(x.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Dial timeout=\"30\" action=\"https://pbx.example.com/api/webhooks/voice/dial-result\""), "{x}");
        assert!(x.contains("<Sip username=\"twilio\" password=\"p&amp;ss\">sip:+15550001111@203.0.113.5:5060;transport=udp?X-GoSIP-CallSid=CA0123&amp;X-GoSIP-Devices=3,4&amp;X-GoSIP-Rule=route:1:Office%20%3Chours%3E</Sip>"), "{x}");
    }

    #[test]
    fn a_route_ring_timeout_replaces_the_setting() {
        let x = for_decision(
            &decision(Action::Ring {
                devices: vec![DeviceId(2)],
                owner: false,
                timeout: Some(15),
            }),
            &ctx(),
        );
        assert!(x.contains("<Dial timeout=\"15\" "), "{x}");
        assert!(x.contains("X-GoSIP-Devices=2&amp;"), "{x}");
    }

    #[test]
    fn a_verified_or_spammy_caller_gets_its_trust_mark_in_the_sip_uri() {
        let facts = |verstat: Option<&str>, score: Option<f64>| CallFacts {
            from: "+15557654321".into(),
            to: "+15550001111".into(),
            spam_score: score,
            stir_verstat: verstat.map(str::to_owned),
        };
        let a = Some("TN-Validation-Passed-A");
        assert_eq!(trust(&facts(a, None), 0.7), Some(Trust::Verified));
        assert_eq!(trust(&facts(a, Some(0.2)), 0.7), Some(Trust::Verified));
        for other in [
            "TN-Validation-Passed-B",
            "TN-Validation-Passed-C",
            "TN-Validation-Failed-A",
            "No-TN-Validation",
        ] {
            assert_eq!(trust(&facts(Some(other), None), 0.7), None, "{other}");
        }
        assert_eq!(trust(&facts(None, None), 0.7), None);
        // The band below the block: 0.5 up to the threshold.
        assert_eq!(trust(&facts(None, Some(0.49)), 0.7), None);
        assert_eq!(trust(&facts(None, Some(0.5)), 0.7), Some(Trust::Spam));
        assert_eq!(
            trust(&facts(a, Some(0.7)), 0.7),
            Some(Trust::Spam),
            "spam wins"
        );
        // A threshold under 0.5: the threshold itself marks.
        assert_eq!(trust(&facts(None, Some(0.3)), 0.3), Some(Trust::Spam));
        assert_eq!(trust(&facts(None, Some(0.29)), 0.3), None);

        let ring = |t| {
            let c = Ctx { trust: t, ..ctx() };
            for_decision(
                &decision(Action::Ring {
                    devices: vec![DeviceId(3)],
                    owner: false,
                    timeout: None,
                }),
                &c,
            )
        };
        assert!(
            ring(Some(Trust::Verified)).contains(
                "X-GoSIP-Rule=route:1:Office%20%3Chours%3E&amp;X-GoSIP-Trust=verified</Sip>"
            ),
            "{}",
            ring(Some(Trust::Verified))
        );
        assert!(ring(Some(Trust::Spam)).contains("&amp;X-GoSIP-Trust=spam</Sip>"));
        assert!(!ring(None).contains("X-GoSIP-Trust"));
    }

    #[test]
    fn voicemail_greets_then_records_180_s_with_10_s_silence_and_transcription() {
        let x = for_decision(&decision(Action::Voicemail { greeting: None }), &ctx());
        assert!(x.contains("<Say voice=\"alice\" language=\"en-US\">Please leave a message.</Say><Record maxLength=\"180\" timeout=\"10\""), "{x}");
        assert!(x.contains("transcribe=\"true\" transcribeCallback=\"https://pbx.example.com/api/webhooks/transcription\""));
        assert!(x.contains(
            "recordingStatusCallback=\"https://pbx.example.com/api/webhooks/recording\""
        ));
        assert!(x.contains("action=\"https://pbx.example.com/api/webhooks/voice/vm-done\""));
        let mut c = ctx();
        c.greeting_url = Some("https://pbx.example.com/api/webhooks/voice/greeting/1".into());
        let x = voicemail(&c, None, false);
        assert!(
            x.contains("<Play>https://pbx.example.com/api/webhooks/voice/greeting/1</Play><Record")
        );
    }

    #[test]
    fn each_blocking_action_has_its_own_document() {
        let b = |how| for_decision(&decision(Action::Block { how }), &ctx());
        assert!(
            b(BlockAction::Reject).contains("<Response><Reject reason=\"rejected\"/></Response>")
        );
        let sit = b(BlockAction::DisconnectedTone);
        assert!(sit.contains("<Play>https://pbx.example.com/api/webhooks/voice/sit.wav</Play>"));
        assert!(sit.ends_with("<Hangup/></Response>"));
        let silent = b(BlockAction::SilentVoicemail);
        assert!(silent.contains(
            "recordingStatusCallback=\"https://pbx.example.com/api/webhooks/recording?silent=1\""
        ));
        assert!(!silent.contains("<Dial"));
    }

    #[test]
    fn forward_announcement_and_reject_documents() {
        let f = for_decision(
            &decision(Action::Forward {
                number: "+15559990000".into(),
            }),
            &ctx(),
        );
        assert!(f.contains("<Number>+15559990000</Number>"));
        assert!(f.contains("dial-result?forward=1"));
        let a = for_decision(
            &decision(Action::Announcement {
                text: "Closed & gone".into(),
                audio: None,
            }),
            &ctx(),
        );
        assert!(a.contains(">Closed &amp; gone</Say><Hangup/>"));
        assert!(reject(true).contains("<Reject reason=\"busy\"/>"));
    }

    #[test]
    fn the_sit_tone_is_a_wav_of_928_ms() {
        let w = sit_tone_wav();
        assert_eq!(&w[..4], b"RIFF");
        assert_eq!(w.len(), 44 + (8000 * 928 / 1000) * 2);
    }
}
