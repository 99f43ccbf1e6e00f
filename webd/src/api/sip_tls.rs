//! `/api/system/sip-tls`: what phones meet on sipd's SIP-over-TLS port
//! (the port and the certificate's fingerprint, for phones that pin it),
//! asked of sipd, which loaded the certificate.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::accounts::Admin;
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::peer_error;

#[derive(Serialize, ToSchema)]
pub struct SipTls {
    /// The port phones use with transport TLS.
    pub port: u16,
    /// SHA-256 of the certificate, `AB:CD:...` as phones show it.
    pub sha256: String,
    /// The certificate file sipd loaded.
    pub certificate_path: String,
    /// GoSIP made the certificate itself: phones must be told to trust it
    /// (or pin the fingerprint) since no authority vouches for it.
    pub self_signed: bool,
}

/// SIP over TLS as sipd serves it now.
#[utoipa::path(get, path = "/api/system/sip-tls", tag = "system", operation_id = "system_sip_tls",
    responses((status = 200, body = SipTls), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn get(State(st): State<AppState>, _a: Admin) -> ApiResult<Json<SipTls>> {
    let r = ask(&st).await?;
    Ok(Json(SipTls {
        port: u16::try_from(r.port).unwrap_or_default(),
        sha256: r.sha256,
        certificate_path: r.certificate_path,
        self_signed: r.self_signed,
    }))
}

/// Asks sipd (for at most 2 s) what it serves on its TLS port.
pub async fn ask(st: &AppState) -> ApiResult<proto::pb::sipd::TlsInfoReply> {
    let mut c = proto::pb::sipd::sipd_client::SipdClient::new(st.peers.sipd.clone());
    Ok(tokio::time::timeout(
        std::time::Duration::from_secs(2),
        c.tls_info(proto::pb::sipd::TlsInfoRequest {}),
    )
    .await
    .map_err(|_| {
        ApiError::Unavailable("sipd is not reachable right now; try again shortly".into())
    })?
    .map_err(|s| peer_error("sipd", s))?
    .into_inner())
}

/// The TLS port and certificate fingerprint to give a phone set to TLS:
/// sipd's answer, else the default SIP-over-TLS port (RFC 3261 section
/// 26.2) and no fingerprint, so a phone can still be set up while sipd is
/// down.
pub async fn for_phone(st: &AppState) -> (u16, Option<String>) {
    match ask(st).await {
        Ok(r) => match u16::try_from(r.port) {
            Ok(p) if p != 0 => (p, Some(r.sha256).filter(|s| !s.is_empty())),
            _ => (proto::defaults::SIPS_PORT, None),
        },
        Err(e) => {
            tracing::warn!(error = %e, "sipd did not say its TLS port; phones are given the default");
            (proto::defaults::SIPS_PORT, None)
        }
    }
}
