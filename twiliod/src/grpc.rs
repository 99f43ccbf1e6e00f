//! twiliod's gRPC service (`proto/proto/twiliod.proto`), called by webd: the
//! setup wizard's Twilio step, the "test a call" panel, and sending SMS;
//! and by sipd, to hand over the voicemails mediad recorded.

use chrono::Utc;
use tonic::{Request, Response, Status};

use proto::pb::twiliod::twiliod_server::{Twiliod, TwiliodServer};
use proto::pb::twiliod::{
    CheckCredentialsReply, CheckCredentialsRequest, ConfigureNumberReply, ConfigureNumberRequest,
    ConversationReadReply, ConversationReadRequest, DeleteVoicemailReply, DeleteVoicemailRequest,
    ListNumbersReply, ListNumbersRequest, PhoneNumber, Readable, SendMessageReply,
    SendMessageRequest, SetReadReply, SetReadRequest, SetUpTwilioReply, SetUpTwilioRequest,
    StoreVoicemailReply, StoreVoicemailRequest, TestCallReply, TestCallRequest,
};

use crate::AppState;
use crate::client::{Credentials, TwilioClient};
use crate::rules::CallFacts;
use crate::twiml::paths;

/// The Twiliod gRPC service.
#[derive(Clone)]
pub struct Service {
    st: AppState,
}

impl Service {
    pub fn new(st: AppState) -> Self {
        Self { st }
    }

    pub fn into_server(self) -> TwiliodServer<Self> {
        TwiliodServer::new(self)
    }
}

#[tonic::async_trait]
impl Twiliod for Service {
    /// Checks credentials (the given ones, or the stored ones when empty)
    /// by fetching the account.
    async fn check_credentials(
        &self,
        req: Request<CheckCredentialsRequest>,
    ) -> Result<Response<CheckCredentialsReply>, Status> {
        let r = req.into_inner();
        let mut creds = Credentials::from_settings(&self.st.settings.get());
        if !r.account_sid.trim().is_empty() {
            creds.account_sid = r.account_sid.trim().to_owned();
            creds.auth_token = r.auth_token.trim().to_owned();
        }
        let client = TwilioClient::with_credentials(creds);
        let reply = match client.fetch_account().await {
            Ok(a) => CheckCredentialsReply {
                ok: true,
                friendly_name: a.friendly_name,
                error: String::new(),
            },
            Err(e) => CheckCredentialsReply {
                ok: false,
                friendly_name: String::new(),
                error: user_error(&e),
            },
        };
        Ok(Response::new(reply))
    }

    async fn list_numbers(
        &self,
        _req: Request<ListNumbersRequest>,
    ) -> Result<Response<ListNumbersReply>, Status> {
        let reply = match self.st.twilio.list_numbers().await {
            Ok(ns) => ListNumbersReply {
                numbers: ns
                    .into_iter()
                    .map(|n| PhoneNumber {
                        sid: n.sid,
                        phone_number: n.phone_number,
                        friendly_name: n.friendly_name.unwrap_or_default(),
                        voice_url: n.voice_url.unwrap_or_default(),
                        sms_url: n.sms_url.unwrap_or_default(),
                        emergency_address_sid: n.emergency_address_sid.unwrap_or_default(),
                        emergency_status: n.emergency_status.unwrap_or_default(),
                    })
                    .collect(),
                error: String::new(),
            },
            Err(e) => ListNumbersReply {
                numbers: vec![],
                error: user_error(&e),
            },
        };
        Ok(Response::new(reply))
    }

    /// Points the number's voice URL, status callback and SMS URL at our
    /// public URL.
    async fn configure_number(
        &self,
        req: Request<ConfigureNumberRequest>,
    ) -> Result<Response<ConfigureNumberReply>, Status> {
        let sid = req.into_inner().sid;
        let reply = match point_number_here(&self.st, &sid).await {
            Ok(_) => ConfigureNumberReply {
                ok: true,
                error: String::new(),
            },
            Err(e) => ConfigureNumberReply {
                ok: false,
                error: e.to_string(),
            },
        };
        Ok(Response::new(reply))
    }

    /// A text to send: validated, stored and queued by the SMS module.
    async fn send_message(
        &self,
        req: Request<SendMessageRequest>,
    ) -> Result<Response<SendMessageReply>, Status> {
        let id = crate::sms::send_message(&self.st, req.into_inner().into()).await?;
        Ok(Response::new(SendMessageReply { message_id: id }))
    }

    /// "Set up Twilio for me" (see [`crate::trunk`]).
    async fn set_up_twilio(
        &self,
        _req: Request<SetUpTwilioRequest>,
    ) -> Result<Response<SetUpTwilioReply>, Status> {
        Ok(Response::new(crate::trunk::set_up(&self.st).await))
    }

    /// Runs the rules on fresh data without side effects.
    async fn set_read(
        &self,
        req: Request<SetReadRequest>,
    ) -> Result<Response<SetReadReply>, Status> {
        let r = req.into_inner();
        let pool = &self.st.pool;
        let found = match Readable::try_from(r.item) {
            Ok(Readable::Voicemail) => crate::voicemail::set_read(pool, r.id, r.is_read).await,
            Ok(Readable::Message) => {
                crate::sms::conversations::set_read(pool, r.id, r.is_read).await
            }
            _ => return Err(Status::invalid_argument("item: voicemail or message")),
        }
        .map_err(db_status)?;
        Ok(Response::new(SetReadReply { found }))
    }

    async fn conversation_read(
        &self,
        req: Request<ConversationReadRequest>,
    ) -> Result<Response<ConversationReadReply>, Status> {
        let r = req.into_inner();
        let ours = Some(r.our_number.trim()).filter(|o| !o.is_empty());
        let user = (r.user_id != 0).then_some(r.user_id);
        let marked =
            crate::sms::conversations::mark_conversation_read(&self.st.pool, &r.peer, ours, user)
                .await
                .map_err(db_status)?;
        Ok(Response::new(ConversationReadReply { marked }))
    }

    async fn delete_voicemail(
        &self,
        req: Request<DeleteVoicemailRequest>,
    ) -> Result<Response<DeleteVoicemailReply>, Status> {
        let id = req.into_inner().id;
        let found = crate::voicemail::delete(&self.st.pool, &self.st.data_dir, id)
            .await
            .map_err(db_status)?;
        Ok(Response::new(DeleteVoicemailReply { found }))
    }

    /// A voicemail of an internal call, recorded by mediad (see
    /// [`crate::voicemail::local`]).
    async fn store_voicemail(
        &self,
        req: Request<StoreVoicemailRequest>,
    ) -> Result<Response<StoreVoicemailReply>, Status> {
        let stored = crate::voicemail::local::store(&self.st, &req.into_inner()).await?;
        Ok(Response::new(store_voicemail_reply(stored)))
    }

    async fn test_call(
        &self,
        req: Request<TestCallRequest>,
    ) -> Result<Response<TestCallReply>, Status> {
        let r = req.into_inner();
        let now = if r.at.trim().is_empty() {
            Utc::now()
        } else {
            proto::time::parse(r.at.trim())
                .ok_or_else(|| Status::invalid_argument("at: must be an RFC 3339 time"))?
        };
        let snap = crate::ruleset::load(&self.st.pool, &self.st.settings.get())
            .await
            .map_err(|e| Status::unavailable(format!("database: {e}")))?;
        let facts = CallFacts {
            from: r.from_number.clone(),
            to: r.did.clone(),
            spam_score: (r.spam_score > 0.0).then_some(r.spam_score),
            stir_verstat: None,
        };
        let call_sid = "CA00000000000000000000000000000000";
        let (mut d, mut twiml) = crate::voice::answer(&self.st, &snap, &facts, call_sid, now).await;
        let mut menu_twiml = Vec::new();
        if let (crate::rules::Action::Menu(root), Some(route)) = (&d.action, d.route_id) {
            let root = root.clone();
            let rule = d.rule.clone();
            let (mut path, mut tries) = (String::new(), 0);
            for key in r.digits.chars().filter(|c| !c.is_whitespace()) {
                let (doc, step, exit) = crate::voice::menu_answer(
                    &self.st,
                    &snap,
                    &root,
                    crate::voice::MenuAt {
                        route,
                        rule: &rule,
                        path: &path,
                        tries,
                    },
                    Some(key.encode_utf8(&mut [0; 4])),
                    call_sid,
                    &r.did,
                )
                .await;
                menu_twiml.push(std::mem::replace(&mut twiml, doc));
                if let Some(exit) = exit {
                    d = exit;
                    break;
                }
                if let crate::menu::Step::Menu {
                    path: p, tries: t, ..
                } = step
                {
                    (path, tries) = (p, t);
                }
            }
        }
        Ok(Response::new(TestCallReply {
            action: d.action.name().to_owned(),
            rule: d.rule,
            reason: d.reason,
            twiml,
            menu_twiml,
        }))
    }
}

/// What sipd hears: the voicemail, or why there is none.
fn store_voicemail_reply(stored: crate::voicemail::local::Stored) -> StoreVoicemailReply {
    use crate::voicemail::local::Stored;
    match stored {
        Stored::Kept(id) => StoreVoicemailReply {
            stored: true,
            voicemail_id: id,
            why_not: String::new(),
        },
        Stored::TooShort { min_secs } => StoreVoicemailReply {
            stored: false,
            voicemail_id: 0,
            why_not: format!("shorter than {min_secs} s"),
        },
    }
}

/// A database failure as a gRPC status (read-only mode says so).
fn db_status(e: sqlx::Error) -> Status {
    tracing::error!(error = %e, "database write failed");
    Status::unavailable(format!("database: {e}"))
}

/// A message for the wizard: what went wrong, without secrets.
pub(crate) fn user_error(e: &crate::client::TwilioError) -> String {
    use crate::client::TwilioError as E;
    match e {
        E::Api { code: 20003, .. } | E::Api { status: 401, .. } => {
            "Twilio rejected the Account SID or Auth Token (error 20003)".into()
        }
        E::Api { status: 404, .. } => "Not found at Twilio (check the Account SID)".into(),
        E::NotConfigured => "Twilio Account SID and Auth Token are not set".into(),
        other => other.to_string(),
    }
}

/// Why a number could not be pointed at GoSIP; the text is for the admin.
#[derive(Debug, thiserror::Error)]
pub enum PointError {
    #[error("set the public web address (General settings) first: Twilio must reach it")]
    NoPublicUrl,
    /// Twilio refused or could not be reached, in plain words.
    #[error("{0}")]
    Twilio(String),
}

/// Points the number's voice URL, status callback and SMS URL at our public
/// URL; the public URL on success.
pub(crate) async fn point_number_here(st: &AppState, sid: &str) -> Result<String, PointError> {
    let public = st
        .settings
        .get()
        .str("system.public_url")
        .trim()
        .trim_end_matches('/')
        .to_owned();
    if public.is_empty() {
        return Err(PointError::NoPublicUrl);
    }
    let voice = format!("{public}{}", paths::INCOMING);
    let status = format!("{public}{}", paths::STATUS);
    let sms = format!("{public}/api/webhooks/sms/incoming");
    let form = [
        ("VoiceUrl", voice.as_str()),
        ("VoiceMethod", "POST"),
        ("StatusCallback", status.as_str()),
        ("StatusCallbackMethod", "POST"),
        ("SmsUrl", sms.as_str()),
        ("SmsMethod", "POST"),
    ];
    match st.twilio.update_number(sid, &form).await {
        Ok(n) => {
            tracing::info!(sid = %n.sid, number = %n.phone_number, %voice, "number configured");
            Ok(public)
        }
        Err(e) => Err(PointError::Twilio(user_error(&e))),
    }
}
