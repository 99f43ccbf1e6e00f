//! The `Notifyd` gRPC service: `Notify` stores the event before it answers;
//! `SendTest` makes one real delivery now and reports the real error.

use proto::types::UserId;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use proto::pb::notifyd::notifyd_server::{Notifyd, NotifydServer};
use proto::pb::notifyd::{NotifyReply, NotifyRequest, SendTestReply, SendTestRequest};

use crate::deliver::{self, Hook, Mail, Push};
use crate::event::{Event, Kind, check_attachment};
use crate::templates;
use crate::worker::{self, Ctx};

/// The gRPC face of notifyd.
#[derive(Clone)]
pub struct NotifyService {
    ctx: Arc<Ctx>,
}

impl NotifyService {
    pub fn new(ctx: Arc<Ctx>) -> Self {
        Self { ctx }
    }

    pub fn into_server(self) -> NotifydServer<Self> {
        NotifydServer::new(self)
    }
}

/// Checks a request and turns it into an event.
pub fn event_from(req: &NotifyRequest) -> Result<Event, Status> {
    let kind = Kind::parse(&req.kind)
        .ok_or_else(|| Status::invalid_argument(format!("unknown kind {:?}", req.kind)))?;
    let data: serde_json::Value = if req.payload_json.trim().is_empty() {
        serde_json::json!({})
    } else {
        serde_json::from_str(&req.payload_json)
            .map_err(|e| Status::invalid_argument(format!("payload_json: {e}")))?
    };
    let serde_json::Value::Object(mut data) = data else {
        return Err(Status::invalid_argument(
            "payload_json must be a JSON object",
        ));
    };
    // An alert's code may come as `kind` (as in the `alerts` table).
    if kind == Kind::AdminAlert
        && !data.contains_key("alert")
        && let Some(code) = data.get("kind").cloned()
    {
        data.insert("alert".into(), code);
    }
    let data = serde_json::Value::Object(data);
    if req.user_id < 0 {
        return Err(Status::invalid_argument(
            "user_id must be 0 (admins) or a user id",
        ));
    }
    for a in &req.attachments {
        check_attachment(a).map_err(|e| Status::invalid_argument(e.to_string()))?;
    }
    Ok(Event {
        kind,
        user_id: UserId::from_wire(req.user_id),
        data,
        attachments: req.attachments.clone(),
        created_at: proto::time::now(),
    })
}

impl NotifyService {
    /// A test delivery to webhook endpoint `target` (an id) or to a URL:
    /// (the URL tried, the outcome).
    async fn test_webhook(
        &self,
        target: &str,
        message: String,
    ) -> Result<(String, Result<String, deliver::DeliveryError>), Status> {
        let (url, secret) = match target.parse::<i64>() {
            Ok(id) => sqlx::query_as::<_, (String, String)>(
                "SELECT url, secret FROM webhook_endpoints WHERE id = ?",
            )
            .bind(id)
            .fetch_optional(&self.ctx.pool)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?
            .ok_or_else(|| Status::not_found(format!("webhook endpoint {id}")))?,
            Err(_) if target.starts_with("http://") || target.starts_with("https://") => {
                (target.to_owned(), String::new())
            }
            Err(_) => {
                return Err(Status::invalid_argument(
                    "target must be an endpoint id or an http(s) URL",
                ));
            }
        };
        let now = chrono::Utc::now();
        let body = serde_json::json!({
            "id": 0,
            "event": "test",
            "created_at": proto::time::fmt(now),
            "timestamp": now.timestamp(),
            "user_id": null,
            "data": {"message": message},
            "attachments": [],
        })
        .to_string();
        let hook = Hook {
            url: &url,
            secret: &secret,
            body: &body,
            event: "test",
            timestamp: now.timestamp(),
            delivery_id: 0,
        };
        let r = deliver::webhook(&self.ctx.outbound, &hook).await;
        Ok((url, r))
    }
}

#[tonic::async_trait]
impl Notifyd for NotifyService {
    async fn notify(&self, req: Request<NotifyRequest>) -> Result<Response<NotifyReply>, Status> {
        let req = req.into_inner();
        let event = event_from(&req)?;
        let job_id = match worker::enqueue_event(&self.ctx, &event, None).await {
            Ok(id) => id,
            // The alert may be about the database itself: deliver it anyway.
            Err(e) if event.kind == Kind::AdminAlert => {
                tracing::error!(error = %e, "could not store an admin alert; delivering it from memory");
                tokio::spawn(worker::deliver_unstored(self.ctx.clone(), event));
                return Ok(Response::new(NotifyReply { job_id: 0 }));
            }
            Err(e) => {
                tracing::error!(kind = %event.kind, error = %e, "could not store a notification");
                return Err(Status::unavailable(format!(
                    "could not store the notification: {e}"
                )));
            }
        };
        tracing::info!(job_id, kind = %event.kind, user_id = ?event.user_id, "notification accepted");
        Ok(Response::new(NotifyReply { job_id }))
    }

    async fn send_test(
        &self,
        req: Request<SendTestRequest>,
    ) -> Result<Response<SendTestReply>, Status> {
        let req = req.into_inner();
        let target = req.target.trim();
        let s = self.ctx.settings.get();
        let http = &self.ctx.http;
        let rendered = templates::test_message(&req.channel);
        let (logged_target, result) = match req.channel.as_str() {
            "email" => {
                if !target.contains('@') {
                    return Err(Status::invalid_argument("target must be an email address"));
                }
                let mail = Mail {
                    to: target.to_owned(),
                    subject: rendered.subject,
                    text: rendered.text,
                    html: rendered.html,
                    attachments: vec![],
                    message_id: None,
                };
                (target.to_owned(), deliver::email(&s, http, &mail).await)
            }
            "gotify" => {
                let (url, token) = crate::worker::gotify_server(
                    &self.ctx.pool,
                    &s,
                    UserId::from_wire(req.user_id),
                )
                .await;
                let push = Push {
                    title: rendered.subject,
                    message: rendered.short,
                    priority: rendered.priority,
                };
                let r = deliver::gotify(&self.ctx.outbound, &url, &token, &push).await;
                (url, r)
            }
            "webhook" => self.test_webhook(target, rendered.short).await?,
            other => {
                return Err(Status::invalid_argument(format!(
                    "unknown channel {other:?} (email, gotify, webhook)"
                )));
            }
        };
        let (ok, status, text) = match &result {
            Ok(r) => (true, "test_sent", r.clone()),
            Err(e) => (false, "test_failed", e.to_string()),
        };
        let text = text.as_str();
        let attempt = crate::queue::Attempt {
            channel: &req.channel,
            target: &logged_target,
            status,
            response: text,
        };
        if let Ok(mut conn) = self.ctx.pool.acquire().await
            && let Err(e) = crate::queue::log_delivery(&mut conn, None, &attempt).await
        {
            tracing::warn!(error = %e, "could not log a test delivery");
        }
        tracing::info!(channel = %req.channel, ok, "test notification");
        Ok(Response::new(match result {
            Ok(response) => SendTestReply {
                ok: true,
                error: String::new(),
                response,
            },
            Err(error) => SendTestReply {
                ok: false,
                error: error.to_string(),
                response: String::new(),
            },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(kind: &str, payload: &str, attachments: &[&str]) -> NotifyRequest {
        NotifyRequest {
            kind: kind.into(),
            user_id: 0,
            payload_json: payload.into(),
            attachments: attachments.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn bad_requests_are_invalid_arguments() {
        for r in [
            req("fax", "{}", &[]),
            req("sms", "[1]", &[]),
            req("sms", "{", &[]),
            req("sms", "{}", &["../gosip.db"]),
        ] {
            assert_eq!(
                event_from(&r).unwrap_err().code(),
                tonic::Code::InvalidArgument
            );
        }
    }

    #[test]
    fn an_alert_code_given_as_kind_is_read_as_alert() {
        let e = event_from(&req(
            "admin_alert",
            r#"{"kind":"twilio_failing","message":"m"}"#,
            &[],
        ))
        .unwrap();
        assert_eq!(e.data["alert"], "twilio_failing");
    }

    #[test]
    fn an_empty_payload_is_an_empty_object() {
        let e = event_from(&req("missed_call", "", &[])).unwrap();
        assert_eq!(e.data, serde_json::json!({}));
        assert_eq!(e.kind, Kind::MissedCall);
    }
}
